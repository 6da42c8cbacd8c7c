//! Restore: recreate a snapshot's tree on disk, verifying everything on the way.
//!
//! Every chunk is authenticated when it is opened (the AEAD binds it to its id), and every file
//! is checked against its whole-file BLAKE3 once written (or, for `restore --verify`, read
//! back: a large file while it is written, by a thread that follows the writes). That check
//! covers every chunk's content, so chunks' keyed ids are not computed again (a second BLAKE3
//! pass over all data). Chunks of zeros are not written, so sparse files stay sparse.
//! Hardlinks are recreated from the recorded (device, inode) pairs. From a network store, a
//! small file with the content of an earlier one is copied from it once the others are
//! written (see `COPY_MAX`). Directory metadata is applied after the directory's content, so
//! its mtime survives. A file that fails verification is reported and the restore goes on
//! with the others: the caller gets every failure, never a silent partial result.
//!
//! The walk over the trees runs on the calling thread and creates every entry in order; file
//! content and metadata are written by two workers per core (four from a network store), which
//! take the files in batches of neighbours (one wake-up per batch, not per file) and fetch each
//! file's neighbouring chunks with one ranged read (for a large file, on two threads of their
//! own that open chunks while the worker puts them in order and writes them). Directory
//! metadata is applied once every file is written, deepest first, and the target file system is
//! synced once at the end instead of per file. (Syncing it every half second while restoring,
//! to start the disk's writes early, made the `mixed` restore 0.1 s slower: each sync's journal
//! commit holds up the creation of files.) The disk's writes start early another way: each
//! file but the smallest starts its own writeback once written, a large one as it goes (see
//! `start_writeback`). Restores from a directory, in interleaved pairs: `mixed` 2.84 to
//! 2.58 s, `image` 4.7 to 3.3 s, `incompressible` 2.0 to 1.3 s.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};
use crate::filter::PathFilter;
use crate::fsmeta;
use crate::id::{BlobId, ObjectId};
use crate::repo::Repository;
use crate::tree::{Node, NodeKind};

/// Where and what to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Directory to restore into (created if missing).
    pub target: PathBuf,
    /// Only restore paths matching these patterns (and what is inside them).
    pub include: Vec<String>,
    /// Skip paths matching these patterns.
    pub exclude: Vec<String>,
    /// Only restore these snapshot paths (`/a/b`), creating the directories above them.
    pub only: Option<HashSet<Vec<u8>>>,
    /// The caller reads every restored file back and compares its BLAKE3 with the snapshot
    /// (`restore --verify`), so files are not also hashed while they are written. Every
    /// chunk is still authenticated, and every file's size checked. A caller that sets this
    /// and does not read back gets no check of content beyond the AEAD's.
    pub read_back: bool,
}

/// A file or directory that could not be restored intact.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RestoreFailure {
    /// Its path in the snapshot.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// What a restore did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RestoreOutcome {
    /// Files written (hardlinks included).
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks, FIFOs and devices created.
    pub others: u64,
    /// Bytes of file content written and verified.
    pub bytes: u64,
    /// Entries that could not be restored intact: integrity failures.
    pub errors: Vec<RestoreFailure>,
    /// Metadata that could not be applied, entries that could not be created.
    pub warnings: Vec<String>,
    /// With [`RestoreOptions::read_back`]: the large files (by snapshot path) that were read
    /// back from the file system while they were written, and the BLAKE3 read. The caller's
    /// read-back takes these instead of reading the files again (see [`crate::verify`]).
    #[serde(skip)]
    pub read_back: HashMap<Vec<u8>, ObjectId>,
}

/// Restores the tree `root` into `opts.target`.
pub fn restore(repo: &Repository, root: &BlobId, opts: &RestoreOptions) -> Result<RestoreOutcome> {
    restore_then(repo, root, opts, |_| Ok(())).map(|(out, ())| out)
}

