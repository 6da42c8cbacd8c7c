//! Read-ahead for small reads of packs.
//!
//! Restoring many small files asks for many small blobs, and a backup's blobs lie in its
//! packs in the order the files were read, which is the order a restore asks for them. One
//! request per blob would cost a round trip each (tens of milliseconds on S3), so a read that
//! continues a recent one fetches a whole window and keeps the last few windows, the most
//! recently used last: the next files' blobs are then served from memory. A read that jumps
//! elsewhere (a duplicate file whose chunks an older backup stored) fetches only a small
//! window, since nothing says its neighbours will be wanted; if the next read follows it, that
//! one fetches a whole window. Memory is bounded by the bytes of `WINDOWS` windows of 4 MiB
//! (from a remote store) or 1 MiB (from a directory), so the small windows of jumps do not
//! evict a stream's.
//! Windows hold sealed bytes only; every blob is still opened and verified by the caller.
//!
//! The windows of a stream lie on a grid of the window size, and a thread that needs bytes
//! of a window another thread is fetching waits for it: restore workers reading neighbouring
//! files ask for the same window instead of each fetching one that overlaps the others'.
//! From Garage, a restore of the 686 MiB `mixed` repository then downloads 1.05–1.07 GB
//! instead of 1.41–1.46 GB; from a directory, it reads 0.91 GB instead of 2.17 GB (the
//! copies out of the page cache cost CPU time that the restore needs). A stream that goes on
//! from a jump fetches only the rest of its window, and a read back inside a fetch no longer
//! kept is a jump: the loopback traffic of that restore from Garage went from 1.12 to 1.05 GB.
//!
//! A blob that lies across the line between two windows is served from both when both are
//! kept (copied into one buffer); when only its start is, only the rest is fetched, with the
//! whole next window. Before, each such blob was a jump of its own: a 128 KiB request, for
//! which Garage reads and checks a whole block of 1 MiB. From Garage, that restore went from
//! 969 requests (651 of them jumps) to 684 (436), and Garage's CPU time from 3.3 to 2.4 s.
//!
//! Trees are read in about the reverse of the order they were written: a directory's tree
//! follows its subdirectories' trees in the pack, and a walk visits it before them. So trees
//! have a read-ahead of their own (the walk and the restore workers would otherwise evict each
//! other's windows), whose windows reach as far back from the asked offset as forward.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Condvar, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};

use crate::id::ObjectId;

/// Bytes fetched by one read-ahead request that continues a recent one, from a remote store.
pub const WINDOW: u64 = 4 << 20;
/// The same from a local directory, where a read costs a system call, not a round trip: a
/// smaller window keeps memory down and copies fewer bytes out of the page cache that go
/// unused. (Eight windows of 4 MiB made the `image` restore's peak 14 MiB larger than four
/// did; eight of 1 MiB make it 15 MiB smaller, and the `mixed` restore's 20 MiB.)
const LOCAL_WINDOW: u64 = 1 << 20;
/// Bytes fetched by a read that jumps away from every recent one.
const JUMP_WINDOW: u64 = 128 << 10;
/// A local read at least this long is fetched as asked, not as a window: it fills most of
/// a window anyway, the kernel reads ahead in local files, and the caller can then open its
/// blobs where they lie instead of copying them out of a kept window.
const LOCAL_DIRECT: u64 = 256 << 10;
/// Windows kept: eight, so that a second stream (the changed files of a later backup, read
/// once every few files) keeps its window while the main stream's four workers come and go.
/// With four (of 4 MiB), the `mixed` restore fetched that window again 69 times.
const WINDOWS: usize = 8;
/// Recent fetches remembered to tell a continuing read from a jump.
const RECENT: usize = 16;

