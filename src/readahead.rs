//! Read-ahead for small reads of packs.
//!
//! Restoring many small files asks for many small blobs, and a backup's blobs lie in its
//! packs in the order the files were read, which is the order a restore asks for them. One
//! request per blob would cost a round trip each (tens of milliseconds on S3), so a small read
//! fetches a whole window from its offset on and keeps the last few windows: the next files'
//! blobs are then served from memory. Memory is bounded by `WINDOWS × WINDOW` bytes.
//! Windows hold sealed bytes only; every blob is still opened and verified by the caller.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Condvar, Mutex, MutexGuard};

use bytes::Bytes;

use crate::id::ObjectId;

/// Bytes fetched by one read-ahead request.
pub const WINDOW: u64 = 4 << 20;
/// Windows kept.
const WINDOWS: usize = 4;

/// Recently fetched windows of packs, shared by the threads of one process.
///
/// With `share_fetches` (for remote stores), a thread that needs bytes of a window another
/// thread is fetching waits for that window instead of asking the store for it again:
/// restore workers start on neighbouring files at once, and without this each of them would
/// download the same window. A local read is cheaper than the wait, so there each thread
/// fetches for itself.
#[derive(Default)]
pub struct ReadAhead {
    share_fetches: bool,
    state: Mutex<State>,
    fetched: Condvar,
}

#[derive(Default)]
struct State {
    windows: VecDeque<(ObjectId, u64, Bytes)>,
    /// Windows being fetched: pack, start, end.
    fetching: Vec<(ObjectId, u64, u64)>,
}

impl State {
    fn cached(&self, pack: &ObjectId, range: &Range<u64>) -> Option<Bytes> {
        self.windows.iter().rev().find_map(|(id, start, bytes)| {
            let end = start + bytes.len() as u64;
            (id == pack && *start <= range.start && range.end <= end)
                .then(|| bytes.slice((range.start - start) as usize..(range.end - start) as usize))
        })
    }

    fn being_fetched(&self, pack: &ObjectId, range: &Range<u64>) -> bool {
        self.fetching
            .iter()
            .any(|(id, start, end)| id == pack && *start <= range.start && range.end <= *end)
    }
}

/// A window one thread is fetching; dropping it (also on unwinding) wakes the threads
/// waiting for it, which then find it kept or fetch for themselves.
struct Fetching<'a> {
    ahead: &'a ReadAhead,
    window: (ObjectId, u64, u64),
}

impl Drop for Fetching<'_> {
    fn drop(&mut self) {
        if !self.ahead.share_fetches {
            return;
        }
        if let Some(mut s) = self.ahead.lock() {
            s.fetching.retain(|f| *f != self.window);
        }
        self.ahead.fetched.notify_all();
    }
}

impl ReadAhead {
    /// A read-ahead cache; see the type's documentation for `share_fetches`.
    pub fn new(share_fetches: bool) -> Self {
        ReadAhead {
            share_fetches,
            ..ReadAhead::default()
        }
    }

    /// The bytes `range` of `pack`, from a kept window or from `fetch`. A read shorter than a
    /// window fetches a window (clipped to `pack_size`) and keeps it; a longer one is
    /// fetched as asked and not kept. If the window cannot be read whole (a truncated pack),
    /// the range alone is fetched, so intact blobs before the damage still read.
    pub fn read<E>(
        &self,
        pack: &ObjectId,
        pack_size: u64,
        range: Range<u64>,
        fetch: impl Fn(Range<u64>) -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        let len = range.end - range.start;
        let end = pack_size.min(range.start + WINDOW);
        let mut state = self.lock();
        loop {
            if let Some(hit) = state.as_ref().and_then(|s| s.cached(pack, &range)) {
                return Ok(hit);
            }
            match state {
                Some(s) if self.share_fetches && s.being_fetched(pack, &range) => {
                    state = self.fetched.wait(s).ok();
                }
                _ => break,
            }
        }
        if len >= WINDOW || end <= range.end {
            drop(state);
            return fetch(range);
        }
        let fetching = Fetching {
            ahead: self,
            window: (*pack, range.start, end),
        };
        if let Some(s) = state.as_mut().filter(|_| self.share_fetches) {
            s.fetching.push(fetching.window);
        }
        drop(state);
        let got = fetch(range.start..end)
            .ok()
            .filter(|w| w.len() as u64 == end - range.start);
        if let (Some(window), Some(mut s)) = (&got, self.lock()) {
            if s.windows.len() == WINDOWS {
                s.windows.pop_front();
            }
            s.windows.push_back((*pack, range.start, window.clone()));
        }
        drop(fetching);
        match got {
            Some(window) => Ok(window.slice(0..len as usize)),
            None => fetch(range),
        }
    }

    /// The shared state; `None` if a thread panicked while holding it (then nothing is
    /// cached or shared, and every read is fetched).
    fn lock(&self) -> Option<MutexGuard<'_, State>> {
        self.state.lock().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn small_reads_share_one_window_and_large_reads_pass_through() {
        let pack = ObjectId([1; 32]);
        let data: Bytes = (0..=255u8)
            .cycle()
            .take(10 << 20)
            .collect::<Vec<_>>()
            .into();
        let fetches = Cell::new(0);
        let fetch = |r: Range<u64>| {
            fetches.set(fetches.get() + 1);
            Ok::<_, ()>(data.slice(r.start as usize..r.end as usize))
        };
        let ra = ReadAhead::new(false);
        let size = data.len() as u64;
        for start in (0..WINDOW - 100).step_by(4096) {
            let got = ra.read(&pack, size, start..start + 100, fetch).unwrap();
            assert_eq!(got, data.slice(start as usize..start as usize + 100));
        }
        assert_eq!(fetches.get(), 1);
        let big = ra.read(&pack, size, 0..WINDOW + 1, fetch).unwrap();
        assert_eq!(big.len() as u64, WINDOW + 1);
        // Near the end of the pack the window is clipped, and another pack misses.
        let tail = ra.read(&pack, size, size - 10..size, fetch).unwrap();
        assert_eq!(tail, data.slice(data.len() - 10..));
        assert!(ra.read(&ObjectId([2; 32]), size, 0..10, fetch).is_ok());
        assert_eq!(fetches.get(), 4);
    }

    #[test]
    fn a_window_being_fetched_is_waited_for_not_fetched_again() {
        let pack = ObjectId([1; 32]);
        let data = Bytes::from(vec![7u8; 8 << 20]);
        let fetches = std::sync::atomic::AtomicUsize::new(0);
        let fetch = |r: Range<u64>| {
            fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(200));
            Ok::<_, ()>(data.slice(r.start as usize..r.end as usize))
        };
        let ra = ReadAhead::new(true);
        let size = data.len() as u64;
        std::thread::scope(|scope| {
            let first = scope.spawn(|| ra.read(&pack, size, 0..100, fetch));
            std::thread::sleep(std::time::Duration::from_millis(50));
            // Inside the window the first thread is fetching: served from it.
            let second = ra.read(&pack, size, 1000..2000, fetch).unwrap();
            assert_eq!(second, data.slice(1000..2000));
            assert_eq!(first.join().unwrap().unwrap(), data.slice(0..100));
        });
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
