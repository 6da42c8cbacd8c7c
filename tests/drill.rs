//! Restore drills end to end: healthy repositories pass, a corrupted pack fails the drill and
//! names exactly the files affected, objectives are judged, reports round-trip through the
//! repository, validate against the documented schema, and render.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use coffer::backup::{BackupOptions, NoProgress, backup};
use coffer::chunker::ChunkerParams;
use coffer::drill::{DrillOptions, Sample, drill};
use coffer::keyslot::Passphrase;
use coffer::repo::{InitOptions, Repository};
use coffer::report::{self, Verdict};
use coffer::store::{Location, Store};
use coffer::tree::NodeKind;
use common::*;

fn schema() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/drill-report.schema.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn assert_valid(report: &serde_json::Value) {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "report does not match the schema: {errors:?}"
    );
}

fn repo_with_backup(dir: &Path) -> (Repository, PathBuf) {
    let src = dir.join("src");
    build_every_case(&src);
    let opts = InitOptions {
        chunker: ChunkerParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        },
        pack_size: 1 << 20,
        kdf: fast_kdf(),
        ..Default::default()
    };
    let store = Store::open(&Location::Directory(dir.join("repo")), true).unwrap();
    let (mut repo, _) = Repository::init(store, &Passphrase::new("pw".into()), &opts).unwrap();
    backup(
        &mut repo,
        BackupOptions {
            paths: vec![src.clone()],
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    (repo, src)
}

fn options(sample: Sample) -> DrillOptions {
    DrillOptions {
        sample,
        seed: Some(42),
        target: None,
        keep: false,
        rto: None,
        rpo: None,
    }
}

#[test]
fn healthy_repository_passes_and_report_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _) = repo_with_backup(tmp.path());
    let (id, snap) = repo.find_snapshot("latest").unwrap();
    let out = drill(&repo, id, &snap, &options(Sample::All)).unwrap();
    let r = &out.report.report;
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.failures);
    assert!(r.checked.files > 10 && r.checked.dirs > 60 && r.checked.others >= 3);
    assert_eq!(r.sample.files_selected, r.snapshot.files);
    assert!(out.kept_at.is_none());
    let again = report::find(&repo, "latest").unwrap();
    assert_eq!(
        again, out.report,
        "the stored report reads back identically"
    );
    let json: serde_json::Value =
        serde_json::from_str(&coffer::render::json(&again).unwrap()).unwrap();
    assert_valid(&json);
    assert_eq!(json["digest"], again.digest.as_str());
}

#[test]
fn samples_are_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _) = repo_with_backup(tmp.path());
    let (id, snap) = repo.find_snapshot("latest").unwrap();
    let keep = |dir: &str| DrillOptions {
        keep: true,
        target: Some(tmp.path().join(dir)),
        ..options(Sample::Files(4))
    };
    let a = drill(&repo, id, &snap, &keep("a")).unwrap();
    let b = drill(&repo, id, &snap, &keep("b")).unwrap();
    assert_eq!(a.report.report.checked.files, 4);
    let files = |p: &Path| {
        snapshot_of(p)
            .into_iter()
            .filter(|(_, e)| format!("{e:?}").contains("content: Some"))
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    };
    assert_eq!(files(&a.kept_at.unwrap()), files(&b.kept_at.unwrap()));
    let pct = drill(&repo, id, &snap, &options(Sample::Percent(50.0))).unwrap();
    assert_eq!(
        pct.report.report.sample.files_selected,
        pct.report.report.snapshot.files.div_ceil(2)
    );
}

#[test]
fn corrupted_pack_fails_and_names_exactly_the_affected_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _) = repo_with_backup(tmp.path());
    let (id, snap) = repo.find_snapshot("latest").unwrap();
    // Pick the data pack of the first chunk of large.bin and work out every file using it.
    let mut chunks_of: Vec<(String, Vec<coffer::id::BlobId>)> = Vec::new();
    repo.walk(&snap.tree, &mut |path, node| {
        if node.kind == NodeKind::File {
            chunks_of.push((
                String::from_utf8_lossy(path).into_owned(),
                node.content.clone(),
            ));
        }
        Ok(())
    })
    .unwrap();
    let large = &chunks_of
        .iter()
        .find(|(p, _)| p.ends_with("/large.bin"))
        .unwrap()
        .1[0];
    let pack = repo.index().get(large).unwrap().pack;
    let expected: BTreeSet<String> = chunks_of
        .iter()
        .filter(|(_, c)| {
            c.iter()
                .any(|id| repo.index().get(id).unwrap().pack == pack)
        })
        .map(|(p, _)| p.clone())
        .collect();
    let path = tmp.path().join("repo").join(coffer::repo::pack_name(&pack));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = repo.index().get(large).unwrap().offset as usize + 40;
    bytes[at] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let out = drill(&repo, id, &snap, &options(Sample::All)).unwrap();
    let r = &out.report.report;
    assert_eq!(r.verdict, Verdict::Fail);
    let named: BTreeSet<String> = r.failures.iter().map(|f| f.path.clone()).collect();
    // The flipped byte spoils one chunk; every file using that chunk is named, no other.
    let spoiled: BTreeSet<String> = chunks_of
        .iter()
        .filter(|(_, c)| c.contains(large))
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(named, spoiled);
    assert!(spoiled.is_subset(&expected));
    assert!(r.failures.iter().all(|f| f.check == "restore"));
    let json: serde_json::Value =
        serde_json::from_str(&coffer::render::json(&out.report).unwrap()).unwrap();
    assert_valid(&json);
}

