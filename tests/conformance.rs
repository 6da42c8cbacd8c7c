//! The store conformance suite (`coffer store validate`) against every kind of store:
//! memory, a local directory, and S3 on the test Garage server, also with the S3 uploads'
//! CRC-64/NVME checksums (which Garage checks) turned on.

mod common;

use assert_cmd::Command;
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

/// With `AWS_CHECKSUM_ALGORITHM=crc64nvme`, every upload carries the CRC-64/NVME of its body,
/// computed by coffer's stand-in for the `crc-fast` crate (crates/crc-fast), and Garage
/// refuses an upload whose checksum does not match. A backup of several packs and its
/// restore go through.
#[test]
fn s3_uploads_with_crc64nvme_checksums_are_accepted_by_garage() {
    let Some(url) = common::s3_url("crc64nvme") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for (i, len) in [0usize, 1, 7, 4096, 3 << 20, 9 << 20].iter().enumerate() {
        std::fs::write(
            src.join(format!("f{i}")),
            common::random_bytes(*len, i as u64),
        )
        .unwrap();
    }
    let coffer = |args: &[&str]| {
        let out = Command::cargo_bin("coffer")
            .unwrap()
            .env("AWS_CHECKSUM_ALGORITHM", "crc64nvme")
            .env("COFFER_REPOSITORY", &url)
            .env("COFFER_PASSWORD", "crc test")
            .env_remove("COFFER_PASSWORD_FILE")
            .env_remove("COFFER_PASSWORD_COMMAND")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    coffer(&["store", "validate"]);
    coffer(&common::QUICK_INIT);
    coffer(&["backup", src.to_str().unwrap()]);
    let dst = tmp.path().join("dst");
    coffer(&[
        "restore",
        "latest",
        "--target",
        dst.to_str().unwrap(),
        "--verify",
    ]);
    common::assert_same_tree(&src, &dst.join(src.strip_prefix("/").unwrap()));
}
