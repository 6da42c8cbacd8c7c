//! Verification of a restored copy against its snapshot, reading back from disk.
//!
//! Used by `restore --verify` and by restore drills. Independently of the checks made while
//! restoring, it re-reads every restored file and compares it with the snapshot: type, size,
//! whole-file BLAKE3, permission bits, mtime, symlink target, device numbers, extended
//! attributes, owner (when running as root) and hardlink structure. Every difference becomes a
//! [`Failure`] naming the path, what was expected and what was found.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::fsmeta::{self, kind_of};
use crate::id::BlobId;
use crate::repo::Repository;
use crate::tree::{Node, NodeKind};

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
    // Content is hashed after the walk, on every core: (shown path, path, expected BLAKE3).
    let mut contents: Vec<(String, PathBuf, String)> = Vec::new();
    let mut links: BTreeMap<(u64, u64), Vec<(String, PathBuf)>> = BTreeMap::new();
    repo.walk(root, &mut |snap_path, node| {
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
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                fail("exists", "present".into(), format!("missing ({e})"));
                return Ok(());
            }
        };
        if kind_of(&meta) != node.kind {
            fail(
                "type",
                format!("{:?}", node.kind),
                format!("{:?}", kind_of(&meta)),
            );
            return Ok(());
        }
        compare_metadata(node, &meta, as_root, &mut fail);
        match node.kind {
            NodeKind::File => {
                counts.files += 1;
                counts.bytes += meta.size();
                let expected = node.blake3.map(|h| h.to_hex()).unwrap_or_default();
                contents.push((shown.clone(), path.clone(), expected));
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
    })?;
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
    failures.extend(compare_contents(&contents));
    Ok((counts, failures))
}

/// Hashes the files on one thread per core and returns a failure for every mismatch.
fn compare_contents(files: &[(String, PathBuf, String)]) -> Vec<Failure> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let check = || {
        let mut failures = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some((shown, path, expected)) = files.get(i) else {
                return failures;
            };
            let found = match hash_file(path) {
                Ok(found) if found == *expected => continue,
                Ok(found) => found,
                Err(e) => format!("unreadable: {e}"),
            };
            failures.push((
                i,
                Failure {
                    path: shown.clone(),
                    check: "blake3".into(),
                    expected: expected.clone(),
                    found,
                },
            ));
        }
    };
    let mut failures: Vec<(usize, Failure)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (1..threads).map(|_| scope.spawn(check)).collect();
        let mut all = check();
        for worker in workers {
            match worker.join() {
                Ok(failures) => all.extend(failures),
                Err(_) => all.push((
                    usize::MAX,
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
    });
    // In walk order, whichever thread found them.
    failures.sort_by_key(|(i, _)| *i);
    failures.into_iter().map(|(_, f)| f).collect()
}

fn compare_metadata(
    node: &Node,
    meta: &Metadata,
    as_root: bool,
    fail: &mut dyn FnMut(&str, String, String),
) {
    if node.kind != NodeKind::Symlink && meta.mode() & 0o7777 != node.mode {
        fail(
            "mode",
            format!("{:04o}", node.mode),
            format!("{:04o}", meta.mode() & 0o7777),
        );
    }
    let mtime = (meta.mtime(), meta.mtime_nsec() as u32);
    if mtime != (node.mtime.sec, node.mtime.nsec) {
        fail(
            "mtime",
            format!("{}.{:09}", node.mtime.sec, node.mtime.nsec),
            format!("{}.{:09}", mtime.0, mtime.1),
        );
    }
    if node.kind == NodeKind::File && meta.size() != node.size {
        fail("size", node.size.to_string(), meta.size().to_string());
    }
    if matches!(node.kind, NodeKind::CharDevice | NodeKind::BlockDevice) && meta.rdev() != node.rdev
    {
        fail("device", node.rdev.to_string(), meta.rdev().to_string());
    }
    if as_root && (meta.uid(), meta.gid()) != (node.uid, node.gid) {
        fail(
            "owner",
            format!("{}:{}", node.uid, node.gid),
            format!("{}:{}", meta.uid(), meta.gid()),
        );
    }
}

/// The plain BLAKE3 of a file, as `b3sum` prints it.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    // blake3's own stack buffer: no allocation per file (verification reads many small ones).
    let hash = blake3::Hasher::new().update_reader(file)?.finalize();
    Ok(hash.to_hex().to_string())
}