/// Restores like [`restore`], then runs `then` (a read-back) on the outcome while the final
/// sync of the target's file system runs beside it: the disk writes what is left while the
/// files are read back from memory. Returns once both are done, so a success still means
/// the restored copy is on disk.
pub fn restore_then<T>(
    repo: &Repository,
    root: &BlobId,
    opts: &RestoreOptions,
    then: impl FnOnce(&RestoreOutcome) -> Result<T>,
) -> Result<(RestoreOutcome, T)> {
    std::fs::create_dir_all(&opts.target)
        .map_err(|e| Error::io(format!("creating target {}", opts.target.display()), e))?;
    let tree = repo.load_tree(root)?;
    let as_root = nix::unistd::geteuid().is_root();
    let writer = FileWriter {
        repo,
        as_root,
        hash_files: !opts.read_back,
    };
    // Two workers per core: while one waits for a read or the disk, the other decrypts. From
    // a network store, four: a worker waits a round trip for each window, and with two per
    // core the `mixed` restore from Garage on loopback took 6.3-6.7 s instead of 5.6.
    let per_core = if repo.store().is_remote() { 4 } else { 2 };
    let threads = per_core * std::thread::available_parallelism().map_or(1, |n| n.get());
    let written = Mutex::new(Written::default());
    let (jobs, queue) = sync_channel(threads);
    let queue = Mutex::new(queue);
    let mut r = Restorer {
        repo,
        only: opts.only.as_ref(),
        include: PathFilter::new(&opts.include)?,
        exclude: PathFilter::new(&opts.exclude)?,
        as_root,
        hardlinks: HashMap::new(),
        links: Vec::new(),
        copy_duplicates: repo.store().is_remote(),
        copy_sources: HashMap::new(),
        copies: Vec::new(),
        dir_metadata: Vec::new(),
        jobs: Some(jobs),
        batch: Vec::new(),
        written: &written,
        out: RestoreOutcome::default(),
    };
    let walked = std::thread::scope(|scope| {
        let workers: Result<Vec<_>> = (0..threads)
            .map(|i| {
                std::thread::Builder::new()
                    .name(format!("coffer-restore-{i}"))
                    .spawn_scoped(scope, || writer.write_files(&queue, &written))
                    .map_err(|e| Error::io("starting a restore thread", e))
            })
            .collect();
        let walked = match &workers {
            Ok(_) => r
                .dir(&tree.nodes, b"", &opts.target, !r.filtering())
                .and_then(|any| r.send_batch().map(|()| any)),
            Err(_) => Ok(false),
        };
        // Closing the queue lets the workers finish (also when one could not be started).
        r.jobs = None;
        let workers = workers?;
        let joined = workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| worker_died()));
        joined.and(walked)
    });
    let mut state = std::mem::take(&mut *written.lock().map_err(|_| worker_died())?);
    if let Some(e) = state.fatal.take() {
        return Err(e);
    }
    walked?;
    r.copy_files(&writer, &mut state);
    if let Some(e) = state.fatal.take() {
        return Err(e);
    }
    r.finish(state)?;
    let target = &opts.target;
    std::thread::scope(|scope| {
        let syncing = scope.spawn(|| sync_file_system(target));
        let after = then(&r.out);
        let synced = syncing.join().map_err(|_| worker_died())?;
        synced.and(after)
    })
    .map(|after| (r.out, after))
}

/// What the file workers did, merged into the outcome when they are done.
#[derive(Default)]
struct Written {
    out: RestoreOutcome,
    /// (device, inode) of multiply-linked files whose content failed.
    failed_links: HashSet<(u64, u64)>,
    /// A local write error: the restore stops.
    fatal: Option<Error>,
}

impl Written {
    fn merge(&mut self, other: Written) {
        self.out.files += other.out.files;
        self.out.bytes += other.out.bytes;
        self.out.errors.extend(other.out.errors);
        self.out.warnings.extend(other.out.warnings);
        self.out.read_back.extend(other.out.read_back);
        self.failed_links.extend(other.failed_links);
        if self.fatal.is_none() {
            self.fatal = other.fatal;
        }
    }
}

/// Files handed to a worker at once: up to this many...
const BATCH_FILES: usize = 16;
/// ...or until their content reaches this many bytes.
const BATCH_BYTES: u64 = 1 << 20;

