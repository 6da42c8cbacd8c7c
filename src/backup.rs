//! Backup: walk paths, store what changed, and commit a snapshot.
//!
//! This module wires the stages together: walk (here) → chunk → id → dedup → compress → seal
//! → pack → upload (`saver`). Files whose size, mtime, ctime and inode match the parent
//! snapshot are not read again. Unreadable files become warnings, not aborts; a store
//! failure aborts before any snapshot is written, so no partial snapshot ever appears.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;

use crate::blob::BlobType;
use crate::chunker::{ChunkStream, Chunker, OwnedChunks};
use crate::error::{Error, ErrorKind, Result};
use crate::filter::PathFilter;
use crate::fsmeta::{self, OwnerNames};
use crate::id::{BlobId, ObjectId};
use crate::prefetch::{Entries, Prefetch, enters, list_dir};
use crate::repo::{Repository, host_name};
use crate::saver::{BlobSaver, add_to_index};
use crate::snapshot::{SNAPSHOT_VERSION, Snapshot, Summary};
use crate::stat::Stat;
use crate::tree::{Node, NodeKind, Timestamp, Tree};

/// Which snapshot to compare against to skip unchanged files.
#[derive(Debug, Clone, Default)]
pub enum ParentChoice {
    /// The latest snapshot of the same host and paths.
    #[default]
    Auto,
    /// Read every file.
    None,
    /// This snapshot (id, prefix or `latest`).
    Snapshot(String),
}

/// Content from standard input, stored as one file.
pub struct StdinSource {
    /// The file name in the snapshot.
    pub name: String,
    /// The data.
    pub reader: Box<dyn Read>,
}

/// What to back up and how.
#[derive(Default)]
pub struct BackupOptions {
    /// Paths to back up.
    pub paths: Vec<PathBuf>,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// Host name to record (default: this host).
    pub host: Option<String>,
    /// Exclude patterns.
    pub excludes: Vec<String>,
    /// Stay on the file system of each path.
    pub one_file_system: bool,
    /// Parent snapshot.
    pub parent: ParentChoice,
    /// Back up standard input instead of paths.
    pub stdin: Option<StdinSource>,
}

/// Callbacks for progress display. The library never prints.
pub trait Progress {
    /// A file is being read.
    fn file(&self, _path: &Path) {}
    /// `n` more bytes were read.
    fn bytes(&self, _n: u64) {}
    /// Something could not be backed up.
    fn warning(&self, _message: &str) {}
}

/// Progress that reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// The result of a backup.
#[derive(Debug)]
pub struct BackupOutcome {
    /// The new snapshot's id.
    pub id: ObjectId,
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Files that could not be read or changed while read.
    pub warnings: Vec<String>,
}

