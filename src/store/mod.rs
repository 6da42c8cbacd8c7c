//! The repository's view of an object store: blocking calls over `object_store`.
//!
//! `object_store` is the only storage abstraction. This module turns a repository URL into a
//! store (a plain path or `file://` for a local directory, `memory://NAME` for tests), owns the
//! small tokio runtime that drives it (started on first use), and offers the handful of
//! blocking operations the engine needs. Wrappers (fault injection, a bound on concurrent
//! requests, bandwidth limits, retries with time-outs) are composed in one place, [`compose`].
//! Two shortcuts for a local directory when no wrapper needs to see the requests: ranged reads
//! (restore's hot path) read the file directly, and background writes (packs) bypass the page
//! cache (module `direct`). It knows object names, never their contents.

mod direct;
mod fault;
mod local;
mod retry;
mod throttle;
mod validate;

pub use fault::{FaultPlan, FaultStore};
pub use retry::{RetryPolicy, RetryStore, is_transient};
pub use throttle::ThrottleStore;
pub use validate::{CheckOutcome, validate};

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use direct::Staged;

/// A repository location, parsed from what the user typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on a local file system.
    Directory(PathBuf),
    /// A process-wide in-memory store, shared by name (tests).
    Memory(String),
    /// An object store service: `s3://`, `gs://` or `az://` with bucket and prefix.
    Cloud {
        /// `s3`, `gs` or `az`.
        scheme: String,
        /// Bucket (or Azure container).
        bucket: String,
        /// Key prefix inside the bucket (may be empty).
        prefix: String,
    },
}

impl Location {
    /// Parses `/path`, `relative/path`, `file:///path` or `memory://name`.
    pub fn parse(url: &str) -> Result<Self> {
        if let Some(name) = url.strip_prefix("memory://") {
            return Ok(Location::Memory(name.to_string()));
        }
        if let Some(path) = url.strip_prefix("file://") {
            return Ok(Location::Directory(PathBuf::from(path)));
        }
        if let Some((scheme, rest)) = url.split_once("://") {
            if !matches!(scheme, "s3" | "gs" | "az") {
                return Err(Error::invalid(format!(
                    "repository scheme {scheme}:// is not supported; use a path, file://, s3://, gs://, az:// or memory://"
                )));
            }
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::invalid(format!(
                    "{url}: no bucket given; use {scheme}://BUCKET/PREFIX"
                )));
            }
            return Ok(Location::Cloud {
                scheme: scheme.to_string(),
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if url.is_empty() {
            return Err(Error::invalid(
                "no repository given: use -r/--repo or COFFER_REPOSITORY",
            ));
        }
        Ok(Location::Directory(PathBuf::from(url)))
    }
}

fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

/// How requests to the store are shaped.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Retries and time-outs.
    pub retry: RetryPolicy,
    /// Most requests in flight at once.
    pub max_requests: usize,
    /// Upload limit in bytes per second.
    pub upload_rate: Option<u64>,
    /// Download limit in bytes per second.
    pub download_rate: Option<u64>,
    /// Faults to inject (tests).
    pub faults: Option<FaultPlan>,
    /// S3 endpoint overriding `AWS_ENDPOINT_URL` (plain `http://` is allowed, for loopback
    /// test servers such as Garage).
    pub s3_endpoint: Option<String>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retry: RetryPolicy::default(),
            max_requests: 8,
            upload_rate: None,
            download_rate: None,
            faults: None,
            s3_endpoint: None,
        }
    }
}

/// Wraps a store, innermost first: faults (they stand for the network), the request limit,
/// bandwidth limits, then retries with time-outs around everything.
pub fn compose(base: Arc<dyn ObjectStore>, opts: &StoreOptions) -> Arc<dyn ObjectStore> {
    let mut store = base;
    if let Some(plan) = opts.faults {
        store = Arc::new(FaultStore::new(store, plan));
    }
    store = Arc::new(object_store::limit::LimitStore::new(
        store,
        opts.max_requests.max(1),
    ));
    if opts.upload_rate.is_some() || opts.download_rate.is_some() {
        store = Arc::new(ThrottleStore::new(
            store,
            opts.upload_rate,
            opts.download_rate,
        ));
    }
    Arc::new(RetryStore::new(store, opts.retry))
}

/// Reads a whole response body and returns the response again, its body now `body(bytes)`.
/// Wrappers use it to retry or throttle whole bodies, or to cut them short.
pub(crate) async fn rebody(
    r: object_store::GetResult,
    body: impl FnOnce(Bytes) -> futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
) -> object_store::Result<object_store::GetResult> {
    let (meta, range, attributes) = (r.meta.clone(), r.range.clone(), r.attributes.clone());
    let bytes = r.bytes().await?;
    Ok(object_store::GetResult {
        payload: object_store::GetResultPayload::Stream(body(bytes)),
        meta,
        range,
        attributes,
        extensions: Default::default(),
    })
}

