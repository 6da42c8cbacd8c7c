//! File metadata as a backup reads it, never following symlinks: of a path (`lstat`), or of
//! a name in an open directory (`fstatat`). Listing a directory this way costs no path walk
//! and no allocation per entry.

use std::ffi::CStr;
use std::fs::Metadata;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::AtFlags;
use nix::sys::stat::{FileStat, SFlag};

use crate::tree::{NodeKind, Timestamp};

/// What a backup records of one file-system entry's `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// File type and permission bits, as `st_mode`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Length in bytes (of a symlink: of its target path).
    pub size: u64,
    /// Last modification.
    pub mtime: Timestamp,
    /// Last status change.
    pub ctime: Timestamp,
    /// Inode number.
    pub ino: u64,
    /// Device of the file system holding the entry.
    pub dev: u64,
    /// Hard links.
    pub nlink: u64,
    /// Device number of a device node.
    pub rdev: u64,
}

fn ts(sec: i64, nsec: i64) -> Timestamp {
    Timestamp {
        sec,
        nsec: nsec.clamp(0, 999_999_999) as u32,
    }
}

impl Stat {
    /// The metadata of `path` itself (a symlink, not its target).
    pub fn lstat(path: &Path) -> io::Result<Stat> {
        std::fs::symlink_metadata(path).map(|m| Stat::from(&m))
    }

    /// The metadata of `name` in the open directory `dir`, without following a symlink.
    pub fn at(dir: impl AsFd, name: &CStr) -> io::Result<Stat> {
        nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map(Stat::from)
            .map_err(io::Error::from)
    }

    /// The node kind of the file type.
    pub fn kind(&self) -> NodeKind {
        match SFlag::from_bits_truncate(self.mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFDIR => NodeKind::Dir,
            SFlag::S_IFLNK => NodeKind::Symlink,
            SFlag::S_IFIFO => NodeKind::Fifo,
            SFlag::S_IFCHR => NodeKind::CharDevice,
            SFlag::S_IFBLK => NodeKind::BlockDevice,
            SFlag::S_IFSOCK => NodeKind::Socket,
            _ => NodeKind::File,
        }
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind() == NodeKind::Dir
    }
}

impl From<&Metadata> for Stat {
    fn from(m: &Metadata) -> Stat {
        Stat {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: ts(m.mtime(), m.mtime_nsec()),
            ctime: ts(m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
            nlink: m.nlink(),
            rdev: m.rdev(),
        }
    }
}

impl From<FileStat> for Stat {
    // The field types are platform aliases (`nlink_t` is 32 bits on some targets).
    #[allow(clippy::unnecessary_cast)]
    fn from(s: FileStat) -> Stat {
        Stat {
            mode: s.st_mode as u32,
            uid: s.st_uid,
            gid: s.st_gid,
            size: s.st_size as u64,
            mtime: ts(s.st_mtime as i64, s.st_mtime_nsec as i64),
            ctime: ts(s.st_ctime as i64, s.st_ctime_nsec as i64),
            ino: s.st_ino as u64,
            dev: s.st_dev as u64,
            nlink: s.st_nlink as u64,
            rdev: s.st_rdev as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_in_a_directory_reads_as_its_path_does() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), b"data").unwrap();
        std::os::unix::fs::symlink("missing", tmp.path().join("l")).unwrap();
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        let dir = std::fs::File::open(tmp.path()).unwrap();
        for (name, kind) in [
            ("f", NodeKind::File),
            ("l", NodeKind::Symlink),
            ("d", NodeKind::Dir),
        ] {
            let c = std::ffi::CString::new(name.as_bytes()).unwrap();
            let at = Stat::at(&dir, &c).unwrap();
            assert_eq!(at, Stat::lstat(&tmp.path().join(name)).unwrap());
            assert_eq!(at.kind(), kind);
        }
        let err = Stat::at(&dir, c"absent").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
