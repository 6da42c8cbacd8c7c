#!/usr/bin/env python3
"""Side-by-side benchmark of coffer against restic, rustic, borg and bupstash.

For every dataset and every tool found, in one run and on the same data, it times: init, the
first backup, a re-backup with nothing changed, a re-backup after 1% of the files changed (for
the disk image: after scattered small edits) and a restore of the latest snapshot with each
tool's verification on. It measures each step's wall-clock time and peak RSS and the repository
size after each backup, and compares every restored tree with the source, file by file.

Datasets are generated deterministically (seeded PRNG) under --work:
  mixed           >= 1 GiB in >= 50k files: mostly small text, some semi-compressible binaries,
                  a few incompressible media files, duplicates, empty files and symlinks
  small           100k files of 1-10 KiB
  image           one 4 GiB disk-image-like file (zero, text, binary and random regions)
  incompressible  2 GiB of random data in 8 files
--scale multiplies all counts and sizes (--scale 0.01 is a one-minute smoke test).

Results go to --out: benchmarks.json (raw numbers), benchmarks.md (tables, method, targets)
and benchmarks-chart.svg. The exit status is 1 if any step failed or any restore differed.

    scripts/bench/compare.py --scale 0.01 --coffer target/release/coffer
    scripts/bench/compare.py --datasets mixed,small --tools coffer,restic
    eval "$(scripts/garage.sh start)" && scripts/bench/compare.py --datasets mixed --s3

Python 3.11 standard library only.
"""

import argparse
import ctypes
import datetime
import hashlib
import html
import json
import math
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

SEED = 0xC0FFE2
PASSWORD = "coffer-bench-password"
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
MANY_FILES = 10_000  # deleting a tree of this many files waits for the end of the run
# An unchanged re-backup faster than this is run REPEATS times in all and its median
# reported: one sample of a run of tens of milliseconds varies by half from run to run, and
# the median of five still moved by a quarter between two full runs (bupstash on `image`:
# 26.0 and 19.9 ms).
REPEAT_BELOW = 1.0
REPEATS = 9
BLOCK = 8 * MiB  # generators are called with at most this many bytes at a time

TOOLS = ("coffer", "restic", "rustic", "borg", "bupstash")
DATASETS = ("mixed", "small", "image", "incompressible")
# The timed steps in the order they run. "init" is recorded but not compared.
STEPS = ("init", "first_backup", "unchanged_backup", "changed_backup", "restore")
COMPARED = STEPS[1:]
BACKUPS = ("first_backup", "unchanged_backup", "changed_backup")
TOOL_COLORS = {
    "coffer": "#c0392b",
    "restic": "#2e86c1",
    "rustic": "#e67e22",
    "borg": "#27ae60",
    "bupstash": "#8e44ad",
}
# Inherited variables with these prefixes could point a tool at another repository or key.
FOREIGN_ENV = ("COFFER_", "RESTIC_", "RUSTIC_", "BORG_", "BUPSTASH_")


def step_title(step: str, dataset: str) -> str:
    if step == "changed_backup":
        return "edited-image re-backup" if dataset == "image" else "1%-changed re-backup"
    return {
        "init": "init",
        "first_backup": "first backup",
        "unchanged_backup": "unchanged re-backup",
        "restore": "restore (verified)",
    }[step]


# ---------------------------------------------------------------------------------------------
# Dataset generation


