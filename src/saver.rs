//! The blob saver: dedup, seal, pack, upload, and write the index, in commit order.
//!
//! Blobs already in the index, or already saved in this run, are skipped. Once a run has
//! stored 4 MiB (`ADOPT_AFTER`) of new blobs, packs that no index names are adopted: a run
//! that stores nothing, or only a few changed trees and files, never lists `data/`. New
//! blobs are compressed and sealed by a [`SealPool`] on every core and packed into a data
//! or tree pack as they come back; a full pack is uploaded in the background (one at a time
//! to a local directory, two to a network store). Index objects are written only for packs
//! whose upload has finished, so an index never names a missing pack. The caller writes the
//! snapshot only after [`BlobSaver::finish`], which gives the order packs → index →
//! snapshot.

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;

use crate::blob::BlobType;
use crate::chunker::run_length;
use crate::error::Result;
use crate::id::{BlobId, ObjectId};
use crate::index::{Index, IndexedPack, seal_index};
use crate::pack::{PackBuilder, PackEntry, fetch_header};
use crate::repo::{Repository, pack_name};
use crate::sealpool::{SealPool, SealedBlob};
use crate::store::{CommitItem, ObjectStream, PendingPut};

/// Write an index object once this many blobs are uploaded but not yet indexed, so an
/// interrupted backup leaves most of its work reusable.
const INDEX_FLUSH_BLOBS: usize = 50_000;

/// Plaintext bytes of new blobs a run stores before it adopts unindexed packs. Listing
/// `data/` costs one entry per pack in the repository (one LIST per prefix on S3), and a
/// run storing less than this would at most store again what an interrupted run left: a
/// run whose only news is a directory's changed metadata no longer pays the listing.
const ADOPT_AFTER: u64 = 4 << 20;

/// Counts of what a run stored.
#[derive(Debug, Default, Clone, Copy)]
pub struct SaverStats {
    /// New blobs stored.
    pub blobs: u64,
    /// Bytes uploaded (packs and indexes).
    pub bytes: u64,
}

/// A pack being filled, and written as it grows.
struct OpenPack {
    builder: PackBuilder,
    stream: ObjectStream,
}

/// Saves blobs for one run (a backup).
pub struct BlobSaver<'r> {
    repo: &'r Repository,
    data: Option<OpenPack>,
    tree: Option<OpenPack>,
    seen: HashSet<BlobId>,
    /// The last chunk that was one byte repeated, (byte, length), and its id.
    last_run: Option<((u8, usize), BlobId)>,
    /// Whether unindexed packs were looked for; done once, after [`ADOPT_AFTER`] new bytes.
    adopted: bool,
    /// Plaintext bytes of the new blobs stored so far.
    stored: u64,
    /// Started with the first new blob: a run that stores nothing starts no sealing threads.
    pool: Option<SealPool>,
    /// Packs being written: the pending write (which names the pack), its size and blobs.
    uploads: VecDeque<(PendingPut, u64, Vec<PackEntry>)>,
    uploaded: Vec<IndexedPack>,
    written: Vec<IndexedPack>,
    stats: SaverStats,
    /// Finishing: packs are left staged (in a local directory) for the caller's commit.
    staging: bool,
    /// The packs left staged.
    staged: Vec<CommitItem>,
}

impl<'r> BlobSaver<'r> {
    /// A saver writing into `repo`.
    pub fn new(repo: &'r Repository) -> Self {
        BlobSaver {
            repo,
            data: None,
            tree: None,
            seen: HashSet::new(),
            last_run: None,
            adopted: false,
            stored: 0,
            pool: None,
            uploads: VecDeque::new(),
            uploaded: Vec::new(),
            written: Vec::new(),
            stats: SaverStats::default(),
            staging: false,
            staged: Vec::new(),
        }
    }

