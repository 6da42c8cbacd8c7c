//! A pool of threads that compress and seal blobs while the caller goes on reading and
//! chunking: the CPU-heavy half of a backup runs on every core.
//!
//! Small blobs travel in batches (up to [`BATCH_BYTES`] or [`BATCH_BLOBS`]), so a tree of
//! small files costs a worker wake-up per batch rather than per file. The pool is bounded: at
//! most [`SealPool::limit`] batches are in flight (queued, being sealed or sealed and not yet
//! taken), plus the one being filled, so memory stays bounded whatever the input. Sealed
//! blobs come back in completion order; the caller packs them in that order, since a pack's
//! layout does not depend on the order of its blobs.

use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::blob::{BlobType, Sealer};
use crate::crypto::Keys;
use crate::error::{Error, ErrorKind, Result};
use crate::id::BlobId;

/// A batch is sent to the workers once its blobs reach this many bytes...
pub const BATCH_BYTES: usize = 256 << 10;
/// ...or this many blobs.
pub const BATCH_BLOBS: usize = 64;

/// A blob ready to be packed.
pub struct SealedBlob {
    /// Data or tree.
    pub kind: BlobType,
    /// Its keyed id.
    pub id: BlobId,
    /// `nonce ‖ ciphertext ‖ tag`.
    pub sealed: Vec<u8>,
    /// Length of the plaintext.
    pub raw_len: usize,
}

struct Job {
    kind: BlobType,
    id: BlobId,
    plain: Bytes,
}

/// Worker threads sealing blobs; see the module header.
pub struct SealPool {
    jobs: Option<SyncSender<Vec<Job>>>,
    done: Receiver<Vec<Result<SealedBlob>>>,
    workers: Vec<JoinHandle<()>>,
    batch: Vec<Job>,
    batch_bytes: usize,
    in_flight: usize,
    limit: usize,
}

impl SealPool {
    /// Starts one worker per core (at least one), compressing at zstd `level`.
    pub fn new(keys: Arc<Keys>, level: i32) -> Result<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Fail here, not in a worker, if the level is unusable.
        Sealer::new(&keys, level)?;
        let (jobs, queue) = sync_channel::<Vec<Job>>(threads);
        let queue = Arc::new(Mutex::new(queue));
        let (results, done) = channel();
        let workers = (0..threads)
            .map(|i| {
                let (keys, queue, results) =
                    (Arc::clone(&keys), Arc::clone(&queue), results.clone());
                std::thread::Builder::new()
                    .name(format!("coffer-seal-{i}"))
                    .spawn(move || work(&keys, level, &queue, &results))
                    .map_err(|e| Error::io("starting a sealing thread", e))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SealPool {
            jobs: Some(jobs),
            done,
            workers,
            batch: Vec::with_capacity(BATCH_BLOBS),
            batch_bytes: 0,
            in_flight: 0,
            limit: 2 * threads + 2,
        })
    }

    /// Most batches in flight at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Queues `plain` to be sealed as blob `id`. Returns the blobs sealed so far, so the
    /// caller can pack them; when the pool is full, first waits for a batch.
    pub fn submit(&mut self, kind: BlobType, id: BlobId, plain: Bytes) -> Result<Vec<SealedBlob>> {
        self.batch_bytes += plain.len();
        self.batch.push(Job { kind, id, plain });
        let mut ready = Vec::new();
        if self.batch_bytes >= BATCH_BYTES || self.batch.len() >= BATCH_BLOBS {
            if self.in_flight >= self.limit {
                self.next(&mut ready)?;
            }
            self.send_batch()?;
        }
        while let Ok(batch) = self.done.try_recv() {
            self.in_flight -= 1;
            collect(batch, &mut ready)?;
        }
        Ok(ready)
    }

    /// Waits for every queued blob and stops the workers; the pool takes no more blobs.
    pub fn finish(&mut self) -> Result<Vec<SealedBlob>> {
        let mut ready = Vec::new();
        if !self.batch.is_empty() {
            self.send_batch()?;
        }
        self.jobs = None;
        while self.in_flight > 0 {
            self.next(&mut ready)?;
        }
        for worker in self.workers.drain(..) {
            worker.join().map_err(|_| stopped())?;
        }
        Ok(ready)
    }

    fn send_batch(&mut self) -> Result<()> {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_BLOBS));
        self.batch_bytes = 0;
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(batch).ok())
            .ok_or_else(stopped)?;
        self.in_flight += 1;
        Ok(())
    }

    fn next(&mut self, ready: &mut Vec<SealedBlob>) -> Result<()> {
        let batch = self.done.recv().map_err(|_| stopped())?;
        self.in_flight -= 1;
        collect(batch, ready)
    }
}

fn collect(batch: Vec<Result<SealedBlob>>, ready: &mut Vec<SealedBlob>) -> Result<()> {
    for sealed in batch {
        ready.push(sealed?);
    }
    Ok(())
}

fn stopped() -> Error {
    Error::new(ErrorKind::Io, "a sealing thread stopped unexpectedly")
}

fn work(
    keys: &Keys,
    level: i32,
    queue: &Mutex<Receiver<Vec<Job>>>,
    results: &Sender<Vec<Result<SealedBlob>>>,
) {
    let Ok(mut sealer) = Sealer::new(keys, level) else {
        return;
    };
    loop {
        // Hold the lock only to take a batch, never while sealing.
        let batch = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(batch) = batch else { return };
        let sealed = batch
            .into_iter()
            .map(|job| {
                sealer
                    .seal(job.kind, &job.id, &job.plain)
                    .map(|sealed| SealedBlob {
                        kind: job.kind,
                        id: job.id,
                        sealed,
                        raw_len: job.plain.len(),
                    })
            })
            .collect();
        if results.send(sealed).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::open_blob;
    use crate::crypto::{Cipher, SecretKey};

    #[test]
    fn seals_everything_submitted_within_the_bound() {
        let keys = Arc::new(Keys::derive(
            &SecretKey::from_bytes([7; 32]),
            Cipher::Aes256Gcm,
        ));
        let mut pool = SealPool::new(Arc::clone(&keys), 3).unwrap();
        let mut sealed = Vec::new();
        // Small blobs (batched) mixed with ones that fill a batch alone.
        let blobs: Vec<Vec<u8>> = (0..300u32)
            .map(|i| {
                let len = if i % 10 == 0 {
                    BATCH_BYTES / 4 + i as usize
                } else {
                    1000 + i as usize
                };
                i.to_le_bytes().repeat(len)
            })
            .collect();
        for plain in &blobs {
            let id = BlobId(keys.blob_id(plain));
            let plain = Bytes::copy_from_slice(plain);
            sealed.extend(pool.submit(BlobType::Data, id, plain).unwrap());
            assert!(pool.in_flight <= pool.limit());
            assert!(pool.batch.len() < BATCH_BLOBS && pool.batch_bytes < BATCH_BYTES);
        }
        sealed.extend(pool.finish().unwrap());
        assert_eq!(sealed.len(), blobs.len());
        for blob in sealed {
            let plain = open_blob(&keys, blob.kind, &blob.id, &blob.sealed).unwrap();
            assert_eq!(plain.len(), blob.raw_len);
            assert!(blobs.contains(&plain.to_vec()));
        }
    }
}
