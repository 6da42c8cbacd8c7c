//! Library-level round trips on the memory and directory stores: every kind of entry comes
//! back identical, nothing leaks into stored objects, incremental backups skip unchanged
//! files, and damage is detected and attributed.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use coffer::backup::{BackupOptions, NoProgress, ParentChoice, StdinSource, backup};
use coffer::blob::{BlobType, seal_blob};
use coffer::check::{CheckOptions, check};
use coffer::chunker::ChunkerParams;
use coffer::crypto::Cipher;
use coffer::id::{BlobId, ObjectId};
use coffer::keyslot::Passphrase;
use coffer::repo::{InitOptions, Repository};
use coffer::restore::{RestoreOptions, restore, restore_then};
use coffer::store::{Location, Store};
use coffer::tree::Node;
use coffer::verify::{Selection, verify_restored};
use coffer::{ErrorKind, Result};
use common::*;

fn init(location: &Location, cipher: Cipher) -> Repository {
    let opts = InitOptions {
        cipher,
        chunker: ChunkerParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        },
        pack_size: 1 << 20,
        kdf: fast_kdf(),
        ..Default::default()
    };
    let store = Store::open(location, true).unwrap();
    Repository::init(store, &Passphrase::new("secret".into()), &opts)
        .unwrap()
        .0
}

fn reopen(location: &Location) -> Result<Repository> {
    Repository::open(
        Store::open(location, false)?,
        &Passphrase::new("secret".into()),
    )
}

fn paths_opts(paths: &[&Path]) -> BackupOptions {
    BackupOptions {
        paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        ..Default::default()
    }
}

/// The node whose snapshot path ends with `suffix` in the tree `root`.
fn node_at(repo: &Repository, root: &BlobId, suffix: &str) -> Node {
    let mut found = None;
    repo.walk(root, &mut |path, node| {
        if path.ends_with(suffix.as_bytes()) {
            found = Some(node.clone());
        }
        Ok(())
    })
    .unwrap();
    found.unwrap_or_else(|| panic!("{suffix} is in the snapshot"))
}

fn restored_path(target: &Path, original: &Path) -> PathBuf {
    target.join(original.strip_prefix("/").unwrap())
}

fn round_trip(location: Location, cipher: Cipher) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_every_case(&src);
    let mut repo = init(&location, cipher);
    let out = backup(&mut repo, paths_opts(&[&src]), &NoProgress).unwrap();
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    let repo = reopen(&location).unwrap();
    let target = tmp.path().join("restore");
    let (_, snap) = repo.find_snapshot("latest").unwrap();
    let opts = RestoreOptions {
        target: target.clone(),
        ..Default::default()
    };
    let result = restore(&repo, &snap.tree, &opts).unwrap();
    assert!(
        result.errors.is_empty() && result.warnings.is_empty(),
        "{result:?}"
    );
    let restored = restored_path(&target, &src);
    assert_same_tree(&src, &restored);
    let sparse = std::fs::metadata(restored.join("sparse")).unwrap();
    assert!(
        sparse.blocks() * 512 < 4 * 1024 * 1024,
        "sparse file restored dense: {} blocks",
        sparse.blocks()
    );
    // Restoring again over a changed copy puts every entry back, and never writes through a
    // symlink planted where a file belongs.
    let outside = tmp.path().join("outside");
    std::fs::write(&outside, b"not to be touched").unwrap();
    std::fs::write(restored.join("regular.txt"), b"changed").unwrap();
    std::fs::remove_file(restored.join("dir/sub/inner.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, restored.join("dir/sub/inner.txt")).unwrap();
    std::fs::remove_file(restored.join("sparse")).unwrap();
    std::fs::create_dir(restored.join("sparse")).unwrap();
    let again = restore(&repo, &snap.tree, &opts).unwrap();
    assert!(again.errors.is_empty(), "{again:?}");
    assert_same_tree(&src, &restored);
    assert_eq!(std::fs::read(&outside).unwrap(), b"not to be touched");
}

#[test]
fn every_case_round_trips_on_a_directory_with_aes() {
    let repo = tempfile::tempdir().unwrap();
    round_trip(
        Location::Directory(repo.path().join("repo")),
        Cipher::Aes256Gcm,
    );
}

#[test]
fn every_case_round_trips_in_memory_with_xchacha() {
    round_trip(
        Location::Memory("roundtrip-xchacha".into()),
        Cipher::XChaCha20Poly1305,
    );
}

#[test]
fn no_stored_object_contains_plaintext() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let markers = build_every_case(&src);
    let repo_dir = tmp.path().join("repo");
    let mut repo = init(&Location::Directory(repo_dir.clone()), Cipher::Aes256Gcm);
    backup(&mut repo, paths_opts(&[&src]), &NoProgress).unwrap();
    let mut files = Vec::new();
    let mut stack = vec![repo_dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p)
            } else {
                files.push(p)
            }
        }
    }
    assert!(files.len() >= 5);
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for m in &markers {
            assert!(
                !bytes.windows(m.len()).any(|w| w == m.as_slice()),
                "{} leaks {:?}",
                f.display(),
                String::from_utf8_lossy(m)
            );
        }
    }
}

