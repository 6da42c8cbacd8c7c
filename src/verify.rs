//! Verification of a restored copy against its snapshot, reading back from disk.
//!
//! Used by `restore --verify` and by restore drills. Independently of the checks made while
//! restoring, it re-reads every restored file and compares it with the snapshot: type, size,
//! whole-file BLAKE3, permission bits, mtime, symlink target, device numbers, extended
//! attributes, owner (when running as root) and hardlink structure. Every difference becomes a
//! [`Failure`] naming the path, what was expected and what was found. A large file is read
//! back while the restore writes it, by a `Follower`, and is not read a second time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::Receiver;
use std::thread::ScopedJoinHandle;

use crate::error::Result;
use crate::fsmeta;
use crate::id::{BlobId, ObjectId};
use crate::repo::Repository;
use crate::stat::Stat;
use crate::tree::{Node, NodeKind, Timestamp};

/// One difference between the snapshot and the restored copy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// Path in the snapshot.
    pub path: String,
    /// Which property differs (`blake3`, `size`, `mode`, `restore`, ...).
    pub check: String,
    /// What the snapshot says.
    pub expected: String,
    /// What was found on disk.
    pub found: String,
}

/// Counts of what was verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verified {
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks, FIFOs and devices.
    pub others: u64,
    /// Bytes of file content hashed.
    pub bytes: u64,
}

/// Which entries to verify and what to skip.
pub struct Selection<'a> {
    /// Only these snapshot paths (all entries if `None`).
    pub only: Option<&'a HashSet<Vec<u8>>>,
    /// Paths already reported as failed by the restore itself.
    pub skip: &'a HashSet<String>,
    /// Files the restore already read back while writing them, with the BLAKE3 it read
    /// ([`crate::restore::RestoreOutcome::read_back`]): compared without reading them again.
    pub read_back: &'a HashMap<Vec<u8>, ObjectId>,
}

/// Compares the restored copy under `target` with the snapshot tree `root`.
pub fn verify_restored(
    repo: &Repository,
    root: &BlobId,
    target: &Path,
    sel: &Selection,
) -> Result<(Verified, Vec<Failure>)> {
    let as_root = nix::unistd::geteuid().is_root();
    let mut counts = Verified::default();
    let mut failures = Vec::new();
    let mut links: BTreeMap<(u64, u64), Vec<(String, PathBuf)>> = BTreeMap::new();
    let mut read_back_failures = Vec::new();
    // Files are hashed on one thread per core while the walk goes on, handed over in batches
    // (one wake-up per batch, not per file).
    let (to_hashers, contents) = std::sync::mpsc::sync_channel::<Vec<Content>>(64);
    let (mut batch, mut batch_bytes) = (Vec::new(), 0);
    let contents = Mutex::new(contents);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (walked, content_failures) = std::thread::scope(|scope| {
        let hashers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| compare_contents(&contents)))
            .collect();
        let walked = repo.walk(root, &mut |snap_path, node| {
            let shown = String::from_utf8_lossy(snap_path).into_owned();
            let wanted = sel.only.is_none_or(|o| o.contains(snap_path));
            if !wanted || sel.skip.contains(&shown) || node.kind == NodeKind::Socket {
                return Ok(());
            }
            let path = target.join(OsStr::from_bytes(&snap_path[1..]));
            let mut fail = |check: &str, expected: String, found: String| {
                failures.push(Failure {
                    path: shown.clone(),
                    check: check.into(),
                    expected,
                    found,
                });
            };
            let meta = match Stat::lstat(&path) {
                Ok(m) => m,
                Err(e) => {
                    fail("exists", "present".into(), format!("missing ({e})"));
                    return Ok(());
                }
            };
            if meta.kind() != node.kind {
                fail(
                    "type",
                    format!("{:?}", node.kind),
                    format!("{:?}", meta.kind()),
                );
                return Ok(());
            }
            compare_metadata(node, &meta, as_root, &mut fail);
            match node.kind {
                NodeKind::File => {
                    let expected = node.blake3.map(|h| h.to_hex()).unwrap_or_default();
                    if let Some(found) = sel.read_back.get(snap_path) {
                        if Some(*found) != node.blake3 {
                            let failure = content_failure(shown.clone(), expected, found.to_hex());
                            read_back_failures.push((counts.files, failure));
                        }
                    } else {
                        batch.push((counts.files, shown.clone(), path.clone(), expected));
                        batch_bytes += meta.size;
                    }
                    if batch.len() == BATCH_FILES || batch_bytes >= BATCH_BYTES {
                        batch_bytes = 0;
                        // Fails only if every hasher stopped, which the join below reports.
                        let _ = to_hashers.send(std::mem::take(&mut batch));
                    }
                    counts.files += 1;
                    counts.bytes += meta.size;
                    if node.links > 1 {
                        links
                            .entry((node.device, node.inode))
                            .or_default()
                            .push((shown.clone(), path.clone()));
                    }
                }
                NodeKind::Dir => counts.dirs += 1,
                _ => counts.others += 1,
            }
            if node.kind == NodeKind::Symlink {
                let found = std::fs::read_link(&path)
                    .map(|t| t.as_os_str().as_bytes().to_vec())
                    .unwrap_or_default();
                if Some(&found) != node.target.as_ref() {
                    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                    fail(
                        "symlink target",
                        show(node.target.as_deref().unwrap_or_default()),
                        show(&found),
                    );
                }
            } else {
                match fsmeta::read_xattrs(&path) {
                    Ok(x) if x == node.xattrs => {}
                    Ok(x) => fail(
                        "xattrs",
                        format!("{} attribute(s)", node.xattrs.len()),
                        format!("{} attribute(s)", x.len()),
                    ),
                    Err(e) => fail("xattrs", "readable".into(), e.to_string()),
                }
            }
            Ok(())
        });
        let _ = to_hashers.send(batch);
        drop(to_hashers);
        (walked, joined(hashers))
    });
    walked?;
    for members in links.values().filter(|m| m.len() > 1) {
        let inode = |p: &Path| {
            std::fs::symlink_metadata(p)
                .map(|m| (m.dev(), m.ino()))
                .ok()
        };
        let first = inode(&members[0].1);
        for (shown, path) in &members[1..] {
            if inode(path) != first {
                failures.push(Failure {
                    path: shown.clone(),
                    check: "hardlink".into(),
                    expected: format!("same file as {}", members[0].0),
                    found: "a separate file".into(),
                });
            }
        }
    }
    let mut content_failures = content_failures;
    content_failures.extend(read_back_failures);
    content_failures.sort_by_key(|(i, _)| *i);
    failures.extend(content_failures.into_iter().map(|(_, f)| f));
    Ok((counts, failures))
}