/// Recently fetched windows of packs, shared by the threads of one process.
///
/// A thread that needs bytes of a window another thread is fetching waits for that window
/// instead of fetching it again. From a local (not `remote`) store, reads of 256 KiB
/// (`LOCAL_DIRECT`) or more bypass the windows.
pub struct ReadAhead {
    remote: bool,
    /// Bytes fetched by a read that continues a stream: [`WINDOW`] or `LOCAL_WINDOW`.
    window: u64,
    /// Part of a window that lies before the asked offset.
    behind: u64,
    state: Mutex<State>,
    fetched: Condvar,
}

/// A fetched part of a pack: pack, start, end.
type Span = (ObjectId, u64, u64);

#[derive(Default)]
struct State {
    /// Kept windows, least recently used first.
    windows: VecDeque<(ObjectId, u64, Bytes)>,
    /// Windows being fetched.
    fetching: Vec<Span>,
    /// The last [`RECENT`] windows fetched.
    recent: VecDeque<Span>,
}

/// `parts` one after the other: the part itself if there is only one, else a copy of them all.
fn concat(parts: Vec<Bytes>) -> Bytes {
    match <[Bytes; 1]>::try_from(parts) {
        Ok([only]) => only,
        Err(parts) => {
            let mut joined = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            parts.iter().for_each(|part| joined.extend_from_slice(part));
            joined.freeze()
        }
    }
}

/// From `range.start` on, the spans (index, start, end) that in turn hold the most of
/// `range`: at each point, the one holding it that reaches furthest. Returns them, and where
/// they stop holding it (`range.end` if they hold all of it).
fn reach(spans: &[(usize, u64, u64)], range: &Range<u64>) -> (Vec<usize>, u64) {
    let mut used = Vec::new();
    let mut at = range.start;
    while at < range.end {
        let holding = spans
            .iter()
            .filter(|(_, start, end)| *start <= at && at < *end);
        let Some((i, _, end)) = holding.max_by_key(|(.., end)| *end) else {
            break;
        };
        used.push(*i);
        at = range.end.min(*end);
    }
    (used, at)
}

impl State {
    /// The kept windows of `pack` as spans for [`reach`].
    fn kept_spans(&self, pack: &ObjectId) -> Vec<(usize, u64, u64)> {
        let of_pack = self
            .windows
            .iter()
            .enumerate()
            .filter(|(_, w)| w.0 == *pack);
        of_pack
            .map(|(i, (_, start, bytes))| (i, *start, start + bytes.len() as u64))
            .collect()
    }

    /// The longest start of `range` of `pack` that kept windows hold, if any: sliced out of
    /// one window, or copied out of the two (or more) that a read across the line between
    /// windows lies in. The windows used become the most recently used.
    fn kept_start(&mut self, pack: &ObjectId, range: &Range<u64>) -> Option<Bytes> {
        let (mut used, _) = reach(&self.kept_spans(pack), range);
        if used.is_empty() {
            return None;
        }
        let mut from = range.start;
        let pieces = used.iter().map(|&i| {
            let (_, start, bytes) = &self.windows[i];
            let to = range.end.min(start + bytes.len() as u64);
            let piece = bytes.slice((from - start) as usize..(to - start) as usize);
            from = to;
            piece
        });
        let held = concat(pieces.collect());
        used.sort_unstable();
        for i in used.into_iter().rev() {
            let window = self.windows.remove(i)?;
            self.windows.push_back(window);
        }
        Some(held)
    }

    /// Whether windows kept or being fetched will hold all of `range`.
    fn being_fetched(&self, pack: &ObjectId, range: &Range<u64>) -> bool {
        let mut spans = self.kept_spans(pack);
        let fetching = self.fetching.iter().filter(|(id, ..)| id == pack);
        spans.extend(fetching.map(|(_, start, end)| (usize::MAX, *start, *end)));
        reach(&spans, range).1 == range.end
    }

    /// Keeps `window`, evicting the least recently used windows to stay within `budget`
    /// bytes.
    fn keep(&mut self, window: (ObjectId, u64, Bytes), budget: u64) {
        let mut kept: u64 = self.windows.iter().map(|w| w.2.len() as u64).sum();
        while kept + window.2.len() as u64 > budget {
            let Some((.., evicted)) = self.windows.pop_front() else {
                break;
            };
            kept -= evicted.len() as u64;
        }
        self.windows.push_back(window);
    }

