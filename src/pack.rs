//! Packs: many sealed blobs in one stored object, described by a sealed trailer header.
//!
//! Layout: `blob_1 ‖ … ‖ blob_n ‖ seal(header) ‖ len(seal(header)) as u32 LE`. The header lists,
//! in order, each blob's type, sealed length, plaintext length and id; offsets follow from the
//! lengths. Packs are named by the BLAKE3 of their bytes, so a swapped or truncated pack is
//! caught before decryption. This module builds and parses packs; it never uploads them.

use bytes::Bytes;

use crate::blob::BlobType;
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::id::{BlobId, ObjectId};

const HEADER_AD: &[u8] = b"coffer pack header v1";
const HEADER_VERSION: u8 = 1;
const ENTRY_LEN: usize = 1 + 4 + 4 + 32;

/// One blob inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// Data or tree.
    pub kind: BlobType,
    /// The blob's id.
    pub id: BlobId,
    /// Byte offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Length of the plaintext (after decompression).
    pub raw_length: u32,
}

/// A pack being filled, held in memory until it is finished. Sealed blobs are kept as they
/// came, not copied into one buffer: the writer takes the parts in order.
pub struct PackBuilder {
    parts: Vec<Bytes>,
    len: usize,
    entries: Vec<PackEntry>,
}

/// A finished pack, ready to upload: its bytes are the concatenation of `parts` (after
/// those taken while it grew).
pub struct FinishedPack {
    /// The sealed blobs, then the sealed header with its length.
    pub parts: Vec<Bytes>,
    /// Total length of the parts.
    pub len: usize,
    /// Its blobs, in order.
    pub entries: Vec<PackEntry>,
}

impl FinishedPack {
    /// Its name: BLAKE3 of its bytes.
    pub fn id(&self) -> ObjectId {
        ObjectId::of_parts(&self.parts)
    }

    /// Its bytes in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts.concat()
    }
}

impl Default for PackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PackBuilder {
    /// An empty pack.
    pub fn new() -> Self {
        PackBuilder {
            parts: Vec::new(),
            len: 0,
            entries: Vec::new(),
        }
    }

    /// Appends a sealed blob; its buffer is kept as a part of the pack.
    pub fn add(
        &mut self,
        kind: BlobType,
        id: BlobId,
        sealed: Vec<u8>,
        raw_length: usize,
    ) -> Result<()> {
        let too_big = || Error::invalid("pack grew beyond 4 GiB");
        let offset = u32::try_from(self.len).map_err(|_| too_big())?;
        let length = u32::try_from(sealed.len()).map_err(|_| too_big())?;
        let raw_length = u32::try_from(raw_length).map_err(|_| too_big())?;
        self.len += sealed.len();
        self.parts.push(Bytes::from(sealed));
        self.entries.push(PackEntry {
            kind,
            id,
            offset,
            length,
            raw_length,
        });
        Ok(())
    }

    /// The parts added since the last call, in order, for a writer that takes a pack while
    /// it grows; [`Self::finish`] then gives only the parts after them.
    pub fn take_parts(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.parts)
    }

    /// Bytes of blobs so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Seals the header and appends it, with its length.
    pub fn finish(mut self, keys: &Keys) -> Result<FinishedPack> {
        let mut header = Vec::with_capacity(5 + self.entries.len() * ENTRY_LEN);
        header.push(HEADER_VERSION);
        header.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            header.push(e.kind.code());
            header.extend_from_slice(&e.length.to_le_bytes());
            header.extend_from_slice(&e.raw_length.to_le_bytes());
            header.extend_from_slice(&e.id.0);
        }
        let mut sealed = keys.seal(HEADER_AD, &header)?;
        let sealed_len = sealed.len() as u32;
        sealed.extend_from_slice(&sealed_len.to_le_bytes());
        self.len += sealed.len();
        self.parts.push(Bytes::from(sealed));
        Ok(FinishedPack {
            parts: self.parts,
            len: self.len,
            entries: self.entries,
        })
    }
}

