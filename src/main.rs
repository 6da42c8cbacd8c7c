//! The `coffer` command: parses arguments, calls the library, prints results.

mod cli;

fn main() {
    limit_malloc_arenas();
    std::process::exit(cli::run());
}

/// glibc gives threads that allocate at once arenas of their own (up to eight per core), and
/// memory freed into one arena is not reused for another's allocations. Buffers pass between
/// the reading, sealing and storage threads, so that kept tens of MiB more resident at peak
/// (10^7-chunk scale benchmark, with the index's earlier 48-byte entries: 613 MiB with the
/// default, 568–576 MiB with one arena; with today's 44-byte entries, 532–557 against
/// 485–493 MiB). The price is contention on the one arena's lock when threads allocate at
/// once, so the backup's listing thread allocates per directory, not per entry (see
/// `prefetch`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

/// For commands that restore: keep freed memory for the next allocation. A restore allocates
/// and frees a read-ahead window, a sealed blob and its plaintext for every chunk, megabytes
/// each. By default glibc serves those from fresh mappings or hands them back to the kernel
/// when freed, so every one is zeroed and faulted in again: 230k–370k page faults and
/// 6.0–7.1 s to restore the 1.2 GiB `mixed` benchmark tree, against 11k–13k faults and
/// 5.6–5.9 s with the memory kept, at the same peak RSS (54–61 MiB). Backups keep the
/// default: there it raised peak RSS from 95 to 150–170 MiB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; glibc takes the arena lock itself.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn keep_freed_memory() {}