/// A file created by the walk, for a worker to fill.
struct FileJob {
    node: Node,
    snap_path: Vec<u8>,
    path: PathBuf,
    file: File,
}

fn worker_died() -> Error {
    Error::new(ErrorKind::Io, "a restore thread stopped unexpectedly")
}

/// What the workers need to fill files.
struct FileWriter<'r> {
    repo: &'r Repository,
    as_root: bool,
    /// Whether to compare each file's BLAKE3 while writing it (see
    /// [`RestoreOptions::read_back`]).
    hash_files: bool,
}

impl FileWriter<'_> {
    /// Takes batches of files off `queue` until it closes: writes, verifies and applies
    /// metadata.
    fn write_files(&self, queue: &Mutex<Receiver<Vec<FileJob>>>, written: &Mutex<Written>) {
        loop {
            let batch = match queue.lock() {
                Ok(q) => q.recv(),
                Err(_) => return,
            };
            let Ok(batch) = batch else { return };
            let skip = written.lock().map_or(true, |w| w.fatal.is_some());
            if skip {
                continue;
            }
            let mut done = Written::default();
            for job in batch {
                self.write_file(job, None, &mut done);
                if done.fatal.is_some() {
                    break;
                }
            }
            let Ok(mut w) = written.lock() else { return };
            w.merge(done);
        }
    }

    /// Writes one file's content and metadata, recording the outcome in `done`. The content
    /// is copied from `copy_of` if that file holds it, else read from the repository.
    fn write_file(&self, job: FileJob, copy_of: Option<&Path>, done: &mut Written) {
        let file = job.file;
        let copied = copy_of.map_or(Ok(false), |from| {
            copy_content(from, &job.node, &job.path, &file)
        });
        let content = match copied {
            Ok(true) => Ok(None),
            Ok(false) => self.write_content(&job.node, &file, &job.path),
            Err(e) => Err(e),
        };
        match content {
            Ok(read_back) => {
                if let Some(hash) = read_back {
                    done.out.read_back.insert(job.snap_path, hash);
                }
                let warnings =
                    fsmeta::apply_file_metadata(&file, &job.path, &job.node, self.as_root);
                done.out.files += 1;
                done.out.bytes += job.node.size;
                done.out.warnings.extend(warnings);
            }
            // Damaged or missing repository data spoils this file only; the others go on.
            // A local write failure (full disk, permissions) stops the restore instead of
            // producing one error per remaining file.
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
                if job.node.links > 1 {
                    done.failed_links.insert((job.node.device, job.node.inode));
                }
                done.out.errors.push(failure(&job.snap_path, &e));
            }
            Err(e) => done.fatal = Some(e),
        }
    }

    /// Writes a node's content into `file`, verifying every chunk, and the whole file unless
    /// it is read back later. The file is new and empty: only a hole at its end needs `set_len`.
    /// Returns the BLAKE3 read back from a large file while it was written, if it was.
    fn write_content(&self, node: &Node, file: &File, path: &Path) -> Result<Option<ObjectId>> {
        let (mut written, mut flushed) = (0u64, 0u64);
        let mut ends_in_hole = false;
        let io = |e| local_write_error(path, e);
        // Written at explicit offsets, leaving zeros as holes.
        let write = |chunk: Chunk| {
            let len = match &chunk {
                Chunk::Data(bytes) => {
                    file.write_all_at(bytes, written).map_err(io)?;
                    bytes.len()
                }
                Chunk::Zeros(len) => *len,
            };
            ends_in_hole = matches!(chunk, Chunk::Zeros(_));
            written += len as u64;
            // A step behind the writes, so that a read-back following them still finds
            // their pages cached.
            if written - flushed >= 2 * WRITEBACK_STEP {
                start_writeback(file, flushed, WRITEBACK_STEP);
                flushed += WRITEBACK_STEP;
            }
            Ok(())
        };
        let mut read_back = None;
        let hash = if node.size >= SPLIT_WRITE_MIN && self.hash_files {
            read_beside(self.repo, &node.content, WholeFile::Hash, write)?
        } else if node.size >= SPLIT_WRITE_MIN {
            let whole = WholeFile::ReadBack(file);
            read_back = read_beside(self.repo, &node.content, whole, write)?;
            None
        } else {
            let mut hasher = self.hash_files.then(blake3::Hasher::new);
            let mut write = write;
            self.repo.read_file_chunks(&node.content, |plain| {
                if let Some(h) = &mut hasher {
                    h.update(&plain);
                }
                write(Chunk::new(plain))
            })?;
            hasher.map(|h| ObjectId(*h.finalize().as_bytes()))
        };
        if ends_in_hole {
            file.set_len(written).map_err(io)?;
        }
        if node.size >= WRITEBACK_MIN {
            start_writeback(file, flushed, 0);
        }
        if written != node.size || hash.is_some_and(|h| Some(h) != node.blake3) {
            return Err(Error::corrupt(format!(
                "restored content does not match the snapshot (size {written} vs {}, BLAKE3 {} vs {})",
                node.size,
                hash.map(|h| h.short()).unwrap_or_default(),
                node.blake3.map(|h| h.short()).unwrap_or_default()
            )));
        }
        Ok(read_back)
    }
}

