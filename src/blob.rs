//! Blobs: one chunk or tree, compressed when it pays and sealed with its id bound in.
//!
//! A sealed blob is `seal(flag ‖ body)` where `flag` says whether `body` is zstd-compressed:
//! a zstd frame, which in a format 2 repository leaves out zstd's 4-byte magic number (the
//! flag already says what follows; 4 bytes are about 1% of a small file's blob).
//! The associated data binds the format version, the blob type and the blob id, so a blob
//! copied to another place in a pack, or presented under another id, fails to open. After
//! opening, [`open_blob`] recomputes the keyed id of the plaintext and compares it.

use bytes::{Bytes, BytesMut};

use crate::crypto::{Keys, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::id::BlobId;

/// What a blob holds; data and trees live in separate packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobType {
    /// A chunk of file content.
    Data,
    /// An encoded directory tree.
    Tree,
}

impl BlobType {
    /// The byte stored in pack headers and indexes.
    pub fn code(self) -> u8 {
        match self {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        }
    }

    /// The type a stored byte names.
    pub fn from_code(code: u8) -> Result<Self> {
        match code {
            0 => Ok(BlobType::Data),
            1 => Ok(BlobType::Tree),
            other => Err(Error::corrupt(format!("unknown blob type {other}"))),
        }
    }
}

const FLAG_RAW: u8 = 0;
const FLAG_ZSTD: u8 = 1;
/// The 4 bytes that open a zstd frame, unless it is magicless.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Whether `keys`' format writes zstd frames without their magic number.
fn magicless(keys: &Keys) -> bool {
    keys.format() >= 2
}

fn associated_data(kind: BlobType, id: &BlobId) -> [u8; 48] {
    let mut ad = [0u8; 48];
    ad[..15].copy_from_slice(b"coffer blob v1\0");
    ad[15] = kind.code();
    ad[16..].copy_from_slice(&id.0);
    ad
}

/// Compresses and seals blobs, keeping one zstd context for many blobs (a context costs
/// more to set up than a small blob costs to compress). One per thread.
pub struct Sealer<'k> {
    keys: &'k Keys,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    /// Compressed output before it is sealed; kept for the next blob.
    scratch: Vec<u8>,
    /// A large blob's samples (see [`Sealer::samples_compress`]); kept for the next blob.
    samples: Vec<u8>,
}

/// Blobs at least this long are compressed whole only if samples of them compress.
const SAMPLED_MIN: usize = 256 << 10;
/// How many samples, spread evenly over the blob...
const SAMPLES: usize = 16;
/// ...of how many bytes each.
const SAMPLE_LEN: usize = 4 << 10;

impl<'k> Sealer<'k> {
    /// A sealer at zstd `level`; 0 turns compression off.
    pub fn new(keys: &'k Keys, level: i32) -> Result<Self> {
        let invalid = |e| Error::invalid(format!("zstd level {level}: {e}"));
        let compressor = match level {
            0 => None,
            _ => {
                let mut c = zstd::bulk::Compressor::new(level).map_err(invalid)?;
                if level < 2 {
                    // zstd's fastest levels hash 2^13 positions of a chunk-sized input; 2^17
                    // finds more matches. The benchmark's disk image is stored 3.0% smaller
                    // than with 2^15 (zstd CLI, 1 MiB blocks: 4.4% smaller than the default),
                    // for 5-10% more backup CPU time there. 1 MiB blocks of text compress 7.7%
                    // smaller and about 30% slower, but most text files are small, and zstd
                    // shrinks the table to the input: the mixed tree is stored the same.
                    c.set_parameter(zstd::zstd_safe::CParameter::HashLog(17))
                        .map_err(invalid)?;
                }
                if magicless(keys) {
                    let format = zstd::zstd_safe::FrameFormat::Magicless;
                    c.set_parameter(zstd::zstd_safe::CParameter::Format(format))
                        .map_err(invalid)?;
                }
                Some(c)
            }
        };
        Ok(Sealer {
            keys,
            compressor,
            scratch: Vec::new(),
            samples: Vec::new(),
        })
    }

    /// Compresses `plain` (unless that saves less than 1/32) and seals it as blob `id`.
    /// The result is built in one buffer of exactly its size (nonce, flag, body, tag) and
    /// sealed in place: a pack keeps these buffers until it is written.
    pub fn seal(&mut self, kind: BlobType, id: &BlobId, plain: &[u8]) -> Result<Vec<u8>> {
        let compressed = plain.len() >= 64
            && self.samples_compress(plain)
            && self.compressor.as_mut().is_some_and(|c| {
                // Output that does not fit in `worth` is not worth keeping: zstd stops there.
                let worth = plain.len() - plain.len() / 32;
                self.scratch.clear();
                self.scratch.reserve_exact(worth);
                c.compress_to_buffer(plain, &mut self.scratch)
                    .is_ok_and(|n| n < worth)
            });
        let (flag, body) = if compressed {
            (FLAG_ZSTD, &self.scratch[..])
        } else {
            (FLAG_RAW, plain)
        };
        let mut buf = Vec::with_capacity(NONCE_LEN + 1 + body.len() + TAG_LEN);
        buf.resize(NONCE_LEN, 0);
        buf.push(flag);
        buf.extend_from_slice(body);
        self.keys.seal_in_place(&associated_data(kind, id), buf)
    }

