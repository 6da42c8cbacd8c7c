//! Shared test helpers: a tree with every kind of file-system entry, and a comparison that
//! checks content and metadata of two trees.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use coffer::keyslot::KdfParams;

/// Argon2id parameters small enough for tests.
pub fn fast_kdf() -> KdfParams {
    KdfParams {
        memory_kib: 8 * 1024,
        iterations: 1,
        parallelism: 1,
    }
}

/// `coffer init` with a quick KDF and 1 MiB packs (several packs from a few MiB of data).
pub const QUICK_INIT: [&str; 7] = [
    "init",
    "--kdf-memory",
    "8",
    "--kdf-iterations",
    "1",
    "--pack-size",
    "1M",
];

/// Deterministic pseudo-random bytes.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.finalize_xof().fill(&mut out);
    out
}

/// Sets the modification (and access) time of `path` without following a symlink.
pub fn set_mtime(path: &Path, sec: i64, nsec: i64) {
    let t = nix::sys::time::TimeSpec::new(sec, nsec);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Builds, under `root`, a tree with every case the engine must round-trip. Returns the
/// marker strings written into file contents and names (for the leak test).
pub fn build_every_case(root: &Path) -> Vec<Vec<u8>> {
    fs::create_dir_all(root).unwrap();
    let w = |p: &str, data: &[u8]| fs::write(root.join(p), data).unwrap();
    w("regular.txt", b"PLAINTEXT-MARKER-regular file content\n");
    w("empty", b"");
    // Larger than several chunks with the small test chunker, partly compressible.
    let mut big = random_bytes(3 * 1024 * 1024, 1);
    big.extend(std::iter::repeat_n(b'z', 1024 * 1024));
    w("large.bin", &big);
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::create_dir_all(root.join("dir/sub")).unwrap();
    w("dir/sub/inner.txt", b"inner content\n");
    std::os::unix::fs::symlink("regular.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("absolute-link")).unwrap();
    w("hard-a", b"hardlinked content\n");
    fs::hard_link(root.join("hard-a"), root.join("dir/hard-b")).unwrap();
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    if is_root() {
        nix::sys::stat::mknod(
            &root.join("null-device"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        w("owned", b"owned by someone else\n");
        std::os::unix::fs::lchown(root.join("owned"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("link"), Some(4321), Some(8765)).unwrap();
    }
    w("setuid", b"#!/bin/sh\n");
    fs::set_permissions(root.join("setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    w("sticky-setgid", b"x");
    fs::set_permissions(
        root.join("sticky-setgid"),
        fs::Permissions::from_mode(0o3600),
    )
    .unwrap();
    w("old", b"before 1970");
    set_mtime(&root.join("old"), -1_000_000_000, 123_456_789);
    w("future", b"after 2038");
    set_mtime(&root.join("future"), 4_102_444_800, 987_654_321);
    w("xattrs", b"with extended attributes");
    xattr::set(
        root.join("xattrs"),
        "user.coffer",
        b"PLAINTEXT-MARKER-xattr",
    )
    .unwrap();
    xattr::set(root.join("xattrs"), "user.binary", &[0, 255, 10]).unwrap();
    // Sparse: 8 MiB hole, some data, another hole.
    let sparse = fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(20 * 1024 * 1024).unwrap();
    std::os::unix::fs::FileExt::write_at(&sparse, b"data in the middle", 9 * 1024 * 1024).unwrap();
    drop(sparse);
    let odd: [&[u8]; 3] = [b"not-utf8-\xff\xfe", b"new\nline", &[b'n'; 255]];
    for name in odd {
        fs::write(root.join(OsStr::from_bytes(name)), name).unwrap();
    }
    let mut deep = root.join("deep");
    for i in 0..64 {
        deep.push(format!("level{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom.txt"), b"64 levels down").unwrap();
    set_mtime(&root.join("dir"), 1_000_000_000, 5);
    vec![
        b"PLAINTEXT-MARKER".to_vec(),
        b"inner content".to_vec(),
        b"regular.txt".to_vec(),
        b"bottom.txt".to_vec(),
    ]
}

/// Everything about an entry that a faithful restore preserves.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    size: u64,
    content: Option<Vec<u8>>,
    link: Option<PathBuf>,
    rdev: u64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    hardlink_group: Option<PathBuf>,
}

/// Walks `root` into a map from relative path to [`Entry`]. Hardlinked files are grouped by
/// the first path (in sorted order) that shares their inode.
pub fn snapshot_of(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut paths = Vec::new();
    collect(root, root, &mut paths);
    paths.sort();
    for rel in paths {
        let p = root.join(&rel);
        let m = fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let is_dir = ft.is_dir();
        let content = ft.is_file().then(|| fs::read(&p).unwrap());
        let link = ft.is_symlink().then(|| fs::read_link(&p).unwrap());
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = if ft.is_symlink() {
            vec![]
        } else {
            xattr::list(&p)
                .unwrap()
                .map(|n| {
                    (
                        n.as_bytes().to_vec(),
                        xattr::get(&p, &n).unwrap().unwrap_or_default(),
                    )
                })
                .collect()
        };
        xattrs.sort();
        let hardlink_group = (ft.is_file() && m.nlink() > 1)
            .then(|| inodes.entry(m.ino()).or_insert(rel.clone()).clone());
        out.insert(
            rel,
            Entry {
                kind: m.mode() & 0o170000,
                mode: if ft.is_symlink() {
                    0
                } else {
                    m.mode() & 0o7777
                },
                uid: m.uid(),
                gid: m.gid(),
                mtime: (m.mtime(), m.mtime_nsec()),
                size: if is_dir { 0 } else { m.size() },
                content,
                link,
                rdev: m.rdev(),
                xattrs,
                hardlink_group,
            },
        );
    }
    out
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.strip_prefix(root).unwrap().to_path_buf());
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            collect(root, &p, out);
        }
    }
}

/// Asserts two trees are equal in content and metadata, naming the first difference.
pub fn assert_same_tree(original: &Path, restored: &Path) {
    let a = snapshot_of(original);
    let b = snapshot_of(restored);
    let names_a: Vec<_> = a.keys().collect();
    let names_b: Vec<_> = b.keys().collect();
    assert_eq!(names_a, names_b, "restored tree has different entries");
    for (path, ea) in &a {
        assert_eq!(ea, &b[path], "entry {} differs", path.display());
    }
}

/// A fresh S3 repository URL on the test Garage server (`scripts/garage.sh start`), or `None`
/// when no server is configured. In CI (`CI=true`) a missing server fails the test instead:
/// a skipped S3 test must not look like a passing one.
pub fn s3_url(name: &str) -> Option<String> {
    match std::env::var("COFFER_S3_TEST_URL") {
        Ok(base) if !base.is_empty() => {
            let unique = hex::encode(random_bytes(6, coffer::clock::now_ns() as u64));
            Some(format!("{}/{name}-{unique}", base.trim_end_matches('/')))
        }
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "COFFER_S3_TEST_URL is not set: S3 tests need Garage (scripts/garage.sh start); in CI a skipped S3 test is a failure"
            )
        }
        _ => {
            eprintln!(
                "skipping S3 test {name}: COFFER_S3_TEST_URL is not set (run scripts/garage.sh start)"
            );
            None
        }
    }
}

/// Every file below `dir`, recursively.
pub fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(list_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