    /// If a read at `offset` of `pack` continues recent fetches, where the last of them ends:
    /// the read starts after one, within a window of its end (or, reading around, within a
    /// window on either side). A read inside a recent fetch that is no longer kept is a jump
    /// back, such as a duplicate file's blobs, not a stream going on.
    fn continued(&self, pack: &ObjectId, offset: u64, behind: u64, window: u64) -> Option<u64> {
        let recent = || self.recent.iter().filter(|(id, ..)| id == pack);
        if behind == 0 && recent().any(|(_, start, end)| (*start..*end).contains(&offset)) {
            return None;
        }
        let continues = |(_, start, end): &&Span| {
            let from = match behind {
                0 => *end,
                _ => start.saturating_sub(2 * behind),
            };
            from <= offset && offset < end + window
        };
        recent().filter(continues).map(|s| s.2).max()
    }
}

/// A window one thread is fetching; dropping it (also on unwinding) wakes the threads
/// waiting for it, which then find it kept or fetch for themselves.
struct Fetching<'a> {
    ahead: &'a ReadAhead,
    window: Span,
}

impl Drop for Fetching<'_> {
    fn drop(&mut self) {
        if let Some(mut s) = self.ahead.lock() {
            s.fetching.retain(|f| *f != self.window);
        }
        self.ahead.fetched.notify_all();
    }
}

impl ReadAhead {
    /// A read-ahead for blobs read in the order they were written; see the type's
    /// documentation for `remote`.
    pub fn forward(remote: bool) -> Self {
        ReadAhead {
            remote,
            window: if remote { WINDOW } else { LOCAL_WINDOW },
            behind: 0,
            state: Mutex::default(),
            fetched: Condvar::new(),
        }
    }

