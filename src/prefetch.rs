//! Directory prefetch for backup: a helper thread lists directories before the walk reaches
//! them, so the `statx` of every entry runs on another core than the walk.
//!
//! The walk is depth-first. When it lists a directory it pushes the subdirectories it will
//! visit onto a stack, first visited on top, so the top is always the next directory the walk
//! enters. Up to [`AHEAD`] of them, from the top, are handed to the helper, which lists each:
//! names sorted, metadata from `statx` relative to the open directory, excluded names left
//! out. Whatever the walk finds ready it takes; a directory never handed over is listed by the
//! walking thread itself, so a prefetch that falls behind or goes wrong costs speed, never
//! correctness. The bound keeps at most [`AHEAD`] listings in memory. (The helper does not
//! also decode the directories' trees in the parent snapshot: that made it the slower of
//! the two threads on an unchanged re-backup.)

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::Scope;

use crate::error::{Error, Result};
use crate::filter::PathFilter;

/// Most directories handed to the helper and not yet taken by the walk.
pub const AHEAD: usize = 64;

/// A directory's entries, sorted by name, without excluded ones: name, full path, and
/// metadata (not following symlinks) or the error reading it.
pub type Entries = Vec<(Vec<u8>, PathBuf, io::Result<Metadata>)>;

/// Lists `dir`: its entries sorted by name, skipping those `excludes` matches.
pub fn list_dir(dir: &Path, excludes: &PathFilter) -> io::Result<Entries> {
    let mut names: Vec<(Vec<u8>, std::fs::DirEntry)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().as_bytes().to_vec(), e))
        .collect();
    names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(names
        .into_iter()
        .filter_map(|(name, entry)| {
            let path = dir.join(OsStr::from_bytes(&name));
            if excludes.matches(path.as_os_str().as_bytes(), &name) {
                return None;
            }
            // Relative to the open directory (no path walk); does not follow symlinks.
            let meta = entry.metadata();
            Some((name, path, meta))
        })
        .collect())
}

/// A directory listed ahead of the walk: its entries, or why it could not be listed.
pub type Listing = io::Result<Entries>;

#[derive(Default)]
struct Ready {
    listings: HashMap<PathBuf, Listing>,
    /// The helper has stopped: nothing more will arrive.
    closed: bool,
}

#[derive(Default)]
struct Shared {
    ready: Mutex<Ready>,
    arrived: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Ready> {
        self.ready.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Marks the helper closed however it ends, so the walk never waits for it in vain.
struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.arrived.notify_all();
    }
}

/// The walk's side of the prefetch; see the module header.
pub struct Prefetch {
    requests: Option<Sender<PathBuf>>,
    shared: Arc<Shared>,
    /// Directories the walk will enter, next one last, not yet handed over.
    upcoming: Vec<PathBuf>,
    /// Directories handed over and not yet taken.
    asked: HashSet<PathBuf>,
}

impl Prefetch {
    /// Starts the helper thread in `scope`.
    pub fn start<'scope>(
        scope: &'scope Scope<'scope, '_>,
        excludes: PathFilter,
    ) -> Result<Prefetch> {
        let shared = Arc::new(Shared::default());
        let (requests, queue) = channel();
        let helper = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("coffer-list".into())
            .spawn_scoped(scope, move || list_ahead(&excludes, &queue, helper))
            .map_err(|e| Error::io("starting the listing thread", e))?;
        Ok(Prefetch {
            requests: Some(requests),
            shared,
            upcoming: Vec::new(),
            asked: HashSet::new(),
        })
    }

    /// Notes the subdirectories of a directory just listed, in the order the walk will enter
    /// them; hands the next ones to the helper.
    pub fn plan(&mut self, subdirs: impl DoubleEndedIterator<Item = PathBuf>) {
        self.upcoming.extend(subdirs.rev());
        self.hand_over();
    }

    /// The listing of `dir` if it was handed over (waiting for it if need be); `None` means
    /// the walk lists it itself.
    pub fn take(&mut self, dir: &Path) -> Option<Listing> {
        if !self.asked.remove(dir) {
            if self.upcoming.last().is_some_and(|next| next == dir) {
                self.upcoming.pop();
            }
            self.hand_over();
            return None;
        }
        let listing = {
            let mut ready = self.shared.lock();
            loop {
                if let Some(listing) = ready.listings.remove(dir) {
                    break Some(listing);
                }
                if ready.closed {
                    break None;
                }
                ready = self
                    .shared
                    .arrived
                    .wait(ready)
                    .unwrap_or_else(|e| e.into_inner());
            }
        };
        self.hand_over();
        listing
    }

    fn hand_over(&mut self) {
        while self.asked.len() < AHEAD {
            let (Some(dir), Some(requests)) = (self.upcoming.pop(), &self.requests) else {
                return;
            };
            if requests.send(dir.clone()).is_err() {
                self.requests = None;
                return;
            }
            self.asked.insert(dir);
        }
    }
}

impl Drop for Prefetch {
    /// Stops the helper after the directory it is listing (its queue is dropped unread).
    fn drop(&mut self) {
        self.requests = None;
        self.shared.lock().closed = true;
    }
}

fn list_ahead(excludes: &PathFilter, queue: &Receiver<PathBuf>, shared: Arc<Shared>) {
    let close = CloseOnDrop(shared);
    for dir in queue {
        if close.0.lock().closed {
            return;
        }
        let listing = list_dir(&dir, excludes);
        close.0.lock().listings.insert(dir, listing);
        close.0.arrived.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_match_a_direct_listing_and_unasked_directories_fall_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..3 * AHEAD)
            .map(|i| tmp.path().join(format!("d{i:03}")))
            .collect();
        for (i, dir) in dirs.iter().enumerate() {
            std::fs::create_dir(dir).unwrap();
            for j in 0..i % 5 {
                std::fs::write(dir.join(format!("f{j}")), b"x").unwrap();
            }
            std::fs::write(dir.join("skip.tmp"), b"x").unwrap();
        }
        let excludes = PathFilter::new(&["*.tmp".to_string()]).unwrap();
        std::thread::scope(|scope| {
            let mut prefetch = Prefetch::start(scope, excludes.clone()).unwrap();
            prefetch.plan(dirs.iter().cloned());
            let mut taken = 0;
            for dir in &dirs {
                let direct = list_dir(dir, &excludes).unwrap();
                let names = |e: &Entries| {
                    e.iter()
                        .map(|(n, p, _)| (n.clone(), p.clone()))
                        .collect::<Vec<_>>()
                };
                match prefetch.take(dir) {
                    Some(listing) => {
                        taken += 1;
                        assert_eq!(names(&listing.unwrap()), names(&direct));
                    }
                    None => panic!(
                        "{} was planned next and should have been handed over",
                        dir.display()
                    ),
                }
            }
            assert_eq!(taken, dirs.len());
            // A directory never planned is left to the walk.
            assert!(prefetch.take(tmp.path()).is_none());
        });
    }
}
