//! CBOR encoding of the repository's structures (trees, snapshots, config body, key-slot
//! info) through serde, in one place.
//!
//! `cbor4ii` decodes trees about twice as fast as `ciborium` did, and a restore, a verify
//! and an unchanged re-backup each decode every tree of a snapshot. Its output is the same:
//! definite lengths, shortest integer forms, structs as maps keyed by field name. The test
//! vectors in `docs/design.md` pin those bytes. Decoding limits nesting depth, so hostile
//! input cannot exhaust the stack.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Encodes `value`; `what` names it in an error.
pub fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>> {
    cbor4ii::serde::to_vec(Vec::new(), value)
        .map_err(|e| Error::invalid(format!("encoding {what}: {e}")))
}

/// Decodes a `T` from untrusted `bytes`; `what` names it in an error.
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    cbor4ii::serde::from_slice(bytes)
        .map_err(|e| Error::corrupt(format!("{what} does not decode: {e}")))
}