fn failure(snap_path: &[u8], e: &Error) -> RestoreFailure {
    RestoreFailure {
        path: String::from_utf8_lossy(snap_path).into_owned(),
        message: e.to_string(),
    }
}

/// Files at least this large are restored by three threads: two open the chunks (decrypt,
/// decompress, check the id), one chunk at a time and taking turns, while the third puts them
/// back in order, hashes the file if asked, and writes it.
const SPLIT_WRITE_MIN: u64 = 16 << 20;
/// Threads opening a large file's chunks.
const OPENERS: usize = 2;

/// A chunk of a file, opened and authenticated.
enum Chunk {
    Data(Bytes),
    /// This many zero bytes: a hole, left unwritten.
    Zeros(usize),
}

impl Chunk {
    fn new(plain: Bytes) -> Chunk {
        if is_zero(&plain) {
            Chunk::Zeros(plain.len())
        } else {
            Chunk::Data(plain)
        }
    }
}

fn is_zero(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(64);
    blocks.all(|b| b == [0u8; 64]) && blocks.remainder().iter().all(|&b| b == 0)
}

/// How the whole BLAKE3 of a large file is taken.
enum WholeFile<'f> {
    /// From its chunks, in order, as they are written.
    Hash,
    /// Read back from this file (the one written) by a thread that follows the writes, for
    /// the read-back ([`RestoreOptions::read_back`]); `None` if that read failed, which the
    /// read-back will then meet again and report.
    ReadBack(&'f File),
}

