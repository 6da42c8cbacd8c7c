//! Content-defined chunking: FastCDC with normalized chunking and a secret gear table.
//!
//! Cut points depend only on content, so an insertion early in a file shifts only nearby
//! chunks. The gear table is derived from the repository's secret chunker seed: without it,
//! chunk sizes reveal nothing an attacker can match against known files. This module owns
//! cut-point selection and streaming a reader into chunks; it never hashes or stores them.

use std::io::{self, Read};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Chunk size bounds, fixed at `init` and recorded in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// No chunk is shorter, except the last of a file.
    pub min: u32,
    /// The target average; rounded to a power of two for the masks.
    pub avg: u32,
    /// No chunk is longer.
    pub max: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min: 512 * 1024,
            avg: 1024 * 1024,
            max: 8 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Checks `1 KiB <= min < avg < max <= 64 MiB`.
    pub fn validate(&self) -> Result<()> {
        let ok = 1024 <= self.min
            && self.min < self.avg
            && self.avg < self.max
            && self.max <= 64 * 1024 * 1024;
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "chunk sizes min {} / avg {} / max {} are invalid: need 1 KiB <= min < avg < max <= 64 MiB",
                self.min, self.avg, self.max
            )))
        }
    }
}

/// Finds cut points with a seeded gear table.
#[derive(Clone)]
pub struct Chunker {
    gear: Box<[u64; 256]>,
    params: ChunkerParams,
    mask_small: u64,
    mask_large: u64,
}

impl Chunker {
    /// A chunker for `params` whose gear table is derived from `seed`.
    pub fn new(params: ChunkerParams, seed: &[u8; 32]) -> Self {
        let mut xof = blake3::Hasher::new_keyed(seed);
        xof.update(b"coffer fastcdc gear table v1");
        let mut bytes = [0u8; 256 * 8];
        xof.finalize_xof().fill(&mut bytes);
        let mut gear = Box::new([0u64; 256]);
        for (g, b) in gear.iter_mut().zip(bytes.chunks_exact(8)) {
            *g = u64::from_le_bytes(b.try_into().expect("chunks_exact(8) yields 8 bytes"));
        }
        let bits = (f64::from(params.avg)).log2().round() as u32;
        // Normalized chunking (level 2): a harder mask before the average, an easier one after.
        // Top bits of the rolling hash depend on the last 64 bytes, so the masks sit there.
        let top = |n: u32| (!0u64) << (64 - n);
        Chunker {
            gear,
            params,
            mask_small: top(bits + 2),
            mask_large: top(bits - 2),
        }
    }

    /// The length of the next chunk at the start of `data`, or `None` if more data is needed
    /// to decide. With `eof`, the rest of `data` is the whole remaining input.
    pub fn cut(&self, data: &[u8], eof: bool) -> Option<usize> {
        let (min, avg, max) = (
            self.params.min as usize,
            self.params.avg as usize,
            self.params.max as usize,
        );
        if data.len() <= min {
            return eof.then_some(data.len());
        }
        let end = data.len().min(max);
        let center = end.min(avg).max(min);
        let gear = &*self.gear;
        let mut hash = 0u64;
        // The position in `data[from..to]` after which `hash & mask` is first 0. Four bytes
        // per step: the hash after them is `hash << 4` plus a term of the four alone, so the
        // loop-carried chain is one shift and one add per four bytes; the hashes between
        // are computed beside it, and one branch tests all four. Slices, not indexing: no
        // bounds checks.
        // A run of one byte `b` drives the hash to its fixed point `-gear[b]`
        // (`(h << 1) + g = h` for `h = -g`) within 64 bytes, and it stays there until the run
        // ends. So when a block of the scan ends at the fixed point without a cut, the rest of
        // the run cannot cut either and is skipped: the zeros of disk images and sparse data
        // are not scanned byte by byte.
        let mut scan = |from: usize, to: usize, mask: u64| {
            let mut at = 0;
            while from + at < to {
                let block = &data[from + at..(from + at + RUN_CHECK).min(to)];
                let mut quads = block.chunks_exact(4);
                for quad in &mut quads {
                    let [g0, g1, g2, g3] = [0, 1, 2, 3].map(|i| gear[quad[i] as usize]);
                    let t1 = g0;
                    let t2 = (t1 << 1).wrapping_add(g1);
                    let t3 = (t2 << 1).wrapping_add(g2);
                    let t4 = (t3 << 1).wrapping_add(g3);
                    let h = [
                        (hash << 1).wrapping_add(t1),
                        (hash << 2).wrapping_add(t2),
                        (hash << 3).wrapping_add(t3),
                        (hash << 4).wrapping_add(t4),
                    ];
                    hash = h[3];
                    let hit = (h[0] & mask == 0)
                        | (h[1] & mask == 0)
                        | (h[2] & mask == 0)
                        | (h[3] & mask == 0);
                    if hit {
                        return h.iter().position(|h| h & mask == 0).map(|i| at + i);
                    }
                    at += 4;
                }
                for &b in quads.remainder() {
                    hash = (hash << 1).wrapping_add(gear[b as usize]);
                    if hash & mask == 0 {
                        return Some(at);
                    }
                    at += 1;
                }
                let last = block[block.len() - 1];
                if hash == gear[last as usize].wrapping_neg() {
                    at += run_length(&data[from + at..to], last);
                }
            }
            None
        };
        if let Some(i) = scan(min, center, self.mask_small) {
            return Some(min + i + 1);
        }
        if let Some(i) = scan(center, end, self.mask_large) {
            return Some(center + i + 1);
        }
        (end == max || eof).then_some(end)
    }

