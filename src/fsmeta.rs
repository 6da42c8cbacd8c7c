//! File-system metadata: read a path's metadata into a [`Node`], and apply a node's metadata
//! to a restored path.
//!
//! Symlinks are never followed: metadata is read with `lstat`, extended attributes with
//! `llistxattr`, times are set with `utimensat(AT_SYMLINK_NOFOLLOW)`. Ownership is restored
//! only when running as root (as other tools do); permission bits are set after ownership,
//! because `chown` clears setuid and setgid.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{SFlag, UtimensatFlags, futimens, utimensat};
use nix::sys::time::TimeSpec;
use xattr::FileExt;

use crate::error::{Error, Result};
use crate::stat::Stat;
use crate::tree::{Node, NodeKind, Xattr};

/// Caches uid/gid to name lookups for one backup.
#[derive(Default)]
pub struct OwnerNames {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl OwnerNames {
    /// The cache with the current user and group looked up, and the user's name (or number):
    /// most files a backup reads are theirs.
    pub fn of_current_user() -> (OwnerNames, String) {
        let mut names = OwnerNames::default();
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let user = names
            .user(uid)
            .map_or_else(|| uid.to_string(), str::to_string);
        names.group(gid);
        (names, user)
    }

    fn user(&mut self, uid: u32) -> Option<&str> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .as_deref()
    }

    fn group(&mut self, gid: u32) -> Option<&str> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(gid.into())
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .as_deref()
    }
}

/// The size a node records: a regular file's length, 0 for anything else.
fn recorded_size(kind: NodeKind, meta: &Stat) -> u64 {
    if kind == NodeKind::File { meta.size } else { 0 }
}

/// The device number a node records: a device node's, 0 for anything else.
fn recorded_rdev(kind: NodeKind, meta: &Stat) -> u64 {
    if matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
        meta.rdev
    } else {
        0
    }
}

/// A node for `name` from its `lstat`, without content, subtree or link target.
pub fn node_from_metadata(name: &[u8], meta: &Stat, owners: &mut OwnerNames) -> Node {
    let kind = meta.kind();
    Node {
        name: name.to_vec(),
        kind,
        mode: meta.mode & 0o7777,
        uid: meta.uid,
        gid: meta.gid,
        user: owners.user(meta.uid).map(str::to_owned),
        group: owners.group(meta.gid).map(str::to_owned),
        mtime: meta.mtime,
        ctime: meta.ctime,
        inode: meta.ino,
        device: meta.dev,
        links: meta.nlink,
        size: recorded_size(kind, meta),
        content: Vec::new(),
        blake3: None,
        subtree: None,
        target: None,
        rdev: recorded_rdev(kind, meta),
        xattrs: Vec::new(),
    }
}

/// Whether `node` holds what [`node_from_metadata`] makes of `meta` (the name aside), without
/// building a node to compare.
pub fn same_metadata(node: &Node, meta: &Stat, owners: &mut OwnerNames) -> bool {
    let kind = meta.kind();
    node.kind == kind
        && node.mode == meta.mode & 0o7777
        && (node.uid, node.gid) == (meta.uid, meta.gid)
        && (node.mtime, node.ctime) == (meta.mtime, meta.ctime)
        && (node.inode, node.device, node.links) == (meta.ino, meta.dev, meta.nlink)
        && node.size == recorded_size(kind, meta)
        && node.rdev == recorded_rdev(kind, meta)
        && node.user.as_deref() == owners.user(meta.uid)
        && node.group.as_deref() == owners.group(meta.gid)
}