/// Opens the chunks `ids` of a large file on [`OPENERS`] threads and hands them to `write`
/// on this one, in order: opening (the costly part) runs on every core. Returns the file's
/// BLAKE3 as `whole` says. A chunk an opener found to be all zeros is not read again when the
/// file repeats it (disk images repeat one such chunk over every empty region).
fn read_beside(
    repo: &Repository,
    ids: &[BlobId],
    whole: WholeFile,
    mut write: impl FnMut(Chunk) -> Result<()>,
) -> Result<Option<ObjectId>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    let (next, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
    let (to_writer, opened) = sync_channel::<(usize, Chunk)>(1);
    let open = |to_writer: SyncSender<(usize, Chunk)>| {
        let mut zero_ids = HashMap::new();
        while !failed.load(Relaxed) {
            let k = next.fetch_add(1, Relaxed);
            let Some(id) = ids.get(k) else { break };
            let chunk = open_chunk(repo, id, &mut zero_ids).inspect_err(|_| {
                failed.store(true, Relaxed);
            })?;
            if to_writer.send((k, chunk)).is_err() {
                break; // The writer stopped on an error, which it returns.
            }
        }
        Ok::<_, Error>(())
    };
    let spawn = |name: &str| std::thread::Builder::new().name(name.into());
    let spawn_failed = |e| Error::io("starting a restore thread", e);
    std::thread::scope(|scope| {
        // Owned here, so that an early return (a thread that cannot be started) drops it
        // before the scope waits for the openers: their sends then fail instead of blocking.
        let opened = opened;
        let openers = (0..OPENERS)
            .map(|_| {
                let to_writer = to_writer.clone();
                spawn("coffer-open")
                    .spawn_scoped(scope, move || open(to_writer))
                    .map_err(spawn_failed)
            })
            .collect::<Result<Vec<_>>>()?;
        drop(to_writer);
        // The follower learns of every chunk written: where it ends, and whether it is a hole.
        let (written_to, follow) = std::sync::mpsc::channel::<(u64, bool)>();
        let follower = match whole {
            WholeFile::ReadBack(file) => Some(
                spawn("coffer-readback")
                    .spawn_scoped(scope, move || {
                        let mut follower = crate::verify::Follower::new(file);
                        for (end, hole) in follow {
                            if hole {
                                follower.hole_to(end);
                            } else {
                                follower.read_to(end)?;
                            }
                        }
                        Ok::<_, std::io::Error>(follower.finish())
                    })
                    .map_err(spawn_failed)?,
            ),
            WholeFile::Hash => None,
        };
        let mut hasher = matches!(whole, WholeFile::Hash).then(blake3::Hasher::new);
        let mut waiting = HashMap::new();
        let (mut due, mut end) = (0, 0u64);
        let wrote = opened.iter().try_for_each(|(k, chunk)| {
            waiting.insert(k, chunk);
            while let Some(chunk) = waiting.remove(&due) {
                let (len, hole) = match &chunk {
                    Chunk::Data(bytes) => {
                        if let Some(h) = &mut hasher {
                            h.update(bytes);
                        }
                        (bytes.len() as u64, false)
                    }
                    Chunk::Zeros(len) => {
                        if let Some(h) = &mut hasher {
                            crate::verify::hash_zeros(h, *len as u64);
                        }
                        (*len as u64, true)
                    }
                };
                write(chunk)?;
                end += len;
                // The follower stops only on a read error: the read-back then reads again.
                let _ = written_to.send((end, hole));
                due += 1;
            }
            Ok(())
        });
        drop(opened);
        drop(written_to);
        let mut read = Ok(());
        for opener in openers {
            read = read.and(opener.join().map_err(|_| worker_died())?);
        }
        let read_back = match follower {
            Some(f) => f.join().map_err(|_| worker_died())?.ok(),
            None => None,
        };
        // A write error stops the openers too: report the write error, not theirs.
        wrote.and(read)?;
        if due != ids.len() {
            return Err(worker_died());
        }
        let hash = hasher.map(|h| ObjectId(*h.finalize().as_bytes()));
        Ok(hash.or(read_back))
    })
}

/// Opens chunk `id`; a chunk of zeros already met (`zero_ids`) is not read again.
fn open_chunk(
    repo: &Repository,
    id: &BlobId,
    zero_ids: &mut HashMap<BlobId, usize>,
) -> Result<Chunk> {
    if let Some(&len) = zero_ids.get(id) {
        return Ok(Chunk::Zeros(len));
    }
    let mut opened = None;
    repo.read_file_chunks(std::slice::from_ref(id), |plain| {
        opened = Some(Chunk::new(plain));
        Ok(())
    })?;
    let chunk = opened.ok_or_else(worker_died)?;
    if let Chunk::Zeros(len) = chunk {
        zero_ids.insert(*id, len);
    }
    Ok(chunk)
}

/// Copies `source`, a file restored earlier with the same whole-file BLAKE3 as `node`, into
/// `file` (at `path`), if it holds exactly that content: `false` if it does not (its restore
/// failed, or it was changed since) or cannot be read. A file of zeros stays a hole.
fn copy_content(source: &Path, node: &Node, path: &Path, file: &File) -> Result<bool> {
    let Ok(bytes) = std::fs::read(source) else {
        return Ok(false);
    };
    let hash = ObjectId(*blake3::hash(&bytes).as_bytes());
    if bytes.len() as u64 != node.size || Some(hash) != node.blake3 {
        return Ok(false);
    }
    if is_zero(&bytes) {
        file.set_len(node.size)
    } else {
        file.write_all_at(&bytes, 0)
    }
    .map_err(|e| local_write_error(path, e))?;
    Ok(true)
}