    /// Whether a blob of [`SAMPLED_MIN`] bytes or more is worth trying to compress whole:
    /// [`SAMPLES`] pieces of it, compressed together, save more than 1/64. On incompressible
    /// data (media, archives) zstd spends nearly as long giving up as compressing; the samples
    /// cost 1/16 of that. On the 3.3 GB of `/usr/lib` here, 32 of 3,118 such chunks (1.9 MB
    /// of savings, 0.06%) compressed whole but not in samples.
    fn samples_compress(&mut self, plain: &[u8]) -> bool {
        let Some(c) = self.compressor.as_mut() else {
            return false;
        };
        if plain.len() < SAMPLED_MIN {
            return true;
        }
        let step = plain.len() / SAMPLES;
        self.samples.clear();
        for k in 0..SAMPLES {
            self.samples
                .extend_from_slice(&plain[k * step..k * step + SAMPLE_LEN]);
        }
        let worth = self.samples.len() - self.samples.len() / 64;
        self.scratch.clear();
        self.scratch.reserve_exact(worth);
        c.compress_to_buffer(&self.samples, &mut self.scratch)
            .is_ok_and(|n| n < worth)
    }
}

/// Compresses (unless it saves less than 1/32) and seals `plain` whose id is `id`.
/// `level` 0 turns compression off. For many blobs, keep a [`Sealer`].
pub fn seal_blob(
    keys: &Keys,
    kind: BlobType,
    id: &BlobId,
    plain: &[u8],
    level: i32,
) -> Result<Vec<u8>> {
    Sealer::new(keys, level)?.seal(kind, id, plain)
}

/// No blob decompresses to more than this (chunks are at most 64 MiB; huge trees fit).
const MAX_PLAINTEXT: u64 = 1 << 30;