/// Backs up, writes the snapshot, and adds the new packs to `repo`'s index:
/// [`Backup::start`], then [`Backup::run`].
pub fn backup(
    repo: &mut Repository,
    opts: BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupOutcome> {
    Backup::start(opts)?.run(repo, progress)
}

/// A backup whose paths are being listed already.
pub struct Backup {
    opts: BackupOptions,
    paths: Vec<PathBuf>,
    excludes: PathFilter,
    prefetch: Prefetch,
    /// The host and user names, and the names of the user's uid and gid for the files' owners,
    /// looked up meanwhile: a lookup may read files or ask a directory service (about 1 ms
    /// each with `/etc/passwd` and `/etc/group` not in the page cache).
    who: std::thread::JoinHandle<(String, String, OwnerNames)>,
    started: Instant,
    time_ns: i64,
}

/// This host's name, the current user's, and the owner names cache with the user's uid and
/// gid looked up.
fn who() -> (String, String, OwnerNames) {
    let (owners, user) = OwnerNames::of_current_user();
    (host_name(), user, owners)
}

impl Backup {
    /// Checks `opts` and starts listing its paths. Nothing here needs the repository, so a
    /// caller that starts the backup before opening it has the listing run meanwhile (while
    /// the index is read, or a passphrase's Argon2id runs).
    pub fn start(opts: BackupOptions) -> Result<Backup> {
        let started = Instant::now();
        let time_ns = crate::clock::now_ns();
        let paths = absolute_paths(&opts.paths)?;
        if paths.is_empty() && opts.stdin.is_none() {
            return Err(Error::invalid(
                "nothing to back up: give at least one path, or --stdin",
            ));
        }
        let excludes = PathFilter::new(&opts.excludes)?;
        let roots = match opts.stdin {
            Some(_) => Vec::new(),
            None => walk_roots(&paths),
        };
        let prefetch = Prefetch::start(roots, excludes.clone(), opts.one_file_system)?;
        let who = std::thread::Builder::new()
            .name("coffer-who".into())
            .spawn(who)
            .map_err(|e| Error::io("starting a thread", e))?;
        Ok(Backup {
            opts,
            paths,
            excludes,
            prefetch,
            who,
            started,
            time_ns,
        })
    }

    /// Backs up into `repo`, writes the snapshot, and adds the new packs to its index.
    pub fn run(self, repo: &mut Repository, progress: &dyn Progress) -> Result<BackupOutcome> {
        let Backup {
            mut opts,
            paths,
            excludes,
            prefetch,
            who,
            started,
            time_ns,
        } = self;
        let (this_host, username, owners) = who.join().unwrap_or_else(|_| self::who());
        let hostname = opts.host.clone().unwrap_or(this_host);
        let path_strings: Vec<String> = match &opts.stdin {
            Some(s) => vec![format!("/{}", s.name)],
            None => paths.iter().map(|p| p.display().to_string()).collect(),
        };
        let parent = find_parent(repo, &opts.parent, &hostname, &path_strings)?;
        let stdin = opts.stdin.take();
        let (tree, summary, warnings, packs, commit) = {
            let repo: &Repository = repo;
            let mut walker = Walker::new(repo, &opts, progress, excludes, prefetch, owners)?;
            let parent_root = match &parent {
                Some((_, snap)) => Some(repo.load_tree(&snap.tree)?),
                None => None,
            };
            let tree = match stdin {
                Some(source) => walker.stdin_tree(source)?,
                None => walker.root_tree(&paths, parent_root.as_ref())?,
            };
            let Walker {
                saver,
                mut summary,
                warnings,
                ..
            } = walker;
            // The last packs and index object are stored with the snapshot.
            let (packs, stats, commit) = saver.finish_staged()?;
            summary.blobs_added = stats.blobs;
            summary.bytes_added = stats.bytes;
            (tree, summary, warnings, packs, commit)
        };
        add_to_index(repo.index_mut(), &packs);
        let mut summary = summary;
        summary.warnings = warnings.len() as u64;
        summary.duration_ns = started.elapsed().as_nanos() as u64;
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            time_ns,
            tree,
            paths: path_strings,
            hostname,
            username,
            tags: opts.tags.clone(),
            parent: parent.map(|(id, _)| id),
            program: format!("coffer {}", env!("CARGO_PKG_VERSION")),
            summary,
        };
        let id = repo.commit_snapshot(&snapshot, commit)?;
        Ok(BackupOutcome {
            id,
            snapshot,
            warnings,
        })
    }
}

fn find_parent(
    repo: &Repository,
    choice: &ParentChoice,
    host: &str,
    paths: &[String],
) -> Result<Option<(ObjectId, Snapshot)>> {
    match choice {
        ParentChoice::None => Ok(None),
        ParentChoice::Snapshot(spec) => repo.find_snapshot(spec).map(Some),
        ParentChoice::Auto => {
            let mut wanted = paths.to_vec();
            wanted.sort();
            // A damaged snapshot is no parent (`check` reports it): the backup goes on.
            let (parent, _damaged) = repo.latest_snapshot_where(|s| {
                let mut p = s.paths.clone();
                p.sort();
                s.hostname == host && p == wanted
            })?;
            Ok(parent)
        }
    }
}