/// Files at least this large start their writeback once written; smaller ones are left to
/// the final sync, which writes them together. (Starting it for every file made the restore
/// of 100,000 files of 1-10 KiB 2.9 s to 3.8 s, 3 interleaved pairs.)
const WRITEBACK_MIN: u64 = 64 << 10;
/// A large file starts the writeback of each such step of its content while it is written.
const WRITEBACK_STEP: u64 = 32 << 20;

/// Starts the writeback of `len` bytes of `file` from `offset` (0: to its end) without waiting
/// for it: `POSIX_FADV_DONTNEED` writes the range's dirty pages out (and drops only pages
/// already clean). Otherwise the kernel starts writing only once a tenth or so of the memory is
/// dirty, which a restore of a few GB never reaches: the disk then sat idle while the restore
/// ran, and the final sync wrote everything. A failure is left to that sync to report.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    let (offset, len) = (offset as i64, len as i64);
    let _ = posix_fadvise(file, offset, len, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
}

/// Flushes everything written to the target's file system, so that a finished restore is on
/// disk (one `syncfs` costs far less than an `fsync` per file).
fn sync_file_system(target: &Path) -> Result<()> {
    let dir = File::open(target).map_err(|e| local_write_error(target, e))?;
    nix::unistd::syncfs(&dir).map_err(|e| local_write_error(target, e.into()))
}

/// From a network store, files up to this size whose content an earlier file of the restore
/// has are copied from it, not read from the repository again: each such duplicate cost a
/// request (and the server a read of a whole block of its own) for a few KiB. (From a
/// directory, that read is a `pread`, and remembering the sources cost more than it saved.)
const COPY_MAX: u64 = 1 << 20;
/// Contents remembered as sources of copies: memory stays bounded in a restore of millions of
/// files (the duplicates of later contents are read from the repository).
const COPY_SOURCES: usize = 1 << 16;

/// A file whose content is copied from an earlier one: created in walk order, written last.
struct CopyJob {
    node: Node,
    snap_path: Vec<u8>,
    path: PathBuf,
    source: PathBuf,
}

struct Restorer<'r> {
    repo: &'r Repository,
    only: Option<&'r HashSet<Vec<u8>>>,
    include: PathFilter,
    exclude: PathFilter,
    as_root: bool,
    /// First path restored for each multiply-linked (device, inode).
    hardlinks: HashMap<(u64, u64), PathBuf>,
    /// Links made to an earlier path: (device, inode) and snapshot path.
    links: Vec<((u64, u64), Vec<u8>)>,
    /// Directories whose metadata waits until every file is written, deepest first.
    dir_metadata: Vec<(PathBuf, Node)>,
    /// Whether small files whose content an earlier one has are copied (from a network store).
    copy_duplicates: bool,
    /// The first path restored with each content (whole-file BLAKE3) of a small file, for
    /// up to [`COPY_SOURCES`] contents.
    copy_sources: HashMap<ObjectId, PathBuf>,
    /// Files created whose content an earlier one has, to copy once every file is written.
    copies: Vec<CopyJob>,
    jobs: Option<SyncSender<Vec<FileJob>>>,
    /// Files created but not yet sent to the workers.
    batch: Vec<FileJob>,
    written: &'r Mutex<Written>,
    out: RestoreOutcome,
}