thread_local! {
    /// One zstd decompression context per thread and frame format (with the magic number,
    /// without): creating one costs more than decompressing a small blob.
    static DECOMPRESSORS: std::cell::RefCell<[Option<zstd::bulk::Decompressor<'static>>; 2]> =
        const { std::cell::RefCell::new([None, None]) };
}

/// The content size a zstd frame header records. zstd's own parser reads the header; a
/// magicless frame's is shown to it after the magic number (a header has at most 18 bytes).
fn content_size(body: &[u8], magicless: bool) -> Option<u64> {
    let mut framed = [0u8; 4 + 18];
    let body = match magicless {
        true => {
            let n = body.len().min(18);
            framed[..4].copy_from_slice(&ZSTD_MAGIC);
            framed[4..4 + n].copy_from_slice(&body[..n]);
            &framed[..4 + n]
        }
        false => body,
    };
    zstd::zstd_safe::get_frame_content_size(body).ok().flatten()
}

fn decompress(body: &[u8], magicless: bool) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    // Frames written by `Sealer` record their content size: decompress into a buffer of
    // exactly that size with this thread's context. Others (or an implausible size) stream;
    // a magicless frame always records it.
    let known = content_size(body, magicless).filter(|&n| n <= MAX_PLAINTEXT);
    if let Some(size) = known {
        return DECOMPRESSORS.with_borrow_mut(|slots| {
            let d = match &mut slots[usize::from(magicless)] {
                Some(d) => d,
                slot => {
                    let mut d = zstd::bulk::Decompressor::new()?;
                    if magicless {
                        let format = zstd::zstd_safe::FrameFormat::Magicless;
                        d.set_parameter(zstd::zstd_safe::DParameter::Format(format))?;
                    }
                    slot.insert(d)
                }
            };
            let out = d.decompress(body, size as usize)?;
            if out.len() as u64 != size {
                return Err(std::io::Error::other(
                    "zstd frame shorter than its content size",
                ));
            }
            Ok(out)
        });
    }
    if magicless {
        return Err(std::io::Error::other(
            "the frame records no plausible content size",
        ));
    }
    let mut out = Vec::new();
    zstd::stream::Decoder::new(body)?
        .take(MAX_PLAINTEXT + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > MAX_PLAINTEXT {
        return Err(std::io::Error::other("decompresses beyond 1 GiB"));
    }
    Ok(out)
}

/// Opens a sealed blob, decompresses it and checks that its keyed id is `id`.
pub fn open_blob(keys: &Keys, kind: BlobType, id: &BlobId, sealed: &[u8]) -> Result<Bytes> {
    open_blob_owned(keys, kind, id, BytesMut::from(sealed))
}

/// [`open_blob`] of a buffer it may decrypt in place: an uncompressed blob's plaintext is then
/// returned where it lies, without a copy.
pub fn open_blob_owned(
    keys: &Keys,
    kind: BlobType,
    id: &BlobId,
    sealed: BytesMut,
) -> Result<Bytes> {
    let plain = unseal_blob(keys, kind, id, sealed)?;
    if keys.blob_id(&plain) != id.0 {
        return Err(Error::corrupt(format!(
            "blob {}: content does not match its id",
            id.short()
        )));
    }
    Ok(plain)
}

/// Opens and decompresses a sealed blob without recomputing its keyed id, for a caller that
/// checks the plaintext against another hash the key authenticates (a restored file's whole
/// BLAKE3 from its tree). The AEAD still binds the blob to `id`.
pub fn unseal_blob(
    keys: &Keys,
    kind: BlobType,
    id: &BlobId,
    mut sealed: BytesMut,
) -> Result<Bytes> {
    let at = keys.open_in_place(&associated_data(kind, id), &mut sealed)?;
    match sealed[at.clone()].first() {
        Some(&FLAG_RAW) => Ok(sealed.freeze().slice(at.start + 1..at.end)),
        Some(&FLAG_ZSTD) => decompress(&sealed[at.start + 1..at.end], magicless(keys))
            .map(Bytes::from)
            .map_err(|e| Error::corrupt(format!("blob {}: bad zstd stream: {e}", id.short()))),
        _ => Err(Error::corrupt(format!(
            "blob {}: unknown compression flag",
            id.short()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Cipher, SecretKey};

    fn keys() -> Keys {
        Keys::derive(&SecretKey::from_bytes([1; 32]), Cipher::XChaCha20Poly1305)
    }

    #[test]
    fn compressible_shrinks_and_round_trips() {
        let k = keys();
        let plain = vec![b'a'; 100_000];
        let id = BlobId(k.blob_id(&plain));
        let sealed = seal_blob(&k, BlobType::Data, &id, &plain, 3).unwrap();
        assert!(sealed.len() < 1000);
        assert_eq!(open_blob(&k, BlobType::Data, &id, &sealed).unwrap(), plain);
    }

    #[test]
    fn incompressible_stored_raw() {
        let k = keys();
        let mut plain = vec![0u8; 10_000];
        blake3::Hasher::new().finalize_xof().fill(&mut plain);
        let id = BlobId(k.blob_id(&plain));
        let sealed = seal_blob(&k, BlobType::Data, &id, &plain, 3).unwrap();
        assert_eq!(sealed.len(), plain.len() + 1 + crate::crypto::OVERHEAD);
        // Opened from an owned buffer, the plaintext is returned where it was decrypted.
        let owned = BytesMut::from(&sealed[..]);
        let start = owned.as_ptr() as usize;
        let opened = open_blob_owned(&k, BlobType::Data, &id, owned).unwrap();
        assert_eq!(
            (opened.as_ptr() as usize - start, &opened[..]),
            (NONCE_LEN + 1, &plain[..])
        );
    }

    #[test]
    fn a_large_blob_is_compressed_whole_only_if_its_samples_compress() {
        let k = keys();
        let len = 1 << 20;
        let step = len / SAMPLES;
        let mut random = vec![0u8; len];
        blake3::Hasher::new().finalize_xof().fill(&mut random);
        let in_samples = |i: usize| i % step < SAMPLE_LEN;
        // Random where the samples are, zeros elsewhere: compressible, but not tried.
        let sampled_random: Vec<u8> = (0..len)
            .map(|i| if in_samples(i) { random[i] } else { 0 })
            .collect();
        // The other way round: tried, and compressed.
        let sampled_zeros: Vec<u8> = (0..len)
            .map(|i| if in_samples(i) { 0 } else { random[i] })
            .collect();
        let flag = |plain: &[u8]| {
            let id = BlobId(k.blob_id(plain));
            let sealed = seal_blob(&k, BlobType::Data, &id, plain, 1).unwrap();
            assert_eq!(open_blob(&k, BlobType::Data, &id, &sealed).unwrap(), plain);
            let mut opened = sealed.clone();
            let payload = k
                .open_in_place(&associated_data(BlobType::Data, &id), &mut opened)
                .unwrap();
            (opened[payload.start], sealed.len() < plain.len())
        };
        assert_eq!(flag(&sampled_random), (FLAG_RAW, false));
        assert_eq!(flag(&sampled_zeros), (FLAG_ZSTD, true));
        assert_eq!(flag(&random), (FLAG_RAW, false));
    }

    #[test]
    fn wrong_type_or_id_fails() {
        let k = keys();
        let id = BlobId(k.blob_id(b"x"));
        let sealed = seal_blob(&k, BlobType::Data, &id, b"x", 3).unwrap();
        assert!(open_blob(&k, BlobType::Tree, &id, &sealed).is_err());
        assert!(open_blob(&k, BlobType::Data, &BlobId([0; 32]), &sealed).is_err());
        // Authentic but without a flag byte: an error, not a read of the tag.
        let empty = k.seal(&associated_data(BlobType::Data, &id), b"").unwrap();
        let err = open_blob(&k, BlobType::Data, &id, &empty).unwrap_err();
        assert!(err.to_string().contains("compression flag"), "{err}");
    }
}
