//! A repository: an object store opened with a key, plus its config and index.
//!
//! Owns creating (`init`) and opening a repository, reading blobs back through the index, and
//! listing, finding and saving snapshots. Object names: `config`, `keys/<id>`,
//! `data/<2 hex>/<id>` (packs), `index/<id>`, `snapshots/<id>`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::blob::{BlobType, open_blob_owned, unseal_blob};
use crate::chunker::ChunkerParams;
use crate::config::{self, Config};
use crate::crypto::{Cipher, Keys, MasterKey, SecretKey};
use crate::error::{Error, ErrorKind, Result};
use crate::id::{BlobId, ObjectId};
use crate::index::{Index, open_index};
use crate::keyslot::{self, KdfParams, Passphrase, RecoveryKey, SlotInfo, SlotKind};
use crate::readahead::ReadAhead;
use crate::snapshot::Snapshot;
use crate::store::{CommitItem, Store};
use crate::tree::{Node, Tree};

/// Choices fixed at `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The AEAD.
    pub cipher: Cipher,
    /// Chunk size bounds.
    pub chunker: ChunkerParams,
    /// zstd level, 0 for none.
    pub compression: i32,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// Argon2id parameters of the first passphrase slot.
    pub kdf: KdfParams,
    /// Also make a random recovery key.
    pub recovery_key: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            cipher: Cipher::Aes256Gcm,
            chunker: ChunkerParams::default(),
            compression: 1,
            pack_size: 32 * 1024 * 1024,
            kdf: KdfParams::default(),
            recovery_key: false,
        }
    }
}

/// The most bytes one ranged read of a pack fetches when reading several blobs.
pub const MAX_BATCH_READ: u64 = 4 << 20;

/// Snapshots read at once while searching for the latest one of a kind
/// ([`Repository::latest_snapshot_where`]): enough to keep a network store's concurrent reads
/// busy, few enough that a search that ends early reads little.
pub const SEARCH_BATCH: usize = 8;

/// An open repository.
pub struct Repository {
    store: Store,
    config: Config,
    keys: Arc<Keys>,
    master: MasterKey,
    slot: String,
    index: Index,
    data_reads: ReadAhead,
    tree_reads: ReadAhead,
}

/// Snapshots with their ids, oldest first.
pub type SnapshotList = Vec<(ObjectId, Snapshot)>;

/// What [`Repository::latest_snapshot_where`] found, if anything, and the errors of the damaged
/// snapshots it met on the way.
pub type LatestFound = (Option<(ObjectId, Snapshot)>, Vec<Error>);

/// Object name of a pack.
pub fn pack_name(id: &ObjectId) -> String {
    let hex = id.to_hex();
    format!("data/{}/{}", &hex[..2], hex)
}

/// This host's name, for snapshots and key slots.
pub(crate) fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// This host's name and the current user's, for snapshots and key slots.
pub fn host_and_user() -> (String, String) {
    let (_, user) = crate::fsmeta::OwnerNames::of_current_user();
    (host_name(), user)
}

pub(crate) fn slot_info() -> SlotInfo {
    let (host, user) = host_and_user();
    SlotInfo {
        created_ns: crate::clock::now_ns(),
        host,
        user,
    }
}

