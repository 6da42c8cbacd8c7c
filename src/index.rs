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

use std::collections::HashMap;

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
    /// Plaintext length.
    pub raw_length: u32,
}

#[derive(Clone, Copy)]
struct Slot {
    pack: u32,
    kind: BlobType,
    offset: u32,
    length: u32,
    raw_length: u32,
}

/// The in-memory index of every blob in the repository.
#[derive(Default)]
pub struct Index {
    packs: Vec<ObjectId>,
    pack_sizes: HashMap<ObjectId, u64>,
    blobs: HashMap<BlobId, Slot>,
}

impl Index {
    /// Adds a pack's blobs; a blob already known keeps its first location.
    pub fn add_pack(&mut self, pack: &IndexedPack) {
        if self.pack_sizes.insert(pack.id, pack.size).is_some() {
            return;
        }
        let n = self.packs.len() as u32;
        self.packs.push(pack.id);
        for e in &pack.entries {
            let slot = Slot {
                pack: n,
                kind: e.kind,
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
            };
            self.blobs.entry(e.id).or_insert(slot);
        }
    }

    /// Where `id` is stored, if anywhere.
    pub fn get(&self, id: &BlobId) -> Option<Location> {
        self.blobs.get(id).map(|s| Location {
            pack: self.packs[s.pack as usize],
            kind: s.kind,
            offset: s.offset,
            length: s.length,
            raw_length: s.raw_length,
        })
    }

    /// Whether `id` is stored.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    /// Every indexed pack with its size.
    pub fn packs(&self) -> &HashMap<ObjectId, u64> {
        &self.pack_sizes
    }

    /// Number of blobs.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Whether no blob is indexed.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert!(decode_index(&[1, 5, 0, 0, 0]).is_err());
    }
}