/// A body that yields `bytes` in one piece.
pub(crate) fn whole(
    bytes: Bytes,
) -> futures::stream::BoxStream<'static, object_store::Result<Bytes>> {
    use futures::StreamExt;
    futures::stream::once(async move { Ok(bytes) }).boxed()
}

/// A blocking handle on an object store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// The store without wrappers.
    raw: Arc<dyn ObjectStore>,
    runtime: LazyRuntime,
    description: String,
    /// Reached over a network (uploads take a while).
    remote: bool,
    /// A local directory whose ranged reads go straight to the file (see [`read_local`]);
    /// `None` when a wrapper must see every read (faults, a download limit).
    local_reads: Option<PathBuf>,
    /// A local directory whose background writes bypass the page cache (see [`direct`]);
    /// `None` when a wrapper must see every write (faults, an upload limit).
    local_writes: Option<PathBuf>,
}

/// The tokio runtime that drives `object_store`, started on first use. A backup to a local
/// directory that stores nothing new reads and writes only through the direct paths, so it
/// never starts the runtime's two threads.
#[derive(Clone, Default)]
struct LazyRuntime(Arc<OnceLock<Runtime>>);

impl LazyRuntime {
    fn get(&self) -> Result<&Runtime> {
        if let Some(runtime) = self.0.get() {
            return Ok(runtime);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("coffer-store")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the storage runtime", e))?;
        // Another thread may have started one meanwhile: then this one is dropped.
        Ok(self.0.get_or_init(|| runtime))
    }
}

/// An upload running in the background; [`Store::wait`] collects its result.
pub struct PendingPut(JoinHandle<Result<(ObjectId, Option<Staged>)>>);

/// An object to make durable and visible with [`Store::commit`].
pub(crate) enum CommitItem {
    /// Written to a local directory by a stream ([`ObjectStream::stage`]), not yet synced.
    Staged(Staged),
    /// Bytes to store under a name.
    Bytes(String, Bytes),
}

/// Parts handed to a stream's writer at once (or fewer, when the object ends)...
const STREAM_BATCH: usize = 1 << 20;
/// ...and batches queued for the writer: the memory a stream holds beyond its writer's piece.
const STREAM_QUEUE: usize = 4;

/// An object being produced; see [`Store::stream_object`].
pub struct ObjectStream {
    /// The store to upload a kept object to, and the runtime that does it.
    inner: Arc<dyn ObjectStore>,
    handle: tokio::runtime::Handle,
    batch: Vec<Bytes>,
    batch_len: usize,
    sink: Sink,
}

enum Sink {
    /// Parts kept until the object is finished.
    Kept(Vec<Bytes>),
    /// A thread writing batches of parts to a local file as they come.
    Writer {
        parts: std::sync::mpsc::SyncSender<Message>,
        writer: JoinHandle<Result<(ObjectId, Option<Staged>)>>,
    },
}

/// What a stream sends its writer.
enum Message {
    Parts(Vec<Bytes>),
    /// The object's name from its hash; whether to leave it staged.
    Finish(Box<dyn FnOnce(&ObjectId) -> String + Send>, bool),
}

impl ObjectStream {
    /// Appends a part. A writer that failed takes no more parts; [`Self::finish`] reports
    /// its error.
    pub fn push(&mut self, part: Bytes) {
        match &mut self.sink {
            Sink::Kept(parts) => parts.push(part),
            Sink::Writer { parts, .. } => {
                self.batch_len += part.len();
                self.batch.push(part);
                if self.batch_len >= STREAM_BATCH {
                    self.batch_len = 0;
                    let _ = parts.send(Message::Parts(std::mem::take(&mut self.batch)));
                }
            }
        }
    }

    /// Ends the object, named `name(BLAKE3 of its bytes)`; the rest of the writing happens
    /// in the background, and [`Store::wait`] gives the hash.
    pub fn finish(self, name: impl FnOnce(&ObjectId) -> String + Send + 'static) -> PendingPut {
        self.end(Box::new(name), false)
    }

    /// Ends the object like [`Self::finish`], but one written to a local directory is left
    /// staged: [`Store::wait_staged`] gives it, for [`Store::commit`]. Elsewhere the object
    /// is stored as by `finish`.
    pub(crate) fn stage(
        self,
        name: impl FnOnce(&ObjectId) -> String + Send + 'static,
    ) -> PendingPut {
        self.end(Box::new(name), true)
    }