impl Repository {
    /// Creates a repository in an empty store. Returns the recovery key if one was asked for.
    pub fn init(
        store: Store,
        passphrase: &Passphrase,
        opts: &InitOptions,
    ) -> Result<(Repository, Option<RecoveryKey>)> {
        opts.chunker.validate()?;
        opts.kdf.validate()?;
        if !(0..=22).contains(&opts.compression) {
            return Err(Error::invalid("compression level must be 0 (off) to 22"));
        }
        if !(1 << 20..=1 << 30).contains(&opts.pack_size) {
            return Err(Error::invalid("pack size must be between 1 MiB and 1 GiB"));
        }
        match store.get("config") {
            Ok(_) => {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "a repository already exists at {}; refusing to initialise over it",
                        store.description()
                    ),
                ));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let master = SecretKey::random()?;
        let keys = Keys::derive(&master, opts.cipher);
        let config = Config {
            repo_id: crate::clock::random_bytes()?,
            cipher: opts.cipher,
            format: config::FORMAT_VERSION,
            chunker: opts.chunker,
            compression: opts.compression,
            pack_size: opts.pack_size,
            created_ns: crate::clock::now_ns(),
        };
        let info = slot_info();
        let slot = keyslot::create(
            &keys,
            config.repo_id,
            &master,
            passphrase,
            SlotKind::Passphrase,
            opts.kdf,
            &info,
        )?;
        let slot_name = save_slot(&store, slot)?;
        let recovery = if opts.recovery_key {
            let (key, as_pass) = keyslot::new_recovery_key()?;
            let slot = keyslot::create(
                &keys,
                config.repo_id,
                &master,
                &as_pass,
                SlotKind::Recovery,
                opts.kdf,
                &info,
            )?;
            save_slot(&store, slot)?;
            Some(key)
        } else {
            None
        };
        // The config goes last and create-only: a concurrent init loses cleanly.
        store.put_new("config", Bytes::from(config.seal(&keys)?))?;
        let repo = Repository {
            data_reads: ReadAhead::forward(store.is_remote()),
            tree_reads: ReadAhead::around(store.is_remote()),
            store,
            config,
            keys: Arc::new(keys),
            master,
            slot: slot_name,
            index: Index::default(),
        };
        Ok((repo, recovery))
    }

    /// Opens a repository with a passphrase or recovery key and loads its index.
    pub fn open(store: Store, passphrase: &Passphrase) -> Result<Repository> {
        let mut repo = Self::open_unindexed(store, passphrase)?;
        repo.reload_index()
            .map_err(|e| e.context("loading the index (run `coffer check` for details)"))?;
        Ok(repo)
    }

    /// Opens a repository without reading its index (for `check`, which reads it itself).
    pub fn open_unindexed(store: Store, passphrase: &Passphrase) -> Result<Repository> {
        let raw = store.get("config").map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::new(
                ErrorKind::NoRepository,
                format!("there is no repository at {} (no config object); create one with `coffer init`", store.description()),
            ),
            _ => e,
        })?;
        let header = config::read_header(&raw)?;
        let (master, slot) = unlock_any(&store, header.repo_id, passphrase)?;
        let keys = Keys::derive(&master, header.cipher).for_format(header.version);
        let config = Config::open(&keys, &raw)?;
        Ok(Repository {
            data_reads: ReadAhead::forward(store.is_remote()),
            tree_reads: ReadAhead::around(store.is_remote()),
            store,
            config,
            keys: Arc::new(keys),
            master,
            slot,
            index: Index::default(),
        })
    }

    /// Reads every index object again.
    pub fn reload_index(&mut self) -> Result<()> {
        let objects = self.store.list("index")?;
        // One allocation of the right size: no doubling on the way to millions of entries.
        let room = objects
            .iter()
            .map(|(_, size)| Index::max_entries(*size))
            .sum();
        let mut index = Index::with_capacity(room);
        self.store.get_each(&objects, |name, sealed| {
            let sealed = sealed?;
            check_name(name, &sealed)?;
            for pack in open_index(&self.keys, &sealed).map_err(|e| e.context(name))? {
                index.push_pack(&pack);
            }
            Ok(())
        })?;
        index.sort();
        self.index = index;
        Ok(())
    }

    /// The object store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The derived keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The derived keys, for worker threads.
    pub fn shared_keys(&self) -> Arc<Keys> {
        Arc::clone(&self.keys)
    }

    pub(crate) fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The name of the key slot this repository was opened with.
    pub fn current_slot(&self) -> &str {
        &self.slot
    }

    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    pub(crate) fn index_mut(&mut self) -> &mut Index {
        &mut self.index
    }

    /// Reads, opens and verifies one blob.
    pub fn read_blob(&self, kind: BlobType, id: &BlobId) -> Result<Bytes> {
        let mut plain = None;
        self.read_blobs(kind, std::slice::from_ref(id), |blob| {
            plain = Some(blob);
            Ok(())
        })?;
        plain.ok_or_else(|| Error::corrupt(format!("blob {} was not read", id.short())))
    }

    /// Reads, opens and verifies `ids` in order, handing each plaintext to `each`. Blobs that
    /// lie next to each other in one pack are fetched with one ranged read (up to
    /// [`MAX_BATCH_READ`] bytes), so a file's chunks cost one request, not one each.
    pub fn read_blobs(
        &self,
        kind: BlobType,
        ids: &[BlobId],
        each: impl FnMut(Bytes) -> Result<()>,
    ) -> Result<()> {
        self.read_opened(kind, ids, open_blob_owned, each)
    }

    /// [`Repository::read_blobs`] of a file's chunks `ids`, for a caller that compares the
    /// whole content with the file's BLAKE3 (restore): each chunk is authenticated and bound
    /// to its id by the AEAD, but its keyed id is not computed again (see [`unseal_blob`]).
    pub fn read_file_chunks(
        &self,
        ids: &[BlobId],
        each: impl FnMut(Bytes) -> Result<()>,
    ) -> Result<()> {
        self.read_opened(BlobType::Data, ids, unseal_blob, each)
    }

    fn read_opened(
        &self,
        kind: BlobType,
        ids: &[BlobId],
        open: fn(&Keys, BlobType, &BlobId, BytesMut) -> Result<Bytes>,
        mut each: impl FnMut(Bytes) -> Result<()>,
    ) -> Result<()> {
        let locate = |id: &BlobId| {
            self.index.get(id).ok_or_else(|| {
                Error::corrupt(format!(
                    "blob {} is not in the index (missing data)",
                    id.short()
                ))
            })
        };
        let mut rest = ids;
        while let Some(first) = rest.first() {
            let first = locate(first)?;
            let start = u64::from(first.offset);
            let mut end = start + u64::from(first.length);
            let mut batch = vec![first];
            for id in &rest[1..] {
                let loc = locate(id)?;
                let len = u64::from(loc.length);
                if loc.pack != first.pack
                    || u64::from(loc.offset) != end
                    || end + len - start > MAX_BATCH_READ
                {
                    break;
                }
                end += len;
                batch.push(loc);
            }
            let name = pack_name(&first.pack);
            let read_ahead = match kind {
                BlobType::Data => &self.data_reads,
                BlobType::Tree => &self.tree_reads,
            };
            let bytes = read_ahead.read(&first.pack, first.pack_size, start..end, |r| {
                self.store.get_range(&name, r)
            })?;
            // Bytes fetched for this call alone are opened where they lie; bytes a window
            // keeps for later reads are copied.
            let mut bytes = bytes.try_into_mut();
            for (id, loc) in rest.iter().zip(&batch) {
                let len = loc.length as usize;
                let sealed = match &mut bytes {
                    Ok(owned) if owned.len() >= len => owned.split_to(len),
                    Err(shared) if shared.len() >= len => BytesMut::from(&shared.split_to(len)[..]),
                    _ => {
                        let pack = loc.pack.short();
                        return Err(Error::corrupt(format!("pack {pack} is truncated")));
                    }
                };
                let plain = open(&self.keys, kind, id, sealed)
                    .map_err(|e| e.context(format!("pack {}", loc.pack.short())))?;
                each(plain)?;
            }
            rest = &rest[batch.len()..];
        }
        Ok(())
    }

    /// Reads and decodes a tree.
    pub fn load_tree(&self, id: &BlobId) -> Result<Tree> {
        Tree::decode_for(&self.read_blob(BlobType::Tree, id)?, &self.keys)
            .map_err(|e| e.context(format!("tree {}", id.short())))
    }

    /// Visits every entry below the tree `root` depth-first, parents before children, with
    /// its snapshot path (`/a/b`, raw bytes).
    pub fn walk(
        &self,
        root: &BlobId,
        visit: &mut dyn FnMut(&[u8], &Node) -> Result<()>,
    ) -> Result<()> {
        self.walk_below(root, b"", visit)
    }

    fn walk_below(
        &self,
        tree: &BlobId,
        dir: &[u8],
        visit: &mut dyn FnMut(&[u8], &Node) -> Result<()>,
    ) -> Result<()> {
        for node in self.load_tree(tree)?.nodes {
            let mut path = dir.to_vec();
            path.push(b'/');
            path.extend_from_slice(&node.name);
            visit(&path, &node)?;
            if let Some(sub) = node.subtree {
                self.walk_below(&sub, &path, visit)?;
            }
        }
        Ok(())
    }

    /// Every snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(ObjectId, Snapshot)>> {
        let (snaps, damaged) = self.readable_snapshots()?;
        match damaged.into_iter().next() {
            Some(e) => Err(e.context("a snapshot is unreadable (run `coffer check`)")),
            None => Ok(snaps),
        }
    }

    /// Every readable snapshot, oldest first, and the errors of the unreadable ones.
    pub fn readable_snapshots(&self) -> Result<(SnapshotList, Vec<Error>)> {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        let listing = self.store.list("snapshots")?;
        self.store.get_each(&listing, |name, sealed| {
            match sealed.and_then(|sealed| self.open_snapshot(name, &sealed)) {
                Ok(s) => out.push(s),
                Err(e) if e.kind() == ErrorKind::Store => return Err(e),
                Err(e) => damaged.push(e),
            }
            Ok(())
        })?;
        out.sort_by_key(|(id, s)| (s.time_ns, *id));
        Ok((out, damaged))
    }

    /// The latest readable snapshot that `wanted` accepts, found without reading every
    /// snapshot: they are read the most recently stored first, [`SEARCH_BATCH`] at a time,
    /// until one is accepted and every snapshot not yet read was stored before it. Of those
    /// read and accepted, the one with the latest `time_ns` is returned. The store's times
    /// only order the search: what is returned is authenticated like any snapshot.
    /// Damaged snapshots met on the way are skipped; their errors come second.
    pub fn latest_snapshot_where(&self, wanted: impl Fn(&Snapshot) -> bool) -> Result<LatestFound> {
        let listing = self.store.list_newest_first("snapshots")?;
        let mut best: Option<(ObjectId, Snapshot)> = None;
        let mut damaged = Vec::new();
        let mut stored_at = None;
        for batch in listing.chunks(SEARCH_BATCH) {
            if stored_at.is_some_and(|t| batch[0].modified < t) {
                break;
            }
            let names: Vec<(String, u64)> =
                batch.iter().map(|d| (d.name.clone(), d.size)).collect();
            self.store.get_each(&names, |name, sealed| {
                match sealed.and_then(|sealed| self.open_snapshot(name, &sealed)) {
                    Ok((id, snap)) if wanted(&snap) => {
                        let modified = batch.iter().find(|d| d.name == name).map(|d| d.modified);
                        stored_at = stored_at.max(modified);
                        if best
                            .as_ref()
                            .is_none_or(|(b, s)| (s.time_ns, *b) < (snap.time_ns, id))
                        {
                            best = Some((id, snap));
                        }
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Store => return Err(e),
                    Err(e) => damaged.push(e),
                }
                Ok(())
            })?;
        }
        Ok((best, damaged))
    }

    /// Like [`Self::latest_snapshot_where`], but a damaged snapshot met on the way is an
    /// error: it could be the latest.
    pub fn latest_intact_snapshot_where(
        &self,
        wanted: impl Fn(&Snapshot) -> bool,
    ) -> Result<Option<(ObjectId, Snapshot)>> {
        let (found, damaged) = self.latest_snapshot_where(wanted)?;
        match damaged.into_iter().next() {
            Some(e) => Err(e.context("a snapshot is unreadable (run `coffer check`)")),
            None => Ok(found),
        }
    }

    fn load_snapshot(&self, name: &str) -> Result<(ObjectId, Snapshot)> {
        self.open_snapshot(name, &self.store.get(name)?)
    }

    fn open_snapshot(&self, name: &str, sealed: &[u8]) -> Result<(ObjectId, Snapshot)> {
        let id = check_name(name, sealed)?;
        let snap = Snapshot::open(&self.keys, sealed)
            .map_err(|e| e.context(format!("snapshot {}", id.short())))?;
        Ok((id, snap))
    }

    /// Finds a snapshot by `latest`, a full id or a unique id prefix.
    pub fn find_snapshot(&self, spec: &str) -> Result<(ObjectId, Snapshot)> {
        if spec == "latest" {
            return self
                .latest_intact_snapshot_where(|_| true)?
                .ok_or_else(|| Error::not_found("the repository has no snapshots yet"));
        }
        if spec.len() < 4 || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!(
                "{spec:?} is not a snapshot id: give `latest` or at least 4 hex digits"
            )));
        }
        let spec = spec.to_ascii_lowercase();
        let names: Vec<String> = self
            .store
            .list("snapshots")?
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.trim_start_matches("snapshots/").starts_with(&spec))
            .collect();
        match names.as_slice() {
            [one] => self.load_snapshot(one),
            [] => Err(Error::not_found(format!(
                "no snapshot with id {spec}; `coffer snapshots` lists them"
            ))),
            _ => Err(Error::invalid(format!(
                "snapshot prefix {spec} is ambiguous; give more digits"
            ))),
        }
    }

    /// Seals and stores a snapshot; this is what makes a backup visible.
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<ObjectId> {
        self.commit_snapshot(snap, Vec::new())
    }

    /// Seals a snapshot and stores it after the objects it needs (`before`, in groups; see
    /// [`Store::commit`]).
    pub(crate) fn commit_snapshot(
        &self,
        snap: &Snapshot,
        mut before: Vec<Vec<CommitItem>>,
    ) -> Result<ObjectId> {
        let sealed = snap.seal(&self.keys)?;
        let id = ObjectId::of(&sealed);
        let name = format!("snapshots/{id}");
        before.push(vec![CommitItem::Bytes(name, Bytes::from(sealed))]);
        self.store.commit(before)?;
        Ok(id)
    }
}

