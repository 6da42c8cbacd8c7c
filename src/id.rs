//! 256-bit identifiers of blobs and stored objects.
//!
//! A [`BlobId`] is the keyed BLAKE3 of a chunk's or tree's plaintext, by way of its plain
//! BLAKE3 in a format 2 repository (see `crypto::Keys::blob_id`).
//! An [`ObjectId`] names a stored object (pack, index, snapshot, key slot): the plain BLAKE3 of
//! its bytes as stored, so anyone can check an object against its name without a key and the
//! name says nothing about the plaintext.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

macro_rules! id_type {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Parses 64 hex digits.
            pub fn from_hex(s: &str) -> Result<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out)
                    .map_err(|_| Error::invalid(format!("{s:?} is not a 64-digit hex id")))?;
                Ok($name(out))
            }

            /// Lower-case hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex digits, as shown to people.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }

            /// Reads an id from exactly 32 bytes.
            pub fn from_slice(bytes: &[u8]) -> Result<Self> {
                let arr: [u8; 32] = bytes.try_into().map_err(|_| {
                    Error::corrupt(format!("id of {} bytes, expected 32", bytes.len()))
                })?;
                Ok($name(arr))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let bytes = serde_bytes_buf(d)?;
                $name::from_slice(&bytes).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(BlobId, "The keyed BLAKE3 id of a chunk or tree plaintext.");
id_type!(
    ObjectId,
    "The plain BLAKE3 of a stored object's bytes; also its name."
);

impl ObjectId {
    /// The id of stored bytes.
    pub fn of(bytes: &[u8]) -> Self {
        ObjectId(*blake3::hash(bytes).as_bytes())
    }

    /// The id of an object stored as the concatenation of `parts`.
    pub fn of_parts<P: AsRef<[u8]>>(parts: &[P]) -> Self {
        let mut hasher = blake3::Hasher::new();
        for part in parts {
            hasher.update(part.as_ref());
        }
        ObjectId(*hasher.finalize().as_bytes())
    }
}

/// Deserializes a CBOR byte string (or, leniently, an array of small integers).
pub(crate) fn serde_bytes_buf<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(
            self,
            v: Vec<u8>,
        ) -> std::result::Result<Vec<u8>, E> {
            Ok(v)
        }
    }
    d.deserialize_bytes(V)
}

/// Serde helpers for `Vec<u8>` fields that must be CBOR byte strings (file names, link
/// targets, xattr values), not arrays of integers.
pub(crate) mod bytes_field {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        super::serde_bytes_buf(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let id = ObjectId::of(b"abc");
        assert_eq!(ObjectId::of_parts(&[&b"a"[..], b"", b"bc"]), id);
        assert_eq!(ObjectId::from_hex(&id.to_hex()).unwrap(), id);
        assert!(ObjectId::from_hex("zz").is_err());
        assert_eq!(id.short().len(), 8);
        assert!(BlobId::from_slice(&[0; 31]).is_err());
    }
}