#[test]
fn incremental_backup_reads_only_changed_files() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_every_case(&src);
    let loc = Location::Memory("incremental".into());
    let mut repo = init(&loc, Cipher::Aes256Gcm);
    let first = backup(&mut repo, paths_opts(&[&src]), &NoProgress).unwrap();
    assert!(first.snapshot.summary.bytes_read > 4_000_000);
    let second = backup(&mut repo, paths_opts(&[&src]), &NoProgress).unwrap();
    assert_eq!(second.snapshot.parent, Some(first.id));
    assert_eq!(second.snapshot.summary.bytes_read, 0);
    assert_eq!(
        second.snapshot.summary.files_new + second.snapshot.summary.files_changed,
        0
    );
    std::fs::write(src.join("regular.txt"), b"changed!").unwrap();
    let third = backup(&mut repo, paths_opts(&[&src]), &NoProgress).unwrap();
    assert_eq!(third.snapshot.summary.files_changed, 1);
    assert_eq!(third.snapshot.summary.bytes_read, 8);
    // Unchanged files reuse their recorded xattrs; a new attribute changes the ctime, so it
    // is read again.
    xattr::set(src.join("regular.txt"), "user.coffer-test", b"later").unwrap();
    let with_xattr = backup(&mut repo, paths_opts(&[&src]), &NoProgress).unwrap();
    let xattrs = node_at(&repo, &with_xattr.snapshot.tree, "/regular.txt").xattrs;
    assert!(
        xattrs
            .iter()
            .any(|x| x.name == b"user.coffer-test" && x.value == b"later")
    );
    let forced = BackupOptions {
        parent: ParentChoice::None,
        ..paths_opts(&[&src])
    };
    let fourth = backup(&mut repo, forced, &NoProgress).unwrap();
    assert!(fourth.snapshot.summary.bytes_read > 4_000_000);
    // Everything deduplicates but the trees above `src`, whose mtimes other tests change.
    let ancestors = src.ancestors().count() as u64 - 1;
    assert!(fourth.snapshot.summary.blobs_added <= ancestors);
}

#[test]
fn an_exclusion_added_later_drops_entries_nothing_on_disk_changed() {
    // The directories' metadata and every remaining entry match the parent snapshot: only
    // the count of entries tells that the tree changed.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for name in ["a", "b.log", "c"] {
        std::fs::write(src.join("sub").join(name), name).unwrap();
    }
    let loc = Location::Memory("exclusion-later".into());
    let mut repo = init(&loc, Cipher::Aes256Gcm);
    let first = backup(&mut repo, paths_opts(&[&src]), &NoProgress).unwrap();
    let excluding = BackupOptions {
        excludes: vec!["*.log".into()],
        ..paths_opts(&[&src])
    };
    let second = backup(&mut repo, excluding, &NoProgress).unwrap();
    assert_eq!(second.snapshot.parent, Some(first.id));
    assert_eq!(second.snapshot.summary.files_unchanged, 2);
    let names = |root: &BlobId| {
        let mut names = Vec::new();
        repo.walk(root, &mut |path, _| {
            names.push(String::from_utf8_lossy(path).into_owned());
            Ok(())
        })
        .unwrap();
        names.retain(|n| n.contains("/src/"));
        names
    };
    let sub = format!("{}/sub", src.display());
    assert_eq!(
        names(&second.snapshot.tree),
        [sub.clone(), format!("{sub}/a"), format!("{sub}/c")]
    );
    assert_eq!(names(&first.snapshot.tree).len(), 4);
}

