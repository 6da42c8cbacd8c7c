//! Deterministic test data shared by the benchmarks.

/// `n` bytes that no compressor can shrink (BLAKE3 XOF of `seed`).
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.finalize_xof().fill(&mut out);
    out
}

/// `n` bytes of text-like data (words from a small vocabulary, lines, numbers) that zstd
/// shrinks several-fold, like logs or source code.
pub fn compressible(n: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the", "backup", "of", "chunk", "index", "pack", "snapshot", "tree", "blob", "key",
        "error", "warning", "info", "debug", "request", "user", "file", "size", "time", "id", "=",
        "{", "}", "(", ");", "fn", "let", "mut", "return", "if", "else", "match",
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut out = Vec::with_capacity(n + 32);
    while out.len() < n {
        let r = next();
        match r % 16 {
            0 => out.push(b'\n'),
            1 => out.extend_from_slice(format!("{} ", (r >> 8) % 100_000).as_bytes()),
            _ => {
                out.extend_from_slice(WORDS[(r >> 8) as usize % WORDS.len()].as_bytes());
                out.push(b' ');
            }
        }
    }
    out.truncate(n);
    out
}