/// Checks that an object's name is the BLAKE3 of its bytes; returns the id.
pub(crate) fn check_name(name: &str, bytes: &[u8]) -> Result<ObjectId> {
    let id = ObjectId::of(bytes);
    let expected = name.rsplit('/').next().unwrap_or_default();
    if id.to_hex() != expected {
        return Err(Error::corrupt(format!(
            "{name}: content does not match its name (altered or swapped object)"
        )));
    }
    Ok(id)
}

pub(crate) fn save_slot(store: &Store, slot: Vec<u8>) -> Result<String> {
    let name = format!("keys/{}", ObjectId::of(&slot));
    store.put_object(&name, Bytes::from(slot))?;
    Ok(name)
}

fn unlock_any(
    store: &Store,
    repo_id: [u8; 32],
    passphrase: &Passphrase,
) -> Result<(MasterKey, String)> {
    let slots = store.list("keys")?;
    if slots.is_empty() {
        return Err(Error::corrupt(
            "the repository has no key slots: it cannot be opened",
        ));
    }
    let mut unreadable = Vec::new();
    let total = slots.len();
    let mut decoded = Vec::with_capacity(total);
    store.get_each(&slots, |name, bytes| {
        let bytes = bytes?;
        // A slot is named by its hash, so damage is told apart from a wrong passphrase.
        let slot = check_name(name, &bytes)
            .and_then(|_| keyslot::decode(&bytes))
            .and_then(|slot| {
                if slot.repo_id != repo_id {
                    return Err(Error::corrupt(format!(
                        "{name} belongs to another repository"
                    )));
                }
                Ok(slot)
            });
        match slot {
            Ok(slot) => decoded.push((name.to_string(), slot)),
            Err(e) => unreadable.push(e.to_string()),
        }
        Ok(())
    })?;
    // A recovery key (a key file for unattended runs) opens its slot without running
    // Argon2id on the passphrase slots first.
    if passphrase.is_recovery_key() {
        decoded.sort_by_key(|(_, slot)| slot.kind != SlotKind::Recovery);
    }
    for (name, slot) in decoded {
        match slot.unlock(passphrase) {
            Ok(Some(master)) => return Ok((master, name)),
            Ok(None) => {}
            Err(e) => unreadable.push(e.to_string()),
        }
    }
    if unreadable.len() == total {
        return Err(Error::corrupt(format!(
            "no key slot of this repository is readable, so it cannot be opened: {}",
            unreadable.join("; ")
        )));
    }
    let mut message =
        String::from("wrong passphrase: no key slot of this repository opens with it");
    if !unreadable.is_empty() {
        message += &format!(
            " ({} key slot(s) could not be read: {})",
            unreadable.len(),
            unreadable.join("; ")
        );
    }
    Err(Error::new(ErrorKind::WrongPassword, message))
}