#[test]
fn wide_and_deep_trees_are_walked_whole_and_in_order() {
    // More directories than the listing thread takes ahead (64), nested, with an excluded
    // subtree at every level: every file is found once and an unchanged re-backup reproduces
    // the same trees.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let mut expected = Vec::new();
    for a in 0..150 {
        for b in 0..(a % 4) {
            let dir = src.join(format!("a{a:03}/b{b}/c"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::create_dir_all(src.join(format!("a{a:03}/skip/inner"))).unwrap();
            std::fs::write(src.join(format!("a{a:03}/skip/inner/f")), b"no").unwrap();
            let file = dir.join(format!("f{a}-{b}"));
            std::fs::write(&file, format!("{a} {b}")).unwrap();
            expected.push(format!("{}", file.display()));
        }
    }
    let loc = Location::Memory("wide-deep".into());
    let mut repo = init(&loc, Cipher::Aes256Gcm);
    let opts = || BackupOptions {
        excludes: vec!["skip".into()],
        ..paths_opts(&[&src])
    };
    let first = backup(&mut repo, opts(), &NoProgress).unwrap();
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);
    let mut found = Vec::new();
    repo.walk(&first.snapshot.tree, &mut |path, node| {
        assert!(!path.ends_with(b"/skip"), "excluded {path:?} was backed up");
        if node.kind == coffer::tree::NodeKind::File {
            found.push(String::from_utf8(path.to_vec()).unwrap());
        }
        Ok(())
    })
    .unwrap();
    expected.sort();
    assert_eq!(found, expected);
    let second = backup(&mut repo, opts(), &NoProgress).unwrap();
    // The trees above `src` are left out: tests running beside this one change their mtimes.
    let src_tree = |repo: &Repository, root: &BlobId| node_at(repo, root, "/src").subtree;
    assert_eq!(
        src_tree(&repo, &second.snapshot.tree),
        src_tree(&repo, &first.snapshot.tree)
    );
    assert_eq!(second.snapshot.summary.bytes_read, 0);
    // A change deep down reaches the root: unchanged directories keep their stored trees,
    // the ones above the change do not.
    let deep = src.join("a147/b2/c/f147-2");
    std::fs::write(&deep, "changed").unwrap();
    let third = backup(&mut repo, opts(), &NoProgress).unwrap();
    assert_ne!(
        src_tree(&repo, &third.snapshot.tree),
        src_tree(&repo, &first.snapshot.tree)
    );
    let mut sizes = std::collections::BTreeMap::new();
    repo.walk(&third.snapshot.tree, &mut |path, node| {
        if node.kind == coffer::tree::NodeKind::File {
            sizes.insert(String::from_utf8(path.to_vec()).unwrap(), node.size);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(sizes.keys().cloned().collect::<Vec<_>>(), expected);
    assert_eq!(sizes[&deep.display().to_string()], 7);
    // Several paths, given out of order, one a file: each directory is listed once.
    let paths = [
        src.join("a149"),
        src.join("a002/b1"),
        src.join("a001/b0/c/f1-0"),
    ];
    let several = backup(
        &mut repo,
        paths_opts(&paths.each_ref().map(|p| p.as_path())),
        &NoProgress,
    )
    .unwrap();
    assert!(several.warnings.is_empty(), "{:?}", several.warnings);
    let mut files = 0;
    repo.walk(&several.snapshot.tree, &mut |_, node| {
        files += u64::from(node.kind == coffer::tree::NodeKind::File);
        Ok(())
    })
    .unwrap();
    assert_eq!(
        files,
        1 + 1 + 1 + 1,
        "a149 holds b0/c/f and skip/inner/f (no excludes here), a002/b1 one file, then the file"
    );
}

#[test]
fn large_files_restore_on_two_threads_and_damage_is_still_attributed() {
    // Files of 16 MiB or more are opened on one thread and written on another.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let big = random_bytes(17 << 20, 7);
    // Two long runs of zeros: the same all-zero chunk repeats, and is opened only once.
    let mut sparse = random_bytes(1 << 20, 8);
    sparse.resize(25 << 20, 0);
    sparse.extend(random_bytes(1 << 20, 9));
    sparse.resize(50 << 20, 0);
    std::fs::write(src.join("big"), &big).unwrap();
    std::fs::write(src.join("sparse"), &sparse).unwrap();
    let repo_dir = tmp.path().join("repo");
    let loc = Location::Directory(repo_dir.clone());
    let mut repo = init(&loc, Cipher::Aes256Gcm);
    let snap = backup(&mut repo, paths_opts(&[&src]), &NoProgress).unwrap();
    let options = |target: PathBuf| RestoreOptions {
        target,
        ..Default::default()
    };
    let target = tmp.path().join("r1");
    let res = restore(&repo, &snap.snapshot.tree, &options(target.clone())).unwrap();
    assert!(res.errors.is_empty(), "{:?}", res.errors);
    let restored = restored_path(&target, &src);
    assert!(std::fs::read(restored.join("big")).unwrap() == big);
    assert!(std::fs::read(restored.join("sparse")).unwrap() == sparse);
    let ids = node_at(&repo, &snap.snapshot.tree, "/sparse").content;
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert!(
        distinct.len() < ids.len(),
        "no repeated zero chunk in {ids:?}"
    );
    let blocks = std::fs::metadata(restored.join("sparse")).unwrap().blocks();
    assert!(blocks * 512 < 25 << 20, "restored dense: {blocks} blocks");
    // Restored to be read back (`restore --verify`): files are not hashed while written,
    // and the read-back, which skips the holes, finds both intact.
    let read_back = |target: PathBuf| RestoreOptions {
        read_back: true,
        ..options(target)
    };
    let restore_verified = |repo: &Repository, target: &Path| {
        restore_then(
            repo,
            &snap.snapshot.tree,
            &read_back(target.into()),
            |out| {
                let skip = out.errors.iter().map(|e| e.path.clone()).collect();
                let selection = Selection {
                    only: None,
                    skip: &skip,
                    read_back: &out.read_back,
                };
                Ok(verify_restored(repo, &snap.snapshot.tree, target, &selection)?.1)
            },
        )
        .unwrap()
    };
    let target = tmp.path().join("r1b");
    let (res, failures) = restore_verified(&repo, &target);
    assert!(
        res.errors.is_empty() && failures.is_empty(),
        "{:?} {failures:?}",
        res.errors
    );
    assert!(std::fs::read(restored_path(&target, &src).join("sparse")).unwrap() == sparse);
    // Both files were read back from disk while they were written, holes included.
    let snap_path = |name: &str| format!("{}/{name}", src.display()).into_bytes();
    for (name, bytes) in [("big", &big), ("sparse", &sparse)] {
        let read = res.read_back.get(&snap_path(name)).copied();
        assert_eq!(read, Some(ObjectId::of(bytes)), "{name}");
    }
    // The verification compares what was read back: a wrong one is a content failure.
    let mut wrong = res.read_back.clone();
    wrong.insert(snap_path("big"), ObjectId::of(b"something else"));
    let skip = Default::default();
    let selection = Selection {
        only: None,
        skip: &skip,
        read_back: &wrong,
    };
    let (_, failures) = verify_restored(&repo, &snap.snapshot.tree, &target, &selection).unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].check, "blake3");
    assert!(failures[0].path.ends_with("/big"), "{failures:?}");

    // A chunk sealed with the key but holding other content, which only a key holder (or a
    // bug) could write: the AEAD accepts it, and the file's BLAKE3 rejects the file, whether
    // hashed while written or read back.
    let content = node_at(&repo, &snap.snapshot.tree, "/big").content;
    let blob = repo.index().get(&content[0]).unwrap();
    let pack_path = repo_dir.join(coffer::repo::pack_name(&blob.pack));
    let original = std::fs::read(&pack_path).unwrap();
    let (at, len) = (blob.offset as usize, blob.length as usize);
    // Random bytes are stored uncompressed: the flag byte and the AEAD overhead.
    let other = random_bytes(len - 1 - coffer::crypto::OVERHEAD, 99);
    let forged = seal_blob(repo.keys(), BlobType::Data, &content[0], &other, 3).unwrap();
    let mut bytes = original.clone();
    bytes[at..at + len].copy_from_slice(&forged);
    std::fs::write(&pack_path, &bytes).unwrap();
    let forged_repo = reopen(&loc).unwrap();
    let target = tmp.path().join("f1");
    let res = restore(&forged_repo, &snap.snapshot.tree, &options(target)).unwrap();
    assert_eq!(res.errors.len(), 1, "{:?}", res.errors);
    assert!(res.errors[0].path.ends_with("/big"), "{:?}", res.errors);
    assert!(res.errors[0].message.contains("BLAKE3"), "{:?}", res.errors);
    let (res, failures) = restore_verified(&forged_repo, &tmp.path().join("f2"));
    assert!(res.errors.is_empty(), "{:?}", res.errors);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].check, "blake3");
    assert!(failures[0].path.ends_with("/big"), "{failures:?}");
    std::fs::write(&pack_path, &original).unwrap();

    // Damage a chunk in the middle of `big`: restore names it and restores `sparse`.
    let content = node_at(&repo, &snap.snapshot.tree, "/big").content;
    let blob = repo.index().get(&content[content.len() / 2]).unwrap();
    let pack_path = repo_dir.join(coffer::repo::pack_name(&blob.pack));
    let mut bytes = std::fs::read(&pack_path).unwrap();
    bytes[blob.offset as usize + 50] ^= 1;
    std::fs::write(&pack_path, &bytes).unwrap();
    let repo = reopen(&loc).unwrap();
    let target = tmp.path().join("r2");
    for opts in [options(target.clone()), read_back(tmp.path().join("r3"))] {
        let res = restore(&repo, &snap.snapshot.tree, &opts).unwrap();
        assert_eq!(res.errors.len(), 1, "{:?}", res.errors);
        assert!(res.errors[0].path.ends_with("/big"), "{:?}", res.errors);
        let restored = restored_path(&opts.target, &src);
        assert!(std::fs::read(restored.join("sparse")).unwrap() == sparse);
    }
}

