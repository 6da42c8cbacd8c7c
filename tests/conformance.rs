//! The store conformance suite (`coffer store validate`) against every kind of store:
//! memory, a local directory, and S3 on the test Garage server.

mod common;

use coffer::store::{Location, Store, validate};

/// Runs the suite; every required check must pass. Returns the optional checks that failed.
fn assert_conforms(location: &Location) -> Vec<&'static str> {
    let store = Store::open(location, true).unwrap();
    let outcomes = validate(&store).unwrap();
    assert_eq!(outcomes.len(), 8);
    let fatal: Vec<_> = outcomes.iter().filter(|o| o.is_fatal()).collect();
    assert!(fatal.is_empty(), "{}: {fatal:?}", store.description());
    outcomes
        .iter()
        .filter(|o| o.failure.is_some())
        .map(|o| o.name)
        .collect()
}

#[test]
fn memory_store_conforms() {
    assert!(assert_conforms(&Location::Memory("conformance".into())).is_empty());
}

#[test]
fn directory_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    assert!(assert_conforms(&Location::Directory(dir.path().join("store"))).is_empty());
}

#[test]
fn s3_store_on_garage_conforms() {
    let Some(url) = common::s3_url("conformance") else {
        return;
    };
    // Garage 2.5 ignores `If-None-Match: *` on PUT, so create-only writes are not enforced;
    // coffer copes (see the recommended check), and the suite says so.
    let optional = assert_conforms(&Location::parse(&url).unwrap());
    eprintln!("optional checks Garage fails: {optional:?}");
}