class Content:
    """Deterministic file contents, all drawn from one seeded PRNG."""

    # Maps every byte value onto 24 symbols, one of them (0) with probability 1/4: what is left
    # compresses to roughly half, like executables, databases or office documents.
    SEMI_TABLE = bytes(i % 24 if i < 192 else 0 for i in range(256))

    def __init__(self, rng: random.Random):
        self.rng = rng
        letters = "etaoinshrdlucmfwypvbgkjqxz"
        weights = range(len(letters), 0, -1)
        words = ["".join(rng.choices(letters, weights, k=rng.randint(1, 11))) for _ in range(20_000)]
        self.lines = [
            (" " * (4 * rng.randint(0, 3)) + " ".join(rng.choices(words, k=rng.randint(1, 14))) + "\n").encode()
            for _ in range(60_000)
        ]
        self.average_line = sum(map(len, self.lines)) / len(self.lines)

    def text(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += b"".join(self.rng.choices(self.lines, k=int((n - len(out)) / self.average_line) + 1))
        return out[:n]

    def random(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def binary(self, n: int) -> bytes:
        """Semi-compressible bytes interleaved with zero runs."""
        out = bytearray()
        while len(out) < n:
            segment = min(n - len(out), self.rng.randint(512, 64 * KiB))
            if self.rng.random() < 0.15:
                out += bytes(segment)
            else:
                out += self.rng.randbytes(segment).translate(self.SEMI_TABLE)
        return bytes(out)

    def zeros(self, n: int) -> bytes:
        return bytes(n)

    def write(self, path: Path, kind: str, size: int) -> None:
        fill = getattr(self, kind)
        with open(path, "wb") as f:
            for offset in range(0, size, BLOCK):
                f.write(fill(min(BLOCK, size - offset)))


@dataclass
class Entry:
    """One planned dataset entry. kind: text | binary | random | image | copy | link."""

    path: str  # relative to the dataset root
    kind: str
    size: int = 0
    source: str = ""  # copy: the file it duplicates; link: the symlink's target (relative)


def plan_mixed(rng: random.Random, scale: float) -> list[Entry]:
    """A home-directory-like tree: >= 1 GiB and >= 50k files at scale 1."""

    def count(n: int) -> int:
        return max(1, round(n * scale))

    dir_words = ("src", "docs", "photos", "music", "projects", "build", "assets", "lib", "data",
                 "notes", "archive", "config", "tests", "vendor", "reports", "mail")
    dirs, depth = [""], {"": 0}
    for i in range(count(1_600)):
        parent = rng.choice(dirs)
        while depth[parent] >= 5:
            parent = rng.choice(dirs)
        path = os.path.join(parent, f"{rng.choice(dir_words)}-{i}")
        dirs.append(path)
        depth[path] = depth[parent] + 1

    def place(name: str) -> str:
        return os.path.join(rng.choice(dirs), name)

    entries = []
    for i in range(count(47_000)):  # source, notes, configs: median 6 KB, up to 512 KiB
        size = min(512 * KiB, int(rng.lognormvariate(math.log(6_000), 1.2)))
        ext = rng.choice(("txt", "md", "rs", "py", "json", "html", "csv", "log"))
        entries.append(Entry(place(f"file-{i}.{ext}"), "text", size))
    for i in range(count(2_400)):  # binaries and documents: median 96 KiB, up to 8 MiB
        size = min(8 * MiB, int(rng.lognormvariate(math.log(96 * KiB), 1.3)))
        ext = rng.choice(("bin", "so", "db", "pdf", "docx", "o"))
        entries.append(Entry(place(f"blob-{i}.{ext}"), "binary", size))
    for i in range(count(12)):  # photos and videos: 1-24 MiB, incompressible
        ext = rng.choice(("jpg", "mp4", "mkv", "png"))
        entries.append(Entry(place(f"media-{i}.{ext}"), "random", rng.randint(MiB, 24 * MiB)))
    entries += [Entry(place(f"empty-{i}"), "text", 0) for i in range(count(100))]
    originals = [e for e in entries if e.kind in ("text", "binary") and e.size]
    for i in range(count(500)):
        original = rng.choice(originals)
        entries.append(Entry(place(f"copy-{i}-{os.path.basename(original.path)}"), "copy",
                             original.size, original.path))
    for i in range(count(100)):
        path = place(f"link-{i}")
        target = os.path.relpath(rng.choice(originals).path, os.path.dirname(path) or ".")
        entries.append(Entry(path, "link", source=target))
    return entries


def plan_small(rng: random.Random, scale: float) -> list[Entry]:
    """100k files of 1-10 KiB, 100 per directory, two levels deep."""
    entries = []
    for i in range(max(1, round(100_000 * scale))):
        kind = "text" if rng.random() < 0.85 else "binary"
        ext = "txt" if kind == "text" else "bin"
        path = f"{i // 10_000:02d}/{i // 100 % 100:02d}/file-{i:06d}.{ext}"
        entries.append(Entry(path, kind, rng.randint(KiB, 10 * KiB)))
    return entries


def plan_image(size: int) -> list[Entry]:
    return [Entry("disk.img", "image", size)]


def plan_incompressible(size: int) -> list[Entry]:
    return [Entry(f"random-{i}.bin", "random", size // 8) for i in range(8)]


def write_image(path: Path, size: int, content: Content, rng: random.Random) -> None:
    """A disk-image-like file: regions of zeros, text, binary and random data."""
    largest = max(256 * KiB, min(64 * MiB, size // 16))
    with open(path, "wb") as f:
        left = size
        while left:
            kind = rng.choices(("zeros", "text", "binary", "random"), weights=(30, 25, 25, 20))[0]
            region = min(left, rng.randint(largest // 16, largest))
            fill = getattr(content, kind)
            for offset in range(0, region, BLOCK):
                f.write(fill(min(BLOCK, region - offset)))
            left -= region


def generate(root: Path, entries: list[Entry], content: Content, rng: random.Random) -> None:
    if root.exists():
        shutil.rmtree(root)
    for entry in entries:  # originals come before their copies and links
        path = root / entry.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if entry.kind == "copy":
            shutil.copyfile(root / entry.source, path)
        elif entry.kind == "link":
            os.symlink(entry.source, path)
        elif entry.kind == "image":
            write_image(path, entry.size, content, rng)
        else:
            content.write(path, entry.kind, entry.size)


def mutate(root: Path, entries: list[Entry], rng: random.Random, image_edits: int) -> str:
    """The change before the third backup; returns what was done.

    A disk image gets `image_edits` 4 KiB overwrites at random aligned offsets (size unchanged);
    any other dataset gets one line inserted at a random offset of 1% of its regular files.
    """
    if entries[0].kind == "image":
        path = root / entries[0].path
        blocks = path.stat().st_size // (4 * KiB)
        with open(path, "r+b") as f:
            for _ in range(image_edits):
                f.seek(rng.randrange(blocks) * 4 * KiB)
                f.write(rng.randbytes(4 * KiB))
        return f"{image_edits} random 4 KiB overwrites in {entries[0].path}"
    regular = sorted(e.path for e in entries if e.kind != "link")
    chosen = sorted(rng.sample(regular, max(1, round(len(regular) / 100))))
    for rel in chosen:
        path = root / rel
        data = path.read_bytes()
        at = rng.randint(0, len(data))
        line = f"edited by the benchmark {rng.getrandbits(64):016x}\n".encode()
        path.write_bytes(data[:at] + line + data[at:])
    return f"a line inserted at a random offset of {len(chosen)} of {len(regular)} files (1%)"


# ---------------------------------------------------------------------------------------------
# Trees: manifests, verification, sizes


def manifest(root: Path) -> dict[str, tuple]:
    """Every entry below root: files as (size, sha256), symlinks as their target, dirs."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(mode):
                out[rel] = ("dir",)
            elif stat.S_ISREG(mode):
                with open(path, "rb") as f:
                    digest = hashlib.file_digest(f, "sha256").hexdigest()
                out[rel] = ("file", os.path.getsize(path), digest)
            else:
                out[rel] = ("other",)
    return out


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def level_page_cache(inputs: list[Path]) -> bool:
    """Flush dirty pages, drop the page cache and read `inputs` (files or trees) back into it.

    On a virtual machine, memory the guest has not touched since boot costs a host page fault
    on first use: a step that happened to run when the kernel handed out fresh pages (for the
    page cache of the files it writes, or its buffers) took up to twice as long as the same
    step on recycled pages. Dropping the cache before every step recycles the pages, and
    reading the inputs back makes every tool start warm. Needs root; returns whether it could.
    """
    os.sync()
    try:
        DROP_CACHES.write_text("1\n")
    except OSError:
        return False
    buf = bytearray(1 << 20)
    for top in inputs:
        paths = [top] if top.is_file() else (Path(d) / f for d, _, fs in os.walk(top) for f in fs)
        for path in paths:
            try:
                with open(path, "rb", buffering=0) as f:
                    while f.readinto(buf):
                        pass
            except OSError:
                pass  # a socket, a file removed meanwhile: nothing to warm
    return True


def tree_totals(tree: dict[str, tuple]) -> tuple[int, int]:
    """(regular files, their bytes)."""
    files = [v for v in tree.values() if v[0] == "file"]
    return len(files), sum(v[1] for v in files)


def tree_difference(expected: dict[str, tuple], actual: dict[str, tuple]) -> str | None:
    problems = []
    for what, names in (
        ("missing", sorted(expected.keys() - actual.keys())),
        ("unexpected", sorted(actual.keys() - expected.keys())),
        ("different", sorted(k for k in expected.keys() & actual.keys() if expected[k] != actual[k])),
    ):
        if names:
            problems.append(f"{len(names)} {what} (e.g. {', '.join(names[:3])})")
    return "; ".join(problems) or None


def restored_root(target: Path, source: Path) -> Path:
    """Where the source tree landed: most tools restore under the full source path."""
    nested = target / source.relative_to("/")
    return nested if nested.is_dir() else target


def disk_usage(path: Path) -> tuple[int, int]:
    """(allocated bytes as `du` counts them, apparent bytes) of everything below path."""
    allocated = apparent = 0
    if not path.exists():
        return 0, 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            allocated += st.st_blocks * 512
            apparent += st.st_size
    return allocated, apparent


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# ---------------------------------------------------------------------------------------------
# Tools


class Tool:
    """How to drive one backup tool. Each instance owns a private directory (`home`) holding its
    repository (unless remote), its caches and its key material."""

    name = ""

    def __init__(self, exe: str, home: Path, repo: str | None = None, s3: dict | None = None):
        self.exe = exe
        self.home = home
        self.repo = repo or str(home / "repo")
        self.s3 = s3  # endpoint/region of a remote repository, or None for a local one
        self.cache = home / "cache"

    @property
    def local_repo(self) -> Path | None:
        return None if self.s3 else Path(self.repo)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}
        env["XDG_CACHE_HOME"] = str(self.cache)
        env["XDG_CONFIG_HOME"] = str(self.cache / "config")
        env.update(self.tool_env())
        return env

    def prepare(self) -> None:
        """Untimed set-up before init."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.cache.mkdir(exist_ok=True)

    def tool_env(self) -> dict[str, str]:
        return {}

    def version_cmd(self) -> list[str]:
        return [self.exe, "--version"]

    def init_cmd(self) -> list[str]:
        raise NotImplementedError

    def after_init(self, log: Path) -> None:
        """Untimed set-up after a successful init (given init's log)."""

    def backup_cmd(self, source: Path, run: int | str) -> list[str]:
        raise NotImplementedError

    def restore_cmd(self, run: int, target: Path) -> tuple[list[str], Path | None]:
        """The command restoring backup number `run` into target, and its working directory."""
        raise NotImplementedError


class Coffer(Tool):
    name = "coffer"

    def prepare(self) -> None:
        super().prepare()
        (self.home / "password").write_text(PASSWORD + "\n")

    def tool_env(self) -> dict[str, str]:
        return {"COFFER_REPOSITORY": self.repo, "COFFER_PASSWORD_FILE": str(self.home / "password")}

    def globals(self) -> list[str]:
        return ["--s3-endpoint", self.s3["endpoint"]] if self.s3 else []

    def init_cmd(self):
        return [self.exe, *self.globals(), "--json", "init", "--recovery-key"]

    def after_init(self, log):
        # Unattended runs use a key file, like bupstash: the recovery key opens its slot
        # without Argon2id (a passphrase costs about 0.2 s and 64 MiB more per command).
        key = re.search(r'"recovery_key":\s*"([0-9a-f-]+)"', log.read_text())
        if not key:
            raise RuntimeError(f"coffer init printed no recovery key (log {log})")
        (self.home / "password").write_text(key.group(1) + "\n")

    def backup_cmd(self, source, run):
        return [self.exe, *self.globals(), "backup", str(source)]

    def restore_cmd(self, run, target):
        return [self.exe, *self.globals(), "restore", "latest", "--target", str(target), "--verify"], None


class Restic(Tool):
    name = "restic"

    def tool_env(self):
        return {"RESTIC_REPOSITORY": self.repo, "RESTIC_PASSWORD": PASSWORD,
                "RESTIC_CACHE_DIR": str(self.cache / "restic")}

    def globals(self) -> list[str]:
        return ["-o", f"s3.region={self.s3['region']}"] if self.s3 and self.s3["region"] else []

    def version_cmd(self):
        return [self.exe, "version"]

    def init_cmd(self):
        return [self.exe, *self.globals(), "init"]

    def backup_cmd(self, source, run):
        return [self.exe, *self.globals(), "backup", str(source)]

    def restore_cmd(self, run, target):
        return [self.exe, *self.globals(), "restore", "latest", "--target", str(target), "--verify"], None


class Rustic(Tool):
    name = "rustic"

    def tool_env(self):
        return {"RUSTIC_REPOSITORY": self.repo, "RUSTIC_PASSWORD": PASSWORD}

    def init_cmd(self):
        return [self.exe, "init"]

    def backup_cmd(self, source, run):
        return [self.exe, "backup", str(source)]

    def restore_cmd(self, run, target):
        return [self.exe, "restore", "latest", str(target)], None


class Borg(Tool):
    name = "borg"

    def tool_env(self):
        return {"BORG_REPO": self.repo, "BORG_PASSPHRASE": PASSWORD,
                "BORG_BASE_DIR": str(self.cache / "borg"), "BORG_DISPLAY_PASSPHRASE": "no",
                "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}

    def init_cmd(self):
        return [self.exe, "init", "--encryption", "repokey-blake2"]

    def backup_cmd(self, source, run):
        return [self.exe, "create", "--compression", "zstd,3", f"::bench-{run}", str(source)]

    def restore_cmd(self, run, target):
        return [self.exe, "extract", f"::bench-{run}"], target  # extracts into the working dir


class Bupstash(Tool):
    name = "bupstash"

    def prepare(self):
        super().prepare()
        subprocess.run([self.exe, "new-key", "-o", str(self.home / "key")], env=self.env(),
                       check=True, stdin=subprocess.DEVNULL, capture_output=True)

    def tool_env(self):
        return {"BUPSTASH_REPOSITORY": self.repo, "BUPSTASH_KEY": str(self.home / "key")}

    def version_cmd(self):
        return [self.exe, "version"]

    def init_cmd(self):
        return [self.exe, "init"]

    def backup_cmd(self, source, run):
        return [self.exe, "put", f"run={run}", str(source)]

    def restore_cmd(self, run, target):
        return [self.exe, "restore", "--into", str(target), f"run={run}"], None


TOOL_CLASSES = {cls.name: cls for cls in (Coffer, Restic, Rustic, Borg, Bupstash)}

VERIFICATION = {
    "coffer": "`restore --verify`: every chunk is decrypted and authenticated (bound to its id) and "
              "every file's size checked while restoring, then every restored file is read back "
              "from disk and compared (whole-file BLAKE3 and metadata) with the snapshot; the "
              "restore is synced to disk before it reports success",
    "restic": "`restore --verify`: blobs are decrypted and authenticated while restoring, then every "
              "restored file is read back and its blobs' SHA-256 compared with the snapshot",
    "rustic": "plain `restore`: blobs are decrypted and authenticated while restoring; rustic has no "
              "read-back option (`--verify-existing` only concerns files already in the target)",
    "borg": "`borg extract`: every chunk is authenticated and its id checked while extracting; "
            "no read-back",
    "bupstash": "`bupstash restore`: every chunk is decrypted and authenticated while restoring; "
                "no read-back",
}


def tool_version(tool: Tool) -> str:
    try:
        out = subprocess.run(tool.version_cmd(), capture_output=True, text=True, env=tool.env(), timeout=60)
    except OSError as err:
        return f"unknown ({err})"
    lines = (out.stdout + out.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


# ---------------------------------------------------------------------------------------------
# Running and measuring


# Why tools are not started straight from this process: a child that Python starts (vfork + exec)
# inherits this process's peak RSS in its own ru_maxrss, because exec records the peak of the
# memory it replaces; with the datasets' manifests in memory that would add tens of MiB to every
# tool. So a small shell forks the tool and exits at once, printing its pid; this process is the
# tool's subreaper, inherits it and reaps it with os.wait4. The tool's ru_maxrss then starts from
# the shell's RSS (about 1 MiB, as under GNU time) instead of ours.
LAUNCHER = 'log=$1; shift; "$@" >>"$log" 2>&1 </dev/null & echo $!'
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def run_measured(argv: list[str], env: dict, cwd: Path | None, log: Path, timeout: float) -> dict:
    """Run one command with output to `log`; wall-clock seconds, peak RSS and exit code.

    os.wait4 returns the tool's own rusage: ru_maxrss is its peak resident set (KiB on Linux),
    or that of the largest descendant it waited for, whichever is larger.
    """
    log.write_text(f"$ {' '.join(argv)}\n")
    start = time.monotonic()
    launcher = subprocess.run(["/bin/sh", "-c", LAUNCHER, "sh", str(log), *argv], env=env, cwd=cwd,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True)
    pid = int(launcher.stdout)
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        os.kill(pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill) if timeout else None
    if timer:
        timer.start()
    _, status, usage = os.wait4(pid, 0)
    seconds = time.monotonic() - start
    if timer:
        timer.cancel()
    return {"exit_code": os.waitstatus_to_exitcode(status), "seconds": seconds,
            "peak_rss_kib": usage.ru_maxrss, "timed_out": timed_out.is_set()}


def log_tail(log: Path, lines: int = 8) -> str:
    return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:])


class Bench:
    def __init__(self, args: argparse.Namespace, tools: dict[str, str]):
        self.args = args
        self.work = args.work
        self.tools = tools  # name -> executable
        self.problems: list[str] = []
        self.restored: list[Path] = []  # this dataset's restored trees
        self.deferred: list[Path] = []  # removed by `clean_up`, at the end of the run
        self.warned_level = False
        self.logs = self.work / "logs"
        remove(self.logs)
        self.logs.mkdir(parents=True)

    def say(self, message: str) -> None:
        print(message, flush=True)

    def fail(self, message: str) -> None:
        self.problems.append(message)
        print(f"\n!!! {message}\n", flush=True)

    def step(self, label: str, tool: Tool, step: str, argv: list[str], cwd: Path | None,
             files: int, size: int, source: Path | None = None) -> dict:
        """Run and record one timed step. Before it, outside the timing, dirty pages are flushed
        and the page cache is levelled: dropped, then the tool's own files (repository, caches)
        and the backup's `source` are read back."""
        inputs = [tool.home, *([source] if source else [])]
        if label == "s3" and os.environ.get("GARAGE_DIR"):
            inputs.append(Path(os.environ["GARAGE_DIR"]))  # the S3 server's data
        if not level_page_cache(inputs) and not self.warned_level:
            self.warned_level = True
            self.say("   (not root: the page cache is not levelled between steps)")
        log = self.logs / f"{label}-{tool.name}-{step}.log"
        m = run_measured(argv, tool.env(), cwd, log, self.args.timeout)
        result = {
            "status": "ok" if m["exit_code"] == 0 else "failed",
            "exit_code": m["exit_code"],
            "seconds": m["seconds"],
            "peak_rss_mib": m["peak_rss_kib"] / 1024,
            "files": files,
            "bytes": size,
            "mb_per_s": size / 1e6 / m["seconds"],
            "files_per_s": files / m["seconds"],
            "command": argv,
            "log": str(log),
        }
        if step != "restore" and tool.local_repo:
            os.sync()
            result["repo_bytes"], result["repo_apparent_bytes"] = disk_usage(tool.local_repo)
            result["cache_bytes"] = disk_usage(tool.cache)[0]
        if result["status"] != "ok":
            why = "timed out" if m["timed_out"] else f"exit code {m['exit_code']}"
            result["error"] = f"{why}; log {log}:\n{log_tail(log)}"
            self.fail(f"{label}: {tool.name} {step} FAILED ({why}); log {log}:\n{log_tail(log)}")
        else:
            self.say(f"  {tool.name:<9} {step:<17} {m['seconds']:9.2f} s {result['mb_per_s']:9.1f} MB/s"
                     f" {result['files_per_s']:10.0f} files/s {result['peak_rss_mib']:8.1f} MiB RSS"
                     + (f" {result['repo_bytes'] / MiB:9.1f} MiB repo" if "repo_bytes" in result else ""))
        return result

    def repeat_fast(self, label: str, tools: dict, results: dict, run: int, source: Path,
                    files: int, size: int) -> None:
        """An unchanged re-backup (the only step whose repetition does the same work) that took
        less than REPEAT_BELOW runs REPEATS times in all, each a new snapshot (named apart where
        the tool needs it). The tools take turns, one run each per round, so that no tool meets
        the disk in another state than the others (the first tool's runs would all follow the
        previous step's heavy writes). The median run replaces the first in `results`, with every
        run's time, the largest peak memory and the repository after the last run."""
        runs = {n: [r] for n, r in results.items()
                if r["status"] == "ok" and r["seconds"] < REPEAT_BELOW}
        for k in range(1, REPEATS):
            for n in list(runs):
                tool = tools[n]
                again = self.step(label, tool, "unchanged_backup",
                                  tool.backup_cmd(source, f"{run}r{k}"), None, files, size, source)
                if again["status"] != "ok":
                    results[n] = again
                    del runs[n]
                else:
                    runs[n].append(again)
        for n, rs in runs.items():
            median = dict(sorted(rs, key=lambda r: r["seconds"])[len(rs) // 2])
            median["runs_seconds"] = [r["seconds"] for r in rs]
            median["peak_rss_mib"] = max(r["peak_rss_mib"] for r in rs)
            for key in ("repo_bytes", "repo_apparent_bytes", "cache_bytes", "log"):
                if key in rs[-1]:
                    median[key] = rs[-1][key]  # the state after the last run
            self.say(f"  {n:<9} {'unchanged_backup':<17} {median['seconds']:9.3f} s median of {len(rs)}")
            results[n] = median

    def restore_and_verify(self, label: str, tool: Tool, run: int, source: Path,
                           expected: dict[str, tuple]) -> dict:
        target = self.work / "restore" / f"{label}-{tool.name}"
        remove(target)
        target.mkdir(parents=True)
        self.restored.append(target)
        files, size = tree_totals(expected)
        argv, cwd = tool.restore_cmd(run, target)
        result = self.step(label, tool, "restore", argv, cwd, files, size)
        if result["status"] == "ok":
            difference = tree_difference(expected, manifest(restored_root(target, source)))
            result["verified"] = difference is None
            if difference:
                result["status"] = "failed"
                result["error"] = f"restored tree differs from the source: {difference}"
                self.fail(f"{label}: {tool.name} restore MISMATCH: {difference} (restored into {target})")
        # Restored trees are removed only after every tool has restored (see `dataset`).
        return result

    def dataset(self, name: str, seed: int) -> dict:
        rng = random.Random(f"{seed}-{name}")
        scale = self.args.scale
        entries = {
            "mixed": lambda: plan_mixed(rng, scale),
            "small": lambda: plan_small(rng, scale),
            "image": lambda: plan_image(round(self.args.image_gib * GiB * scale)),
            "incompressible": lambda: plan_incompressible(round(self.args.incompressible_gib * GiB * scale)),
        }[name]()
        source = (self.work / "data" / name).resolve()
        self.say(f"\n== {name}: generating {source}")
        start = time.monotonic()
        generate(source, entries, Content(rng), rng)
        os.sync()
        generated = time.monotonic() - start
        expected = manifest(source)  # reads every byte: this warms the page cache
        files, size = tree_totals(expected)
        self.say(f"   {files} files, {size / MiB:.1f} MiB, generated in {generated:.1f} s;"
                 " page cache warmed by reading every file once")
        record = {"source": str(source), "files": files, "bytes": size,
                  "entries": len(expected), "steps": {s: {} for s in STEPS}}
        steps = record["steps"]
        tools = {n: TOOL_CLASSES[n](exe, self.work / "tools" / name / n) for n, exe in self.tools.items()}

        def ok(tool: str, step: str) -> bool:
            return steps[step].get(tool, {}).get("status") == "ok"

        def skipped(reason: str) -> dict:
            return {"status": "skipped", "error": reason}

        # Every tool does a step before any tool does the next: all see the same tree.
        for n, tool in tools.items():
            remove(tool.home)
            try:
                tool.prepare()
            except (OSError, subprocess.CalledProcessError) as err:
                steps["init"][n] = {"status": "failed", "error": f"set-up failed: {err}"}
                self.fail(f"{name}: {n} set-up FAILED: {err}")
                continue
            steps["init"][n] = self.step(name, tool, "init", tool.init_cmd(), None, 0, 0)
            if steps["init"][n]["status"] == "ok":
                tool.after_init(Path(steps["init"][n]["log"]))
        for run, step in enumerate(BACKUPS, 1):
            if step == "changed_backup":
                change = mutate(source, entries, random.Random(f"{seed}-{name}-mutate"),
                                max(1, round(200 * scale)))
                os.sync()
                expected = manifest(source)
                files, size = tree_totals(expected)
                record["change"] = change
                self.say(f"   changed: {change}; page cache re-warmed")
            for n, tool in tools.items():
                previous = STEPS[STEPS.index(step) - 1]
                if not ok(n, previous):
                    steps[step][n] = skipped(f"{previous} did not succeed")
                    continue
                steps[step][n] = self.step(name, tool, step, tool.backup_cmd(source, run), None,
                                           files, size, source)
            if step == "unchanged_backup":
                self.repeat_fast(name, tools, steps[step], run, source, files, size)
        record["files_after_change"], record["bytes_after_change"] = files, size
        for n, tool in tools.items():
            if not ok(n, "changed_backup"):
                steps["restore"][n] = skipped("changed_backup did not succeed")
                continue
            steps["restore"][n] = self.restore_and_verify(name, tool, len(BACKUPS), source, expected)
        if name == "mixed" and self.args.s3:
            record["s3"] = self.s3(source, expected)
        if not self.args.keep:
            remove(self.work / "tools" / name)
            # Deleting many files slows down whatever creates files in the next minutes: ext4
            # skips, checking each, the inodes freed in the last minutes when it allocates new
            # ones (a 100,000-file restore took 7 s or 40-80 s depending on this). So trees of
            # many files wait for the end of the run, and every tool's restore, of every
            # dataset, creates its files in a file system in the same state.
            doomed, self.restored = [source, *self.restored], []
            if files >= MANY_FILES:
                self.deferred.extend(doomed)
            else:
                for path in doomed:
                    remove(path)
        os.sync()
        return record

    def clean_up(self) -> None:
        for path in self.deferred:
            remove(path)

    def s3(self, source: Path, expected: dict[str, tuple]) -> dict:
        """First backup and restore of the (changed) mixed tree to an S3 server, coffer and restic."""
        endpoint = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
        url = urlparse(os.environ["COFFER_S3_TEST_URL"])
        bucket, prefix = url.netloc, url.path.strip("/")
        prefix = f"{prefix}/" if prefix else ""
        run_id = int(time.time())
        s3 = {"endpoint": endpoint, "region": os.environ.get("AWS_REGION", "")}
        locations = {"coffer": f"s3://{bucket}/{prefix}bench-coffer-{run_id}",
                     "restic": f"s3:{endpoint}/{bucket}/{prefix}bench-restic-{run_id}"}
        files, size = tree_totals(expected)
        results = {"endpoint": endpoint, "steps": {"init": {}, "first_backup": {}, "restore": {}}}
        self.say(f"\n== S3 ({endpoint}): mixed dataset, coffer and restic")
        for n in ("coffer", "restic"):
            if n not in self.tools:
                continue
            tool = TOOL_CLASSES[n](self.tools[n], self.work / "tools" / "s3" / n, locations[n], s3)
            remove(tool.home)
            tool.prepare()
            steps = results["steps"]
            steps["init"][n] = self.step("s3", tool, "init", tool.init_cmd(), None, 0, 0)
            if steps["init"][n]["status"] == "ok":
                tool.after_init(Path(steps["init"][n]["log"]))
            if steps["init"][n]["status"] == "ok":
                steps["first_backup"][n] = self.step("s3", tool, "first_backup",
                                                     tool.backup_cmd(source, 1), None, files, size,
                                                     source)
            if steps.get("first_backup", {}).get(n, {}).get("status") == "ok":
                steps["restore"][n] = self.restore_and_verify("s3", tool, 1, source, expected)
            if not self.args.keep:
                remove(tool.home)
        return results


# ---------------------------------------------------------------------------------------------
# Machine description


def machine_info(work: Path) -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
    # The file system holding the work dir: the longest mount point that contains it.
    device, mountpoint, fstype = "unknown", "/", "unknown"
    resolved = str(work.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        dev, mnt, fs = line.split()[:3]
        if (resolved == mnt or resolved.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(mountpoint):
            device, mountpoint, fstype = dev, mnt, fs
    rotational = Path(f"/sys/class/block/{os.path.basename(device)}/queue/rotational")
    disk = f"queue/rotational = {rotational.read_text().strip()}" if rotational.exists() else "type unknown"
    uname = os.uname()
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": mem_kib / (1 << 20),
            "kernel": f"{uname.sysname} {uname.release} {uname.machine}",
            "work_dir": resolved, "filesystem": f"{device} on {mountpoint} ({fstype}, {disk})",
            "free_disk_gib": shutil.disk_usage(work).free / GiB, "python": sys.version.split()[0]}


# ---------------------------------------------------------------------------------------------
# Reports


def duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def get(record: dict, step: str, tool: str) -> dict | None:
    """The successful result of one step, or None."""
    result = record["steps"][step].get(tool)
    return result if result and result["status"] == "ok" else None


def plural(n: int, one: str, many: str = "") -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


# The stages every byte of incompressible data goes through, as `cargo bench --bench stages`
# names them: chunking, the chunk's keyed id, the file's BLAKE3, and sealing (a zstd attempt
# that gives up, then AES-256-GCM).
BOUND_STAGES = ("chunking/random_64MiB", "hash_1MiB/keyed_blob_id", "hash_1MiB/blake3_plain",
                "seal_blob_1MiB/zstd1_incompressible")
# Reading the files and writing the packs: reported beside the bound, as a second bound.
IO_STAGES = ("io/read_file_64MiB", "io/write_pack_32MiB")
BOUND_SHARE = 0.7  # the target: this share of the bound


def pipeline_bound(criterion: Path, cores: int) -> dict | None:
    """The ideal throughput of a pipeline of BOUND_STAGES spread over `cores` with no overhead:
    cores / (sum of each stage's seconds per byte), from criterion's estimates; and the same
    with the IO_STAGES added, if they were measured."""
    def throughput(stage: str) -> float | None:
        where = criterion / stage / "new"
        try:
            estimate = json.loads((where / "estimates.json").read_text())
            bench = json.loads((where / "benchmark.json").read_text())
        except (OSError, ValueError):
            return None
        return bench["throughput"]["Bytes"] / (estimate["mean"]["point_estimate"] / 1e9) / 1e6

    stages = {stage: throughput(stage) for stage in BOUND_STAGES}
    if None in stages.values():
        return None
    per_byte = sum(1 / mb_per_s for mb_per_s in stages.values())
    bound = {"stages_mb_per_s": stages, "cores": cores, "bound_mb_per_s": cores / per_byte}
    io = {stage: throughput(stage) for stage in IO_STAGES}
    if None not in io.values():
        bound["io_stages_mb_per_s"] = io
        bound["bound_with_io_mb_per_s"] = cores / (per_byte + sum(1 / mb_per_s for mb_per_s in io.values()))
    return bound


def targets(results: dict) -> list[dict]:
    """Every target checked against the numbers: one row per target and dataset."""
    rows = []

    def row(target: str, dataset: str, coffer: str, reference: str, met: bool | None, why: str = "") -> None:
        rows.append({"target": target, "dataset": dataset, "coffer": coffer, "reference": reference,
                     "result": "n/a" + (f" ({why})" if why else "") if met is None else ("met" if met else "missed")})

    def speed(target: str, dataset: str, record: dict, step: str, peer: str, test) -> None:
        """A target on coffer's speed-up over `peer` (peer's time / coffer's time)."""
        c, p = get(record, step, "coffer"), get(record, step, peer)
        if not (c and p):
            return row(target, dataset, "–", "–", None, f"coffer or {peer} did not complete {step}")
        speedup = p["seconds"] / c["seconds"]
        row(target, dataset, f"{duration(c['seconds'])} ({c['mb_per_s']:.1f} MB/s)",
            f"{peer} {duration(p['seconds'])} ({p['mb_per_s']:.1f} MB/s): coffer {speedup:.2f}× as fast",
            test(speedup))

    for dataset, record in results["datasets"].items():
        speed("First backup ≥ 2.5× restic throughput", dataset, record, "first_backup", "restic",
              lambda x: x >= 2.5)
        speed("First backup faster than bupstash", dataset, record, "first_backup", "bupstash", lambda x: x > 1)
        speed("Unchanged re-backup no slower than bupstash", dataset, record, "unchanged_backup", "bupstash",
              lambda x: x >= 1)
        speed("1%-changed (image: edited) re-backup ≥ 2× restic", dataset, record, "changed_backup",
              "restic", lambda x: x >= 2)
        speed("Restore ≥ 2.5× restic", dataset, record, "restore", "restic", lambda x: x >= 2.5)

        pairs = [(s, get(record, s, "coffer"), get(record, s, "restic")) for s in COMPARED]
        pairs = [(s, c, r) for s, c, r in pairs if c and r]
        if pairs:
            step, c, r = max(pairs, key=lambda p: p[1]["peak_rss_mib"] / p[2]["peak_rss_mib"])
            row("Peak memory ≤ restic's at every step", dataset,
                f"worst: {step} {c['peak_rss_mib']:.0f} MiB",
                f"restic {r['peak_rss_mib']:.0f} MiB ({c['peak_rss_mib'] / r['peak_rss_mib']:.2f}×)",
                all(c["peak_rss_mib"] <= r["peak_rss_mib"] for _, c, r in pairs))
        else:
            row("Peak memory ≤ restic's at every step", dataset, "–", "–", None, "no step completed by both")

        c, r, b = (get(record, "changed_backup", t) for t in ("coffer", "restic", "bupstash"))
        if c and r:
            reference = f"restic {r['repo_bytes'] / MiB:,.1f} MiB ({c['repo_bytes'] / r['repo_bytes']:.2f}×)"
            if b:
                distance = 100 * (c["repo_bytes"] / b["repo_bytes"] - 1)
                reference += f"; bupstash {b['repo_bytes'] / MiB:,.1f} MiB (coffer {distance:+.1f}%)"
            row("Repository size ≤ restic's", dataset, f"{c['repo_bytes'] / MiB:,.1f} MiB", reference,
                c["repo_bytes"] <= r["repo_bytes"])
        else:
            row("Repository size ≤ restic's", dataset, "–", "–", None, "coffer or restic did not complete")

        if dataset == "small":
            c, r = get(record, "first_backup", "coffer"), get(record, "first_backup", "restic")
            if c and r:
                row("Many small files: first backup files/s ≥ 2× restic", dataset,
                    f"{c['files_per_s']:,.0f} files/s",
                    f"restic {r['files_per_s']:,.0f} files/s ({c['files_per_s'] / r['files_per_s']:.2f}×)",
                    c["files_per_s"] >= 2 * r["files_per_s"])
            else:
                row("Many small files: first backup files/s ≥ 2× restic", dataset, "–", "–", None,
                    "coffer or restic did not complete")
        if "s3" in record:
            speed("S3 first backup ≥ 2× restic", f"{dataset} (S3)", record["s3"], "first_backup", "restic",
                  lambda x: x >= 2)
        if dataset == "incompressible":
            target = f"First backup ≥ {BOUND_SHARE:.0%} of the two-core pipeline bound"
            bound, c = results.get("pipeline_bound"), get(record, "first_backup", "coffer")
            if bound and c:
                share = c["mb_per_s"] / bound["bound_mb_per_s"]
                with_io = bound.get("bound_with_io_mb_per_s")
                io_note = (f" (with the I/O stages: bound {with_io:.0f} MB/s, coffer at "
                           f"{c['mb_per_s'] / with_io:.0%})" if with_io else "")
                row(target, dataset, f"{c['mb_per_s']:.1f} MB/s",
                    f"bound {bound['bound_mb_per_s']:.0f} MB/s: coffer at {share:.0%}{io_note}",
                    share >= BOUND_SHARE)
            else:
                row(target, dataset, "–", "–", None, "no stage benchmarks (--stages) or no first backup")
    return rows


def markdown(results: dict) -> str:
    m, args = results["machine"], results["arguments"]
    out = ["# Benchmarks: coffer, restic, rustic, borg and bupstash", ""]
    out.append(f"Generated by `scripts/bench/compare.py` on {results['date']} "
               f"(scale {args['scale']}, datasets {', '.join(args['datasets'])}). "
               "Regenerate with `scripts/bench/compare.sh`.")
    if args["scale"] != 1.0:
        out += ["", f"**This run used `--scale {args['scale']}`: the datasets are "
                f"{args['scale']:g}× their real size, so these numbers only show that the harness works.**"]
    if results["problems"]:
        out += ["", f"**{len(results['problems'])} step(s) failed or restored wrong data: "
                "see [Problems](#problems).**"]

    out += ["", "## Machine", "", "| | |", "|---|---|",
            f"| CPU | {m['cpu']} |", f"| Cores | {m['cores']} |", f"| RAM | {m['ram_gib']:.1f} GiB |",
            f"| Kernel | {m['kernel']} |", f"| Work directory | `{m['work_dir']}` |",
            f"| File system | {m['filesystem']} |", f"| Python | {m['python']} |"]
    for tool, version in results["versions"].items():
        out.append(f"| {tool} | `{version}` |")

    out += ["", "## Method", ""]
    out += [
        "- **Data.** Each dataset is generated from a fixed seed, so every run and every tool sees "
        "the same bytes: text is drawn from a pool of 60,000 generated lines, semi-compressible "
        "binary is random bytes mapped onto 24 symbols (about 2:1 with zstd) interleaved with zero "
        "runs, media and the incompressible set are random bytes.",
        *[f"  - `{name}`: {DESCRIPTIONS[name]}" for name in results["datasets"]],
        "- **Steps.** For each dataset, every tool runs a step before any tool runs the next: "
        "`init` of a fresh repository in the work directory; **first backup**; **unchanged "
        "re-backup** (nothing changed, so each tool's fast path applies: coffer's and restic's and "
        "rustic's parent snapshot, borg's files cache, bupstash's send log); then the tree is changed "
        "once, for all tools: one line is inserted at a random offset of 1% of the files (for "
        "`image`: 4 KiB random overwrites at random offsets, 200 at scale 1); **changed re-backup**; "
        "**restore** of the latest snapshot into an empty directory. Every tool backs up the same "
        "absolute path. Tools run in the order of the tables.",
        "- **Verification.** After every restore the script walks the restored tree and compares the "
        "list of entries, every file's size and SHA-256 and every symlink target with the source; "
        "a difference fails the step. Each tool's own verification is on, as far as it has one:",
        *[f"  - {tool}: {VERIFICATION[tool]}." for tool in results["versions"]],
        "- **Settings.** coffer: defaults (zstd 1, 1 MiB average chunks, AES-256-GCM); `init "
        "--recovery-key`, and every later command opens the repository with that key from a key "
        "file, as unattended runs would (like bupstash's key file; a passphrase adds its Argon2id "
        "run, about 0.2 s and 64 MiB, to every command). restic: "
        "repository format 2, default compression (auto). rustic: defaults. borg: "
        "`init --encryption repokey-blake2`, `create --compression zstd,3`, default files cache "
        "(ctime,size,inode). bupstash: `new-key`, `init`, `put` with its defaults. Passwords and keys "
        "come from the environment or files, no prompts.",
        "- **Page cache.** `sync` runs before every step and before measuring a repository, "
        "outside the timings: a tool that fsyncs pays for it, one that leaves dirty pages behind "
        "does not. "
        + ("Then, also outside the timings, the page cache is dropped and the step's inputs are "
           "read back into it: the tool's own directory (repository and caches; for S3 also the "
           "server's data) and, for a backup, the dataset. Every step thus starts warm, on "
           "recycled memory: on this virtual machine, memory the guest has not touched since boot "
           "costs a host page fault on first use, and a step that ran while the kernel handed out "
           "such pages took up to twice as long as the same step on recycled ones."
           if results.get("page_cache_levelled") else
           "The page cache was not levelled between steps (that needs root): the dataset is read "
           "completely before the first tool runs and again after the change, so every backup "
           "reads from a warm page cache."),
        "- **Deletions.** Trees of many files (sources and restored trees of `mixed` and `small`) "
        "are deleted only at the end of the run. Right after a mass deletion, ext4 checks and "
        "skips every recently freed inode when it allocates a new one, and a 100,000-file restore "
        "then took 40–80 s instead of 7 s, whichever tool happened to run next.",
        "- **Time** is wall clock (`time.monotonic`) from starting the tool's process to reaping it, "
        "including its start-up and key derivation (and about 3 ms for the launcher below). "
        "Throughput is the dataset's bytes (MB = 10⁶ bytes) or regular files divided by that time, "
        f"also for the unchanged re-backup. An unchanged re-backup that took less than {REPEAT_BELOW:g} s "
        f"is run {REPEATS} times in all (the page cache levelled before each, each run a new "
        "snapshot, the tools taking turns: one run each per round) and the median time is "
        "reported (all times are in benchmarks.json), with the largest peak memory: one run of "
        "tens of milliseconds varied by half from run to run.",
        "- **Memory** is the peak resident set size of the tool's process: `ru_maxrss` from "
        "`os.wait4` on its pid (the largest of the process and any child it waited for). A process "
        "started directly from the benchmark would inherit the benchmark's own peak in `ru_maxrss`, "
        "so each tool is forked by a tiny `/bin/sh` launcher that exits at once, and the benchmark, "
        "as the tool's subreaper, adopts and reaps it: the floor is the shell's ~1 MiB, as under "
        "GNU `time`.",
        "- **Repository size** is what `du` counts (allocated blocks) for the repository directory "
        "after each backup. Local caches (restic's and rustic's cache, borg's chunk index and files "
        "cache, bupstash's send log and query cache) live in a separate directory per tool; their size "
        "is the *cache* column.",
        "- **Ratios** in the *coffer vs restic* column: speed-up = restic's time / coffer's time; "
        "memory and size = coffer / restic.",
    ]
    if any("s3" in r for r in results["datasets"].values()):
        out.append("- **S3.** After the local steps, coffer and restic back up the (changed) `mixed` "
                   "tree into fresh prefixes of a bucket on a local Garage server and restore it with "
                   "the same verification.")

    out += ["", "## Throughput relative to restic", "", "![chart](benchmarks-chart.svg)", "",
            "Higher is better; restic = 1 (log scale)."]

    for name, record in results["datasets"].items():
        out += ["", f"## Dataset `{name}`", "",
                f"{plural(record['files'], 'file')}, {record['bytes'] / MiB:,.1f} MiB "
                f"({plural(record['entries'], 'entry', 'entries')} with directories and symlinks). "
                f"Change before the re-backup: {record.get('change', 'none')}.", ""]
        out += table(record, name)
        if "s3" in record:
            out += ["", f"### `{name}` on S3 ({record['s3']['endpoint']})", ""]
            out += table(record["s3"], name)

    if bound := results.get("pipeline_bound"):
        out += ["", "## Two-core pipeline bound", "",
                "Every byte of incompressible data is chunked, hashed twice (the chunk's keyed id and "
                "the file's BLAKE3) and sealed (a zstd attempt that gives up, then AES-256-GCM). "
                "`cargo bench --bench stages` measures each stage alone on one core; with no overhead "
                f"at all, {bound['cores']} cores would run them at {bound['cores']} / Σ(1 / stage "
                "throughput). Reading the files and writing the packs (kernel and disk work) are not counted, "
                "so the bound is generous; the second bound adds them, as measured by the same "
                "benchmarks (a file read from the page cache, a 32 MiB pack written, synced and "
                "removed).", "", "| Stage | MB/s on one core |", "|---|--:|"]
        out += [f"| `{stage}` | {mb_per_s:,.0f} |" for stage, mb_per_s in bound["stages_mb_per_s"].items()]
        out.append(f"| **bound on {bound['cores']} cores** | **{bound['bound_mb_per_s']:,.0f}** |")
        if "bound_with_io_mb_per_s" in bound:
            out += [f"| `{stage}` | {mb_per_s:,.0f} |" for stage, mb_per_s in bound["io_stages_mb_per_s"].items()]
            out.append(f"| **bound with the I/O stages** | **{bound['bound_with_io_mb_per_s']:,.0f}** |")

    out += ["", "## Targets", "", "| Target | Dataset | coffer | Reference | Result |", "|---|---|---|---|---|"]
    for t in results["targets"]:
        result = {"met": "✅ met", "missed": "❌ missed"}.get(t["result"], t["result"])
        out.append(f"| {t['target']} | {t['dataset']} | {t['coffer']} | {t['reference']} | {result} |")

    if results["problems"]:
        out += ["", "## Problems", ""]
        out += [f"- {p.splitlines()[0]}" for p in results["problems"]]
    out += ["", "Raw numbers, commands and log paths: `benchmarks.json`.", ""]
    return "\n".join(out)


def table(record: dict, dataset: str) -> list[str]:
    rows = ["| Step | Tool | Time (s) | MB/s | files/s | Peak RSS (MiB) | Repo (MiB) | Cache (MiB) "
            "| coffer vs restic |",
            "|---|---|--:|--:|--:|--:|--:|--:|---|"]
    for step in record["steps"]:
        if step == "init":
            continue
        for tool, result in record["steps"][step].items():
            if result["status"] != "ok":
                rows.append(f"| {step_title(step, dataset)} | {tool} | **{result['status']}** | | | | | | |")
                continue
            ratios = ""
            c, r = get(record, step, "coffer"), get(record, step, "restic")
            if tool == "coffer" and c and r:
                parts = [f"speed-up {r['seconds'] / c['seconds']:.2f}×",
                         f"memory {c['peak_rss_mib'] / r['peak_rss_mib']:.2f}×"]
                if "repo_bytes" in c and "repo_bytes" in r:
                    parts.append(f"size {c['repo_bytes'] / r['repo_bytes']:.2f}×")
                ratios = ", ".join(parts)
            repo = result.get("repo_bytes")
            cache = result.get("cache_bytes")
            rows.append(f"| {step_title(step, dataset)} | {tool} | {result['seconds']:.{2 if result['seconds'] >= 1 else 3}f} | "
                        f"{fmt(result['mb_per_s'])} | {fmt(result['files_per_s'], 0)} | "
                        f"{fmt(result['peak_rss_mib'])} | {fmt(repo and repo / MiB)} | "
                        f"{fmt(cache and cache / MiB)} | {ratios} |")
    return rows


DESCRIPTIONS = {
    "mixed": "a home-directory-like tree nested up to 6 levels: about 47,000 text files "
             "(log-normal sizes, median 6 KB), 2,400 semi-compressible binaries (median 96 KiB, up "
             "to 8 MiB), 12 incompressible media files of 1–24 MiB, 100 empty files, 500 duplicates "
             "and 100 symlinks (at scale 1: > 50,000 files, > 1 GiB)",
    "small": "100,000 files of 1–10 KiB (85% text, 15% semi-compressible binary), 100 per "
             "directory",
    "image": "one disk-image-like file (4 GiB at scale 1) of regions of zeros (30%), text (25%), "
             "semi-compressible binary (25%) and random data (20%)",
    "incompressible": "2 GiB of random data in 8 files (at scale 1)",
}


def chart(results: dict) -> str:
    """Grouped bars, one panel per dataset: each tool's throughput relative to restic per step."""
    tools = list(results["versions"])
    datasets = list(results["datasets"].items())
    width, panel_h, top = 980, 300, 70
    left, right = 80, width - 20
    height = top + panel_h * len(datasets) + 10
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="17" font-weight="bold">'
           'Throughput relative to restic (restic = 1, higher is better, log scale)</text>']
    x = left
    for tool in tools:  # legend
        svg.append(f'<rect x="{x}" y="40" width="14" height="14" fill="{TOOL_COLORS[tool]}"/>')
        svg.append(f'<text x="{x + 20}" y="52">{tool}</text>')
        x += 40 + 8 * len(tool)

    for index, (name, record) in enumerate(datasets):
        y0 = top + index * panel_h + 30  # plot area top
        y1 = y0 + panel_h - 90  # plot area bottom
        values = {}
        for step in COMPARED:
            r = get(record, step, "restic")
            for tool in tools:
                t = get(record, step, tool)
                values[step, tool] = r["seconds"] / t["seconds"] if r and t else None
        known = [v for v in values.values() if v]
        lo = 2.0 ** math.floor(math.log2(min(known + [0.5])))
        hi = 2.0 ** math.ceil(math.log2(max(known + [2.0]) * 1.15))

        def y(v: float) -> float:
            return y1 - (math.log2(v) - math.log2(lo)) / (math.log2(hi) - math.log2(lo)) * (y1 - y0)

        svg.append(f'<text x="{left}" y="{y0 - 12}" font-size="14" font-weight="bold">{html.escape(name)}: '
                   f'{plural(record["files"], "file")}, {record["bytes"] / MiB:,.0f} MiB</text>')
        exponents = range(round(math.log2(lo)), round(math.log2(hi)) + 1)
        step_by = 1 if len(exponents) <= 8 else 2
        for e in (e for e in exponents if e % step_by == 0):  # 1× always gets a label
            v = 2.0 ** e
            label = f"{v:g}" if v >= 1 else f"1/{2 ** -e}"
            svg.append(f'<line x1="{left}" x2="{right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
            svg.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{label}×</text>')
        svg.append(f'<text transform="translate({left - 48},{(y0 + y1) / 2:.0f}) rotate(-90)" '
                   'text-anchor="middle">× restic throughput</text>')
        group_w = (right - left) / len(COMPARED)
        bar_w = group_w * 0.8 / len(tools)
        labels = []  # drawn last, over the restic = 1 line, with a white halo
        halo = 'text-anchor="middle" font-size="10" paint-order="stroke" stroke="white" stroke-width="3"'
        for g, step in enumerate(COMPARED):
            gx = left + g * group_w + group_w * 0.1
            for b, tool in enumerate(tools):
                bx = gx + b * bar_w
                v = values[step, tool]
                cx = bx + bar_w / 2
                if v is None:  # this tool's step failed, or restic's (nothing to compare with)
                    status = record["steps"][step].get(tool, {}).get("status", "not run")
                    label = "n/a" if status == "ok" else status
                    labels.append(f'<text x="{cx:.1f}" y="{y1 - 4}" {halo} fill="#c00">{label}</text>')
                    continue
                svg.append(f'<rect x="{bx + 1:.1f}" y="{y(v):.1f}" width="{bar_w - 2:.1f}" '
                           f'height="{y1 - y(v):.1f}" fill="{TOOL_COLORS[tool]}"><title>{tool}, '
                           f'{step_title(step, name)}: {v:.2f}× restic</title></rect>')
                value = f"{v:.2f}" if v < 10 else f"{v:.0f}"
                labels.append(f'<text x="{cx:.1f}" y="{y(v) - 4:.1f}" {halo}>{value}</text>')
            svg.append(f'<text x="{left + (g + 0.5) * group_w:.1f}" y="{y1 + 18}" text-anchor="middle">'
                       f'{html.escape(step_title(step, name))}</text>')
        svg.append(f'<line x1="{left}" x2="{right}" y1="{y(1):.1f}" y2="{y(1):.1f}" stroke="#333" '
                   'stroke-width="1.5" stroke-dasharray="6,4"/>')
        svg.append(f'<line x1="{left}" x2="{left}" y1="{y0}" y2="{y1}" stroke="#333"/>')
        svg.append(f'<line x1="{left}" x2="{right}" y1="{y1}" y2="{y1}" stroke="#333"/>')
        svg += labels
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


# ---------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/coffer-bench"),
                   help="scratch directory for data, repositories and restores (default %(default)s)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "docs",
                   help="where to write benchmarks.{json,md} and benchmarks-chart.svg (default %(default)s)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply all dataset sizes and counts")
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated subset of %(default)s")
    p.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of %(default)s")
    p.add_argument("--coffer", default=Path(__file__).resolve().parents[2] / "target/release/coffer",
                   help="coffer binary (default %(default)s). Build it with `cargo build --release`, as "
                        "compare.sh does: after `cargo test --release` (scripts/test.sh) that path holds "
                        "a binary built with the test dependencies' features, 0.6 MB larger")
    p.add_argument("--image-gib", type=float, default=4.0, help="size of the image dataset at scale 1")
    p.add_argument("--incompressible-gib", type=float, default=2.0,
                   help="size of the incompressible dataset at scale 1")
    p.add_argument("--seed", type=int, default=SEED, help="seed of all generated data")
    p.add_argument("--timeout", type=float, default=3 * 3600, help="kill a step after this many seconds (0: never)")
    p.add_argument("--keep", action="store_true", help="keep data, repositories and restored trees")
    p.add_argument("--stages", type=Path,
                   help="criterion output of `cargo bench --bench stages` (target/criterion), for the "
                        "two-core pipeline bound")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="run nothing: write the report again from this benchmarks.json (with --stages, "
                        "recompute the bound)")
    p.add_argument("--s3", action="store_true",
                   help="also time coffer and restic against the S3 server of `scripts/garage.sh start` "
                        "(mixed dataset)")
    args = p.parse_args()
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.tools = [t for t in args.tools.split(",") if t]
    for value, allowed, what in ((args.datasets, DATASETS, "dataset"), (args.tools, TOOLS, "tool")):
        if unknown := set(value) - set(allowed):
            p.error(f"unknown {what}(s): {', '.join(sorted(unknown))}")
    if args.scale <= 0:
        p.error("--scale must be positive")
    if args.s3:
        missing = [v for v in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "COFFER_S3_TEST_URL")
                   if not os.environ.get(v)]
        if missing:
            p.error(f"--s3 needs {', '.join(missing)}: run eval \"$(scripts/garage.sh start)\" first")
        if "mixed" not in args.datasets:
            p.error("--s3 uses the mixed dataset: add it to --datasets")
    args.work = args.work.resolve()
    return args


def write_report(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "benchmarks.md").write_text(markdown(results))
    (out / "benchmarks-chart.svg").write_text(chart(results))
    print(f"\nwrote {out}/benchmarks.json, benchmarks.md, benchmarks-chart.svg")
    for t in results["targets"]:
        print(f"  {t['result']:<8} {t['target']} [{t['dataset']}]: {t['coffer']} vs {t['reference']}")


def main() -> int:
    args = parse_args()
    if args.render:
        results = json.loads(args.render.read_text())
        if args.stages:
            results["pipeline_bound"] = pipeline_bound(args.stages, results["machine"]["cores"])
        results["targets"] = targets(results)
        write_report(results, args.out)
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    found = {}
    for name in args.tools:
        exe = args.coffer if name == "coffer" else shutil.which(name)
        if exe and os.access(exe, os.X_OK):
            found[name] = os.path.abspath(exe)
        else:
            print(f"note: {name} not found ({args.coffer if name == 'coffer' else 'not on PATH'}), skipped")
    if not found:
        print("no tools to run", file=sys.stderr)
        return 2
    become_subreaper()
    bench = Bench(args, found)
    versions = {n: tool_version(TOOL_CLASSES[n](exe, args.work / "version")) for n, exe in found.items()}
    for n, v in versions.items():
        print(f"{n:<9} {v}")
    results = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "arguments": {"scale": args.scale, "datasets": args.datasets, "tools": list(found),
                      "seed": args.seed, "image_gib": args.image_gib,
                      "incompressible_gib": args.incompressible_gib, "s3": args.s3},
        "machine": machine_info(args.work),
        "versions": versions,
        "datasets": {},
    }
    for name in args.datasets:
        results["datasets"][name] = bench.dataset(name, args.seed)
    bench.clean_up()
    results["problems"] = bench.problems
    results["page_cache_levelled"] = not bench.warned_level
    if args.stages:
        results["pipeline_bound"] = pipeline_bound(args.stages, results["machine"]["cores"])
    results["targets"] = targets(results)
    write_report(results, args.out)
    if bench.problems:
        print(f"\n{len(bench.problems)} problem(s):")
        for problem in bench.problems:
            print(f"  - {problem.splitlines()[0]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