/// Makes paths absolute and lexically normal, without following symlinks.
fn absolute_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let abs = std::path::absolute(p)
            .map_err(|e| Error::io(format!("resolving {}", p.display()), e))?;
        let mut norm = PathBuf::from("/");
        for c in abs.components() {
            match c {
                Component::Normal(n) => norm.push(n),
                Component::ParentDir => {
                    norm.pop();
                }
                _ => {}
            }
        }
        if !out.contains(&norm) {
            out.push(norm);
        }
    }
    Ok(out)
}

/// The paths the walk lists first, in its order (the listing thread starts from them).
fn walk_roots(paths: &[PathBuf]) -> Vec<PathBuf> {
    fn targets(dir: &VirtualDir, out: &mut Vec<PathBuf>) {
        for entry in dir.children.values() {
            match entry {
                VirtualEntry::Target(path) => out.push(path.clone()),
                VirtualEntry::Between(_, sub) => targets(sub, out),
            }
        }
    }
    if paths.iter().any(|p| p.as_os_str() == "/") {
        return vec![PathBuf::from("/")];
    }
    let mut roots = Vec::new();
    targets(&virtual_root(paths), &mut roots);
    roots
}

/// A directory of the virtual tree above the backed-up paths.
#[derive(Default)]
struct VirtualDir {
    children: BTreeMap<Vec<u8>, VirtualEntry>,
}

enum VirtualEntry {
    /// A path given to back up: stored whole.
    Target(PathBuf),
    /// A directory above one or more targets: only its metadata and those children.
    Between(PathBuf, VirtualDir),
}

fn virtual_root(paths: &[PathBuf]) -> VirtualDir {
    let mut root = VirtualDir::default();
    for path in paths {
        let names: Vec<&OsStr> = path.iter().skip(1).collect();
        let mut dir = &mut root;
        let mut so_far = PathBuf::from("/");
        for (i, name) in names.iter().enumerate() {
            so_far.push(name);
            let key = name.as_bytes().to_vec();
            if i + 1 == names.len() {
                dir.children
                    .insert(key, VirtualEntry::Target(so_far.clone()));
                break;
            }
            let entry = dir
                .children
                .entry(key)
                .or_insert_with(|| VirtualEntry::Between(so_far.clone(), VirtualDir::default()));
            match entry {
                VirtualEntry::Between(_, sub) => dir = sub,
                VirtualEntry::Target(_) => break, // an ancestor is already backed up whole
            }
        }
    }
    root
}

struct Walker<'r, 'p> {
    repo: &'r Repository,
    saver: BlobSaver<'r>,
    chunker: Chunker,
    /// The chunker's window, reused from file to file.
    chunk_buffer: Vec<u8>,
    excludes: PathFilter,
    one_file_system: bool,
    owners: OwnerNames,
    hardlinks: HashMap<(u64, u64), Node>,
    prefetch: Prefetch,
    summary: Summary,
    warnings: Vec<String>,
    progress: &'p dyn Progress,
}

/// Files at least this large are read by [`Walker::store_file_split`].
const SPLIT_READ_MIN: u64 = 4 << 20;
/// Chunks read ahead of the saver (each at most the chunker's maximum size)...
const SPLIT_READ_QUEUE: usize = 1;
/// ...and of the file's hashing.
const SPLIT_HASH_QUEUE: usize = 1;

impl<'r, 'p> Walker<'r, 'p> {
    fn new(
        repo: &'r Repository,
        opts: &BackupOptions,
        progress: &'p dyn Progress,
        excludes: PathFilter,
        prefetch: Prefetch,
        owners: OwnerNames,
    ) -> Result<Self> {
        Ok(Walker {
            repo,
            saver: BlobSaver::new(repo),
            chunker: Chunker::new(repo.config().chunker, &repo.keys().chunker_seed()),
            chunk_buffer: Vec::new(),
            prefetch,
            excludes,
            one_file_system: opts.one_file_system,
            owners,
            hardlinks: HashMap::new(),
            summary: Summary::default(),
            warnings: Vec::new(),
            progress,
        })
    }

    fn warn(&mut self, message: String) {
        self.progress.warning(&message);
        self.warnings.push(message);
    }

