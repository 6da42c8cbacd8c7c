//! The index: which pack holds each blob, at which offset.
//!
//! Each backup writes index objects (`index/<id>`) listing the packs it uploaded and their
//! blobs; they are sealed like everything else. Opening a repository loads them into a
//! compact in-memory map (about 60 bytes per blob). The repository's packs remain the source
//! of truth: `check --read-data` compares every index entry with the pack headers.
//!
//! Encoding of the sealed plaintext (all integers little-endian):
//! `version u8 = 1 ‖ pack count u32 ‖ { pack id [32] ‖ pack size u64 ‖ blob count u32 ‖
//!  { type u8 ‖ offset u32 ‖ length u32 ‖ raw length u32 ‖ blob id [32] }* }*`.

use std::collections::HashSet;

use crate::blob::BlobType;
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::id::{BlobId, ObjectId};
use crate::pack::PackEntry;

const INDEX_AD: &[u8] = b"coffer index v1";
const INDEX_VERSION: u8 = 1;
const BLOB_LEN: usize = 1 + 4 + 4 + 4 + 32;

/// One pack as listed in an index object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedPack {
    /// The pack's name.
    pub id: ObjectId,
    /// The pack's total stored size.
    pub size: u64,
    /// Its blobs.
    pub entries: Vec<PackEntry>,
}

/// Encodes and seals an index object.
pub fn seal_index(keys: &Keys, packs: &[IndexedPack]) -> Result<Vec<u8>> {
    let mut out = vec![INDEX_VERSION];
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for p in packs {
        out.extend_from_slice(&p.id.0);
        out.extend_from_slice(&p.size.to_le_bytes());
        out.extend_from_slice(&(p.entries.len() as u32).to_le_bytes());
        for e in &p.entries {
            out.push(e.kind.code());
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.length.to_le_bytes());
            out.extend_from_slice(&e.raw_length.to_le_bytes());
            out.extend_from_slice(&e.id.0);
        }
    }
    keys.seal(INDEX_AD, &out)
}

/// Opens an index object.
pub fn open_index(keys: &Keys, sealed: &[u8]) -> Result<Vec<IndexedPack>> {
    decode_index(&keys.open(INDEX_AD, sealed)?)
}

/// A cursor over untrusted bytes that fails instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::corrupt("index is truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?
                .try_into()
                .map_err(|_| Error::corrupt("u32"))?,
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?
                .try_into()
                .map_err(|_| Error::corrupt("u64"))?,
        ))
    }
}

/// Decodes a decrypted index (exposed for fuzzing).
pub fn decode_index(plain: &[u8]) -> Result<Vec<IndexedPack>> {
    let mut r = Reader(plain);
    let version = r.take(1)?[0];
    if version != INDEX_VERSION {
        return Err(Error::new(
            crate::error::ErrorKind::UnsupportedVersion,
            format!("index version {version} is unknown; upgrade coffer"),
        ));
    }
    let count = r.u32()? as usize;
    let mut packs = Vec::with_capacity(count.min(plain.len() / 44));
    for _ in 0..count {
        let id = ObjectId::from_slice(r.take(32)?)?;
        let size = r.u64()?;
        let n = r.u32()? as usize;
        let mut entries = Vec::with_capacity(n.min(r.0.len() / BLOB_LEN));
        for _ in 0..n {
            let kind = BlobType::from_code(r.take(1)?[0])?;
            let (offset, length, raw_length) = (r.u32()?, r.u32()?, r.u32()?);
            if u64::from(offset) + u64::from(length) > size {
                return Err(Error::corrupt(
                    "index entry lies beyond the end of its pack",
                ));
            }
            let id = BlobId::from_slice(r.take(32)?)?;
            entries.push(PackEntry {
                kind,
                id,
                offset,
                length,
                raw_length,
            });
        }
        packs.push(IndexedPack { id, size, entries });
    }
    if !r.0.is_empty() {
        return Err(Error::corrupt("index has trailing bytes"));
    }
    Ok(packs)
}

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The pack's name.
    pub pack: ObjectId,
    /// Data or tree.
    pub kind: BlobType,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Size of the whole pack.
    pub pack_size: u64,
}

/// One blob in memory: 44 bytes, no padding. Bit 31 of `pack` says the blob is a tree. The
/// plaintext length is not kept: opening a blob checks its content against its keyed id.
#[derive(Clone, Copy)]
struct Entry {
    id: BlobId,
    pack: u32,
    offset: u32,
    length: u32,
}

