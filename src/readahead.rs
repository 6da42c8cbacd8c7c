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
use std::sync::Mutex;

use bytes::Bytes;

use crate::id::ObjectId;

/// Bytes fetched by one read-ahead request.
pub const WINDOW: u64 = 4 << 20;
/// Windows kept.
const WINDOWS: usize = 4;

/// Recently fetched windows of packs, shared by the threads of one process.
#[derive(Default)]
pub struct ReadAhead {
    windows: Mutex<VecDeque<(ObjectId, u64, Bytes)>>,
}

impl ReadAhead {
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
        if let Some(hit) = self.cached(pack, &range) {
            return Ok(hit);
        }
        let len = range.end - range.start;
        let end = pack_size.min(range.start + WINDOW);
        if len >= WINDOW || end <= range.end {
            return fetch(range);
        }
        let window = match fetch(range.start..end) {
            Ok(w) if w.len() as u64 == end - range.start => w,
            _ => return fetch(range),
        };
        let wanted = window.slice(0..len as usize);
        if let Ok(mut windows) = self.windows.lock() {
            if windows.len() == WINDOWS {
                windows.pop_front();
            }
            windows.push_back((*pack, range.start, window));
        }
        Ok(wanted)
    }

    fn cached(&self, pack: &ObjectId, range: &Range<u64>) -> Option<Bytes> {
        let windows = self.windows.lock().ok()?;
        windows.iter().rev().find_map(|(id, start, bytes)| {
            let end = start + bytes.len() as u64;
            (id == pack && *start <= range.start && range.end <= end)
                .then(|| bytes.slice((range.start - start) as usize..(range.end - start) as usize))
        })
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
        let ra = ReadAhead::default();
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
}