    /// Takes over packs that are stored but named by no index: leftovers of an interrupted
    /// backup, or uploads of a concurrent one. Their blobs count as stored and they are named
    /// in this run's index, so work already uploaded is not uploaded again. Packs whose header
    /// cannot be read are left for `check` to report.
    fn adopt_unindexed_packs(&mut self) -> Result<()> {
        self.adopted = true;
        // What a killed backup was still writing or committing is not stored: its staging
        // files go.
        for dir in ["data", "index", "snapshots"] {
            self.repo.store().remove_abandoned_streams(dir)?;
        }
        let known: HashSet<String> = self
            .repo
            .index()
            .packs()
            .map(|(id, _)| pack_name(id))
            .collect();
        for (name, size) in self.repo.store().list("data")? {
            if known.contains(&name) {
                continue;
            }
            let Some(id) = name
                .rsplit('/')
                .next()
                .and_then(|h| ObjectId::from_hex(h).ok())
            else {
                continue;
            };
            let store = self.repo.store();
            let header = fetch_header(self.repo.keys(), size, |r| {
                Ok(store.get_range(&name, r)?.to_vec())
            });
            match header {
                Ok(entries) => {
                    self.seen.extend(entries.iter().map(|e| e.id));
                    self.uploaded.push(IndexedPack { id, size, entries });
                }
                Err(e) if e.kind() == crate::error::ErrorKind::Store => return Err(e),
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// Whether `id` is stored or being stored.
    pub fn has(&self, id: &BlobId) -> bool {
        self.repo.index().contains(id) || self.seen.contains(id)
    }

    /// The repository's keys.
    pub fn keys(&self) -> &'r crate::crypto::Keys {
        self.repo.keys()
    }

    /// Saves `plain` unless a blob with its id exists; returns the id.
    pub fn save(&mut self, kind: BlobType, plain: &[u8]) -> Result<BlobId> {
        let id = self.blob_id(plain);
        self.save_as(kind, id, plain)
    }

    /// [`Self::save`] for `plain` whose id the caller computed.
    pub fn save_as(&mut self, kind: BlobType, id: BlobId, plain: &[u8]) -> Result<BlobId> {
        if self.is_new(&id)? {
            self.store(kind, id, Bytes::copy_from_slice(plain))?;
        }
        Ok(id)
    }

    /// [`Self::save`] for bytes the caller shares: a new blob is sealed without a copy.
    pub fn save_shared(&mut self, kind: BlobType, plain: Bytes) -> Result<BlobId> {
        let id = self.blob_id(&plain);
        if self.is_new(&id)? {
            self.store(kind, id, plain)?;
        }
        Ok(id)
    }

    /// Whether `id` is neither stored nor being stored, after adopting unindexed packs once
    /// the run has stored enough to make that worth a listing.
    fn is_new(&mut self, id: &BlobId) -> Result<bool> {
        if self.has(id) {
            return Ok(false);
        }
        if !self.adopted && self.stored >= ADOPT_AFTER {
            self.adopt_unindexed_packs()?;
        }
        Ok(!self.seen.contains(id))
    }

    /// The keyed id of `plain`. A chunk that is one byte repeated is hashed once per run: disk
    /// images repeat such a chunk (of zeros, at the chunker's maximum size) over every empty
    /// region.
    fn blob_id(&mut self, plain: &[u8]) -> BlobId {
        let run = plain
            .first()
            .filter(|&&b| run_length(plain, b) == plain.len())
            .map(|&b| (b, plain.len()));
        match (run, self.last_run) {
            (Some(run), Some((last, id))) if run == last => id,
            _ => {
                let id = BlobId(self.repo.keys().blob_id(plain));
                if let Some(run) = run {
                    self.last_run = Some((run, id));
                }
                id
            }
        }
    }

    fn store(&mut self, kind: BlobType, id: BlobId, plain: Bytes) -> Result<()> {
        self.seen.insert(id);
        self.stats.blobs += 1;
        self.stored += plain.len() as u64;
        let pool = match &mut self.pool {
            Some(pool) => pool,
            None => self.pool.insert(SealPool::new(
                self.repo.shared_keys(),
                self.repo.config().compression,
            )?),
        };
        for blob in pool.submit(kind, id, plain)? {
            self.pack(blob)?;
        }
        Ok(())
    }

    fn pack(&mut self, blob: SealedBlob) -> Result<()> {
        let slot = match blob.kind {
            BlobType::Data => &mut self.data,
            BlobType::Tree => &mut self.tree,
        };
        let open = match slot {
            Some(open) => open,
            None => slot.insert(OpenPack {
                builder: PackBuilder::new(),
                stream: self.repo.store().stream_object("data")?,
            }),
        };
        open.builder
            .add(blob.kind, blob.id, blob.sealed, blob.raw_len)?;
        for part in open.builder.take_parts() {
            open.stream.push(part);
        }
        if open.builder.len() >= self.repo.config().pack_size as usize {
            self.flush_pack(blob.kind)?;
        }
        Ok(())
    }

    fn flush_pack(&mut self, kind: BlobType) -> Result<()> {
        let slot = match kind {
            BlobType::Data => &mut self.data,
            BlobType::Tree => &mut self.tree,
        };
        let Some(OpenPack {
            builder,
            mut stream,
        }) = slot.take()
        else {
            return Ok(());
        };
        let pack = builder.finish(self.repo.keys())?;
        for part in pack.parts {
            stream.push(part);
        }
        let size = pack.len as u64;
        self.stats.bytes += size;
        let pending = match self.staging {
            true => stream.stage(pack_name),
            false => stream.finish(pack_name),
        };
        self.uploads.push_back((pending, size, pack.entries));
        // An upload to a remote store holds its pack in memory until it is done.
        while self.uploads.len() > self.repo.store().useful_background_puts() {
            self.wait_oldest()?;
        }
        let unindexed: usize = self.uploaded.iter().map(|p| p.entries.len()).sum();
        // A staged pack is not stored yet: no index may name it before the final commit.
        if unindexed >= INDEX_FLUSH_BLOBS && !self.staging {
            self.write_index()?;
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<()> {
        if let Some((pending, size, entries)) = self.uploads.pop_front() {
            let (id, staged) = self.repo.store().wait_staged(pending)?;
            self.staged.extend(staged.map(CommitItem::Staged));
            self.uploaded.push(IndexedPack { id, size, entries });
        }
        Ok(())
    }

    fn write_index(&mut self) -> Result<()> {
        if let Some((name, sealed)) = self.seal_index()? {
            self.repo.store().put_object(&name, sealed)?;
        }
        Ok(())
    }

    /// The index object naming the packs uploaded since the last one, if any: its name and
    /// sealed bytes.
    fn seal_index(&mut self) -> Result<Option<(String, Bytes)>> {
        if self.uploaded.is_empty() {
            return Ok(None);
        }
        let sealed = seal_index(self.repo.keys(), &self.uploaded)?;
        self.stats.bytes += sealed.len() as u64;
        let name = format!("index/{}", ObjectId::of(&sealed));
        self.written.append(&mut self.uploaded);
        Ok(Some((name, Bytes::from(sealed))))
    }

    /// Uploads what is left, waits for every upload and writes the last index object.
    /// Returns the packs written in this run, for the caller's in-memory index.
    pub fn finish(self) -> Result<(Vec<IndexedPack>, SaverStats)> {
        let repo = self.repo;
        let (packs, stats, commit) = self.finish_staged()?;
        repo.store().commit(commit)?;
        Ok((packs, stats))
    }

    /// Like [`Self::finish`], but the last packs and the last index object are left to the
    /// caller, to store with its snapshot in one [`crate::store::Store::commit`]: returned as
    /// the commit's first groups (packs, then the index object).
    pub(crate) fn finish_staged(
        mut self,
    ) -> Result<(Vec<IndexedPack>, SaverStats, Vec<Vec<CommitItem>>)> {
        self.staging = true;
        let ready = match &mut self.pool {
            Some(pool) => pool.finish()?,
            None => Vec::new(),
        };
        for blob in ready {
            self.pack(blob)?;
        }
        self.flush_pack(BlobType::Data)?;
        self.flush_pack(BlobType::Tree)?;
        while !self.uploads.is_empty() {
            self.wait_oldest()?;
        }
        let mut commit = vec![std::mem::take(&mut self.staged)];
        let index = self.seal_index()?;
        commit.extend(index.map(|(name, sealed)| vec![CommitItem::Bytes(name, sealed)]));
        Ok((self.written, self.stats, commit))
    }
}

/// Adds a run's packs to an in-memory index.
pub fn add_to_index(index: &mut Index, packs: &[IndexedPack]) {
    for p in packs {
        index.push_pack(p);
    }
    index.sort();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::memory_repo;

    #[test]
    fn unindexed_packs_are_adopted_once_a_run_has_stored_enough() {
        let mut repo = memory_repo("saver-adopt");
        let save = |repo: &Repository, plains: &[&[u8]]| {
            let mut saver = BlobSaver::new(repo);
            for plain in plains {
                saver.save(BlobType::Data, plain).unwrap();
            }
            saver.finish().unwrap()
        };
        save(&repo, &[b"indexed"]);
        repo.reload_index().unwrap();
        // An interrupted run: its pack is stored, its index object is not.
        let indexes = repo.store().list("index").unwrap();
        let (crashed, _) = save(&repo, &[b"uploaded before the crash"]);
        assert_eq!(crashed.len(), 1);
        for (name, _) in repo.store().list("index").unwrap() {
            if !indexes.iter().any(|(n, _)| *n == name) {
                repo.store().delete(&name).unwrap();
            }
        }
        repo.reload_index().unwrap();
        assert_eq!(repo.index().packs().count(), 1);

        // A run that stores nothing new, or less than ADOPT_AFTER, leaves the pack alone.
        let (packs, stats) = save(&repo, &[b"indexed"]);
        assert!(packs.is_empty() && stats.blobs == 0);
        let (packs, stats) = save(&repo, &[b"a changed tree"]);
        assert_eq!(stats.blobs, 1);
        assert!(packs.iter().all(|p| p.id != crashed[0].id));
        repo.reload_index().unwrap();
        assert_eq!(repo.index().packs().count(), 2);

        // Past ADOPT_AFTER the pack is brought in: its blob is not stored again, and this
        // run's index names the pack.
        let big = vec![7u8; ADOPT_AFTER as usize];
        let (packs, stats) = save(&repo, &[&big, b"uploaded before the crash", b"new"]);
        assert_eq!(stats.blobs, 2);
        assert!(packs.iter().any(|p| p.id == crashed[0].id));
        repo.reload_index().unwrap();
        assert_eq!(repo.index().packs().count(), 4);
    }

    #[test]
    fn runs_of_one_byte_get_their_keyed_id() {
        let repo = memory_repo("saver-runs");
        let mut saver = BlobSaver::new(&repo);
        let plains = [
            vec![0u8; 5000],
            vec![0; 5000],
            vec![0; 4999],
            vec![7; 5000],
            vec![0; 5000],
            b"0000x".to_vec(),
            vec![b'0'; 5],
            vec![],
        ];
        for plain in plains {
            assert_eq!(saver.blob_id(&plain), BlobId(repo.keys().blob_id(&plain)));
        }
    }
}