#[test]
fn stdin_backup_and_excludes() {
    let loc = Location::Memory("stdin".into());
    let mut repo = init(&loc, Cipher::Aes256Gcm);
    let data = random_bytes(700_000, 5);
    let source = StdinSource {
        name: "dump.sql".into(),
        reader: Box::new(std::io::Cursor::new(data.clone())),
    };
    let out = backup(
        &mut repo,
        BackupOptions {
            stdin: Some(source),
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    let tree = repo.load_tree(&out.snapshot.tree).unwrap();
    assert_eq!(tree.nodes.len(), 1);
    assert_eq!(tree.nodes[0].name, b"dump.sql");
    assert_eq!(
        tree.nodes[0].blake3.unwrap().0,
        *blake3::hash(&data).as_bytes()
    );

    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_every_case(&src);
    let opts = BackupOptions {
        excludes: vec!["*.bin".into(), format!("{}/dir", src.display())],
        ..paths_opts(&[&src])
    };
    let out = backup(&mut repo, opts, &NoProgress).unwrap();
    let target = tmp.path().join("r");
    restore(
        &repo,
        &out.snapshot.tree,
        &RestoreOptions {
            target: target.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    let r = restored_path(&target, &src);
    assert!(!r.join("large.bin").exists() && !r.join("dir").exists());
    assert!(r.join("regular.txt").exists());
}

#[test]
fn unreadable_input_is_a_warning_not_an_abort() {
    let loc = Location::Memory("warnings".into());
    let mut repo = init(&loc, Cipher::Aes256Gcm);
    // /proc files claim size 0 but have content: the read does not match the stat.
    let changing = Path::new("/proc/version");
    let missing = Path::new("/nonexistent/coffer-test");
    let out = backup(&mut repo, paths_opts(&[changing, missing]), &NoProgress).unwrap();
    assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("changed while it was read"))
    );
    assert!(out.warnings.iter().any(|w| w.contains("/nonexistent")));
}

#[test]
fn restore_include_selects_subtrees() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_every_case(&src);
    let mut repo = init(&Location::Memory("include".into()), Cipher::Aes256Gcm);
    let out = backup(&mut repo, paths_opts(&[&src]), &NoProgress).unwrap();
    let target = tmp.path().join("r");
    let opts = RestoreOptions {
        target: target.clone(),
        include: vec!["sub".into()],
        ..Default::default()
    };
    let res = restore(&repo, &out.snapshot.tree, &opts).unwrap();
    assert_eq!(res.files, 1);
    let r = restored_path(&target, &src);
    assert!(r.join("dir/sub/inner.txt").exists());
    assert!(!r.join("regular.txt").exists() && !r.join("empty-dir").exists());
}

#[test]
fn wrong_passphrase_and_missing_repository() {
    let loc = Location::Memory("wrongpass".into());
    init(&loc, Cipher::Aes256Gcm);
    let err = Repository::open(
        Store::open(&loc, false).unwrap(),
        &Passphrase::new("nope".into()),
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::WrongPassword);
    let err = reopen(&Location::Memory("never-created".into()))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::NoRepository);
    let dir = tempfile::tempdir().unwrap();
    let err = reopen(&Location::Directory(dir.path().join("absent")))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::NoRepository);
    let again = Repository::init(
        Store::open(&loc, true).unwrap(),
        &Passphrase::new("x".into()),
        &InitOptions::default(),
    );
    assert_eq!(again.err().unwrap().kind(), ErrorKind::AlreadyExists);
}