    fn save_tree(&mut self, nodes: Vec<Node>) -> Result<BlobId> {
        let encoded = Tree::new(nodes).encode_for(self.saver.keys())?;
        self.saver.save(BlobType::Tree, &encoded)
    }

    fn root_tree(&mut self, paths: &[PathBuf], parent: Option<&Tree>) -> Result<BlobId> {
        if paths.iter().any(|p| p.as_os_str() == "/") {
            let meta = self.lstat(Path::new("/"))?;
            let entries = self.listing(Path::new("/"));
            let (nodes, _) =
                self.dir_entries(Path::new("/"), entries, meta.dev, parent.cloned())?;
            return self.save_tree(nodes);
        }
        let root = virtual_root(paths);
        let nodes = self.virtual_entries(&root, parent)?;
        self.save_tree(nodes)
    }

    fn virtual_entries(&mut self, dir: &VirtualDir, parent: Option<&Tree>) -> Result<Vec<Node>> {
        let mut nodes = Vec::new();
        for (name, entry) in &dir.children {
            let old = parent.and_then(|t| t.find(name));
            let node = match entry {
                VirtualEntry::Target(path) => match Stat::lstat(path) {
                    Ok(meta) => {
                        let entry = self.entry(path, name, &meta, meta.dev, old.cloned())?;
                        entry.map(|(node, _)| node)
                    }
                    Err(e) => {
                        self.warn(format!("{}: cannot back up: {e}", path.display()));
                        None
                    }
                },
                VirtualEntry::Between(path, sub) => {
                    let meta = match Stat::lstat(path) {
                        Ok(m) => m,
                        Err(e) => {
                            self.warn(format!("{}: cannot back up: {e}", path.display()));
                            continue;
                        }
                    };
                    let mut node = fsmeta::node_from_metadata(name, &meta, &mut self.owners);
                    let old_tree = self.parent_tree(old);
                    let children = self.virtual_entries(sub, old_tree.as_ref())?;
                    node.subtree = Some(self.save_tree(children)?);
                    Some(node)
                }
            };
            nodes.extend(node);
        }
        Ok(nodes)
    }