/// Reads the extended attributes of `path` (not following symlinks). File systems without
/// xattr support give an empty list.
pub fn read_xattrs(path: &Path) -> Result<Vec<Xattr>> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::io(
                format!("listing xattrs of {}", path.display()),
                e,
            ));
        }
    };
    let mut out = Vec::new();
    for name in names {
        let value = xattr::get(path, &name)
            .map_err(|e| Error::io(format!("reading xattrs of {}", path.display()), e))?;
        if let Some(value) = value {
            out.push(Xattr {
                name: name.as_bytes().to_vec(),
                value,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Creates a FIFO or device node at `path`.
pub fn make_special(path: &Path, node: &Node) -> Result<()> {
    let kind = match node.kind {
        NodeKind::Fifo => SFlag::S_IFIFO,
        NodeKind::CharDevice => SFlag::S_IFCHR,
        NodeKind::BlockDevice => SFlag::S_IFBLK,
        _ => return Err(Error::invalid("not a special file")),
    };
    let perm = nix::sys::stat::Mode::from_bits_truncate(node.mode & 0o777);
    nix::sys::stat::mknod(path, kind, perm, node.rdev)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e.into()))
}

/// Applies ownership (as root), xattrs, permission bits and times, in that order. Returns the problems
/// met, as warnings: metadata that could not be set does not lose data.
pub fn apply_metadata(path: &Path, node: &Node, as_root: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut note = |what: &str, e: std::io::Error| {
        warnings.push(format!("{}: cannot set {what}: {e}", path.display()))
    };
    // Owner first: changing it clears file capabilities (`security.capability`), which the
    // xattrs then set again.
    if as_root && let Err(e) = std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid)) {
        note("owner", e);
    }
    if node.kind != NodeKind::Symlink {
        for x in &node.xattrs {
            let name = std::ffi::OsStr::from_bytes(&x.name);
            if let Err(e) = xattr::set(path, name, &x.value) {
                note("extended attribute", e);
            }
        }
    }
    if node.kind != NodeKind::Symlink
        && let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.mode))
    {
        note("permissions", e);
    }
    // Access times are not recorded; the restored file gets its mtime as atime.
    let mtime = TimeSpec::new(node.mtime.sec, node.mtime.nsec.into());
    if let Err(e) = utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &mtime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    ) {
        note("times", e.into());
    }
    warnings
}