    /// The largest chunk this chunker produces.
    pub fn max_size(&self) -> usize {
        self.params.max as usize
    }
}

/// Bytes scanned between checks for a run of one byte (see [`Chunker::cut`]).
const RUN_CHECK: usize = 4096;

/// How many bytes at the start of `data` equal `byte`.
pub(crate) fn run_length(data: &[u8], byte: u8) -> usize {
    // Whole blocks first, compared without an early exit so the comparison vectorizes.
    let same = data
        .chunks_exact(64)
        .take_while(|block| block.iter().fold(0, |any, &b| any | (b ^ byte)) == 0)
        .count()
        * 64;
    same + data[same..].iter().take_while(|&&b| b == byte).count()
}

/// Streams a reader as chunks through a window of two maximum chunk sizes.
///
/// The window buffer is zero-filled once and can be handed from file to file
/// ([`ChunkStream::with_buffer`], [`ChunkStream::into_buffer`]), so a small file costs no
/// allocation. Unread bytes move to the front only after more than a maximum chunk has been
/// consumed, so each byte is moved at most once.
pub struct ChunkStream<'a, R> {
    chunker: &'a Chunker,
    reader: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<'a, R: Read> ChunkStream<'a, R> {
    /// Chunks `reader` with `chunker`.
    pub fn new(chunker: &'a Chunker, reader: R) -> Self {
        Self::with_buffer(chunker, reader, Vec::new())
    }

    /// Chunks `reader`, reusing `buf` (from [`ChunkStream::into_buffer`]) as the window.
    pub fn with_buffer(chunker: &'a Chunker, reader: R, mut buf: Vec<u8>) -> Self {
        let size = 2 * chunker.max_size();
        if buf.len() < size {
            buf.resize(size, 0);
        }
        ChunkStream {
            chunker,
            reader,
            buf,
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// Gives the window buffer back for the next stream.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// Reads until the window holds a maximum chunk past `start`, or the input ends.
    fn fill(&mut self) -> io::Result<()> {
        let want = self.chunker.max_size();
        if self.buf.len() - self.start < want {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while !self.eof && self.end - self.start < want {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next chunk, `None` at the end of the input.
    pub fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        loop {
            // Cut only with a maximum chunk in the window (or at the end of the input): a cut
            // that needed more data would be scanned again after the read.
            if !self.eof && self.end - self.start < self.chunker.max_size() {
                self.fill()?;
            }
            let rest = &self.buf[self.start..self.end];
            if self.eof && rest.is_empty() {
                return Ok(None);
            }
            if let Some(n) = self.chunker.cut(rest, self.eof) {
                let begin = self.start;
                self.start += n;
                return Ok(Some(&self.buf[begin..begin + n]));
            }
            self.fill()?;
        }
    }
}

/// Streams a reader as chunks that own their bytes without a copy: each chunk is a
/// [`Bytes`] slice of a window read whole (at least 8 MiB, and at least a maximum chunk).
/// Only the unfinished chunk at a window's end (shorter than a maximum chunk) is copied, to
/// the front of the next window, and scanned again there. A window is reused once the last of its chunks is dropped, so
/// a long file does not churn the allocator with window-sized blocks (glibc then keeps
/// freed ones and the process grows). The chunks are exactly those of [`ChunkStream`].
pub struct OwnedChunks<'a, R> {
    chunker: &'a Chunker,
    reader: R,
    window: Bytes,
    start: usize,
    window_size: usize,
    eof: bool,
    /// Earlier windows, some of whose chunks may still be in use.
    retired: Vec<Bytes>,
}

/// Windows kept for reuse; more in use at once are dropped when done.
const RETIRED_WINDOWS: usize = 4;

impl<'a, R: Read> OwnedChunks<'a, R> {
    /// Chunks `reader` with `chunker`.
    pub fn new(chunker: &'a Chunker, reader: R) -> Self {
        Self::with_window(chunker, reader, 8 << 20)
    }

    fn with_window(chunker: &'a Chunker, reader: R, window_size: usize) -> Self {
        OwnedChunks {
            chunker,
            reader,
            window: Bytes::new(),
            start: 0,
            window_size: window_size.max(chunker.max_size()),
            eof: false,
            retired: Vec::new(),
        }
    }

    /// An empty buffer of a window's size: a retired window none of whose chunks is left, or
    /// a new one.
    fn spare_buffer(&mut self) -> Vec<u8> {
        let unused = self.retired.iter().position(Bytes::is_unique);
        if let Some(Ok(mut window)) = unused.map(|i| self.retired.swap_remove(i).try_into_mut()) {
            window.clear();
            let buffer = Vec::from(window);
            if buffer.capacity() == self.window_size {
                return buffer;
            }
        }
        Vec::with_capacity(self.window_size)
    }

    /// Reads the next window: the unfinished rest of this one, then input up to the window's
    /// size (or the input's end).
    fn fill(&mut self) -> io::Result<()> {
        let old = std::mem::take(&mut self.window);
        let mut next = self.spare_buffer();
        next.extend_from_slice(&old[self.start..]);
        if self.retired.len() < RETIRED_WINDOWS && !old.is_empty() {
            self.retired.push(old);
        }
        let want = self.window_size;
        while next.len() < want {
            match (&mut self.reader)
                .take((want - next.len()) as u64)
                .read_to_end(&mut next)
            {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        (self.window, self.start) = (Bytes::from(next), 0);
        Ok(())
    }

    /// The next chunk, `None` at the end of the input.
    pub fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let rest = &self.window[self.start..];
            if self.eof && rest.is_empty() {
                return Ok(None);
            }
            if let Some(n) = self.chunker.cut(rest, self.eof) {
                let begin = self.start;
                self.start += n;
                return Ok(Some(self.window.slice(begin..begin + n)));
            }
            self.fill()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams {
            min: 1024,
            avg: 4096,
            max: 16384,
        }
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut out = vec![0u8; n];
        let mut h = blake3::Hasher::new();
        h.update(&seed.to_le_bytes());
        h.finalize_xof().fill(&mut out);
        out
    }

    /// Random bytes broken by runs of one byte (zeros, 0xff or another), some longer than a
    /// chunk.
    fn with_runs(n: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        let mut next = || {
            // splitmix64
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let z = (state ^ (state >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let r = next();
            let len = (r >> 8) as usize % 20_000;
            if r & 1 == 0 {
                out.extend(pseudo_random(len % 3000, r));
            } else {
                let byte = [0, 0xff, (r >> 40) as u8][(r >> 2) as usize % 3];
                out.resize(out.len() + len, byte);
            }
        }
        out.truncate(n);
        out
    }

    #[test]
    fn runs_are_measured_whole() {
        let mut data = vec![7u8; 200];
        data.push(8);
        for start in [0, 1, 63, 64, 65, 137, 200] {
            assert_eq!(run_length(&data[start..], 7), 200 - start);
        }
        assert_eq!(run_length(&data[..130], 7), 130);
        assert_eq!(run_length(&data, 8), 0);
        assert_eq!(run_length(&[], 0), 0);
    }

    fn chunk_all(c: &Chunker, data: &[u8]) -> Vec<Vec<u8>> {
        let mut s = ChunkStream::new(c, data);
        let mut out = Vec::new();
        while let Some(ch) = s.next_chunk().unwrap() {
            out.push(ch.to_vec());
        }
        out
    }

    /// A reader that returns at most `step` bytes per read.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn golden_boundaries_of_seeded_data() {
        // These lengths are part of the format: changing them breaks dedup with old repos.
        let c = Chunker::new(small(), &[1; 32]);
        let lens: Vec<usize> = chunk_all(&c, &pseudo_random(64 * 1024, 9))
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(lens.iter().sum::<usize>(), 64 * 1024);
        assert_eq!(lens, GOLDEN);
    }
    const GOLDEN: &[usize] = &[
        5019, 4537, 4542, 4401, 4713, 4475, 4122, 5071, 4310, 7024, 1857, 4152, 4461, 4307, 2545,
    ];

    #[test]
    fn seed_changes_boundaries() {
        let data = pseudo_random(256 * 1024, 3);
        let a = chunk_all(&Chunker::new(small(), &[1; 32]), &data);
        let b = chunk_all(&Chunker::new(small(), &[2; 32]), &data);
        assert_ne!(
            a.iter().map(Vec::len).collect::<Vec<_>>(),
            b.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }

    #[test]
    fn insertion_shifts_only_nearby_chunks() {
        let c = Chunker::new(small(), &[5; 32]);
        let data = pseudo_random(512 * 1024, 4);
        let mut edited = data.clone();
        edited.splice(100_000..100_000, b"inserted".iter().copied());
        let a: std::collections::HashSet<_> = chunk_all(&c, &data).into_iter().collect();
        let b = chunk_all(&c, &edited);
        let shared = b.iter().filter(|ch| a.contains(*ch)).count();
        assert!(
            shared + 3 >= b.len(),
            "only chunks near the edit may change"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn chunks_concatenate_to_input(len in 0usize..100_000, seed in any::<u64>()) {
            let c = Chunker::new(small(), &[3; 32]);
            let data = pseudo_random(len, seed);
            let chunks = chunk_all(&c, &data);
            prop_assert_eq!(chunks.concat(), data);
            let n = chunks.len();
            for (i, ch) in chunks.iter().enumerate() {
                prop_assert!(ch.len() <= 16384);
                prop_assert!(i + 1 == n || ch.len() >= 1024);
            }
        }

        /// Owned chunks are the window's chunks, whatever the window size and however the
        /// reader splits its reads.
        #[test]
        fn owned_chunks_match_the_window_stream(
            len in 0usize..200_000, seed in any::<u64>(), window in 1usize..40_000,
            step in 1usize..70_000,
        ) {
            let c = Chunker::new(small(), &[6; 32]);
            let data = pseudo_random(len, seed);
            let mut owned = OwnedChunks::with_window(&c, Trickle(&data, step), window);
            let mut chunks = Vec::new();
            while let Some(chunk) = owned.next_chunk().unwrap() {
                chunks.push(chunk.to_vec());
            }
            prop_assert_eq!(chunks, chunk_all(&c, &data));
        }

        /// The two-bytes-a-step scan cuts where the plain definition of the rolling hash does.
        #[test]
        fn cuts_match_the_byte_at_a_time_definition(
            len in 0usize..40_000, seed in any::<u64>(), eof in any::<bool>(),
            runs in any::<bool>(),
        ) {
            let c = Chunker::new(small(), &[5; 32]);
            let data = if runs { with_runs(len, seed) } else { pseudo_random(len, seed) };
            let reference = || {
                if data.len() <= 1024 {
                    return eof.then_some(data.len());
                }
                let end = data.len().min(16384);
                let mut hash = 0u64;
                for (i, &b) in data.iter().enumerate().take(end).skip(1024) {
                    hash = (hash << 1).wrapping_add(c.gear[b as usize]);
                    let mask = if i < 4096 { c.mask_small } else { c.mask_large };
                    if hash & mask == 0 {
                        return Some(i + 1);
                    }
                }
                (end == 16384 || eof).then_some(end)
            };
            prop_assert_eq!(c.cut(&data, eof), reference());
        }
    }

    #[test]
    fn params_validation() {
        assert!(ChunkerParams::default().validate().is_ok());
        assert!(
            ChunkerParams {
                min: 10,
                avg: 20,
                max: 30
            }
            .validate()
            .is_err()
        );
        assert!(
            ChunkerParams {
                min: 4096,
                avg: 2048,
                max: 8192
            }
            .validate()
            .is_err()
        );
    }
}