    fn lstat(&self, path: &Path) -> Result<Stat> {
        Stat::lstat(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
    }

    fn parent_tree(&mut self, old: Option<&Node>) -> Option<Tree> {
        let id = old.and_then(|n| n.subtree)?;
        self.repo
            .load_tree(&id)
            .map_err(|e| {
                self.warn(format!(
                    "parent snapshot tree {} unreadable, reading files again: {e}",
                    id.short()
                ))
            })
            .ok()
    }

    /// The sorted, filtered entries of directory `path`, from the listing thread if it has
    /// them.
    fn listing(&mut self, path: &Path) -> std::io::Result<Entries> {
        self.prefetch
            .take(path)
            .unwrap_or_else(|| list_dir(path, &self.excludes))
    }

    /// The nodes of directory `path`, from its sorted, filtered `entries`, and whether they
    /// are the `parent` snapshot's nodes of it, unchanged.
    fn dir_entries(
        &mut self,
        path: &Path,
        entries: std::io::Result<Entries>,
        root_dev: u64,
        parent: Option<Tree>,
    ) -> Result<(Vec<Node>, bool)> {
        let entries = match entries {
            Ok(entries) => entries,
            Err(e) => {
                self.warn(format!("{}: cannot list directory: {e}", path.display()));
                return Ok((Vec::new(), false));
            }
        };
        let old_nodes = parent.map(|t| t.nodes).unwrap_or_default();
        let old_count = old_nodes.len();
        let mut old_nodes = old_nodes.into_iter().peekable();
        let mut nodes = Vec::with_capacity(entries.len());
        let mut kept = 0;
        for (name, meta) in entries.iter() {
            // Both lists are sorted by name: the parent's entries before this one are gone.
            while old_nodes.next_if(|o| o.name.as_slice() < name).is_some() {}
            let old = old_nodes.next_if(|o| o.name == name);
            let child = path.join(OsStr::from_bytes(name));
            let meta = match meta {
                Ok(m) => m,
                Err(e) => {
                    self.warn(format!("{}: cannot read metadata: {e}", child.display()));
                    continue;
                }
            };
            if let Some((node, same)) = self.entry(&child, name, meta, root_dev, old)? {
                kept += usize::from(same);
                nodes.push(node);
            }
        }
        let same = kept == old_count && kept == nodes.len();
        Ok((nodes, same))
    }

    /// The node for one path, and whether it is `old` (the parent snapshot's node of the same
    /// name) unchanged; `None` if the path was skipped with a warning.
    fn entry(
        &mut self,
        path: &Path,
        name: &[u8],
        meta: &Stat,
        root_dev: u64,
        old: Option<Node>,
    ) -> Result<Option<(Node, bool)>> {
        let same_meta = old
            .as_ref()
            .is_some_and(|o| fsmeta::same_metadata(o, meta, &mut self.owners));
        let kind = meta.kind();
        // An unchanged file that is not a hard link: the parent's node is the node (no
        // building one to compare, no copying its chunk list).
        let keep = kind == NodeKind::File
            && meta.nlink == 1
            && same_meta
            && old.as_ref().is_some_and(|o| self.content_kept(o));
        if keep && let Some(old) = old {
            self.summary.bytes_total += old.size;
            self.summary.files_unchanged += 1;
            return Ok(Some((old, true)));
        }
        let node = match kind {
            NodeKind::Dir => self.dir(path, name, meta, root_dev, old.as_ref(), same_meta)?,
            NodeKind::File => self.file(path, name, meta, old.as_ref())?,
            NodeKind::Symlink => self.symlink(path, name, meta, old.as_ref()),
            _ => {
                self.summary.others += 1;
                Some(self.new_node(path, name, meta, old.as_ref()))
            }
        };
        Ok(node.map(|n| {
            let same = old.as_ref() == Some(&n);
            (n, same)
        }))
    }

    /// The node of directory `path`, whose own metadata is the same as `old`'s if `same_meta`.
    fn dir(
        &mut self,
        path: &Path,
        name: &[u8],
        meta: &Stat,
        root_dev: u64,
        old: Option<&Node>,
        same_meta: bool,
    ) -> Result<Option<Node>> {
        self.summary.dirs += 1;
        let (nodes, same_nodes) = if !enters(meta, self.one_file_system, root_dev) {
            (Vec::new(), false)
        } else {
            let entries = self.listing(path);
            let old_tree = self.parent_tree(old);
            self.dir_entries(path, entries, root_dev, old_tree)?
        };
        // A directory whose entries all match the parent snapshot's keeps its stored tree:
        // no encoding and hashing it again.
        let old_id = old
            .and_then(|o| o.subtree)
            .filter(|id| same_nodes && self.saver.has(id));
        if same_meta && old_id.is_some() {
            return Ok(old.cloned());
        }
        let mut node = self.new_node(path, name, meta, old);
        node.subtree = Some(match old_id {
            Some(id) => id,
            None => self.save_tree(nodes)?,
        });
        Ok(Some(node))
    }

    /// A node for `path` from its metadata and extended attributes.
    fn new_node(&mut self, path: &Path, name: &[u8], meta: &Stat, old: Option<&Node>) -> Node {
        let mut node = fsmeta::node_from_metadata(name, meta, &mut self.owners);
        // Changing an extended attribute changes the ctime: with the same inode and ctime as
        // in the parent snapshot, the recorded attributes still hold and need no syscall.
        match old.filter(|o| (o.kind, o.inode, o.ctime) == (node.kind, node.inode, node.ctime)) {
            Some(old) => node.xattrs = old.xattrs.clone(),
            None => match fsmeta::read_xattrs(path) {
                Ok(x) => node.xattrs = x,
                Err(e) => self.warn(e.to_string()),
            },
        }
        node
    }

    fn symlink(
        &mut self,
        path: &Path,
        name: &[u8],
        meta: &Stat,
        old: Option<&Node>,
    ) -> Option<Node> {
        self.summary.others += 1;
        let mut node = self.new_node(path, name, meta, old);
        match std::fs::read_link(path) {
            Ok(t) => node.target = Some(t.as_os_str().as_bytes().to_vec()),
            Err(e) => {
                self.warn(format!("{}: cannot read link: {e}", path.display()));
                return None;
            }
        }
        Some(node)
    }

    fn file(
        &mut self,
        path: &Path,
        name: &[u8],
        meta: &Stat,
        old: Option<&Node>,
    ) -> Result<Option<Node>> {
        let mut node = self.new_node(path, name, meta, old);
        self.summary.bytes_total += node.size;
        let key = (node.device, node.inode);
        if node.links > 1
            && let Some(first) = self.hardlinks.get(&key)
        {
            node.content = first.content.clone();
            node.blake3 = first.blake3;
            node.size = first.size;
            self.summary.files_unchanged += 1;
            return Ok(Some(node));
        }
        if let Some(old) = old.filter(|o| self.unchanged(o, &node)) {
            node.content = old.content.clone();
            node.blake3 = old.blake3;
            self.summary.files_unchanged += 1;
        } else {
            if old.is_some() {
                self.summary.files_changed += 1;
            } else {
                self.summary.files_new += 1;
            }
            self.progress.file(path);
            if let Err(e) = self.read_file(path, &mut node) {
                if e.kind() != crate::error::ErrorKind::Io
                    && e.kind() != crate::error::ErrorKind::NotFound
                {
                    return Err(e);
                }
                self.warn(format!(
                    "{}: cannot read file, not backed up: {e}",
                    path.display()
                ));
                return Ok(None);
            }
        }
        if node.links > 1 {
            self.hardlinks.insert(key, node.clone());
        }
        Ok(Some(node))
    }

    /// Whether the parent's node can stand for the file without reading it.
    fn unchanged(&self, old: &Node, new: &Node) -> bool {
        old.size == new.size
            && old.mtime == new.mtime
            && old.ctime == new.ctime
            && old.inode == new.inode
            && self.content_kept(old)
    }

    /// Whether `old`, a file node of the parent snapshot, has its hash and all its chunks
    /// still in the repository.
    fn content_kept(&self, old: &Node) -> bool {
        old.kind == NodeKind::File
            && old.blake3.is_some()
            && old.content.iter().all(|id| self.saver.has(id))
    }

    fn read_file(&mut self, path: &Path, node: &mut Node) -> Result<()> {
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| Error::io("open", e))?;
        let before = file.metadata().map_err(|e| Error::io("stat", e))?;
        let (content, hash, size) = if before.size() >= SPLIT_READ_MIN {
            self.store_file_split(&file)?
        } else {
            self.store_stream(&file)?
        };
        let after = file.metadata().map_err(|e| Error::io("stat", e))?;
        if before.mtime() != after.mtime()
            || before.mtime_nsec() != after.mtime_nsec()
            || size != before.size()
            || after.size() != size
        {
            self.warn(format!(
                "{}: file changed while it was read; the snapshot holds the {size} bytes read",
                path.display()
            ));
        }
        node.content = content;
        node.blake3 = Some(hash);
        node.size = size;
        Ok(())
    }