    fn end(self, name: Box<dyn FnOnce(&ObjectId) -> String + Send>, stage: bool) -> PendingPut {
        match self.sink {
            Sink::Kept(parts) => {
                let inner = self.inner;
                PendingPut(self.handle.spawn(async move {
                    let (id, name, parts) = tokio::task::spawn_blocking(move || {
                        let id = ObjectId::of_parts(&parts);
                        (id, name(&id), parts)
                    })
                    .await
                    .map_err(task_failed)?;
                    put_content(inner, name, PutPayload::from_iter(parts)).await?;
                    Ok((id, None))
                }))
            }
            Sink::Writer { parts, writer } => {
                let _ = parts.send(Message::Parts(self.batch));
                let _ = parts.send(Message::Finish(name, stage));
                PendingPut(writer)
            }
        }
    }
}

/// An error writing under the local directory `dir`, with what to do if the disk is full.
fn write_failed(dir: &Path, e: std::io::Error) -> Error {
    let hint = if e.raw_os_error() == Some(libc::ENOSPC) {
        " (the repository's file system is full: free space there, then run the backup again)"
    } else {
        ""
    };
    Error::io(format!("writing an object to {}{hint}", dir.display()), e)
}

fn task_failed(e: tokio::task::JoinError) -> Error {
    Error::new(ErrorKind::Store, format!("upload task failed: {e}"))
}

/// The writer of a stream to a local directory (see [`direct`]): writes parts as they come;
/// where the file system refuses `O_DIRECT`, keeps them and writes through `inner`.
fn write_stream(
    root: &Path,
    dir: &str,
    received: std::sync::mpsc::Receiver<Message>,
    inner: Arc<dyn ObjectStore>,
    handle: tokio::runtime::Handle,
) -> Result<(ObjectId, Option<Staged>)> {
    let failed = |e| write_failed(&root.join(dir), e);
    let mut object = direct::DirectObject::create(root, dir).map_err(failed)?;
    let mut kept = Vec::new();
    for message in received {
        match message {
            Message::Parts(parts) => match &mut object {
                Some(direct) => match direct.append(parts) {
                    Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                        kept = object.take().map(|o| o.into_parts()).unwrap_or_default();
                    }
                    other => other.map_err(failed)?,
                },
                None => kept.extend(parts),
            },
            Message::Finish(name, stage) => {
                return match object {
                    Some(direct) if stage => {
                        let (id, staged) = direct.stage(name).map_err(failed)?;
                        Ok((id, Some(staged)))
                    }
                    Some(direct) => direct
                        .finish(name)
                        .map(|(id, _)| (id, None))
                        .map_err(failed),
                    None => {
                        let id = ObjectId::of_parts(&kept);
                        let put = put_content(inner, name(&id), PutPayload::from_iter(kept));
                        handle.block_on(put).map(|()| (id, None))
                    }
                };
            }
        }
    }
    Err(Error::new(
        ErrorKind::Store,
        "an object was abandoned before it was complete",
    ))
}

impl Store {
    /// Opens the store at `location` with default options. With `create`, a missing
    /// directory is created.
    pub fn open(location: &Location, create: bool) -> Result<Store> {
        Self::open_with(location, create, &StoreOptions::default())
    }

    /// Opens the store at `location` with `opts`.
    pub fn open_with(location: &Location, create: bool, opts: &StoreOptions) -> Result<Store> {
        let (inner, description): (Arc<dyn ObjectStore>, String) = match location {
            Location::Memory(name) => {
                let mut stores = memory_stores()
                    .lock()
                    .map_err(|_| Error::invalid("memory store lock poisoned"))?;
                let store = stores
                    .entry(name.clone())
                    .or_insert_with(|| Arc::new(InMemory::new()));
                (store.clone(), format!("memory://{name}"))
            }
            Location::Directory(path) => (
                Arc::new(open_directory(path, create)?),
                path.display().to_string(),
            ),
            Location::Cloud {
                scheme,
                bucket,
                prefix,
            } => {
                let description = format!("{scheme}://{bucket}/{prefix}");
                (open_cloud(scheme, bucket, prefix, opts)?, description)
            }
        };
        // Direct paths for a local directory, each only where no wrapper must see requests.
        let local_dir = match location {
            Location::Directory(path) if opts.faults.is_none() => Some(path),
            _ => None,
        };
        Ok(Store {
            inner: compose(inner.clone(), opts),
            raw: inner,
            runtime: LazyRuntime::default(),
            description,
            remote: matches!(location, Location::Cloud { .. }),
            local_reads: local_dir.filter(|_| opts.download_rate.is_none()).cloned(),
            local_writes: local_dir.filter(|_| opts.upload_rate.is_none()).cloned(),
        })
    }

    /// The same store behind a fault injector (no retries), for conformance checks.
    pub fn with_faults(&self, plan: FaultPlan) -> Store {
        let raw = self.raw.clone();
        let inner: Arc<dyn ObjectStore> = Arc::new(FaultStore::new(raw.clone(), plan));
        Store {
            inner,
            raw,
            runtime: self.runtime.clone(),
            description: self.description.clone(),
            remote: self.remote,
            local_reads: None,
            local_writes: None,
        }
    }

