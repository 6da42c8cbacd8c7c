//! End-to-end tests of the real `coffer` binary, one or more per subcommand, including exit
//! codes and `--json` output.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use common::*;

struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Env {
            tmp: tempfile::tempdir().unwrap(),
        };
        std::fs::write(env.path("pass"), "correct horse\n").unwrap();
        env
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    /// `coffer` with the repository and passphrase file set, and no inherited secrets.
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("coffer").unwrap();
        c.env_remove("COFFER_PASSWORD")
            .env_remove("COFFER_PASSWORD_COMMAND")
            .env("COFFER_REPOSITORY", self.repo())
            .env("COFFER_PASSWORD_FILE", self.path("pass"));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn init(&self) {
        self.ok(&[
            "init",
            "--kdf-memory",
            "8",
            "--kdf-iterations",
            "1",
            "--chunk-min",
            "16K",
            "--chunk-avg",
            "64K",
            "--chunk-max",
            "256K",
        ]);
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

#[test]
fn init_backup_snapshots_ls_restore_check() {
    let env = Env::new();
    let src = env.path("src");
    build_every_case(&src);
    env.init();
    let out = env.ok(&[
        "backup",
        src.to_str().unwrap(),
        "--tag",
        "nightly",
        "--host",
        "web1",
    ]);
    assert!(out.contains("snapshot") && out.contains("saved"), "{out}");
    let snaps = env.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(snaps[0]["hostname"], "web1");
    assert_eq!(snaps[0]["tags"][0], "nightly");
    let human = env.ok(&["snapshots", "--tag", "nightly"]);
    assert!(human.contains("web1"));

    let listing = env.ok(&["ls", "latest", &format!("{}/dir", src.display())]);
    assert!(listing.contains("/dir/sub/inner.txt"), "{listing}");
    assert!(!listing.contains("regular.txt"));
    let long = env.ok(&["ls", "-l", "latest"]);
    assert!(
        long.contains("rwsr-xr-x") && long.contains("-> regular.txt"),
        "{long}"
    );
    let entries = env.json(&["ls", "latest"]);
    let big = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"].as_str().unwrap().ends_with("/large.bin"))
        .unwrap();
    let expected = blake3::hash(&std::fs::read(src.join("large.bin")).unwrap())
        .to_hex()
        .to_string();
    assert_eq!(big["blake3"], expected.as_str());

    let target = env.path("restore");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));

    let report = env.json(&["check", "--read-data"]);
    assert_eq!(report["errors"].as_array().unwrap().len(), 0);
    assert!(report["packs_read"].as_u64().unwrap() >= 2);
}

#[test]
fn incremental_backup_json_summary() {
    let env = Env::new();
    let src = env.path("src");
    build_every_case(&src);
    env.init();
    let first = env.json(&["backup", src.to_str().unwrap()]);
    assert!(first["summary"]["files_new"].as_u64().unwrap() > 10);
    let second = env.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(second["summary"]["bytes_read"], 0);
    assert_eq!(second["summary"]["files_new"], 0);
    let forced = env.json(&["backup", "--force", src.to_str().unwrap()]);
    assert!(forced["summary"]["bytes_read"].as_u64().unwrap() > 0);
    // No content is new. Only the trees of the directories above `src` may be: other tests
    // running at the same time create entries in /tmp and so change its mtime.
    let ancestors = src.ancestors().count() as u64 - 1;
    assert!(forced["summary"]["blobs_added"].as_u64().unwrap() <= ancestors);
}