const TREE_BIT: u32 = 1 << 31;

impl Entry {
    fn pack_index(&self) -> usize {
        (self.pack & !TREE_BIT) as usize
    }
}

/// Ids are uniformly random: their first 8 bytes, as a number, order them almost always
/// without a byte-wise comparison of all 32.
fn prefix(id: &BlobId) -> u64 {
    let mut head = [0; 8];
    head.copy_from_slice(&id.0[..8]);
    u64::from_be_bytes(head)
}

fn by_id(a: &BlobId, b: &BlobId) -> std::cmp::Ordering {
    prefix(a).cmp(&prefix(b)).then_with(|| a.0.cmp(&b.0))
}

/// Bits of an id's prefix that pick its bucket in the fence.
const FENCE_BITS: u32 = 16;

/// The index's order: by id, and entries of one id by pack number (so that `dedup` keeps
/// the earliest-added pack).
fn order(x: &Entry, y: &Entry) -> std::cmp::Ordering {
    by_id(&x.id, &y.id).then(x.pack_index().cmp(&y.pack_index()))
}

/// Sorts `entries` whose first `sorted` are in order already, as after a backup adds its
/// packs to an opened index: the others are sorted apart and merged in from the end, so no
/// entry moves more than once (at 10^7 blobs, sorting everything again took a second).
fn merge_added(entries: &mut [Entry], sorted: usize) {
    let mut added = entries[sorted..].to_vec();
    added.sort_unstable_by(order);
    let (mut i, mut j, mut at) = (sorted, added.len(), entries.len());
    // Fill from the end with the larger of the two lists' last entries; once `added` is
    // used up, the rest of the sorted entries are where they belong.
    while j > 0 {
        at -= 1;
        if i > 0 && order(&entries[i - 1], &added[j - 1]).is_gt() {
            entries[at] = entries[i - 1];
            i -= 1;
        } else {
            entries[at] = added[j - 1];
            j -= 1;
        }
    }
}

/// The in-memory index of every blob in the repository.
///
/// A flat array of 44-byte entries sorted by id: a third of the memory of a hash map of the
/// same blobs, and built with one allocation of the right size (see [`Index::with_capacity`]),
/// so 10^7 blobs take 440 MB. Packs are numbered in the order they are added; a table holds
/// each one's id and size (40 bytes a pack) and the pack numbers sorted by id (4 bytes). A
/// fence of 2^16 offsets (256 KiB) says where the ids starting with each 16-bit prefix begin,
/// so a lookup bisects only its bucket (about 150 entries at 10^7 blobs), close together in
/// memory. Entries pushed since the last [`Index::sort`] are searched linearly, so lookups
/// are always right; callers sort after adding many packs.
#[derive(Default)]
pub struct Index {
    /// Id and size of each pack, by pack number.
    packs: Vec<(ObjectId, u64)>,
    /// The numbers of the packs added before the last sort, ordered by pack id.
    pack_order: Vec<u32>,
    /// Ids of the packs added since the last sort, to ignore a pack added twice.
    pending: HashSet<ObjectId>,
    entries: Vec<Entry>,
    /// `entries[..sorted]` is sorted by id with no duplicates.
    sorted: usize,
    /// `fence[p]`: the first sorted entry whose id's top [`FENCE_BITS`] are at least `p`;
    /// empty until the first sort.
    fence: Vec<u32>,
}

impl Index {
    /// An empty index with room for `blobs` entries.
    pub fn with_capacity(blobs: usize) -> Self {
        Index {
            entries: Vec::with_capacity(blobs),
            ..Index::default()
        }
    }

    /// The most blob entries an index object of `sealed_len` bytes can hold.
    pub fn max_entries(sealed_len: u64) -> usize {
        (sealed_len / BLOB_LEN as u64) as usize
    }

    /// Adds a pack's blobs, to be found after the next [`Index::sort`] (or linearly until then).
    /// A pack already known is ignored.
    pub fn push_pack(&mut self, pack: &IndexedPack) {
        if self.has_sorted_pack(&pack.id) || !self.pending.insert(pack.id) {
            return;
        }
        let n = self.packs.len() as u32;
        self.packs.push((pack.id, pack.size));
        self.entries.extend(pack.entries.iter().map(|e| Entry {
            id: e.id,
            pack: n | if e.kind == BlobType::Tree {
                TREE_BIT
            } else {
                0
            },
            offset: e.offset,
            length: e.length,
        }));
    }