    /// A read-ahead whose windows reach half back and half forward from the asked offset,
    /// for trees.
    pub fn around(remote: bool) -> Self {
        let forward = ReadAhead::forward(remote);
        ReadAhead {
            behind: forward.window / 2,
            ..forward
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
        let mut state = self.lock();
        let held = loop {
            let held = state.as_mut().and_then(|s| s.kept_start(pack, &range));
            let held_len = held.as_ref().map_or(0, |h| h.len() as u64);
            if held_len == range.end - range.start {
                return Ok(held.unwrap_or_default());
            }
            match state {
                Some(s) if s.being_fetched(pack, &range) => {
                    state = self.fetched.wait(s).ok();
                }
                _ => break held,
            }
        };
        // Only the part that no kept window holds is fetched, and joined to the held start;
        // a direct local read is fetched whole, so that its blobs are opened where they lie.
        let direct = !self.remote && range.end - range.start >= LOCAL_DIRECT;
        let held = held.filter(|_| !direct);
        let join = |fetched: Bytes| concat(held.iter().cloned().chain([fetched]).collect());
        let range = range.start + held.as_ref().map_or(0, |h| h.len() as u64)..range.end;
        let len = range.end - range.start;
        let continued = state
            .as_ref()
            .and_then(|s| s.continued(pack, range.start, self.behind, self.window));
        let (start, end) = match continued {
            // A stream's windows lie on a grid (see the module's documentation); going on from
            // a fetch that ended inside a window, the stream fetches the rest of that window.
            // A read across a grid line takes the next window along: it is wanted next, and
            // fetching the read alone would fetch its bytes twice.
            Some(after) if self.behind == 0 => {
                let cell = range.start / self.window * self.window;
                let end = range.end.div_ceil(self.window) * self.window;
                (cell.max(after), end.max(cell + self.window))
            }
            Some(_) => {
                let start = range.start.saturating_sub(self.behind);
                (start, start + self.window)
            }
            None => {
                let start = range.start.saturating_sub(self.behind.min(JUMP_WINDOW / 2));
                (start, start + JUMP_WINDOW)
            }
        };
        let end = pack_size.min(end);
        let window = (*pack, start, end.max(range.end));
        if let Some(s) = state.as_mut() {
            if s.recent.len() == RECENT {
                s.recent.pop_front();
            }
            s.recent.push_back(window);
        }
        if len >= self.window || end <= range.end || direct {
            drop(state);
            return fetch(range).map(join);
        }
        let fetching = Fetching {
            ahead: self,
            window,
        };
        if let Some(s) = state.as_mut() {
            s.fetching.push(fetching.window);
        }
        drop(state);
        let got = fetch(start..end)
            .ok()
            .filter(|w| w.len() as u64 == end - start);
        if let (Some(window), Some(mut s)) = (&got, self.lock()) {
            s.keep((*pack, start, window.clone()), WINDOWS as u64 * self.window);
        }
        drop(fetching);
        let at = (range.start - start) as usize;
        match got {
            Some(window) => Ok(join(window.slice(at..at + len as usize))),
            None => fetch(range).map(join),
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

    /// A pack of test bytes that records the ranges fetched from it.
    struct Pack {
        data: Bytes,
        asked: Mutex<Vec<Range<u64>>>,
    }

    impl Pack {
        fn new(len: usize) -> Pack {
            let data = (0..=255u8).cycle().take(len).collect::<Vec<_>>();
            Pack {
                data: data.into(),
                asked: Mutex::new(Vec::new()),
            }
        }

        fn fetch(&self, r: Range<u64>) -> Result<Bytes, ()> {
            self.asked.lock().unwrap().push(r.clone());
            Ok(self.data.slice(r.start as usize..r.end as usize))
        }

        /// The ranges fetched so far.
        fn asked(&self) -> Vec<Range<u64>> {
            self.asked.lock().unwrap().clone()
        }
    }

    #[test]
    fn reads_that_follow_share_a_window_and_jumps_fetch_little() {
        let id = ObjectId([1; 32]);
        let pack = Pack::new(40 << 20);
        let (data, fetch) = (&pack.data, |r| pack.fetch(r));
        let fetches = || pack.asked().len();
        let ra = ReadAhead::forward(false);
        let size = data.len() as u64;
        // The first read is a jump: a small window. The read after it fetches the rest of the
        // window of the grid it lies in, which serves every later read inside it.
        for start in (0..LOCAL_WINDOW - 100).step_by(4096) {
            let got = ra.read(&id, size, start..start + 100, fetch).unwrap();
            assert_eq!(got, data.slice(start as usize..start as usize + 100));
        }
        assert_eq!(pack.asked(), [0..JUMP_WINDOW, JUMP_WINDOW..LOCAL_WINDOW]);
        // A jump far into the pack fetches a small window again.
        let far = 30 << 20;
        assert_eq!(
            ra.read(&id, size, far..far + 10, fetch).unwrap(),
            data.slice(far as usize..far as usize + 10)
        );
        assert_eq!(pack.asked()[2], far..far + JUMP_WINDOW);
        // A read longer than a window passes through; near the end of the pack the window
        // is clipped; another pack misses.
        let big = ra.read(&id, size, 0..LOCAL_WINDOW + 1, fetch).unwrap();
        assert_eq!(big.len() as u64, LOCAL_WINDOW + 1);
        assert_eq!(pack.asked()[3], 0..LOCAL_WINDOW + 1);
        let tail = ra.read(&id, size, size - 10..size, fetch).unwrap();
        assert_eq!(tail, data.slice(data.len() - 10..));
        assert!(ra.read(&ObjectId([2; 32]), size, 0..10, fetch).is_ok());
        assert_eq!(fetches(), 6);
        // A large blob that continues a read: locally fetched as asked, from a remote store
        // with the rest of the window of the grid it lies in.
        let large = JUMP_WINDOW..JUMP_WINDOW + LOCAL_DIRECT;
        for (remote, fetched) in [(false, large.clone()), (true, JUMP_WINDOW..WINDOW)] {
            let ra = ReadAhead::forward(remote);
            ra.read(&id, size, 0..100, fetch).unwrap();
            let got = ra.read(&id, size, large.clone(), fetch).unwrap();
            assert_eq!(got, data.slice(large.start as usize..large.end as usize));
            assert_eq!(pack.asked().last(), Some(&fetched));
        }
    }

    #[test]
    fn a_stream_from_a_jump_fetches_the_rest_of_its_window_and_a_read_back_is_a_jump() {
        let id = ObjectId([1; 32]);
        let pack = Pack::new(40 << 20);
        let fetch = |r| pack.fetch(r);
        let size = pack.data.len() as u64;
        let ra = ReadAhead::forward(true);
        // A jump into the middle of a window, then a read just past it: the stream goes on
        // with the rest of that window, not with the part before the jump.
        let at = WINDOW + WINDOW / 2;
        ra.read(&id, size, at..at + 100, fetch).unwrap();
        let next = at + JUMP_WINDOW + 10;
        ra.read(&id, size, next..next + 100, fetch).unwrap();
        assert_eq!(
            pack.asked(),
            [at..at + JUMP_WINDOW, at + JUMP_WINDOW..2 * WINDOW]
        );
        // Once a stream through another pack has evicted those windows, a read inside them
        // again (a duplicate file's blobs) is a jump: it does not fetch the whole window again.
        let other = ObjectId([2; 32]);
        for start in (0..(WINDOWS as u64 + 1) * WINDOW).step_by(JUMP_WINDOW as usize) {
            ra.read(&other, size, start..start + 10, fetch).unwrap();
        }
        let back = at + JUMP_WINDOW + 1000;
        let got = ra.read(&id, size, back..back + 100, fetch).unwrap();
        assert_eq!(got, pack.data.slice(back as usize..back as usize + 100));
        assert_eq!(pack.asked().last(), Some(&(back..back + JUMP_WINDOW)));
    }

    #[test]
    fn a_read_across_windows_fetches_only_what_they_lack() {
        let id = ObjectId([1; 32]);
        let pack = Pack::new(40 << 20);
        let (data, fetch) = (&pack.data, |r| pack.fetch(r));
        let fetches = || pack.asked().len();
        let size = data.len() as u64;
        let expect = |r: &Range<u64>| data.slice(r.start as usize..r.end as usize);
        let ra = ReadAhead::forward(true);
        ra.read(&id, size, 0..100, fetch).unwrap();
        ra.read(&id, size, JUMP_WINDOW..JUMP_WINDOW + 100, fetch)
            .unwrap();
        assert_eq!(pack.asked(), [0..JUMP_WINDOW, JUMP_WINDOW..WINDOW]);
        // Across the line to the next window: the rest comes with the whole next window.
        let across = WINDOW - 1000..WINDOW + 1000;
        assert_eq!(
            ra.read(&id, size, across.clone(), fetch).unwrap(),
            expect(&across)
        );
        assert_eq!(pack.asked().last(), Some(&(WINDOW..2 * WINDOW)));
        // A worker ahead fetched the next window first: a read across the line between two
        // kept windows is served from both.
        let ahead = 2 * WINDOW + 5000..2 * WINDOW + 5100;
        ra.read(&id, size, ahead, fetch).unwrap();
        assert_eq!(pack.asked().last(), Some(&(2 * WINDOW..3 * WINDOW)));
        let before = fetches();
        let across = 2 * WINDOW - 1000..2 * WINDOW + 1000;
        assert_eq!(
            ra.read(&id, size, across.clone(), fetch).unwrap(),
            expect(&across)
        );
        assert_eq!(fetches(), before);
        // Small windows fetched by jumps elsewhere do not evict the stream's windows: memory
        // is counted in bytes.
        for other in 2..2 + 2 * WINDOWS as u8 {
            ra.read(&ObjectId([other; 32]), size, 0..10, fetch).unwrap();
        }
        let before = fetches();
        let inside = WINDOW + 10..WINDOW + 20;
        assert_eq!(
            ra.read(&id, size, inside.clone(), fetch).unwrap(),
            expect(&inside)
        );
        assert_eq!(fetches(), before);
    }

    #[test]
    fn a_window_in_use_outlives_newer_ones_and_tree_windows_reach_back() {
        let id = ObjectId([1; 32]);
        let pack = Pack::new(64 << 20);
        let fetch = |r| pack.fetch(r);
        let fetches = || pack.asked().len();
        let size = pack.data.len() as u64;
        let ra = ReadAhead::forward(false);
        // A stream through the pack, and now and then a read of a second, small region
        // (the changed files of a later backup): that window stays kept while the stream's
        // windows come and go.
        let other = 60 << 20;
        ra.read(&id, size, other..other + 10, fetch).unwrap();
        ra.read(&id, size, other + 20..other + 30, fetch).unwrap();
        let before = fetches();
        for (i, start) in (0..40 << 20).step_by(64 << 10).enumerate() {
            ra.read(&id, size, start..start + 100, fetch).unwrap();
            if i % 8 == 0 {
                ra.read(&id, size, other + i as u64..other + i as u64 + 10, fetch)
                    .unwrap();
            }
        }
        let stream = pack.asked()[before..]
            .iter()
            .filter(|r| r.start < other)
            .count();
        assert_eq!(
            fetches() - before,
            stream,
            "the second region was fetched again"
        );
        let windows = (40 << 20) / LOCAL_WINDOW as usize;
        assert!(
            stream <= windows + 2,
            "{stream} fetches for {windows} windows of stream"
        );

        // Trees: a walk visits a directory before the subdirectories stored ahead of it.
        let ra = ReadAhead::around(false);
        let at = 20 << 20;
        let before = fetches();
        for back in (0..LOCAL_WINDOW / 2).step_by(4096) {
            ra.read(&id, size, at - back..at - back + 10, fetch)
                .unwrap();
        }
        // A small window around the first read, then a whole one around the first read
        // past it, which reaches back past all the others.
        let fetched = pack.asked()[before..].to_vec();
        assert_eq!(fetched.len(), 2, "{fetched:?}");
        assert_eq!(fetched[0], at - JUMP_WINDOW / 2..at + JUMP_WINDOW / 2);
        assert!(fetched[1].start < at - LOCAL_WINDOW / 2 + 4096);
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
        let size = data.len() as u64;
        // From either kind of store.
        for remote in [false, true] {
            let ra = ReadAhead::forward(remote);
            fetches.store(0, std::sync::atomic::Ordering::SeqCst);
            std::thread::scope(|scope| {
                let first = scope.spawn(|| ra.read(&pack, size, 0..100, fetch));
                std::thread::sleep(std::time::Duration::from_millis(50));
                // Inside the window the first thread is fetching: served from it.
                let second = ra.read(&pack, size, 1000..2000, fetch).unwrap();
                assert_eq!(second, data.slice(1000..2000));
                assert_eq!(first.join().unwrap().unwrap(), data.slice(0..100));
            });
            assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
            // Workers going on from the same stream at different offsets (the later file first)
            // want the same window of the grid: one fetch.
            ra.read(&pack, size, 5 << 20..(5 << 20) + 100, fetch)
                .unwrap();
            std::thread::scope(|scope| {
                let first = scope.spawn(|| {
                    let ahead = (5 << 20) + 300_000;
                    ra.read(&pack, size, ahead..ahead + 100, fetch)
                });
                std::thread::sleep(std::time::Duration::from_millis(50));
                let behind = (5 << 20) + 200_000;
                let second = ra.read(&pack, size, behind..behind + 100, fetch).unwrap();
                assert_eq!(second.len(), 100);
                assert_eq!(first.join().unwrap().unwrap().len(), 100);
            });
            assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 3);
        }
    }
}
