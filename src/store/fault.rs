//! Fault injection for tests: a store that fails, delays or cuts off a share of requests.
//!
//! Enabled with `COFFER_FAULTS` (for the binary) or [`FaultPlan::parse`], e.g.
//! `fail=0.1,cut=0.05,delay=0.2:50ms`: 10% of requests fail before reaching the store, 5%
//! reach it but lose their answer (a write lands, a read is cut short), and 20% wait up to
//! 50 ms. Injected failures look like network errors, so the retry layer treats them as such.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, Error, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Shares of requests to disturb, each in 0..=1.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultPlan {
    /// Fail before the request reaches the store.
    pub fail: f64,
    /// Let the request reach the store, then fail (lost answer, truncated read).
    pub cut: f64,
    /// Delay before the request.
    pub delay: f64,
    /// Longest delay.
    pub max_delay: Duration,
}

impl FaultPlan {
    /// Parses `fail=0.1,cut=0.05,delay=0.2:50ms`.
    pub fn parse(spec: &str) -> crate::Result<Self> {
        let bad = |why: &str| crate::Error::invalid(format!("fault plan {spec:?}: {why}"));
        let mut plan = FaultPlan {
            max_delay: Duration::from_millis(20),
            ..Default::default()
        };
        for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| bad("expected key=value"))?;
            let (share, extra) = value.split_once(':').unwrap_or((value, ""));
            let share: f64 = share
                .trim()
                .parse()
                .map_err(|_| bad("share is not a number"))?;
            if !(0.0..=1.0).contains(&share) {
                return Err(bad("shares are between 0 and 1"));
            }
            match key.trim() {
                "fail" => plan.fail = share,
                "cut" => plan.cut = share,
                "delay" => {
                    plan.delay = share;
                    if let Some(ms) = extra.strip_suffix("ms") {
                        plan.max_delay =
                            Duration::from_millis(ms.parse().map_err(|_| bad("delay like 50ms"))?);
                    }
                }
                other => return Err(bad(&format!("unknown key {other}"))),
            }
        }
        Ok(plan)
    }
}

/// A store that disturbs requests to its inner store.
#[derive(Debug)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    plan: FaultPlan,
}

impl FaultStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, plan: FaultPlan) -> Self {
        FaultStore { inner, plan }
    }

    fn roll(&self) -> f64 {
        let r = crate::clock::random_bytes::<8>()
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        r as f64 / u64::MAX as f64
    }

    /// Delays or fails before the request; returns whether to cut it after.
    async fn before(&self, what: &str) -> Result<bool> {
        if self.roll() < self.plan.delay {
            tokio::time::sleep(self.plan.max_delay.mul_f64(self.roll())).await;
        }
        if self.roll() < self.plan.fail {
            return Err(injected(what));
        }
        Ok(self.roll() < self.plan.cut)
    }
}

fn injected(what: &str) -> Error {
    Error::Generic {
        store: "fault",
        source: format!("injected fault: connection reset during {what}").into(),
    }
}

impl std::fmt::Display for FaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let cut = self.before("upload").await?;
        let result = self.inner.put_opts(location, payload, opts).await;
        if cut {
            Err(injected("upload response"))
        } else {
            result
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.before("upload").await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let cut = self.before("download").await?;
        let r = self.inner.get_opts(location, options).await?;
        if !cut {
            return Ok(r);
        }
        // Deliver the first half of the body, then a reset.
        super::rebody(r, |bytes| {
            let half = bytes.slice(..bytes.len() / 2);
            futures::stream::iter(vec![Ok(half), Err(injected("download body"))]).boxed()
        })
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if self.before("ranged download").await? {
            return Err(injected("ranged download"));
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        if self.roll() < self.plan.fail {
            return futures::stream::once(async { Err(injected("listing")) }).boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.before("listing").await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.before("copy").await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.before("rename").await?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_plans() {
        let p = FaultPlan::parse("fail=0.1,cut=0.05,delay=0.2:50ms").unwrap();
        assert_eq!(
            (p.fail, p.cut, p.delay, p.max_delay),
            (0.1, 0.05, 0.2, Duration::from_millis(50))
        );
        assert!(FaultPlan::parse("fail=2").is_err());
        assert!(FaultPlan::parse("boom=0.1").is_err());
    }
}