impl Restorer<'_> {
    /// Whether only part of the snapshot is restored.
    fn filtering(&self) -> bool {
        !self.include.is_empty() || self.only.is_some()
    }

    /// Restores `nodes` into the existing directory `dir`. `selected` says whether an
    /// ancestor matched the include patterns. Returns whether anything was restored.
    fn dir(&mut self, nodes: &[Node], snap_dir: &[u8], dir: &Path, selected: bool) -> Result<bool> {
        let mut any = false;
        for node in nodes {
            let mut snap_path = snap_dir.to_vec();
            snap_path.push(b'/');
            snap_path.extend_from_slice(&node.name);
            if self.exclude.matches(&snap_path, &node.name) {
                continue;
            }
            let chosen = selected
                || self.include.matches(&snap_path, &node.name)
                || self.only.is_some_and(|only| only.contains(&snap_path));
            let path = dir.join(OsStr::from_bytes(&node.name));
            if node.kind == NodeKind::Dir {
                any |= self.subdir(node, &snap_path, &path, chosen)?;
            } else if chosen {
                self.entry(node, &snap_path, &path)?;
                any = true;
            }
        }
        Ok(any)
    }

    fn subdir(&mut self, node: &Node, snap_path: &[u8], path: &Path, chosen: bool) -> Result<bool> {
        let id = node
            .subtree
            .ok_or_else(|| Error::corrupt("directory without subtree"))?;
        let tree = match self.repo.load_tree(&id) {
            Ok(t) => t,
            Err(e) => {
                self.fail(snap_path, &e);
                return Ok(false);
            }
        };
        if chosen || self.filtering() {
            make_dir(path)?;
        }
        let any = self.dir(&tree.nodes, snap_path, path, chosen)?;
        if chosen || any {
            self.out.dirs += 1;
            self.dir_metadata.push((path.to_path_buf(), node.clone()));
        } else {
            // Created only in case something inside was included; nothing was.
            let _ = std::fs::remove_dir(path);
        }
        Ok(chosen || any)
    }

    fn fail(&mut self, snap_path: &[u8], e: &Error) {
        self.out.errors.push(failure(snap_path, e));
    }

    /// Merges what the workers did, reports links to files that failed, and applies the
    /// directories' metadata now that their content is complete.
    fn finish(&mut self, written: Written) -> Result<()> {
        for (key, snap_path) in &self.links {
            if written.failed_links.contains(key) {
                self.out.files -= 1;
                let e = Error::corrupt("hard link to a file whose content could not be restored");
                self.out.errors.push(failure(snap_path, &e));
            }
        }
        let w = written.out;
        self.out.files += w.files;
        self.out.bytes += w.bytes;
        self.out.errors.extend(w.errors);
        self.out.warnings.extend(w.warnings);
        self.out.read_back = w.read_back;
        for (path, node) in std::mem::take(&mut self.dir_metadata) {
            self.warn_all(fsmeta::apply_metadata(&path, &node, self.as_root));
        }
        Ok(())
    }

    fn warn_all(&mut self, warnings: Vec<String>) {
        self.out.warnings.extend(warnings);
    }

    fn entry(&mut self, node: &Node, snap_path: &[u8], path: &Path) -> Result<()> {
        if node.kind == NodeKind::File {
            return self.file(node, snap_path, path);
        }
        remove_existing(path)?;
        match node.kind {
            NodeKind::Symlink => {
                let target = node
                    .target
                    .as_deref()
                    .ok_or_else(|| Error::corrupt("symlink without target"))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(target), path)
                    .map_err(|e| Error::io(format!("creating symlink {}", path.display()), e))?;
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                if let Err(e) = fsmeta::make_special(path, node) {
                    self.out.warnings.push(e.to_string());
                    return Ok(());
                }
            }
            NodeKind::Socket => {
                self.out.warnings.push(format!(
                    "{}: sockets are recorded but not recreated",
                    path.display()
                ));
                return Ok(());
            }
            NodeKind::File | NodeKind::Dir => {
                return Err(Error::invalid("file or directory passed as entry"));
            }
        }
        self.out.others += 1;
        self.warn_all(fsmeta::apply_metadata(path, node, self.as_root));
        Ok(())
    }

    /// Creates the file (so that entries appear in walk order) and queues its content.
    fn file(&mut self, node: &Node, snap_path: &[u8], path: &Path) -> Result<()> {
        let key = (node.device, node.inode);
        if node.links > 1
            && let Some(first) = self.hardlinks.get(&key)
        {
            remove_existing(path)?;
            std::fs::hard_link(first, path)
                .map_err(|e| Error::io(format!("linking {}", path.display()), e))?;
            self.out.files += 1;
            self.links.push((key, snap_path.to_vec()));
            return Ok(());
        }
        let file = create_file(path)?;
        if node.links > 1 {
            self.hardlinks.insert(key, path.to_path_buf());
        } else if let Some(source) = self.copy_source(node, path) {
            // Not kept open until then: there may be more copies than descriptors.
            drop(file);
            self.copies.push(CopyJob {
                node: node.clone(),
                snap_path: snap_path.to_vec(),
                path: path.to_path_buf(),
                source,
            });
            return Ok(());
        }
        self.batch.push(FileJob {
            node: node.clone(),
            snap_path: snap_path.to_vec(),
            path: path.to_path_buf(),
            file,
        });
        let bytes: u64 = self.batch.iter().map(|job| job.node.size).sum();
        if self.batch.len() == BATCH_FILES || bytes >= BATCH_BYTES {
            self.send_batch()?;
        }
        Ok(())
    }

    /// The file restored earlier with the content of `node`, a small file, if there is one;
    /// otherwise `path` becomes the source of later copies.
    fn copy_source(&mut self, node: &Node, path: &Path) -> Option<PathBuf> {
        let small = (1..=COPY_MAX).contains(&node.size);
        let hash = node.blake3.filter(|_| self.copy_duplicates && small)?;
        if let Some(source) = self.copy_sources.get(&hash) {
            return Some(source.clone());
        }
        if self.copy_sources.len() < COPY_SOURCES {
            self.copy_sources.insert(hash, path.to_path_buf());
        }
        None
    }

    /// Writes the files whose content an earlier file has, once every other file is written:
    /// copied from it, or read from the repository if it does not hold that content.
    fn copy_files(&mut self, writer: &FileWriter, written: &mut Written) {
        for copy in std::mem::take(&mut self.copies) {
            let opened = File::options().read(true).write(true).open(&copy.path);
            let file = match opened {
                Ok(file) => file,
                Err(e) => {
                    written.fatal = Some(local_write_error(&copy.path, e));
                    return;
                }
            };
            let job = FileJob {
                node: copy.node,
                snap_path: copy.snap_path,
                path: copy.path,
                file,
            };
            writer.write_file(job, Some(&copy.source), written);
            if written.fatal.is_some() {
                return;
            }
        }
    }

    /// Hands the files created so far to the workers.
    fn send_batch(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(batch).is_ok());
        let stopped = self.written.lock().map_or(true, |w| w.fatal.is_some());
        if !sent || stopped {
            // The workers hit a local write error; it is returned once they have stopped.
            return Err(Error::new(ErrorKind::Io, "restore stopped"));
        }
        Ok(())
    }
}