/// Corrupts or deletes objects and checks that `check` names the damage and its snapshot.
#[test]
fn damage_is_detected_and_attributed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_every_case(&src);
    let repo_dir = tmp.path().join("repo");
    let loc = Location::Directory(repo_dir.clone());
    let mut repo = init(&loc, Cipher::Aes256Gcm);
    let snap = backup(&mut repo, paths_opts(&[&src]), &NoProgress)
        .unwrap()
        .id;
    assert!(
        check(
            &mut repo,
            CheckOptions {
                read_data: true,
                ..Default::default()
            }
        )
        .unwrap()
        .is_ok()
    );

    // Flip one byte in the pack holding large.bin's first chunk.
    let (_, snapshot) = repo.find_snapshot("latest").unwrap();
    let first_chunk = node_at(&repo, &snapshot.tree, "/large.bin").content[0];
    let loc_blob = repo.index().get(&first_chunk).unwrap();
    let pack_path = repo_dir.join(coffer::repo::pack_name(&loc_blob.pack));
    let mut bytes = std::fs::read(&pack_path).unwrap();
    bytes[loc_blob.offset as usize + 100] ^= 1;
    std::fs::write(&pack_path, &bytes).unwrap();

    let mut repo = reopen(&loc).unwrap();
    let quick = check(&mut repo, CheckOptions::default()).unwrap();
    assert!(quick.is_ok(), "structure is intact: {:?}", quick.errors);
    let deep = check(
        &mut repo,
        CheckOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!deep.is_ok());
    let hit = deep
        .errors
        .iter()
        .find(|p| p.path.as_deref().is_some_and(|p| p.ends_with("/large.bin")))
        .expect("names the file");
    assert_eq!(hit.snapshot.as_deref(), Some(snap.to_hex().as_str()));

    // Restore reports the damaged file and still restores the rest.
    let target = tmp.path().join("r");
    let res = restore(
        &repo,
        &repo.find_snapshot("latest").unwrap().1.tree,
        &RestoreOptions {
            target,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        res.errors.iter().any(|e| e.path.ends_with("/large.bin")),
        "{:?}",
        res.errors
    );
    assert!(res.files > 10);

    // Delete the pack: structure check reports it missing.
    std::fs::remove_file(&pack_path).unwrap();
    let mut repo = reopen(&loc).unwrap();
    let report = check(&mut repo, CheckOptions::default()).unwrap();
    assert!(
        report.errors.iter().any(|p| p.message.contains("missing")),
        "{:?}",
        report.errors
    );
    assert!(
        report
            .errors
            .iter()
            .any(|p| p.path.as_deref().is_some_and(|p| p.ends_with("/large.bin")))
    );
}

