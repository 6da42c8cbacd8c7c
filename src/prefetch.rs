//! Directory prefetch for backup: a helper thread lists directories before the walk reaches
//! them, so the `stat` of every entry runs on another core than the walk.
//!
//! The helper walks the same trees in the same order as the backup's walk (depth-first,
//! entries sorted by name, the same exclusions and the same rule for which directories to
//! enter) and sends each directory's listing down a bounded queue of [`AHEAD`] listings: names
//! sorted, metadata from `fstatat` relative to the open directory, excluded names left out. The
//! walk takes the next listing when it enters a directory. Should the two ever disagree on
//! the next directory, the walk stops the helper and lists every later directory itself: a
//! prefetch that goes wrong costs speed, never correctness.
//!
//! A listing allocates per directory, not per entry (names in one buffer, no path per entry,
//! `readdir` without std's per-entry name). The binary runs one malloc arena, so the two
//! threads allocating at once contend for its lock: with std's `read_dir` and a path and a
//! name per entry, waiting and waking on that lock took a fifth of an unchanged re-backup of
//! 100,000 small files.

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Error, Result};
use crate::filter::PathFilter;
use crate::stat::Stat;

/// Listings the helper may be ahead of the walk.
pub const AHEAD: usize = 64;

/// A directory's entries, sorted by name, without excluded ones: each name with its
/// metadata (not following symlinks) or the error reading it. The names share one buffer, so
/// a listing is two allocations however many entries it has.
#[derive(Debug, Default)]
pub struct Entries {
    /// Every name, each followed by a NUL byte.
    names: Vec<u8>,
    /// In name order: where the name is in `names` (without its NUL), and its metadata.
    entries: Vec<(usize, usize, io::Result<Stat>)>,
}

impl Entries {
    /// The entries in name order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], &io::Result<Stat>)> {
        self.entries
            .iter()
            .map(|(start, end, stat)| (&self.names[*start..*end], stat))
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A directory's entries, or why it could not be listed.
pub type Listing = io::Result<Entries>;

/// Lists `dir`: its entries sorted by name, skipping those `excludes` matches.
pub fn list_dir(dir: &Path, excludes: &PathFilter) -> Listing {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut handle = Dir::open(dir, flags, Mode::empty())?;
    let mut names = Vec::new();
    let mut ranges = Vec::new();
    // The full path of each entry, for the exclusion patterns; one buffer for all.
    let mut path = dir.as_os_str().as_bytes().to_vec();
    if path.last() != Some(&b'/') {
        path.push(b'/');
    }
    let dir_len = path.len();
    for entry in handle.iter() {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        path.truncate(dir_len);
        path.extend_from_slice(name);
        if excludes.matches(&path, name) {
            continue;
        }
        ranges.push((names.len(), names.len() + name.len()));
        names.extend_from_slice(name);
        names.push(0);
    }
    ranges.sort_unstable_by(|a, b| names[a.0..a.1].cmp(&names[b.0..b.1]));
    // Relative to the open directory: no path walk, and no symlink followed.
    let entries = ranges
        .into_iter()
        .map(|(start, end)| {
            let name = CStr::from_bytes_with_nul(&names[start..=end]).expect("NUL-terminated");
            (start, end, Stat::at(&handle, name))
        })
        .collect();
    Ok(Entries { names, entries })
}

/// Whether the walk enters an entry with this metadata: a directory, and with
/// `one_file_system`, only one on `root_dev`.
pub fn enters(meta: &Stat, one_file_system: bool, root_dev: u64) -> bool {
    meta.is_dir() && !(one_file_system && meta.dev != root_dev)
}

/// The walk's side of the prefetch; see the module header.
pub struct Prefetch {
    /// `None` once the helper has finished, stopped or fallen out of step.
    listings: Option<Receiver<(PathBuf, Listing)>>,
    helper: Option<JoinHandle<()>>,
}

impl Prefetch {
    /// Starts the helper, walking `roots` (the directories the walk will enter first, in its
    /// order; anything else is skipped). It may start before the walk can: the repository
    /// need not be open yet.
    pub fn start(
        roots: Vec<PathBuf>,
        excludes: PathFilter,
        one_file_system: bool,
    ) -> Result<Prefetch> {
        let (send, listings) = sync_channel(AHEAD);
        let helper = std::thread::Builder::new()
            .name("coffer-list".into())
            .spawn(move || list_ahead(roots, &excludes, one_file_system, &send))
            .map_err(|e| Error::io("starting the listing thread", e))?;
        Ok(Prefetch {
            listings: Some(listings),
            helper: Some(helper),
        })
    }