/// A file to hash: its place in walk order, shown path, path and expected BLAKE3.
type Content = (u64, String, PathBuf, String);

/// Files handed to a hasher at once: up to this many...
const BATCH_FILES: usize = 32;
/// ...or until their sizes reach this many bytes.
const BATCH_BYTES: u64 = 1 << 20;

/// Hashes the files taken off `queue` until it closes; returns a failure for each mismatch.
fn compare_contents(queue: &Mutex<Receiver<Vec<Content>>>) -> Vec<(u64, Failure)> {
    let mut failures = Vec::new();
    loop {
        // The lock is held only to receive, which cannot panic: a poisoned lock is still sound.
        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(batch) = next else {
            return failures;
        };
        for (i, shown, path, expected) in batch {
            let found = match hash_file(&path) {
                Ok(found) if found == expected => continue,
                Ok(found) => found,
                Err(e) => format!("unreadable: {e}"),
            };
            failures.push((i, content_failure(shown, expected, found)));
        }
    }
}

/// A file whose content differs from the snapshot's.
fn content_failure(path: String, expected: String, found: String) -> Failure {
    Failure {
        path,
        check: "blake3".into(),
        expected,
        found,
    }
}

/// The hashers' failures with their places in walk order, whichever thread found them.
fn joined(hashers: Vec<ScopedJoinHandle<'_, Vec<(u64, Failure)>>>) -> Vec<(u64, Failure)> {
    let mut all = Vec::new();
    for hasher in hashers {
        match hasher.join() {
            Ok(failures) => all.extend(failures),
            Err(_) => all.push((
                u64::MAX,
                Failure {
                    path: "(verification)".into(),
                    check: "blake3".into(),
                    expected: "every file hashed".into(),
                    found: "a hashing thread stopped; not every file was checked".into(),
                },
            )),
        }
    }
    all
}

fn compare_metadata(
    node: &Node,
    meta: &Stat,
    as_root: bool,
    fail: &mut dyn FnMut(&str, String, String),
) {
    if node.kind != NodeKind::Symlink && meta.mode & 0o7777 != node.mode {
        fail(
            "mode",
            format!("{:04o}", node.mode),
            format!("{:04o}", meta.mode & 0o7777),
        );
    }
    let show = |t: Timestamp| format!("{}.{:09}", t.sec, t.nsec);
    if meta.mtime != node.mtime {
        fail("mtime", show(node.mtime), show(meta.mtime));
    }
    if node.kind == NodeKind::File && meta.size != node.size {
        fail("size", node.size.to_string(), meta.size.to_string());
    }
    if matches!(node.kind, NodeKind::CharDevice | NodeKind::BlockDevice) && meta.rdev != node.rdev {
        fail("device", node.rdev.to_string(), meta.rdev.to_string());
    }
    if as_root && (meta.uid, meta.gid) != (node.uid, node.gid) {
        fail(
            "owner",
            format!("{}:{}", node.uid, node.gid),
            format!("{}:{}", meta.uid, meta.gid),
        );
    }
}