    /// Uploads part of an object and abandons the upload, as a crashed client would (for the
    /// conformance checks: nothing may become visible).
    pub fn abandon_upload(&self, name: &str, part: Bytes) -> Result<()> {
        let path = ObjectPath::from(name);
        let store = self.raw.clone();
        self.runtime
            .get()?
            .block_on(async move {
                let mut upload = store.put_multipart(&path).await?;
                upload.put_part(PutPayload::from_bytes(part)).await?;
                upload.abort().await
            })
            .map_err(|e| Error::from(e).context(format!("abandoned upload of {name}")))
    }

    /// Where this store is, for messages.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Reads a whole object.
    pub fn get(&self, name: &str) -> Result<Bytes> {
        if let Some(root) = self.local_path(name) {
            return read_local(root, name, None);
        }
        let path = ObjectPath::from(name);
        let store = self.inner.clone();
        self.runtime
            .get()?
            .block_on(async move { store.get(&path).await?.bytes().await })
            .map_err(|e| Error::from(e).context(format!("reading {name}")))
    }

    /// Reads the whole objects of `listing` (names and sizes, as [`Self::list`] gives them)
    /// and hands each result to `each`, in the listing's order. From a network store eight
    /// reads are in flight at once, so a repository of many small objects (snapshots, index
    /// objects) opens in a few round trips' time, not one per object. A directory is read on
    /// the calling thread, one object after another: with two reads in flight on the
    /// runtime's threads, the hand-offs cost more than the overlap saved (a cold unchanged
    /// backup of the `image` dataset took 3–5 ms longer). Stops at the first error `each`
    /// returns; reads still in flight then finish unobserved.
    pub fn get_each(
        &self,
        listing: &[(String, u64)],
        mut each: impl FnMut(&str, Result<Bytes>) -> Result<()>,
    ) -> Result<()> {
        if self.local_reads.is_some() {
            return listing
                .iter()
                .try_for_each(|(name, _)| each(name, self.get(name)));
        }
        let runtime = self.runtime.get()?;
        let mut names = listing.iter().map(|(name, _)| name);
        let mut pending = std::collections::VecDeque::new();
        loop {
            while pending.len() < self.reads_in_flight()
                && let Some(name) = names.next()
            {
                let path = ObjectPath::from(name.as_str());
                let store = self.inner.clone();
                let read = runtime.spawn(async move { store.get(&path).await?.bytes().await });
                pending.push_back((name, read));
            }
            let Some((name, read)) = pending.pop_front() else {
                return Ok(());
            };
            let bytes = runtime
                .block_on(read)
                .map_err(|e| Error::new(ErrorKind::Store, format!("reading {name}: {e}")))?
                .map_err(|e| Error::from(e).context(format!("reading {name}")));
            each(name, bytes)?;
        }
    }

    /// Whole-object reads [`Self::get_each`] keeps in flight: a network store answers each
    /// after a round trip, a directory read through the wrappers (faults, a download limit)
    /// after a short system call.
    fn reads_in_flight(&self) -> usize {
        if self.is_remote() { 8 } else { 2 }
    }

    /// Reads `range` of an object.
    pub fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes> {
        if let Some(root) = self.local_path(name) {
            return read_local(root, name, Some(range));
        }
        let path = ObjectPath::from(name);
        let bytes = self
            .runtime
            .get()?
            .block_on(self.inner.get_range(&path, range.clone()))
            .map_err(|e| Error::from(e).context(format!("reading {name}")))?;
        if bytes.len() as u64 != range.end - range.start {
            return Err(Error::corrupt(format!(
                "{name} is shorter than the index says (truncated?)"
            )));
        }
        Ok(bytes)
    }

    /// Writes an object that must not exist yet (objects are never overwritten).
    pub fn put_new(&self, name: &str, bytes: Bytes) -> Result<()> {
        self.runtime.get()?.block_on(put_create(
            self.inner.clone(),
            name.to_string(),
            bytes.into(),
        ))
    }

    /// Writes a content-addressed object (named by the hash of `bytes`). If it exists, it
    /// holds these very bytes, so that is success.
    pub fn put_object(&self, name: &str, bytes: Bytes) -> Result<()> {
        self.runtime.get()?.block_on(put_content(
            self.inner.clone(),
            name.to_string(),
            bytes.into(),
        ))
    }

    /// Starts a content-addressed object written while it is produced: parts pushed to the
    /// stream, then named by the BLAKE3 of their concatenation ([`ObjectStream::finish`]).
    /// To a local directory the parts go to disk as they come (staged in `dir`); elsewhere
    /// they are kept and uploaded whole when the object is finished.
    pub fn stream_object(&self, dir: &str) -> Result<ObjectStream> {
        let handle = self.runtime.get()?.handle().clone();
        let sink = match &self.local_writes {
            Some(root) => {
                let (parts, received) = std::sync::mpsc::sync_channel(STREAM_QUEUE);
                let (root, dir, inner) = (root.clone(), dir.to_string(), self.inner.clone());
                let writing = handle.clone();
                let writer = handle
                    .spawn_blocking(move || write_stream(&root, &dir, received, inner, writing));
                Sink::Writer { parts, writer }
            }
            None => Sink::Kept(Vec::new()),
        };
        Ok(ObjectStream {
            inner: self.inner.clone(),
            handle,
            batch: Vec::new(),
            batch_len: 0,
            sink,
        })
    }