    /// Whether `pack` was added before the last sort.
    fn has_sorted_pack(&self, pack: &ObjectId) -> bool {
        let packs = &self.packs;
        self.pack_order
            .binary_search_by(|&n| packs[n as usize].0.cmp(pack))
            .is_ok()
    }

    /// Adds a pack's blobs and sorts.
    pub fn add_pack(&mut self, pack: &IndexedPack) {
        self.push_pack(pack);
        self.sort();
    }

    /// Sorts every entry by id; a blob stored in several packs keeps the earliest-added pack.
    pub fn sort(&mut self) {
        if !self.pending.is_empty() {
            // Release the set's memory: at 10^7 blobs it held 312,500 pack ids.
            self.pending = HashSet::new();
            let packs = &self.packs;
            self.pack_order = (0..packs.len() as u32).collect();
            self.pack_order
                .sort_unstable_by(|&a, &b| packs[a as usize].0.cmp(&packs[b as usize].0));
        }
        if self.sorted == self.entries.len() {
            return;
        }
        let added = self.entries.len() - self.sorted;
        if self.sorted > 0 && added <= self.sorted / 16 {
            merge_added(&mut self.entries, self.sorted);
        } else {
            self.entries.sort_unstable_by(order);
        }
        self.entries.dedup_by(|later, first| later.id == first.id);
        self.sorted = self.entries.len();
        let buckets = 1usize << FENCE_BITS;
        self.fence.clear();
        self.fence.reserve_exact(buckets + 1);
        let mut at = 0;
        for bucket in 0..buckets as u64 {
            while at < self.sorted && prefix(&self.entries[at].id) >> (64 - FENCE_BITS) < bucket {
                at += 1;
            }
            self.fence.push(at as u32);
        }
        self.fence.push(self.sorted as u32);
    }

    fn find(&self, id: &BlobId) -> Option<&Entry> {
        let bucket = (prefix(id) >> (64 - FENCE_BITS)) as usize;
        let (lo, hi) = match self.fence.get(bucket..bucket + 2) {
            Some(&[lo, hi]) => (lo as usize, hi as usize),
            _ => (0, self.sorted),
        };
        let sorted = &self.entries[lo..hi];
        match sorted.binary_search_by(|e| by_id(&e.id, id)) {
            Ok(i) => Some(&sorted[i]),
            Err(_) => self.entries[self.sorted..].iter().find(|e| e.id == *id),
        }
    }

    /// Where `id` is stored, if anywhere.
    pub fn get(&self, id: &BlobId) -> Option<Location> {
        self.find(id).map(|e| Location {
            pack: self.packs[e.pack_index()].0,
            pack_size: self.packs[e.pack_index()].1,
            kind: if e.pack & TREE_BIT != 0 {
                BlobType::Tree
            } else {
                BlobType::Data
            },
            offset: e.offset,
            length: e.length,
        })
    }