/// Reads and authenticates the header of a whole pack; checks that the blobs tile the pack.
pub fn read_header(keys: &Keys, pack: &[u8]) -> Result<Vec<PackEntry>> {
    fetch_header(keys, pack.len() as u64, |r| {
        Ok(pack[r.start as usize..r.end as usize].to_vec())
    })
}

/// Reads and authenticates a pack's header with two ranged reads from its end (its length,
/// then the sealed header), so a pack can be indexed without downloading it.
pub fn fetch_header(
    keys: &Keys,
    size: u64,
    mut get: impl FnMut(std::ops::Range<u64>) -> Result<Vec<u8>>,
) -> Result<Vec<PackEntry>> {
    if size < 4 {
        return Err(Error::corrupt("pack is shorter than its length field"));
    }
    let tail = get(size - 4..size)?;
    let tail: [u8; 4] = tail
        .as_slice()
        .try_into()
        .map_err(|_| Error::corrupt("pack length field"))?;
    let header_start = (size - 4)
        .checked_sub(u64::from(u32::from_le_bytes(tail)))
        .ok_or_else(|| Error::corrupt("pack header length exceeds the pack"))?;
    let header = keys.open(HEADER_AD, &get(header_start..size - 4)?)?;
    let entries = decode_header(&header)?;
    let end = entries
        .last()
        .map_or(0, |e| u64::from(e.offset) + u64::from(e.length));
    if end != header_start {
        return Err(Error::corrupt(
            "pack blobs do not end where the header begins",
        ));
    }
    Ok(entries)
}

/// Decodes a decrypted header (exposed for fuzzing).
pub fn decode_header(header: &[u8]) -> Result<Vec<PackEntry>> {
    let bad = |what: &str| Error::corrupt(format!("pack header: {what}"));
    let (&version, rest) = header.split_first().ok_or_else(|| bad("empty"))?;
    if version != HEADER_VERSION {
        return Err(bad(&format!("unknown version {version}")));
    }
    let count = rest.get(..4).ok_or_else(|| bad("truncated count"))?;
    let count = u32::from_le_bytes(count.try_into().map_err(|_| bad("count"))?) as usize;
    let body = &rest[4..];
    if body.len()
        != count
            .checked_mul(ENTRY_LEN)
            .ok_or_else(|| bad("count overflow"))?
    {
        return Err(bad("length does not match the entry count"));
    }
    let mut offset: u64 = 0;
    let mut entries = Vec::with_capacity(count);
    for e in body.chunks_exact(ENTRY_LEN) {
        let length = u32::from_le_bytes([e[1], e[2], e[3], e[4]]);
        let raw_length = u32::from_le_bytes([e[5], e[6], e[7], e[8]]);
        let off = u32::try_from(offset).map_err(|_| bad("offset beyond 4 GiB"))?;
        entries.push(PackEntry {
            kind: BlobType::from_code(e[0])?,
            id: BlobId::from_slice(&e[9..])?,
            offset: off,
            length,
            raw_length,
        });
        offset += u64::from(length);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{open_blob, seal_blob};
    use crate::crypto::{Cipher, SecretKey};

    #[test]
    fn build_and_read_back() {
        let k = Keys::derive(&SecretKey::from_bytes([4; 32]), Cipher::Aes256Gcm);
        let mut b = PackBuilder::new();
        for data in [&b"one"[..], b"two two", b""] {
            let id = BlobId(k.blob_id(data));
            b.add(
                BlobType::Data,
                id,
                seal_blob(&k, BlobType::Data, &id, data, 3).unwrap(),
                data.len(),
            )
            .unwrap();
        }
        let p = b.finish(&k).unwrap();
        let bytes = p.to_vec();
        assert_eq!((bytes.len(), ObjectId::of(&bytes)), (p.len, p.id()));
        let entries = read_header(&k, &bytes).unwrap();
        assert_eq!(entries, p.entries);
        let e = entries[1];
        let sealed = &bytes[e.offset as usize..(e.offset + e.length) as usize];
        assert_eq!(
            open_blob(&k, BlobType::Data, &e.id, sealed).unwrap(),
            &b"two two"[..]
        );
        for cut in [0, 3, bytes.len() - 1] {
            assert!(read_header(&k, &bytes[..cut]).is_err());
        }
    }
}