#[test]
fn exit_codes_for_wrong_passphrase_missing_repo_and_existing_repo() {
    let env = Env::new();
    let out = env.run(&["snapshots"]);
    assert_eq!(code(&out), 10, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("coffer init"));
    env.init();
    let again = env.run(&["init", "--kdf-memory", "8"]);
    assert_eq!(code(&again), 1);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    std::fs::write(env.path("bad"), "wrong\n").unwrap();
    let out = env
        .cmd()
        .env("COFFER_PASSWORD_FILE", env.path("bad"))
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(code(&out), 12);
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    let json = env
        .cmd()
        .env("COFFER_PASSWORD_FILE", env.path("bad"))
        .args(["--json", "snapshots"])
        .output()
        .unwrap();
    let err: serde_json::Value = serde_json::from_slice(&json.stderr).unwrap();
    assert_eq!(err["exit_code"], 12);
}

#[test]
fn passphrase_sources() {
    let env = Env::new();
    env.init();
    let via_env = env
        .cmd()
        .env_remove("COFFER_PASSWORD_FILE")
        .env("COFFER_PASSWORD", "correct horse")
        .arg("snapshots")
        .output()
        .unwrap();
    assert!(via_env.status.success());
    let via_cmd = env
        .cmd()
        .env_remove("COFFER_PASSWORD_FILE")
        .args(["--password-command", "echo 'correct horse'", "snapshots"])
        .output()
        .unwrap();
    assert!(via_cmd.status.success());
    let none = env
        .cmd()
        .env_remove("COFFER_PASSWORD_FILE")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(code(&none), 1);
    assert!(String::from_utf8_lossy(&none.stderr).contains("--password-file"));
    // There is no option that takes a passphrase on the command line.
    let argv = env.run(&["--password", "x", "snapshots"]);
    assert_eq!(code(&argv), 2);
}

#[test]
fn recovery_key_and_key_management() {
    let env = Env::new();
    let out = env.ok(&[
        "init",
        "--kdf-memory",
        "8",
        "--kdf-iterations",
        "1",
        "--recovery-key",
    ]);
    let key = out
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 71 && l.matches('-').count() == 7)
        .expect("recovery key printed")
        .to_string();
    std::fs::write(env.path("recovery"), &key).unwrap();
    let by_recovery = env
        .cmd()
        .env("COFFER_PASSWORD_FILE", env.path("recovery"))
        .args(["--json", "key", "list"])
        .output()
        .unwrap();
    assert!(by_recovery.status.success());
    let slots: serde_json::Value = serde_json::from_slice(&by_recovery.stdout).unwrap();
    assert_eq!(slots.as_array().unwrap().len(), 2);

    std::fs::write(env.path("second"), "second passphrase\n").unwrap();
    let added = env.json(&[
        "key",
        "add",
        "--new-password-file",
        env.path("second").to_str().unwrap(),
        "--kdf-memory",
        "8",
        "--kdf-iterations",
        "1",
    ]);
    let added_id = added["id"].as_str().unwrap().to_string();
    assert_eq!(env.json(&["key", "list"]).as_array().unwrap().len(), 3);
    let second = |args: &[&str]| {
        env.cmd()
            .env("COFFER_PASSWORD_FILE", env.path("second"))
            .args(args)
            .output()
            .unwrap()
    };
    assert!(second(&["snapshots"]).status.success());

    // The slot in use cannot be removed; another one can.
    let own = second(&["key", "remove", &added_id[..8]]);
    assert_eq!(code(&own), 1);
    assert!(String::from_utf8_lossy(&own.stderr).contains("in use"));
    env.ok(&["key", "remove", &added_id[..8]]);
    assert_eq!(code(&second(&["snapshots"])), 12);

    std::fs::write(env.path("third"), "third passphrase\n").unwrap();
    env.ok(&[
        "key",
        "passwd",
        "--new-password-file",
        env.path("third").to_str().unwrap(),
        "--kdf-memory",
        "8",
        "--kdf-iterations",
        "1",
    ]);
    assert_eq!(
        code(&env.run(&["snapshots"])),
        12,
        "old passphrase no longer opens"
    );
    let third = env
        .cmd()
        .env("COFFER_PASSWORD_FILE", env.path("third"))
        .arg("snapshots")
        .output()
        .unwrap();
    assert!(third.status.success());
}