/// A failure to write the restored copy; never confused with missing repository data.
fn local_write_error(path: &Path, e: std::io::Error) -> Error {
    let hint = if e.raw_os_error() == Some(libc::ENOSPC) {
        " (the target file system is full)"
    } else {
        ""
    };
    Error::new(
        ErrorKind::Io,
        format!("writing {}: {e}{hint}", path.display()),
    )
}

/// Creates a new, empty file at `path`, replacing whatever is there. Into an empty target
/// this costs one `open`; only an existing entry is looked at.
fn create_file(path: &Path) -> Result<File> {
    // Readable too: a large file is read back through this descriptor while it is written.
    let create = || {
        let mut options = File::options();
        options.read(true).write(true).create_new(true).open(path)
    };
    match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            remove_existing(path)?;
            create()
        }
        result => result,
    }
    .map_err(|e| local_write_error(path, e))
}

fn make_dir(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => remove_existing(path)?,
        Err(_) => {}
    }
    std::fs::create_dir(path)
        .map_err(|e| Error::io(format!("creating directory {}", path.display()), e))
}

/// Removes a non-directory at `path` so it can be replaced (and hardlinks to it are broken).
fn remove_existing(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => return Ok(()),
    }
    .map_err(|e| Error::io(format!("replacing {}", path.display()), e))
}