    /// Removes what a killed backup left of the objects it was streaming or committing to a
    /// local directory under `dir`: staging files not written to for a day (a running backup
    /// writes to its data pack's file at every MiB it packs, and a commit takes moments).
    /// Returns how many.
    pub fn remove_abandoned_streams(&self, dir: &str) -> Result<usize> {
        let Some(root) = &self.local_writes else {
            return Ok(0);
        };
        let dir = root.join(dir);
        direct::remove_abandoned(&dir, std::time::Duration::from_secs(24 * 3600))
            .map_err(|e| Error::io(format!("cleaning up {}", dir.display()), e))
    }

    /// Whether the store is reached over the network.
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    /// The directory to read `name` from directly, if reads may skip the wrappers.
    fn local_path(&self, name: &str) -> Option<&Path> {
        self.local_reads.as_deref().filter(|_| plain_name(name))
    }

    /// Background writes worth having in flight at once: a streamed local pack is all but
    /// written when it is full, a network upload may not be done before the next is.
    pub fn useful_background_puts(&self) -> usize {
        if self.is_remote() { 2 } else { 1 }
    }

    /// Waits for a background write; gives the object's hash.
    pub fn wait(&self, pending: PendingPut) -> Result<ObjectId> {
        let (id, staged) = self.wait_staged(pending)?;
        if let Some(staged) = staged {
            self.commit(vec![vec![CommitItem::Staged(staged)]])?;
        }
        Ok(id)
    }

    /// Waits for a background write; an object left staged ([`ObjectStream::stage`]) comes
    /// with it.
    pub(crate) fn wait_staged(&self, pending: PendingPut) -> Result<(ObjectId, Option<Staged>)> {
        self.runtime
            .get()?
            .block_on(pending.0)
            .map_err(task_failed)?
    }

    /// Makes objects durable and visible group by group: no object of a group is visible
    /// before every object of the groups before it is durable (a snapshot never names an index
    /// object, nor an index object a pack, that a crash could lose). In a local directory the
    /// data of all the objects is synced at once, then each group is linked and its
    /// directories synced: with a pack, an index object and a snapshot, four waits for the
    /// disk instead of six (when the pack's directory exists). Elsewhere each object is
    /// stored in turn.
    pub(crate) fn commit(&self, groups: Vec<Vec<CommitItem>>) -> Result<()> {
        let Some(root) = &self.local_writes else {
            for item in groups.into_iter().flatten() {
                match item {
                    CommitItem::Bytes(name, bytes) => self.put_object(&name, bytes)?,
                    CommitItem::Staged(_) => {
                        return Err(Error::new(
                            ErrorKind::Store,
                            "a staged object outside a local directory",
                        ));
                    }
                }
            }
            return Ok(());
        };
        let failed = |e| write_failed(root, e);
        let mut staged = Vec::new();
        for group in groups {
            let mut objects = Vec::new();
            for item in group {
                objects.push(match item {
                    CommitItem::Staged(s) => s,
                    CommitItem::Bytes(name, bytes) => {
                        Staged::write(root, &name, &bytes).map_err(failed)?
                    }
                });
            }
            staged.push(objects);
        }
        // One object (a backup that stored nothing new: its snapshot) is synced right here;
        // beside the first, every other gets a thread.
        let mut objects = staged.iter().flatten();
        std::thread::scope(|scope| {
            let first = objects.next();
            let others: Vec<_> = objects.map(|o| scope.spawn(|| o.sync())).collect();
            first.map_or(Ok(()), Staged::sync)?;
            others.into_iter().try_for_each(|sync| {
                sync.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a sync thread panicked")))
            })
        })
        .map_err(failed)?;
        for group in &staged {
            let mut dirs = std::collections::BTreeSet::new();
            for object in group {
                dirs.insert(object.link().map_err(failed)?);
            }
            for dir in dirs {
                direct::sync_dir(&dir).map_err(failed)?;
            }
        }
        Ok(())
    }