/// Applies a restored regular file's metadata through its open descriptor, in the order of
/// [`apply_metadata`], without a path lookup per call. Ownership and permission bits that the
/// new file already has (it was just created by this process) are not set again, so a restore
/// as its own user costs one `fstat` and one `futimens` per file.
pub fn apply_file_metadata(file: &File, path: &Path, node: &Node, as_root: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut note = |what: &str, e: std::io::Error| {
        warnings.push(format!("{}: cannot set {what}: {e}", path.display()))
    };
    let (uid, gid, mode) = match file.metadata() {
        Ok(m) => (m.uid(), m.gid(), m.mode() & 0o7777),
        Err(e) => {
            note("metadata", e);
            return warnings;
        }
    };
    let chown = as_root && (uid, gid) != (node.uid, node.gid);
    if chown && let Err(e) = std::os::unix::fs::fchown(file, Some(node.uid), Some(node.gid)) {
        note("owner", e);
    }
    for x in &node.xattrs {
        if let Err(e) = file.set_xattr(std::ffi::OsStr::from_bytes(&x.name), &x.value) {
            note("extended attribute", e);
        }
    }
    // `chown` clears setuid and setgid: the bits are set again after it.
    if (chown || mode != node.mode & 0o7777)
        && let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(node.mode))
    {
        note("permissions", e);
    }
    let mtime = TimeSpec::new(node.mtime.sec, node.mtime.nsec.into());
    if let Err(e) = futimens(file, &mtime, &mtime) {
        note("times", e.into());
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Timestamp;

    #[test]
    fn file_capabilities_survive_the_owner_change() {
        if !nix::unistd::geteuid().is_root() {
            return; // Only root may set `security.capability`.
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("helper");
        std::fs::write(&p, b"x").unwrap();
        // VFS_CAP_REVISION_2: magic, then permitted/inheritable words (CAP_NET_RAW permitted).
        let mut cap = vec![0u8; 20];
        cap[..4].copy_from_slice(&0x0200_0000u32.to_le_bytes());
        cap[4..8].copy_from_slice(&(1u32 << 13).to_le_bytes());
        let mut node = node_from_metadata(
            b"helper",
            &Stat::lstat(&p).unwrap(),
            &mut OwnerNames::default(),
        );
        node.uid = 1234;
        node.xattrs = vec![crate::tree::Xattr {
            name: b"security.capability".to_vec(),
            value: cap.clone(),
        }];
        assert!(apply_metadata(&p, &node, true).is_empty());
        assert_eq!(
            xattr::get(&p, "security.capability").unwrap(),
            Some(cap.clone())
        );
        // The same through the descriptor, with setuid, which the owner change also clears.
        let q = dir.path().join("helper2");
        let file = File::create(&q).unwrap();
        node.mode = 0o4750;
        node.mtime = Timestamp {
            sec: 1_600_000_000,
            nsec: 5,
        };
        assert!(apply_file_metadata(&file, &q, &node, true).is_empty());
        let meta = std::fs::symlink_metadata(&q).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (1234, 0o4750));
        assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_600_000_000, 5));
        assert_eq!(xattr::get(&q, "security.capability").unwrap(), Some(cap));
    }

    #[test]
    fn file_metadata_through_the_descriptor_sets_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let file = File::create(&p).unwrap();
        let mut node =
            node_from_metadata(b"f", &Stat::lstat(&p).unwrap(), &mut OwnerNames::default());
        node.mode = 0o600;
        node.mtime = Timestamp {
            sec: -86_400,
            nsec: 123,
        };
        node.xattrs = vec![crate::tree::Xattr {
            name: b"user.coffer".to_vec(),
            value: b"v".to_vec(),
        }];
        let as_root = nix::unistd::geteuid().is_root();
        let warnings = apply_file_metadata(&file, &p, &node, as_root);
        let meta = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!((meta.mtime(), meta.mtime_nsec()), (-86_400, 123));
        // Some file systems (tmpfs without user xattrs) refuse: then it is a warning.
        match xattr::get(&p, "user.coffer") {
            Ok(Some(v)) => assert_eq!(v, b"v"),
            _ => assert_eq!(warnings.len(), 1, "{warnings:?}"),
        }
    }

    #[test]
    fn same_metadata_notices_each_field_node_from_metadata_sets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let meta = Stat::lstat(&p).unwrap();
        let mut owners = OwnerNames::default();
        let node = node_from_metadata(b"f", &meta, &mut owners);
        assert!(same_metadata(&node, &meta, &mut owners));
        let changes: [fn(&mut Stat); 11] = [
            |m| m.mode ^= 0o1,
            |m| m.mode = (m.mode & 0o7777) | SFlag::S_IFDIR.bits(),
            |m| m.uid += 1,
            |m| m.gid += 1,
            |m| m.size += 1,
            |m| m.mtime.nsec ^= 1,
            |m| m.ctime.sec += 1,
            |m| m.ino += 1,
            |m| m.dev += 1,
            |m| m.nlink += 1,
            |m| m.mode = (m.mode & 0o7777) | SFlag::S_IFCHR.bits(),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut other = meta;
            change(&mut other);
            assert!(!same_metadata(&node, &other, &mut owners), "change {i}");
            let rebuilt = node_from_metadata(b"f", &other, &mut owners);
            assert_ne!(rebuilt, node, "change {i}");
        }
        let mut device = meta;
        device.mode = (meta.mode & 0o7777) | SFlag::S_IFBLK.bits();
        let node = node_from_metadata(b"f", &device, &mut owners);
        device.rdev += 1;
        assert!(!same_metadata(&node, &device, &mut owners));
        let mut renamed = node.clone();
        renamed.user = Some("someone else".into());
        device.rdev -= 1;
        assert!(!same_metadata(&renamed, &device, &mut owners));
    }

    #[test]
    fn reads_and_applies_times_before_1970() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let meta = Stat::lstat(&p).unwrap();
        let mut node = node_from_metadata(b"f", &meta, &mut OwnerNames::default());
        assert_eq!(node.kind, NodeKind::File);
        node.mtime = Timestamp {
            sec: -86_400 * 365,
            nsec: 123_456_789,
        };
        node.mode = 0o4750;
        assert!(apply_metadata(&p, &node, false).is_empty());
        let back = node_from_metadata(b"f", &Stat::lstat(&p).unwrap(), &mut OwnerNames::default());
        assert_eq!(back.mtime, node.mtime);
        assert_eq!(back.mode, 0o4750);
    }
}