#[test]
fn stdin_backup_and_restore() {
    let env = Env::new();
    env.init();
    let data = random_bytes(300_000, 9);
    let out = env
        .cmd()
        .args(["--json", "backup", "--stdin", "--stdin-filename", "db.sql"])
        .write_stdin(data.clone())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = env.path("r");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(std::fs::read(target.join("db.sql")).unwrap(), data);
    let bad = env.run(&["backup", "--stdin", "--stdin-filename", "a/b"]);
    assert_eq!(code(&bad), 1);
}

#[test]
fn excludes_and_restore_filters() {
    let env = Env::new();
    let src = env.path("src");
    build_every_case(&src);
    std::fs::write(env.path("excludes"), "# comment\n*.bin\ndeep\n").unwrap();
    env.init();
    env.ok(&[
        "backup",
        src.to_str().unwrap(),
        "--exclude",
        "fifo",
        "--exclude-file",
        env.path("excludes").to_str().unwrap(),
    ]);
    let listing = env.ok(&["ls", "latest"]);
    assert!(
        !listing.contains("large.bin") && !listing.contains("/deep") && !listing.contains("fifo")
    );
    assert!(listing.contains("regular.txt"));
    let target = env.path("r");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--include",
        "*.txt",
        "--exclude",
        "inner.txt",
    ]);
    let r = target.join(src.strip_prefix("/").unwrap());
    assert!(r.join("regular.txt").exists());
    assert!(!r.join("dir/sub/inner.txt").exists() && !r.join("empty").exists());
}

#[test]
fn corruption_is_an_integrity_failure() {
    let env = Env::new();
    let src = env.path("src");
    build_every_case(&src);
    env.init();
    env.ok(&["backup", src.to_str().unwrap()]);
    // Flip one byte in the middle of the largest pack: a data pack, so trees stay readable.
    let pack = list_files(&env.repo().join("data"))
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&pack, bytes).unwrap();
    assert_eq!(code(&env.run(&["check"])), 0, "structure alone looks fine");
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(code(&out), 4);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("snapshot") && stderr.contains("/src/"),
        "{stderr}"
    );
    let target = env.path("r");
    let restore = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        code(&restore),
        4,
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
}

#[test]
fn unreadable_file_completes_with_warnings() {
    if !is_root() {
        return; // Needs to switch to an unprivileged user to make a file unreadable.
    }
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("readable"), "fine").unwrap();
    std::fs::write(src.join("secret"), "no access").unwrap();
    std::fs::set_permissions(
        src.join("secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    open_up(env.tmp.path());
    let bin = assert_cmd::cargo::cargo_bin("coffer");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .args(["backup", src.to_str().unwrap()])
        .env("COFFER_REPOSITORY", env.repo())
        .env("COFFER_PASSWORD_FILE", env.path("pass"))
        .env_remove("COFFER_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("secret"));
    let listing = env.ok(&["ls", "latest"]);
    assert!(listing.contains("readable") && !listing.contains("secret"));
}

#[test]
fn one_file_system_skips_mounts() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    let mnt = src.join("mnt");
    let Some(_mounted) = Tmpfs::mount(mnt.clone(), "1m") else {
        return; // No mount permission in this sandbox.
    };
    std::fs::write(mnt.join("on-tmpfs"), "x").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    env.ok(&["backup", "-x", src.to_str().unwrap()]);
    let listing = env.ok(&["ls", "latest"]);
    let first: Vec<String> = env
        .json(&["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let all = env.ok(&["ls", &first[0]]);
    assert!(all.contains("on-tmpfs"));
    assert!(listing.contains("/mnt") && !listing.contains("on-tmpfs"));
}

/// Lets an unprivileged user read the test directory and write the repository.
fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut p = dir.to_path_buf();
    loop {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode | 0o755)).unwrap();
        if !p.pop() || p.as_os_str() == "/" {
            break;
        }
    }
    std::process::Command::new("chmod")
        .args(["-R", "a+rwX"])
        .arg(dir.join("repo"))
        .status()
        .unwrap();
    std::process::Command::new("chmod")
        .arg("a+r")
        .arg(dir.join("pass"))
        .status()
        .unwrap();
}