/// The plain BLAKE3 of a file, as `b3sum` prints it.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let hash = if file.metadata()?.len() >= READ_BESIDE_MIN {
        hash_read_beside(file)?
    } else {
        // blake3's own stack buffer: no allocation per file (verification reads many small ones).
        blake3::Hasher::new().update_reader(file)?.finalize()
    };
    Ok(hash.to_hex().to_string())
}

/// Files at least this large are read on a second thread while this one hashes them.
const READ_BESIDE_MIN: u64 = 16 << 20;
/// Bytes read at once by that thread.
const READ_BLOCK: usize = 1 << 20;

/// What the reading thread hands the hasher: bytes read, or a hole of this many zero bytes.
enum Block {
    Data(Vec<u8>),
    Zeros(u64),
}

/// Hashes `file` while a second thread reads ahead into a few recycled blocks: for a large
/// file, copying out of the page cache and hashing overlap on two cores. Holes of a sparse
/// file are found with `SEEK_DATA` and hashed as zeros without reading them (a read would
/// fill page-cache pages with zeros only to copy them).
fn hash_read_beside(file: std::fs::File) -> std::io::Result<blake3::Hash> {
    use std::os::unix::fs::FileExt;
    let size = file.metadata()?.len();
    let (to_hasher, blocks) = std::sync::mpsc::sync_channel::<Block>(2);
    let (to_reader, spare) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> std::io::Result<()> {
            // The hasher stops taking blocks only when it is done.
            let send = |block| to_hasher.send(block).is_ok();
            let mut at = 0;
            while at < size {
                let (data, hole) = next_data(&file, at, size)?;
                if data > at && !send(Block::Zeros(data - at)) {
                    return Ok(());
                }
                at = data;
                while at < hole {
                    let mut block = spare.try_recv().unwrap_or_default();
                    block.resize(READ_BLOCK.min((hole - at) as usize), 0);
                    let n = loop {
                        match file.read_at(&mut block, at) {
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            read => break read?,
                        }
                    };
                    block.truncate(n);
                    // Shorter than its size: the end is left to the size check.
                    if n == 0 || !send(Block::Data(block)) {
                        return Ok(());
                    }
                    at += n as u64;
                }
            }
            Ok(())
        });
        let mut hasher = blake3::Hasher::new();
        for block in blocks {
            match block {
                Block::Data(bytes) => {
                    hasher.update(&bytes);
                    let _ = to_reader.send(bytes);
                }
                Block::Zeros(len) => hash_zeros(&mut hasher, len),
            }
        }
        reader
            .join()
            .map_err(|_| std::io::Error::other("the reading thread stopped"))??;
        Ok(hasher.finalize())
    })
}

/// Reads a file back from the file system while it is being written, and hashes it: the
/// writer tells it each stretch it wrote, and it reads that stretch (with `pread`, which does
/// not wait for the writer's lock on the file). Stretches the writer left as holes are hashed
/// as zeros without reading them, as the read-back does with the holes it finds.
pub(crate) struct Follower<'f> {
    file: &'f std::fs::File,
    at: u64,
    hasher: blake3::Hasher,
    block: Vec<u8>,
}

impl<'f> Follower<'f> {
    /// Starts at the beginning of `file`.
    pub(crate) fn new(file: &'f std::fs::File) -> Self {
        Follower {
            file,
            at: 0,
            hasher: blake3::Hasher::new(),
            block: vec![0; READ_BLOCK],
        }
    }

    /// Reads and hashes the file up to `end`, which the writer wrote.
    pub(crate) fn read_to(&mut self, end: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        while self.at < end {
            let want = READ_BLOCK.min((end - self.at) as usize);
            let n = match self.file.read_at(&mut self.block[..want], self.at) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                read => read?,
            };
            if n == 0 {
                let message = format!("the file ends at {} of {end} bytes written", self.at);
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    message,
                ));
            }
            self.hasher.update(&self.block[..n]);
            self.at += n as u64;
        }
        Ok(())
    }

    /// Hashes zeros up to `end`: the writer left a hole there.
    pub(crate) fn hole_to(&mut self, end: u64) {
        hash_zeros(&mut self.hasher, end.saturating_sub(self.at));
        self.at = self.at.max(end);
    }

    /// The BLAKE3 of everything read.
    pub(crate) fn finish(self) -> ObjectId {
        ObjectId(*self.hasher.finalize().as_bytes())
    }
}

