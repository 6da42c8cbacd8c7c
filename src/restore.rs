//! Restore: recreate a snapshot's tree on disk, verifying everything on the way.
//!
//! Every chunk is checked against its keyed id when it is opened, and every file against its
//! whole-file BLAKE3 once written. Chunks of zeros are skipped with a seek, so sparse files stay
//! sparse. Hardlinks are recreated from the recorded (device, inode) pairs. Directory metadata
//! is applied after the directory's content, so its mtime survives. A file that fails
//! verification is reported and the restore goes on with the others: the caller gets every
//! failure, never a silent partial result.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::blob::BlobType;
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
}

/// Restores the tree `root` into `opts.target`.
pub fn restore(repo: &Repository, root: &BlobId, opts: &RestoreOptions) -> Result<RestoreOutcome> {
    std::fs::create_dir_all(&opts.target)
        .map_err(|e| Error::io(format!("creating target {}", opts.target.display()), e))?;
    let mut r = Restorer {
        repo,
        only: opts.only.as_ref(),
        include: PathFilter::new(&opts.include)?,
        exclude: PathFilter::new(&opts.exclude)?,
        as_root: nix::unistd::geteuid().is_root(),
        hardlinks: HashMap::new(),
        out: RestoreOutcome::default(),
    };
    let tree = repo.load_tree(root)?;
    let everything = !r.filtering();
    r.dir(&tree.nodes, b"", &opts.target, everything)?;
    Ok(r.out)
}

struct Restorer<'r> {
    repo: &'r Repository,
    only: Option<&'r HashSet<Vec<u8>>>,
    include: PathFilter,
    exclude: PathFilter,
    as_root: bool,
    hardlinks: HashMap<(u64, u64), PathBuf>,
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
            self.warn_all(fsmeta::apply_metadata(path, node, self.as_root));
        } else {
            // Created only in case something inside was included; nothing was.
            let _ = std::fs::remove_dir(path);
        }
        Ok(chosen || any)
    }

    fn fail(&mut self, snap_path: &[u8], e: &Error) {
        let path = String::from_utf8_lossy(snap_path).into_owned();
        self.out.errors.push(RestoreFailure {
            path,
            message: e.to_string(),
        });
    }

    fn warn_all(&mut self, warnings: Vec<String>) {
        self.out.warnings.extend(warnings);
    }

    fn entry(&mut self, node: &Node, snap_path: &[u8], path: &Path) -> Result<()> {
        remove_existing(path)?;
        match node.kind {
            NodeKind::File => return self.file(node, snap_path, path),
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
            NodeKind::Dir => return Err(Error::invalid("directory passed as entry")),
        }
        self.out.others += 1;
        self.warn_all(fsmeta::apply_metadata(path, node, self.as_root));
        Ok(())
    }

    fn file(&mut self, node: &Node, snap_path: &[u8], path: &Path) -> Result<()> {
        let key = (node.device, node.inode);
        if node.links > 1
            && let Some(first) = self.hardlinks.get(&key)
        {
            std::fs::hard_link(first, path)
                .map_err(|e| Error::io(format!("linking {}", path.display()), e))?;
            self.out.files += 1;
            return Ok(());
        }
        match self.write_content(node, path) {
            Ok(()) => {
                self.out.files += 1;
                self.out.bytes += node.size;
                self.warn_all(fsmeta::apply_metadata(path, node, self.as_root));
                if node.links > 1 {
                    self.hardlinks.insert(key, path.to_path_buf());
                }
            }
            // Damaged or missing repository data spoils this file only; the others go on.
            // A local write failure (full disk, permissions) stops the restore instead of
            // producing one error per remaining file.
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
                self.fail(snap_path, &e)
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn write_content(&mut self, node: &Node, path: &Path) -> Result<()> {
        let mut file = File::create(path).map_err(|e| local_write_error(path, e))?;
        let mut hasher = blake3::Hasher::new();
        let mut written = 0u64;
        for id in &node.content {
            let chunk = self.repo.read_blob(BlobType::Data, id)?;
            hasher.update(&chunk);
            written += chunk.len() as u64;
            let io = |e| local_write_error(path, e);
            if chunk.iter().all(|&b| b == 0) {
                file.seek(SeekFrom::Current(chunk.len() as i64))
                    .map_err(io)?;
            } else {
                file.write_all(&chunk).map_err(io)?;
            }
        }
        file.set_len(written)
            .map_err(|e| local_write_error(path, e))?;
        file.sync_data().map_err(|e| local_write_error(path, e))?;
        let hash = ObjectId(*hasher.finalize().as_bytes());
        if written != node.size || Some(hash) != node.blake3 {
            return Err(Error::corrupt(format!(
                "restored content does not match the snapshot (size {written} vs {}, BLAKE3 {} vs {})",
                node.size,
                hash.short(),
                node.blake3.map(|h| h.short()).unwrap_or_default()
            )));
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