    /// Whether `id` is stored.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.find(id).is_some()
    }

    /// Every indexed pack with its size, ordered by pack id (as of the last sort).
    pub fn packs(&self) -> impl ExactSizeIterator<Item = (&ObjectId, u64)> {
        self.pack_order.iter().map(|&n| {
            let (id, size) = &self.packs[n as usize];
            (id, *size)
        })
    }

    /// Number of blob entries (distinct blobs once sorted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no blob is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(id: u8, blobs: impl IntoIterator<Item = u8>) -> IndexedPack {
        let entries = blobs
            .into_iter()
            .map(|b| PackEntry {
                kind: BlobType::Data,
                id: BlobId([b; 32]),
                offset: u32::from(id),
                length: 1,
                raw_length: 1,
            })
            .collect();
        IndexedPack {
            id: ObjectId([id; 32]),
            size: 1000,
            entries,
        }
    }

    proptest::proptest! {
        #[test]
        fn merging_added_entries_sorts_them_all(
            blobs in proptest::collection::vec((0u8..4, 0u8..8, 0u32..5), 0..300),
            split in 0usize..300,
        ) {
            // 32 ids (4 first bytes, 8 last bytes), so many appear in several packs.
            let mut entries: Vec<Entry> = blobs
                .iter()
                .map(|&(first, last, pack)| {
                    let mut id = [0u8; 32];
                    (id[0], id[31]) = (first << 6, last);
                    Entry { id: BlobId(id), pack, offset: 0, length: 0 }
                })
                .collect();
            let pairs = |entries: &[Entry]| -> Vec<([u8; 32], u32)> {
                entries.iter().map(|e| (e.id.0, e.pack)).collect()
            };
            let mut expected = pairs(&entries);
            expected.sort();
            let sorted = split.min(entries.len());
            entries[..sorted].sort_unstable_by(order);
            merge_added(&mut entries, sorted);
            proptest::prop_assert_eq!(pairs(&entries), expected);
        }
    }

    #[test]
    fn lookups_before_and_after_sorting_agree_and_first_pack_wins() {
        let mut idx = Index::with_capacity(8);
        idx.push_pack(&pack(1, [5, 3, 9]));
        idx.push_pack(&pack(2, [3, 7]));
        idx.push_pack(&pack(1, [4])); // the same pack again: ignored
        for sorted in [false, true] {
            if sorted {
                idx.sort();
                assert_eq!(idx.len(), 4);
            }
            assert_eq!(idx.get(&BlobId([3; 32])).unwrap().pack, ObjectId([1; 32]));
            assert_eq!(idx.get(&BlobId([7; 32])).unwrap().offset, 2);
            assert!(idx.contains(&BlobId([9; 32])));
            assert!(!idx.contains(&BlobId([4; 32])));
        }
        idx.push_pack(&pack(3, [1]));
        idx.push_pack(&pack(2, [6])); // known before the sort: ignored too
        assert!(idx.contains(&BlobId([1; 32])));
        assert!(idx.contains(&BlobId([5; 32])));
        assert!(!idx.contains(&BlobId([6; 32])));
        idx.sort();
        let packs: Vec<_> = idx.packs().map(|(id, size)| (id.0[0], size)).collect();
        assert_eq!(packs, [(1, 1000), (2, 1000), (3, 1000)]);
        assert_eq!(idx.get(&BlobId([1; 32])).unwrap().pack_size, 1000);
    }

    #[test]
    fn fenced_lookups_find_every_blob_and_no_other() {
        // Random ids, plus pairs that share their first 8 bytes and the extremes of the range.
        let mut ids: Vec<BlobId> = (0u32..20_000)
            .map(|i| BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes()))
            .collect();
        for i in 0..100 {
            let mut twin = ids[i].0;
            twin[31] ^= 1;
            ids.push(BlobId(twin));
        }
        ids.extend([BlobId([0; 32]), BlobId([0xff; 32])]);
        let (stored, absent) = ids.split_at(ids.len() - 1000);
        let mut idx = Index::with_capacity(stored.len());
        for (n, blobs) in stored.chunks(700).enumerate() {
            let entries = blobs
                .iter()
                .map(|&id| PackEntry {
                    kind: BlobType::Data,
                    id,
                    offset: 0,
                    length: 1,
                    raw_length: 1,
                })
                .collect();
            idx.push_pack(&IndexedPack {
                id: ObjectId([n as u8; 32]),
                size: 1,
                entries,
            });
        }
        idx.sort();
        assert!(stored.iter().all(|id| idx.contains(id)));
        assert!(absent.iter().all(|id| !idx.contains(id)));
    }

    use crate::crypto::{Cipher, SecretKey};

    #[test]
    fn seal_open_and_lookup() {
        let k = Keys::derive(&SecretKey::from_bytes([2; 32]), Cipher::Aes256Gcm);
        let e = PackEntry {
            kind: BlobType::Tree,
            id: BlobId([9; 32]),
            offset: 0,
            length: 50,
            raw_length: 70,
        };
        let packs = vec![IndexedPack {
            id: ObjectId([1; 32]),
            size: 100,
            entries: vec![e],
        }];
        let sealed = seal_index(&k, &packs).unwrap();
        let back = open_index(&k, &sealed).unwrap();
        assert_eq!(back, packs);
        let mut idx = Index::default();
        idx.add_pack(&back[0]);
        assert_eq!(idx.get(&BlobId([9; 32])).unwrap().pack, ObjectId([1; 32]));
        assert_eq!(idx.get(&BlobId([9; 32])).unwrap().kind, BlobType::Tree);
        assert!(decode_index(&[1, 5, 0, 0, 0]).is_err());
    }
}