    /// Names and sizes of every object under `prefix`, sorted by name.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let mut items: Vec<(String, u64)> = self
            .list_dated(prefix)?
            .into_iter()
            .map(|d| (d.name, d.size))
            .collect();
        items.sort();
        Ok(items)
    }

    /// Lists the objects under `prefix` with when the store last modified each, the most
    /// recent first (ties by name). The times come from the store and are not authenticated.
    pub fn list_newest_first(&self, prefix: &str) -> Result<Vec<Dated>> {
        let mut items = self.list_dated(prefix)?;
        items.sort_by(|a, b| {
            b.modified
                .cmp(&a.modified)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(items)
    }

    /// The objects under `prefix`, unsorted: from a local directory straight from the file
    /// system (see [`local`]), else through `object_store`.
    fn list_dated(&self, prefix: &str) -> Result<Vec<Dated>> {
        if let Some(root) = &self.local_reads
            && let Some(items) = local::list(root, prefix)?
        {
            return Ok(items);
        }
        let path = ObjectPath::from(prefix);
        let store = self.inner.clone();
        self.runtime
            .get()?
            .block_on(async move {
                store
                    .list(Some(&path))
                    .map_ok(|m| Dated {
                        name: m.location.to_string(),
                        size: m.size,
                        modified: m.last_modified,
                    })
                    .try_collect()
                    .await
            })
            .map_err(|e| Error::from(e).context(format!("listing {prefix}/")))
    }

    /// Deletes an object.
    pub fn delete(&self, name: &str) -> Result<()> {
        let path = ObjectPath::from(name);
        self.runtime
            .get()?
            .block_on(self.inner.delete(&path))
            .map_err(|e| Error::from(e).context(format!("deleting {name}")))
    }
}

/// An object listed with its size and last modification time (as the store reports it).
#[derive(Debug, Clone)]
pub struct Dated {
    /// The object's name, as in [`Store::list`].
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When the store last modified it.
    pub modified: chrono::DateTime<chrono::Utc>,
}

/// Create-only write. Objects are content-addressed, so "already exists" means another
/// client (or an earlier, interrupted run) stored the same bytes: success.
async fn put_create(store: Arc<dyn ObjectStore>, name: String, payload: PutPayload) -> Result<()> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let path = ObjectPath::from(name.as_str());
    match store.put_opts(&path, payload, opts).await {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("{name} already exists"),
        )),
        Err(e) => Err(Error::from(e).context(format!("writing {name}"))),
    }
}

async fn put_content(store: Arc<dyn ObjectStore>, name: String, payload: PutPayload) -> Result<()> {
    match put_create(store, name, payload).await {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// An S3, GCS or Azure store configured the way the vendors' own tools are (their standard
/// environment variables), with the client's own retries off: [`RetryStore`] owns retrying.
fn open_cloud(
    scheme: &str,
    bucket: &str,
    prefix: &str,
    opts: &StoreOptions,
) -> Result<Arc<dyn ObjectStore>> {
    use object_store::RetryConfig;
    let no_retries = || RetryConfig {
        max_retries: 0,
        ..Default::default()
    };
    let client = object_store::ClientOptions::new()
        .with_timeout(opts.retry.timeout)
        .with_connect_timeout(std::time::Duration::from_secs(10));
    let fail =
        |e: object_store::Error| Error::invalid(format!("configuring {scheme}://{bucket}: {e}"));
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" => {
            let mut b = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(no_retries())
                .with_client_options(client);
            let endpoint = opts
                .s3_endpoint
                .clone()
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
            if let Some(endpoint) = endpoint {
                b = b
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint);
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err()
            {
                b = b.with_region("us-east-1");
            }
            Arc::new(b.build().map_err(fail)?)
        }
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(no_retries())
                .with_client_options(client)
                .build()
                .map_err(fail)?,
        ),
        _ => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .with_retry(no_retries())
                .with_client_options(client)
                .build()
                .map_err(fail)?,
        ),
    };
    if prefix.is_empty() {
        return Ok(store);
    }
    Ok(Arc::new(object_store::prefix::PrefixStore::new(
        store, prefix,
    )))
}

/// Whether `name` maps to a file below the store's directory as it is: parts of
/// characters that `object_store` leaves unchanged, none of them `.` or `..`.
fn plain_name(name: &str) -> bool {
    name.split('/').all(|part| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    })
}

/// Reads `range` of the object `name` (all of it if `None`) in the directory `root` on the
/// calling thread, into a buffer that is not zeroed first: reads skip a hand-off to the
/// runtime's blocking pool and a `memset` of every window that `object_store`'s local reads
/// make.
fn read_local(root: &Path, name: &str, range: Option<Range<u64>>) -> Result<Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    let failed = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => Error::new(
            ErrorKind::NotFound,
            format!("object store: {name} not found"),
        ),
        _ => Error::io(format!("reading {name}"), e),
    };
    let mut file = std::fs::File::open(root.join(name)).map_err(failed)?;
    let Some(range) = range else {
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).map_err(failed)?;
        return Ok(Bytes::from(buf));
    };
    file.seek(SeekFrom::Start(range.start)).map_err(failed)?;
    let len = range.end.saturating_sub(range.start);
    let mut buf = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut buf).map_err(failed)?;
    if buf.len() as u64 != len {
        return Err(Error::corrupt(format!(
            "{name} is shorter than the index says (truncated?)"
        )));
    }
    Ok(Bytes::from(buf))
}