    /// The listing of `dir`, the next directory the walk enters, if the helper has it;
    /// `None` means the walk lists it itself.
    pub fn take(&mut self, dir: &Path) -> Option<Listing> {
        let next = self.listings.as_ref()?.recv();
        match next {
            Ok((listed, listing)) if listed == dir => Some(listing),
            // Finished, or out of step: dropping the queue stops the helper.
            _ => {
                self.listings = None;
                None
            }
        }
    }
}

impl Drop for Prefetch {
    /// Stops the helper (its next send fails) and waits for it.
    fn drop(&mut self) {
        self.listings = None;
        if let Some(helper) = self.helper.take() {
            let _ = helper.join();
        }
    }
}

fn list_ahead(
    roots: Vec<PathBuf>,
    excludes: &PathFilter,
    one_file_system: bool,
    send: &SyncSender<(PathBuf, Listing)>,
) {
    for root in roots {
        let Ok(meta) = Stat::lstat(&root) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        // Depth-first, each directory before its subdirectories, these in name order.
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let listing = list_dir(&dir, excludes);
            if let Ok(entries) = &listing {
                let below = entries.iter().filter(|(_, m)| {
                    m.as_ref()
                        .is_ok_and(|m| enters(m, one_file_system, meta.dev))
                });
                stack.extend(
                    below
                        .rev()
                        .map(|(name, _)| dir.join(OsStr::from_bytes(name))),
                );
            }
            if send.send((dir, listing)).is_err() {
                return; // The walk is done with the prefetch.
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) -> Vec<PathBuf> {
        let mut dirs = vec![root.to_path_buf()];
        for a in 0..3 * AHEAD {
            for b in 0..a % 3 {
                let dir = root.join(format!("a{a:03}/b{b}"));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("f"), b"x").unwrap();
                std::fs::write(dir.join("skip.tmp"), b"x").unwrap();
            }
            std::fs::create_dir_all(root.join(format!("a{a:03}"))).unwrap();
        }
        // The walk's order: depth-first, names sorted.
        for a in 0..3 * AHEAD {
            dirs.push(root.join(format!("a{a:03}")));
            dirs.extend((0..a % 3).map(|b| root.join(format!("a{a:03}/b{b}"))));
        }
        dirs
    }

    fn names(listing: Listing) -> Vec<Vec<u8>> {
        listing.unwrap().iter().map(|(n, _)| n.to_vec()).collect()
    }

    #[test]
    fn a_listing_is_sorted_filtered_and_read_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["b", "a.tmp", "c", "A"] {
            std::fs::write(tmp.path().join(name), name).unwrap();
        }
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        std::os::unix::fs::symlink("d", tmp.path().join("e")).unwrap();
        let excludes = PathFilter::new(&["*.tmp".to_string()]).unwrap();
        let listing = list_dir(tmp.path(), &excludes).unwrap();
        assert_eq!(
            names(list_dir(tmp.path(), &excludes)),
            [&b"A"[..], b"b", b"c", b"d", b"e"]
        );
        for (name, stat) in listing.iter() {
            let path = tmp.path().join(OsStr::from_bytes(name));
            assert_eq!(stat.as_ref().unwrap(), &Stat::lstat(&path).unwrap());
        }
        let missing = list_dir(&tmp.path().join("absent"), &excludes).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn listings_arrive_in_walk_order_and_match_a_direct_listing() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = tree(tmp.path());
        let excludes = PathFilter::new(&["*.tmp".to_string()]).unwrap();
        let roots = vec![tmp.path().to_path_buf()];
        let mut prefetch = Prefetch::start(roots, excludes.clone(), false).unwrap();
        for dir in &dirs {
            let listing = prefetch.take(dir).expect("prefetched");
            assert_eq!(names(listing), names(list_dir(dir, &excludes)));
        }
        assert!(
            prefetch.take(tmp.path()).is_none(),
            "nothing after the last"
        );
    }

    #[test]
    fn a_walk_out_of_step_falls_back_to_listing_itself() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = tree(tmp.path());
        let roots = vec![tmp.path().to_path_buf()];
        let excludes = PathFilter::new(&[]).unwrap();
        let mut prefetch = Prefetch::start(roots, excludes, false).unwrap();
        assert!(prefetch.take(&dirs[0]).is_some());
        assert!(prefetch.take(&dirs[2]).is_none(), "skipped a directory");
        assert!(
            prefetch.take(&dirs[3]).is_none(),
            "stays off once out of step"
        );
        // Dropped while the helper waits to send: it stops, and the drop returns.
        let roots = vec![tmp.path().to_path_buf()];
        let excludes = PathFilter::new(&[]).unwrap();
        drop(Prefetch::start(roots, excludes, false).unwrap());
    }
}
