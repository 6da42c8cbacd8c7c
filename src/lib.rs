//! Coffer: encrypted, deduplicating backups with keys only the customer holds.
//!
//! The library does the work; the `coffer` binary parses arguments and prints. Data flows
//! through one module per stage: [`chunker`] → [`crypto`] (ids and sealing) → [`saver`]
//! (dedup, [`pack`], upload) → [`index`], with [`tree`] and [`snapshot`] on top.
//! [`backup`], [`restore`] and [`check`] wire the stages together over a [`repo::Repository`]
//! that lives in any [`store::Store`].
//!
//! ```
//! use coffer::{backup, keyslot::{KdfParams, Passphrase}, repo::{InitOptions, Repository}, store};
//!
//! let store = store::Store::open(&store::Location::parse("memory://doc-example")?, true)?;
//! let opts = InitOptions { kdf: KdfParams { memory_kib: 8192, iterations: 1, parallelism: 1 }, ..Default::default() };
//! let (mut repo, _) = Repository::init(store, &Passphrase::new("correct horse".into()), &opts)?;
//! let source = backup::StdinSource { name: "note.txt".into(), reader: Box::new(&b"hello"[..]) };
//! let options = backup::BackupOptions { stdin: Some(source), ..Default::default() };
//! let done = backup::backup(&mut repo, options, &backup::NoProgress)?;
//! assert_eq!(done.snapshot.summary.bytes_read, 5);
//! # Ok::<(), coffer::Error>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backup;
pub mod blob;
pub mod cbor;
pub mod check;
pub mod chunker;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod drill;
pub mod error;
pub mod filter;
pub mod fsmeta;
pub mod id;
pub mod index;
pub mod keyring;
pub mod keyslot;
pub mod pack;
pub mod prefetch;
pub mod readahead;
pub mod render;
pub mod repo;
pub mod report;
pub mod restore;
pub mod saver;
pub mod sealpool;
pub mod snapshot;
pub mod stat;
pub mod store;
pub mod tree;
pub mod verify;

pub use error::{Error, ErrorKind, Result};