/// A small file system mounted at a directory (created if missing) until dropped, also when
/// a test fails; `None` if it cannot be mounted (not root, no `mount`).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// A tmpfs of `size`: it refuses `O_DIRECT`, so packs go through `object_store`.
    fn mount(dir: PathBuf, size: &str) -> Option<Tmpfs> {
        Self::mount_with(dir, &["-t", "tmpfs", "-o", &format!("size={size}"), "none"])
    }

    /// An ext4 file system of `mib` MiB in the file `image`, loop-mounted: packs are written
    /// to it directly (`O_DIRECT`).
    fn ext4(dir: PathBuf, image: &Path, mib: u64) -> Option<Tmpfs> {
        std::fs::File::create(image)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let made = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(image)
            .status()
            .is_ok_and(|s| s.success());
        let image = image.to_str().unwrap();
        made.then(|| Self::mount_with(dir, &["-o", "loop", image]))
            .flatten()
    }

    fn mount_with(dir: PathBuf, args: &[&str]) -> Option<Tmpfs> {
        if !is_root() {
            return None;
        }
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(args)
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A command that failed on a full disk: exit code 1 and a message that says so.
fn assert_full_disk_error(out: &Output) {
    assert_eq!(code(out), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("No space left") && stderr.contains("full"),
        "{stderr}"
    );
}

#[test]
fn full_disk_on_backup_is_a_clear_error() {
    // Through object_store (tmpfs), and written directly while sealed (ext4): there the disk
    // fills during a write that runs beside the sealing.
    for direct in [false, true] {
        let env = Env::new();
        let _repo_disk = match direct {
            false => Tmpfs::mount(env.repo(), "2m"),
            true => Tmpfs::ext4(env.repo(), &env.path("disk.img"), 8),
        };
        let Some(_repo_disk) = _repo_disk else {
            return;
        };
        env.init();
        let src = env.path("src");
        std::fs::create_dir_all(&src).unwrap();
        let size = if direct { 16 << 20 } else { 3 << 20 };
        std::fs::write(src.join("big"), random_bytes(size, 5)).unwrap();
        let out = env.run(&["backup", src.to_str().unwrap()]);
        assert_full_disk_error(&out);
        let snapshots = std::fs::read_dir(env.repo().join("snapshots")).map_or(0, |d| d.count());
        assert_eq!(snapshots, 0, "a snapshot was written without its data");
        let staged: Vec<_> = std::fs::read_dir(env.repo().join("data"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(
            staged.iter().all(|n| !n.to_string_lossy().contains('#')),
            "staging files left: {staged:?}"
        );
    }
}

#[test]
fn full_disk_on_restore_is_a_clear_error() {
    let env = Env::new();
    let small = env.path("small");
    let Some(_target_disk) = Tmpfs::mount(small.clone(), "1m") else {
        return;
    };
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big"), random_bytes(3 << 20, 4)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let out = env.run(&["restore", "latest", "--target", small.to_str().unwrap()]);
    assert_full_disk_error(&out);
}

#[test]
fn restore_verify_reads_back_from_disk() {
    let env = Env::new();
    let src = env.path("src");
    build_every_case(&src);
    env.init();
    env.ok(&["backup", src.to_str().unwrap()]);
    let target = env.path("r");
    let out = env.json(&[
        "restore",
        "latest",
        "--verify",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(out["verified"], true);
    assert_eq!(out["verify_failures"].as_array().unwrap().len(), 0);
    assert!(out["result"]["files"].as_u64().unwrap() > 10);
}
