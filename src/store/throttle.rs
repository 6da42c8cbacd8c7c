//! Bandwidth limits: upload and download rates in bytes per second.
//!
//! Each transfer reserves the next free slot on its direction's timeline (a leaky bucket):
//! with a rate of R bytes/s, n bytes occupy n/R seconds, and a transfer waits until the
//! transfers before it have had their time.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use tokio::time::Instant;

/// One direction's timeline.
#[derive(Debug)]
struct Bucket {
    rate: Option<u64>,
    next: Mutex<Option<Instant>>,
}

impl Bucket {
    fn new(rate: Option<u64>) -> Self {
        Bucket {
            rate,
            next: Mutex::new(None),
        }
    }

    async fn take(&self, bytes: u64) {
        let Some(rate) = self.rate.filter(|r| *r > 0) else {
            return;
        };
        let wait_until = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = next.map_or(now, |t| t.max(now));
            let end = start + Duration::from_secs_f64(bytes as f64 / rate as f64);
            *next = Some(end);
            end
        };
        tokio::time::sleep_until(wait_until).await;
    }
}

/// A store whose transfers are limited in rate.
#[derive(Debug)]
pub struct ThrottleStore {
    inner: Arc<dyn ObjectStore>,
    up: Bucket,
    down: Bucket,
}

impl ThrottleStore {
    /// Wraps `inner`; `None` means unlimited.
    pub fn new(inner: Arc<dyn ObjectStore>, upload: Option<u64>, download: Option<u64>) -> Self {
        ThrottleStore {
            inner,
            up: Bucket::new(upload),
            down: Bucket::new(download),
        }
    }
}

impl std::fmt::Display for ThrottleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThrottleStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for ThrottleStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.up.take(payload.content_length() as u64).await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let r = self.inner.get_opts(location, options).await?;
        if self.down.rate.is_none() {
            return Ok(r);
        }
        let mut len = 0;
        let r = super::rebody(r, |bytes| {
            len = bytes.len() as u64;
            super::whole(bytes)
        })
        .await?;
        self.down.take(len).await;
        Ok(r)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let out = self.inner.get_ranges(location, ranges).await?;
        self.down
            .take(out.iter().map(|b| b.len() as u64).sum())
            .await;
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}