    /// Chunks, hashes and saves a stream; returns chunk ids, whole-file BLAKE3 and size.
    fn store_stream(&mut self, reader: impl Read) -> Result<(Vec<BlobId>, ObjectId, u64)> {
        let buffer = std::mem::take(&mut self.chunk_buffer);
        let mut stream = ChunkStream::with_buffer(&self.chunker, reader, buffer);
        let mut hasher = blake3::Hasher::new();
        let mut content = Vec::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next_chunk().map_err(|e| Error::io("read", e))? {
            hasher.update(chunk);
            // The file's first chunk is all it has hashed so far: where ids derive from the
            // plain BLAKE3, that hash gives the chunk's id without a second pass (for a file of
            // one chunk, the only one).
            let derived = match size {
                0 => self
                    .saver
                    .keys()
                    .blob_id_of_digest(hasher.finalize().as_bytes()),
                _ => None,
            };
            size += chunk.len() as u64;
            self.progress.bytes(chunk.len() as u64);
            content.push(match derived {
                Some(id) => self.saver.save_as(BlobType::Data, BlobId(id), chunk)?,
                None => self.saver.save(BlobType::Data, chunk)?,
            });
        }
        self.chunk_buffer = stream.into_buffer();
        self.summary.bytes_read += size;
        Ok((content, ObjectId(*hasher.finalize().as_bytes()), size))
    }

