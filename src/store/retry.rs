//! Retries with exponential back-off and full jitter, and a time-out per attempt.
//!
//! Transient failures (network errors, 5xx, throttling, time-outs, connection resets, which
//! `object_store` reports as `Generic`) are retried; answers that will not change (not found,
//! already exists, permission denied, bad credentials) are not. Bodies are read inside the
//! retried attempt, so a connection cut mid-download is retried too. A create-only write that
//! is retried after a lost response may find its own earlier attempt: for content-addressed
//! objects, "already exists" after a failed attempt is success.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, Error, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, Result,
};

/// How hard to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    /// First back-off ceiling; doubles each attempt.
    pub base: Duration,
    /// Largest back-off ceiling.
    pub max: Duration,
    /// Time-out of one attempt (including reading the body).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 8,
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
        }
    }
}

/// Whether an error may go away on its own.
pub fn is_transient(e: &Error) -> bool {
    match e {
        Error::Generic { source, .. } => {
            let text = source.to_string();
            // Credentials and signatures do not heal by waiting.
            ![
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "AccessDenied",
                "NoSuchBucket",
                "403 Forbidden",
            ]
            .iter()
            .any(|m| text.contains(m))
        }
        Error::JoinError { .. } => true,
        _ => false,
    }
}

/// An `ObjectStore` that retries its inner store.
#[derive(Debug)]
pub struct RetryStore {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
}

impl RetryStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> Self {
        RetryStore { inner, policy }
    }
}

impl std::fmt::Display for RetryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RetryStore({})", self.inner)
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the retries run out.
async fn with_retries<T, F, Fut>(policy: RetryPolicy, mut attempt: F) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut n = 0;
    loop {
        let result = match tokio::time::timeout(policy.timeout, attempt(n)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Generic {
                store: "retry",
                source: format!("request timed out after {:?}", policy.timeout).into(),
            }),
        };
        match result {
            Err(e) if n < policy.retries && is_transient(&e) => {
                tokio::time::sleep(backoff(policy, n)).await;
                n += 1;
            }
            Err(e) if n > 0 && is_transient(&e) => {
                return Err(Error::Generic {
                    store: "retry",
                    source: format!("gave up after {} attempts: {e}", n + 1).into(),
                });
            }
            other => return other,
        }
    }
}

/// Full jitter: a uniformly random wait up to min(max, base · 2^n).
fn backoff(policy: RetryPolicy, n: u32) -> Duration {
    let ceiling = policy
        .base
        .saturating_mul(1u32 << n.min(20))
        .min(policy.max);
    let r = crate::clock::random_bytes::<8>()
        .map(u64::from_le_bytes)
        .unwrap_or(u64::MAX / 2);
    ceiling.mul_f64(r as f64 / u64::MAX as f64)
}

/// Reads a whole body so that failures while reading happen inside the attempt.
async fn buffered(r: GetResult) -> Result<GetResult> {
    match r.payload {
        GetResultPayload::File(..) => Ok(r),
        GetResultPayload::Stream(_) => super::rebody(r, super::whole).await,
    }
}

#[async_trait]
impl ObjectStore for RetryStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let create = matches!(opts.mode, PutMode::Create);
        with_retries(self.policy, |n| {
            let (payload, opts) = (payload.clone(), opts.clone());
            async move {
                match self.inner.put_opts(location, payload, opts).await {
                    // Our own earlier attempt landed but its answer was lost.
                    Err(Error::AlreadyExists { .. }) if create && n > 0 => Ok(PutResult {
                        e_tag: None,
                        version: None,
                        extensions: Default::default(),
                    }),
                    other => other,
                }
            }
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        with_retries(self.policy, |_| {
            let options = options.clone();
            async move { buffered(self.inner.get_opts(location, options).await?).await }
        })
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        with_retries(self.policy, |_| self.inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let (inner, policy, prefix) = (self.inner.clone(), self.policy, prefix.cloned());
        let all = async move {
            with_retries(policy, |_| {
                inner.list(prefix.as_ref()).try_collect::<Vec<_>>()
            })
            .await
        };
        stream::once(all)
            .flat_map(|r| match r {
                Ok(items) => stream::iter(items.into_iter().map(Ok)).boxed(),
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        with_retries(self.policy, |_| self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        with_retries(self.policy, |_| {
            self.inner.copy_opts(from, to, options.clone())
        })
        .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        with_retries(self.policy, |_| {
            self.inner.rename_opts(from, to, options.clone())
        })
        .await
    }
}