fn open_directory(path: &Path, create: bool) -> Result<LocalFileSystem> {
    if create {
        std::fs::create_dir_all(path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    } else if !path.is_dir() {
        return Err(Error::new(
            ErrorKind::NoRepository,
            format!(
                "there is no repository at {}: the directory does not exist (create one with `coffer init`)",
                path.display()
            ),
        ));
    }
    let fs = LocalFileSystem::new_with_prefix(path)
        .map_err(|e| Error::from(e).context(format!("opening {}", path.display())))?;
    Ok(fs.with_fsync(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_locations() {
        assert_eq!(
            Location::parse("/tmp/x").unwrap(),
            Location::Directory("/tmp/x".into())
        );
        assert_eq!(
            Location::parse("file:///tmp/x").unwrap(),
            Location::Directory("/tmp/x".into())
        );
        assert_eq!(
            Location::parse("memory://t").unwrap(),
            Location::Memory("t".into())
        );
        assert!(Location::parse("ftp://x").is_err());
        assert_eq!(
            Location::parse("s3://b/p/q/").unwrap(),
            Location::Cloud {
                scheme: "s3".into(),
                bucket: "b".into(),
                prefix: "p/q".into()
            }
        );
        assert!(Location::parse("s3:///x").is_err());
        assert!(Location::parse("").is_err());
    }

    #[test]
    fn streamed_objects_are_named_by_their_hash_and_listed_once_complete() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..(3 << 20) + 77).map(|i| (i % 253) as u8).collect();
        let name = |id: &ObjectId| format!("data/{id}");
        for location in [
            Location::Directory(dir.path().join("repo")),
            Location::Memory("streamed".into()),
        ] {
            let store = Store::open(&location, true).unwrap();
            let mut stream = store.stream_object("data").unwrap();
            for part in bytes.chunks(300_001) {
                stream.push(Bytes::copy_from_slice(part));
            }
            // Pieces of the object may be on disk already, but it is not listed yet.
            assert!(store.list("data/").unwrap().is_empty(), "{location:?}");
            let id = store.wait(stream.finish(name)).unwrap();
            assert_eq!(id, ObjectId::of(&bytes));
            let listed = store.list("data/").unwrap();
            assert_eq!(
                listed,
                vec![(name(&id), bytes.len() as u64)],
                "{location:?}"
            );
            assert_eq!(store.get(&name(&id)).unwrap(), bytes);
        }
        // A stream dropped unfinished leaves nothing behind.
        let store = Store::open(&Location::Directory(dir.path().join("other")), true).unwrap();
        let mut stream = store.stream_object("data").unwrap();
        stream.push(Bytes::from(vec![1; 3 << 20]));
        drop(stream);
        drop(store);
        let data = dir.path().join("other/data");
        let left = std::fs::read_dir(&data).map_or(0, |d| d.count());
        assert_eq!(left, 0);
    }

    #[test]
    fn a_commit_stores_its_objects_in_groups_and_shows_none_that_failed_to_write() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = |b: &'static [u8]| Bytes::from_static(b);
        for location in [
            Location::Directory(dir.path().join("repo")),
            Location::Memory("commit".into()),
        ] {
            let store = Store::open(&location, true).unwrap();
            // A pack streamed and left staged (by a directory), then an index and a snapshot.
            let mut stream = store.stream_object("data").unwrap();
            stream.push(bytes(b"pack bytes"));
            let (id, staged) = store
                .wait_staged(stream.stage(|id| format!("data/{id}")))
                .unwrap();
            let local = matches!(location, Location::Directory(_));
            assert_eq!(staged.is_some(), local && store.local_writes.is_some());
            // Staged, it is not stored yet; elsewhere it was stored as by `finish`.
            assert_eq!(store.list("data").unwrap().is_empty(), local);
            let packs = staged.map(CommitItem::Staged).into_iter().collect();
            let index = vec![CommitItem::Bytes("index/i".into(), bytes(b"index"))];
            let snap = vec![CommitItem::Bytes("snapshots/s".into(), bytes(b"snap"))];
            store.commit(vec![packs, index, snap]).unwrap();
            assert_eq!(
                store.get(&format!("data/{id}")).unwrap(),
                &b"pack bytes"[..]
            );
            assert_eq!(store.get("index/i").unwrap(), &b"index"[..]);
            assert_eq!(store.get("snapshots/s").unwrap(), &b"snap"[..]);
            // Committing the same objects again is no error: their names are their contents.
            let again = vec![CommitItem::Bytes("index/i".into(), bytes(b"index"))];
            store.commit(vec![again]).unwrap();
        }
        // A directory: an object that cannot be written (its directory is a file) fails the
        // commit before anything is linked, and no staging file is left.
        let store = Store::open(&Location::Directory(dir.path().join("repo")), false).unwrap();
        std::fs::write(dir.path().join("repo/blocked"), b"").unwrap();
        let err = store
            .commit(vec![
                vec![CommitItem::Bytes("index/j".into(), bytes(b"j"))],
                vec![CommitItem::Bytes("blocked/k".into(), bytes(b"k"))],
            ])
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{err}");
        assert_eq!(
            store.get("index/j").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let names: Vec<String> = std::fs::read_dir(dir.path().join("repo/index"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["i".to_string()], "staging files left");
    }

    #[test]
    fn put_get_list_on_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Location::Directory(dir.path().join("repo")), true).unwrap();
        store.put_new("a/b", Bytes::from_static(b"hello")).unwrap();
        assert_eq!(
            store
                .put_new("a/b", Bytes::from_static(b"x"))
                .unwrap_err()
                .kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(&store.get("a/b").unwrap()[..], b"hello");
        assert_eq!(&store.get_range("a/b", 1..3).unwrap()[..], b"el");
        assert_eq!(store.list("a").unwrap(), vec![("a/b".to_string(), 5)]);
        // The direct listing shows what object_store's does: no staging files.
        std::fs::write(dir.path().join("repo/a/c#3"), b"partial").unwrap();
        let through_object_store = store.with_faults(FaultPlan::default());
        assert_eq!(
            store.list("a").unwrap(),
            through_object_store.list("a").unwrap()
        );
        std::fs::remove_file(dir.path().join("repo/a/c#3")).unwrap();
        assert_eq!(store.get("a/c").unwrap_err().kind(), ErrorKind::NotFound);
        // Ranged reads and background writes take the direct paths; reads fail as the
        // object_store path does. A limit on one direction turns off that direction's path.
        assert!(store.local_reads.is_some() && store.local_writes.is_some());
        let limited = |upload_rate, download_rate| {
            let opts = StoreOptions {
                upload_rate,
                download_rate,
                ..StoreOptions::default()
            };
            let store =
                Store::open_with(&Location::Directory(dir.path().join("repo")), false, &opts);
            let store = store.unwrap();
            (store.local_reads.is_some(), store.local_writes.is_some())
        };
        assert_eq!(limited(Some(1 << 20), None), (true, false));
        assert_eq!(limited(None, Some(1 << 20)), (false, true));
        let kind = |r: Result<Bytes>| r.unwrap_err().kind();
        assert_eq!(kind(store.get_range("a/c", 0..1)), ErrorKind::NotFound);
        assert_eq!(kind(store.get_range("a/b", 3..9)), ErrorKind::Corrupt);
        let wrapped = store.with_faults(FaultPlan::default());
        assert_eq!(&wrapped.get_range("a/b", 1..3).unwrap()[..], b"el");
        assert_eq!(kind(wrapped.get_range("a/b", 3..9)), ErrorKind::Corrupt);
        assert!(!plain_name("a/../b") && !plain_name("a//b") && !plain_name("a/%2e"));
        store.delete("a/b").unwrap();
        assert!(store.list("a").unwrap().is_empty());
    }

    #[test]
    fn whole_reads_in_flight_are_handed_over_in_order() {
        let store = Store::open(&Location::Memory("get-each".into()), true).unwrap();
        let listing: Vec<(String, u64)> = (0..40).map(|i| (format!("o/{i:02}"), i)).collect();
        for (name, size) in &listing[..] {
            if *size != 17 {
                let bytes = vec![*size as u8; *size as usize];
                store.put_new(name, Bytes::from(bytes)).unwrap();
            }
        }
        // Random delays finish the two reads in flight out of order; they are handed over
        // in order.
        let slow = store.with_faults(FaultPlan {
            delay: 1.0,
            max_delay: std::time::Duration::from_millis(5),
            ..FaultPlan::default()
        });
        let mut seen = Vec::new();
        slow.get_each(&listing, |name, bytes| {
            let i: usize = name["o/".len()..].parse().unwrap();
            match bytes {
                Ok(b) => assert_eq!(b, vec![i as u8; i], "{name} got another object's bytes"),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::NotFound);
                    assert!(e.to_string().contains("o/17"), "{e}");
                }
            }
            seen.push(name.to_string());
            Ok(())
        })
        .unwrap();
        assert!(seen.iter().eq(listing.iter().map(|(name, _)| name)));
        // An error from the caller stops the reads.
        let mut handed = 0;
        let stopped = slow.get_each(&listing, |name, _| {
            handed += 1;
            if name == "o/05" {
                return Err(Error::corrupt("o/05 is bad"));
            }
            Ok(())
        });
        assert_eq!(stopped.unwrap_err().kind(), ErrorKind::Corrupt);
        assert_eq!(handed, 6);
    }
}