/// From a network store, a small file whose content an earlier file of the restore has is
/// copied from that file: the copies keep their own metadata and a file of zeros stays a
/// hole. When the first file's content is damaged, each copy is read from the repository
/// instead and reports the damage too: nothing wrong is copied silently.
#[test]
fn duplicate_files_from_a_network_store_are_copied_and_damage_still_reported() {
    use std::os::unix::fs::PermissionsExt;
    let Some(url) = s3_url("duplicates") else {
        return;
    };
    let location = Location::parse(&url).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("dir/sub")).unwrap();
    let content = random_bytes(10_000, 7);
    for (name, mode) in [
        ("a.txt", 0o644),
        ("dir/b.txt", 0o600),
        ("dir/sub/c.txt", 0o755),
    ] {
        std::fs::write(src.join(name), &content).unwrap();
        std::fs::set_permissions(src.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    set_mtime(&src.join("dir/b.txt"), 1_000_000, 42);
    std::fs::write(src.join("other.txt"), random_bytes(5_000, 8)).unwrap();
    for name in ["zeros-1", "zeros-2"] {
        std::fs::write(src.join(name), vec![0u8; 64 << 10]).unwrap();
    }
    let mut repo = init(&location, Cipher::Aes256Gcm);
    backup(&mut repo, paths_opts(&[&src]), &NoProgress).unwrap();
    let repo = reopen(&location).unwrap();
    let (_, snap) = repo.find_snapshot("latest").unwrap();
    let restore_into = |repo: &Repository, target: &Path| {
        let opts = RestoreOptions {
            target: target.to_path_buf(),
            ..Default::default()
        };
        restore(repo, &snap.tree, &opts).unwrap()
    };
    let target = tmp.path().join("restore");
    let out = restore_into(&repo, &target);
    assert!(out.errors.is_empty() && out.warnings.is_empty(), "{out:?}");
    assert_eq!(out.files, 6);
    let restored = restored_path(&target, &src);
    assert_same_tree(&src, &restored);
    let zeros = std::fs::metadata(restored.join("zeros-2")).unwrap();
    assert_eq!(zeros.blocks(), 0, "a copied file of zeros was written");

    // Damage the one stored copy of the shared content.
    let blob = node_at(&repo, &snap.tree, "/a.txt").content[0];
    let at = repo.index().get(&blob).unwrap();
    let pack = coffer::repo::pack_name(&at.pack);
    let store = Store::open(&location, false).unwrap();
    let mut bytes = store.get(&pack).unwrap().to_vec();
    bytes[at.offset as usize + 100] ^= 1;
    store.delete(&pack).unwrap();
    store.put_new(&pack, bytes.into()).unwrap();
    let repo = reopen(&location).unwrap();
    let out = restore_into(&repo, &tmp.path().join("damaged"));
    let mut failed: Vec<_> = out.errors.iter().map(|e| e.path.clone()).collect();
    failed.sort();
    let expected: Vec<_> = ["a.txt", "dir/b.txt", "dir/sub/c.txt"]
        .iter()
        .map(|name| format!("{}/{name}", src.display()))
        .collect();
    assert_eq!(failed, expected, "{:?}", out.errors);
    assert_eq!(out.files, 3, "the other files are restored");
}

/// Flips one byte at several places in every stored object: the damage is always reported,
/// either when opening the repository or by `check --read-data`, and never by a panic.
#[test]
fn a_flipped_byte_anywhere_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/a"), random_bytes(200_000, 1)).unwrap();
    std::fs::write(src.join("b"), b"small file").unwrap();
    let repo_dir = tmp.path().join("repo");
    let loc = Location::Directory(repo_dir.clone());
    let mut repo = init(&loc, Cipher::XChaCha20Poly1305);
    backup(&mut repo, paths_opts(&[&src]), &NoProgress).unwrap();
    let mut objects = Vec::new();
    let mut stack = vec![repo_dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p)
            } else {
                objects.push(p)
            }
        }
    }
    for object in objects {
        let original = std::fs::read(&object).unwrap();
        for at in [
            0,
            original.len() / 3,
            original.len() / 2,
            original.len() - 1,
        ] {
            let mut damaged = original.clone();
            damaged[at] ^= 0x01;
            std::fs::write(&object, &damaged).unwrap();
            let detected = match reopen(&loc) {
                Err(e) => !matches!(e.kind(), ErrorKind::WrongPassword),
                Ok(mut repo) => !check(
                    &mut repo,
                    CheckOptions {
                        read_data: true,
                        ..Default::default()
                    },
                )
                .unwrap()
                .is_ok(),
            };
            assert!(
                detected,
                "flip at {at} in {} went unnoticed",
                object.display()
            );
        }
        std::fs::write(&object, &original).unwrap();
    }
    assert!(
        check(
            &mut reopen(&loc).unwrap(),
            CheckOptions {
                read_data: true,
                ..Default::default()
            }
        )
        .unwrap()
        .is_ok()
    );
}
