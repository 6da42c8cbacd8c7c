//! The `coffer` command: parses arguments, calls the library, prints results.

mod cli;

fn main() {
    limit_malloc_arenas();
    std::process::exit(cli::run());
}

/// glibc gives threads that allocate at once arenas of their own (up to eight per core), and
/// memory freed into one arena is not reused for another's allocations. Buffers pass between
/// the reading, sealing and storage threads, so that kept tens of MiB more resident at peak
/// (10^7-chunk scale benchmark: 613 MiB with the default, 568–576 MiB with one arena). The
/// price is some contention on the one arena's lock when threads allocate at once: a few
/// percent of the walk's time on an unchanged re-backup of small files.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
