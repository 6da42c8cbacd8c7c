//! The store conformance suite: does a store behave as Coffer needs?
//!
//! Run by the tests against every store kind (memory, directory, S3 on Garage) and offered to
//! users as `coffer store validate URL`, to check an S3-compatible service before trusting it
//! with backups. Every check works under a fresh random prefix and removes what it wrote.

use bytes::Bytes;

use super::Store;
use crate::error::ErrorKind;

/// The outcome of one conformance check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckOutcome {
    /// What was checked.
    pub name: &'static str,
    /// Whether Coffer cannot work safely without it.
    pub required: bool,
    /// `None` if it passed, else what went wrong.
    pub failure: Option<String>,
}

impl CheckOutcome {
    /// Whether this is a failure Coffer cannot live with.
    pub fn is_fatal(&self) -> bool {
        self.required && self.failure.is_some()
    }
}

type Check = fn(&Store, &str) -> Result<(), String>;

/// (name, required, check). Create-only writes are only recommended: every object but
/// `config` is named by its content, so an overwrite rewrites identical bytes; without them,
/// only two `init`s racing on one location could clash.
const CHECKS: &[(&str, bool, Check)] = &[
    ("write and read back", true, round_trip),
    ("list by prefix with sizes", true, listing),
    ("ranged reads", true, ranged_reads),
    (
        "missing object is reported as not found",
        true,
        missing_object,
    ),
    (
        "an abandoned upload leaves nothing visible",
        true,
        abandoned_upload_invisible,
    ),
    (
        "a failed request leaves nothing visible",
        true,
        failed_upload_invisible,
    ),
    ("delete", true, delete),
    (
        "create-only writes never overwrite (recommended)",
        false,
        create_only,
    ),
];

/// Runs every check against `store`, under a scratch prefix.
pub fn validate(store: &Store) -> crate::Result<Vec<CheckOutcome>> {
    let scratch = format!(
        "coffer-validate-{}",
        hex::encode(crate::clock::random_bytes::<6>()?)
    );
    let out = CHECKS
        .iter()
        .map(|(name, required, check)| CheckOutcome {
            name,
            required: *required,
            failure: check(store, &scratch).err(),
        })
        .collect();
    if let Ok(items) = store.list(&scratch) {
        for (name, _) in items {
            let _ = store.delete(&name);
        }
    }
    Ok(out)
}

fn fail(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

fn payload(n: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

fn round_trip(store: &Store, dir: &str) -> Result<(), String> {
    for (i, size) in [0usize, 1, 4096, 3 << 20].into_iter().enumerate() {
        let name = format!("{dir}/rt/{i}");
        let data = payload(size, i as u8);
        store
            .put_new(&name, data.clone())
            .map_err(|e| fail("write", e))?;
        let back = store.get(&name).map_err(|e| fail("read", e))?;
        if back != data {
            return Err(format!(
                "{size}-byte object read back different ({} bytes)",
                back.len()
            ));
        }
    }
    Ok(())
}

fn listing(store: &Store, dir: &str) -> Result<(), String> {
    for (name, size) in [("a/1", 10), ("a/2", 20), ("b/1", 30)] {
        store
            .put_new(&format!("{dir}/ls/{name}"), payload(size, 1))
            .map_err(|e| fail("write", e))?;
    }
    let got = store
        .list(&format!("{dir}/ls/a"))
        .map_err(|e| fail("list", e))?;
    let want = vec![(format!("{dir}/ls/a/1"), 10), (format!("{dir}/ls/a/2"), 20)];
    if got != want {
        return Err(format!(
            "listing {dir}/ls/a gave {got:?}, expected {want:?}"
        ));
    }
    Ok(())
}

fn ranged_reads(store: &Store, dir: &str) -> Result<(), String> {
    let name = format!("{dir}/range");
    let data = payload(100_000, 7);
    store
        .put_new(&name, data.clone())
        .map_err(|e| fail("write", e))?;
    for r in [0..1, 10..20, 99_990..100_000, 0..100_000] {
        let got = store
            .get_range(&name, r.start as u64..r.end as u64)
            .map_err(|e| fail("ranged read", e))?;
        if got[..] != data[r.clone()] {
            return Err(format!("range {r:?} returned other bytes"));
        }
    }
    Ok(())
}

fn missing_object(store: &Store, dir: &str) -> Result<(), String> {
    match store.get(&format!("{dir}/does-not-exist")) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("expected not found, got: {e}")),
        Ok(_) => Err("a missing object was returned".into()),
    }
}

fn create_only(store: &Store, dir: &str) -> Result<(), String> {
    let name = format!("{dir}/once");
    store
        .put_new(&name, payload(10, 1))
        .map_err(|e| fail("write", e))?;
    match store.put_new(&name, payload(10, 2)) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("second create-only write failed oddly: {e}")),
        Ok(()) => return Err("a create-only write replaced an existing object".into()),
    }
    if store.get(&name).map_err(|e| fail("read", e))? != payload(10, 1) {
        return Err("the object changed after a refused overwrite".into());
    }
    Ok(())
}

fn abandoned_upload_invisible(store: &Store, dir: &str) -> Result<(), String> {
    let name = format!("{dir}/abandoned");
    store
        .abandon_upload(&name, payload(1 << 20, 4))
        .map_err(|e| fail("multipart upload", e))?;
    match store.get(&name) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!(
            "expected not found after an abandoned upload, got: {e}"
        )),
        Ok(b) => Err(format!(
            "an abandoned upload left a visible object of {} bytes",
            b.len()
        )),
    }
}

fn failed_upload_invisible(store: &Store, dir: &str) -> Result<(), String> {
    // An upload whose connection fails must not leave a visible (truncated) object.
    let faulty = store.with_faults(super::FaultPlan {
        fail: 1.0,
        ..Default::default()
    });
    let name = format!("{dir}/partial");
    if faulty.put_new(&name, payload(1 << 20, 3)).is_ok() {
        return Err("an upload through a failing connection reported success".into());
    }
    match store.get(&name) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!(
            "expected not found after a failed upload, got: {e}"
        )),
        Ok(b) => Err(format!(
            "a failed upload left a visible object of {} bytes",
            b.len()
        )),
    }
}

fn delete(store: &Store, dir: &str) -> Result<(), String> {
    let name = format!("{dir}/gone");
    store
        .put_new(&name, payload(5, 1))
        .map_err(|e| fail("write", e))?;
    store.delete(&name).map_err(|e| fail("delete", e))?;
    match store.get(&name) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        _ => Err("a deleted object can still be read".into()),
    }
}
