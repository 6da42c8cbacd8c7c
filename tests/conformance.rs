//! The store conformance suite (`coffer store validate`) against every kind of store:
//! memory, a local directory, and S3 on the test Garage server.

mod common;

use coffer::store::{Location, Store, validate};

fn assert_conforms(location: &Location) {
    let store = Store::open(location, true).unwrap();
    let outcomes = validate(&store).unwrap();
    assert_eq!(outcomes.len(), 7);
    let failed: Vec<_> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    assert!(failed.is_empty(), "{}: {failed:?}", store.description());
}

#[test]
fn memory_store_conforms() {
    assert_conforms(&Location::Memory("conformance".into()));
}

#[test]
fn directory_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    assert_conforms(&Location::Directory(dir.path().join("store")));
}

#[test]
fn s3_store_on_garage_conforms() {
    let Some(url) = common::s3_url("conformance") else {
        return;
    };
    assert_conforms(&Location::parse(&url).unwrap());
}