    /// [`Self::store_stream`] for a large file, on three threads, so chunking and both
    /// hashes run on every core: a reading thread reads and chunks, a hashing thread hashes
    /// the file, and this one hashes each chunk and saves it. Chunks are shared slices of
    /// the reading thread's windows ([`OwnedChunks`]): none is copied on its way to sealing.
    fn store_file_split(&mut self, file: &File) -> Result<(Vec<BlobId>, ObjectId, u64)> {
        let (chunker, saver, progress) = (&self.chunker, &mut self.saver, self.progress);
        let (to_saver, chunks) = std::sync::mpsc::sync_channel::<Bytes>(SPLIT_READ_QUEUE);
        let (to_hasher, hashed) = std::sync::mpsc::sync_channel::<Bytes>(SPLIT_HASH_QUEUE);
        let thread = |name: &str| std::thread::Builder::new().name(name.into());
        let stopped = |what| {
            Error::new(
                ErrorKind::Io,
                format!("a {what} thread stopped unexpectedly"),
            )
        };
        let (read, hash, saved) = std::thread::scope(|scope| {
            let reading = thread("coffer-read")
                .spawn_scoped(scope, move || {
                    let mut stream = OwnedChunks::new(chunker, file);
                    while let Some(chunk) = stream.next_chunk()? {
                        if to_hasher.send(chunk.clone()).is_err() || to_saver.send(chunk).is_err() {
                            break; // The saver stopped on an error, which it returns.
                        }
                    }
                    Ok::<_, std::io::Error>(())
                })
                .map_err(|e| Error::io("starting a reading thread", e))?;
            let hashing = thread("coffer-hash")
                .spawn_scoped(scope, move || {
                    let mut hasher = blake3::Hasher::new();
                    hashed.iter().for_each(|chunk| {
                        hasher.update(&chunk);
                    });
                    hasher.finalize()
                })
                .map_err(|e| Error::io("starting a hashing thread", e))?;
            let mut content = Vec::new();
            let mut size = 0u64;
            let saved = chunks.iter().try_for_each(|chunk| {
                size += chunk.len() as u64;
                progress.bytes(chunk.len() as u64);
                content.push(saver.save_shared(BlobType::Data, chunk)?);
                Ok::<_, Error>(())
            });
            drop(chunks);
            let read = reading.join().map_err(|_| stopped("reading"))?;
            let hash = hashing.join().map_err(|_| stopped("hashing"))?;
            Ok::<_, Error>((read, hash, saved.map(|()| (content, size))))
        })?;
        let (content, size) = saved?;
        read.map_err(|e| Error::io("read", e))?;
        self.summary.bytes_read += size;
        Ok((content, ObjectId(*hash.as_bytes()), size))
    }

    fn stdin_tree(&mut self, source: StdinSource) -> Result<BlobId> {
        let now = crate::clock::now_ns();
        let t = Timestamp {
            sec: now.div_euclid(1_000_000_000),
            nsec: now.rem_euclid(1_000_000_000) as u32,
        };
        let (content, hash, size) = self.store_stream(source.reader)?;
        self.summary.files_new += 1;
        self.summary.bytes_total += size;
        let node = Node {
            name: source.name.as_bytes().to_vec(),
            kind: NodeKind::File,
            mode: 0o644,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            user: None,
            group: None,
            mtime: t,
            ctime: t,
            inode: 0,
            device: 0,
            links: 1,
            size,
            content,
            blake3: Some(hash),
            subtree: None,
            target: None,
            rdev: 0,
            xattrs: Vec::new(),
        };
        self.save_tree(vec![node])
    }
}