/// A new repository in a memory store named `name`, with a quick KDF (for tests).
#[cfg(test)]
pub(crate) fn memory_repo(name: &str) -> Repository {
    let store = Store::open(&crate::store::Location::Memory(name.into()), true).unwrap();
    let kdf = KdfParams {
        memory_kib: 8192,
        iterations: 1,
        parallelism: 1,
    };
    let opts = InitOptions {
        kdf,
        ..Default::default()
    };
    Repository::init(store, &Passphrase::new("pw".into()), &opts)
        .unwrap()
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(host: &str, time_ns: i64) -> Snapshot {
        Snapshot {
            version: crate::snapshot::SNAPSHOT_VERSION,
            time_ns,
            tree: BlobId([7; 32]),
            paths: vec!["/data".into()],
            hostname: host.into(),
            username: "u".into(),
            tags: Vec::new(),
            parent: None,
            program: "test".into(),
            summary: Default::default(),
        }
    }

    #[test]
    fn the_latest_snapshot_of_a_kind_is_found_newest_stored_first() {
        let repo = memory_repo("latest-where");
        let latest = |host: &str| {
            let (found, damaged) = repo.latest_snapshot_where(|s| s.hostname == host).unwrap();
            (found, damaged.len())
        };
        let save = |s: Snapshot| {
            let id = repo.save_snapshot(&s).unwrap();
            // The memory store's times have microseconds: keep the stored order clear.
            std::thread::sleep(std::time::Duration::from_millis(2));
            id
        };
        assert!(latest("a").0.is_none());
        // `a` at time 100, then three batches of `b`, then `a` again with an earlier time
        // (its clock went back), a newer `c`, and a damaged object stored last.
        let first_a = save(snapshot("a", 100));
        for t in 0..3 * SEARCH_BATCH as i64 {
            save(snapshot("b", 200 + t));
        }
        let late_a = save(snapshot("a", 50));
        save(snapshot("c", 60));
        repo.store
            .put_new(
                &format!("snapshots/{}", ObjectId([1; 32])),
                Bytes::from_static(b"junk"),
            )
            .unwrap();
        // The last stored `a` wins: the search stops before the batches of `b` below it.
        // The damaged object, read first, is skipped and reported.
        let (Some((id, snap)), 1) = latest("a") else {
            panic!("no `a`, or the damaged object not reported")
        };
        assert_eq!((id, snap.time_ns), (late_a, 50));
        assert_eq!(
            latest("b").0.unwrap().1.time_ns,
            200 + 3 * SEARCH_BATCH as i64 - 1
        );
        assert!(latest("d").0.is_none());
        // What must not skip a snapshot that could be the latest (`restore latest`, drills)
        // fails on it.
        let err = repo.latest_intact_snapshot_where(|_| true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        repo.store
            .delete(&format!("snapshots/{}", ObjectId([1; 32])))
            .unwrap();
        // Of those read, the latest time wins: both `e`s are in the newest batch.
        save(snapshot("e", 300));
        save(snapshot("e", 250));
        assert_eq!(latest("e").0.unwrap().1.time_ns, 300);
        // `latest`: the latest time of the most recently stored snapshots.
        let (_, snap) = repo.find_snapshot("latest").unwrap();
        assert_eq!(snap.time_ns, 300);
        // Once the last stored `a` is gone, the search goes on to the first.
        repo.store.delete(&format!("snapshots/{late_a}")).unwrap();
        assert_eq!(latest("a").0.unwrap().0, first_a);
    }
}