#[test]
fn objectives_are_judged() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _) = repo_with_backup(tmp.path());
    let (id, snap) = repo.find_snapshot("latest").unwrap();
    let day = Duration::from_secs(86_400);
    let met = DrillOptions {
        rto: Some(day),
        rpo: Some(day),
        ..options(Sample::All)
    };
    assert_eq!(
        drill(&repo, id, &snap, &met).unwrap().report.report.verdict,
        Verdict::Pass
    );
    // Two days later, a 24-hour RPO is missed.
    coffer::clock::set_fixed_now(Some(snap.time_ns + 2 * 86_400 * 1_000_000_000));
    let late = drill(&repo, id, &snap, &met).unwrap();
    coffer::clock::set_fixed_now(None);
    assert_eq!(late.report.report.verdict, Verdict::ObjectiveMissed);
    assert_eq!(late.report.report.objectives.rpo_met, Some(false));
    assert_eq!(late.report.report.objectives.rto_met, Some(true));
    // No restore takes zero time: a nanosecond RTO is always missed.
    let rto = DrillOptions {
        rto: Some(Duration::from_nanos(1)),
        ..options(Sample::All)
    };
    let slow = drill(&repo, id, &snap, &rto).unwrap();
    assert_eq!(slow.report.report.objectives.rto_met, Some(false));
    assert_eq!(slow.report.report.verdict, Verdict::ObjectiveMissed);
}

fn coffer(tmp: &Path) -> Command {
    let mut c = Command::cargo_bin("coffer").unwrap();
    c.env_remove("COFFER_PASSWORD_COMMAND")
        .env_remove("COFFER_PASSWORD_FILE")
        .env("COFFER_REPOSITORY", tmp.join("repo"))
        .env("COFFER_PASSWORD", "pw");
    c
}

fn run(tmp: &Path, args: &[&str]) -> Output {
    coffer(tmp).args(args).output().unwrap()
}

#[test]
fn cli_drill_history_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    repo_with_backup(tmp.path());
    let pass = run(
        tmp.path(),
        &["--json", "drill", "--rto", "4h", "--rpo", "24h"],
    );
    assert_eq!(
        pass.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&pass.stderr)
    );
    let drilled: serde_json::Value = serde_json::from_slice(&pass.stdout).unwrap();
    assert_valid(&drilled);
    std::thread::sleep(Duration::from_millis(1100));
    let missed = run(tmp.path(), &["drill", "--sample", "10%", "--rpo", "1s"]);
    assert_eq!(
        missed.status.code(),
        Some(5),
        "objective missed has its own exit code"
    );
    let history = run(tmp.path(), &["--json", "drill", "history"]);
    let list: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["report_id"], drilled["report_id"]);
    assert_eq!(list[1]["verdict"], "objective-missed");

    let exported = run(
        tmp.path(),
        &[
            "report",
            "drill",
            &drilled["report_id"].as_str().unwrap()[..10],
            "--format",
            "json",
        ],
    );
    let exported: serde_json::Value = serde_json::from_slice(&exported.stdout).unwrap();
    assert_eq!(exported, drilled, "the exported report is the one stored");

    let html = tmp.path().join("report.html");
    let out = run(
        tmp.path(),
        &[
            "report",
            "drill",
            "latest",
            "--format",
            "html",
            "-o",
            html.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("OBJECTIVE MISSED")
            && page.matches("<svg").count() == 3
            && !page.contains("http://"),
        "self-contained page"
    );
    let md = run(tmp.path(), &["report", "drill", "latest", "--format", "md"]);
    assert!(
        String::from_utf8_lossy(&md.stdout)
            .contains("| Recovery point objective | 1.00 s — MISSED")
    );

    let nothing = run(tmp.path(), &["drill", "deadbeef"]);
    assert_eq!(nothing.status.code(), Some(1), "could not run");
}

#[test]
fn cli_drill_fails_on_damage_and_check_subsets() {
    let tmp = tempfile::tempdir().unwrap();
    repo_with_backup(tmp.path());
    let mut packs = Vec::new();
    for e in list_files(&tmp.path().join("repo/data")) {
        packs.push(e);
    }
    let ok = run(
        tmp.path(),
        &["--json", "check", "--read-data-subset", "1/2"],
    );
    let a: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    let ok2 = run(
        tmp.path(),
        &["--json", "check", "--read-data-subset", "2/2"],
    );
    let b: serde_json::Value = serde_json::from_slice(&ok2.stdout).unwrap();
    assert_eq!(
        a["packs_read"].as_u64().unwrap() + b["packs_read"].as_u64().unwrap(),
        packs.len() as u64
    );
    let pct = run(
        tmp.path(),
        &["--json", "check", "--read-data-subset", "50%"],
    );
    let c: serde_json::Value = serde_json::from_slice(&pct.stdout).unwrap();
    assert_eq!(
        c["packs_read"].as_u64().unwrap(),
        (packs.len() as u64).div_ceil(2)
    );

    let biggest = packs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(biggest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(biggest, bytes).unwrap();
    let failed = run(tmp.path(), &["drill"]);
    assert_eq!(failed.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("failed: /"));
}