/// Adds `len` zero bytes to `hasher` (a hole of a sparse file).
pub(crate) fn hash_zeros(hasher: &mut blake3::Hasher, len: u64) {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut left = len;
    while left > 0 {
        let n = left.min(ZEROS.len() as u64);
        hasher.update(&ZEROS[..n as usize]);
        left -= n;
    }
}

/// The next stretch of data in `file` from `at` on: where it starts and where the hole after
/// it starts (`size` if none). Where the file system cannot tell, all of it is data.
fn next_data(file: &std::fs::File, at: u64, size: u64) -> std::io::Result<(u64, u64)> {
    use nix::unistd::{Whence, lseek};
    let seek = |from: u64, whence| lseek(file, from as i64, whence).map(|o| (o as u64).min(size));
    match seek(at, Whence::SeekData) {
        Ok(data) => Ok((
            data,
            seek(data, Whence::SeekHole).map_or(size, |h| h.max(data)),
        )),
        // Nothing but a hole from `at` to the end.
        Err(nix::errno::Errno::ENXIO) => Ok((size, size)),
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::EOPNOTSUPP) => Ok((at, size)),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_files_hash_the_same_on_two_threads() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = 1u64;
        let bytes: Vec<u8> = (0..READ_BESIDE_MIN + 3 * READ_BLOCK as u64 + 12_345)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (state >> 56) as u8
            })
            .collect();
        for len in [
            READ_BESIDE_MIN as usize - 1,
            READ_BESIDE_MIN as usize,
            bytes.len(),
        ] {
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &bytes[..len]).unwrap();
            assert_eq!(
                hash_file(&path).unwrap(),
                blake3::hash(&bytes[..len]).to_hex().to_string()
            );
        }
    }

    #[test]
    fn holes_of_sparse_files_hash_as_zeros() {
        use std::io::{Seek, SeekFrom, Write};
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let block = 1 << 20;
        let total = READ_BESIDE_MIN as usize + 8 * block;
        // Holes at the start, in the middle (two sizes) and at the end.
        let data = [
            (2 * block, block + 17),
            (4 * block + 4096, 3 * block),
            (READ_BESIDE_MIN as usize, 4096),
        ];
        let mut expected = vec![0u8; total];
        let path = dir.path().join("sparse");
        let mut file = std::fs::File::create(&path).unwrap();
        for (i, &(at, len)) in data.iter().enumerate() {
            let bytes: Vec<u8> = (0..len).map(|j| (i * 31 + j % 251) as u8 | 1).collect();
            expected[at..at + len].copy_from_slice(&bytes);
            file.seek(SeekFrom::Start(at as u64)).unwrap();
            file.write_all(&bytes).unwrap();
        }
        file.set_len(total as u64).unwrap();
        file.sync_all().unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(
            meta.blocks() * 512 < total as u64 / 2,
            "the file system made it dense"
        );
        assert_eq!(
            hash_file(&path).unwrap(),
            blake3::hash(&expected).to_hex().to_string()
        );
        // A file that is one hole.
        let empty = dir.path().join("hole");
        std::fs::File::create(&empty)
            .unwrap()
            .set_len(total as u64)
            .unwrap();
        assert_eq!(
            hash_file(&empty).unwrap(),
            blake3::hash(&vec![0u8; total]).to_hex().to_string()
        );
    }

    #[test]
    fn a_follower_reads_back_a_file_as_it_is_written() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let mut follower = Follower::new(&file);
        let mut expected = Vec::new();
        let mut state = 3u64;
        // Data, a hole, data in pieces of uneven length, then a hole past the end that the
        // writer only makes by extending the file after the follower hashed it.
        for (len, zeros) in [(READ_BLOCK + 5, false), (3 * READ_BLOCK, true), (77, false)]
            .into_iter()
            .chain([(2 * READ_BLOCK + 1, false), (READ_BLOCK, true)])
        {
            let at = expected.len() as u64;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    if zeros { 0 } else { (state >> 33) as u8 }
                })
                .collect();
            expected.extend_from_slice(&bytes);
            if zeros {
                follower.hole_to(expected.len() as u64);
            } else {
                file.write_all_at(&bytes, at).unwrap();
                follower.read_to(expected.len() as u64).unwrap();
            }
        }
        file.set_len(expected.len() as u64).unwrap();
        assert_eq!(follower.finish(), ObjectId::of(&expected));
        // What it hashes is what the file holds.
        expected[3] ^= 0xff;
        file.write_all_at(&expected[3..4], 3).unwrap();
        let mut follower = Follower::new(&file);
        follower.read_to(expected.len() as u64).unwrap();
        assert_eq!(follower.finish(), ObjectId::of(&expected));
        // A file shorter than the writer said fails the read instead of hashing what is not
        // there.
        let mut follower = Follower::new(&file);
        assert!(follower.read_to(expected.len() as u64 + 1).is_err());
    }
}
