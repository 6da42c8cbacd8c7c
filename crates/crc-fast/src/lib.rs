//! Coffer's stand-in for the `crc-fast` crate: CRC-64/NVME, the only algorithm `object_store`
//! asks it for (the `x-amz-checksum-crc64nvme` header of an S3 upload, when the user turns
//! that checksum on with `AWS_CHECKSUM_ALGORITHM`).
//!
//! The real crate links a table for each of its forty-odd algorithms because its `Digest`
//! picks one at run time: 680 KiB of read-only data, 6% of coffer's binary, which every run
//! reads from disk when it starts cold. This one keeps the API that `object_store` calls
//! (`Digest::new(CrcAlgorithm::Crc64Nvme)`, `update`, `finalize`) and computes slice-by-8
//! from one 16 KiB table, about 2 GB/s on one core: the checksum is off by default, and on,
//! it costs less than the upload it goes with.

/// The CRC algorithms this stand-in knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrcAlgorithm {
    /// CRC-64/NVME: polynomial 0xad93d23594c93659, reflected, initial value and final XOR
    /// all ones.
    Crc64Nvme,
}

/// The reflected polynomial of CRC-64/NVME.
const POLY: u64 = 0x9a6c_9329_ac4b_c9b5;

/// `TABLES[k][b]`: the CRC of byte `b` followed by `k` zero bytes (slice-by-8).
static TABLES: [[u64; 256]; 8] = tables();

const fn tables() -> [[u64; 256]; 8] {
    let mut t = [[0u64; 256]; 8];
    let mut b = 0;
    while b < 256 {
        let mut crc = b as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        t[0][b] = crc;
        b += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut b = 0;
        while b < 256 {
            let prev = t[k - 1][b];
            t[k][b] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            b += 1;
        }
        k += 1;
    }
    t
}

/// A running CRC.
#[derive(Clone, Debug)]
pub struct Digest {
    /// The register before the final XOR.
    state: u64,
}

impl Digest {
    /// A digest of nothing yet.
    pub fn new(algorithm: CrcAlgorithm) -> Self {
        match algorithm {
            CrcAlgorithm::Crc64Nvme => Digest { state: u64::MAX },
        }
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        let mut crc = self.state;
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let x = crc ^ u64::from_le_bytes(w.try_into().expect("8 bytes"));
            crc = TABLES[7][(x & 0xff) as usize]
                ^ TABLES[6][((x >> 8) & 0xff) as usize]
                ^ TABLES[5][((x >> 16) & 0xff) as usize]
                ^ TABLES[4][((x >> 24) & 0xff) as usize]
                ^ TABLES[3][((x >> 32) & 0xff) as usize]
                ^ TABLES[2][((x >> 40) & 0xff) as usize]
                ^ TABLES[1][((x >> 48) & 0xff) as usize]
                ^ TABLES[0][(x >> 56) as usize];
        }
        for &b in words.remainder() {
            crc = (crc >> 8) ^ TABLES[0][((crc ^ b as u64) & 0xff) as usize];
        }
        self.state = crc;
    }

    /// The CRC of everything added so far (the digest can go on taking data).
    pub fn finalize(&self) -> u64 {
        !self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit by bit, straight from the definition.
    fn reference(data: &[u8]) -> u64 {
        let mut crc = u64::MAX;
        for &b in data {
            crc ^= b as u64;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ POLY
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn digest(parts: &[&[u8]]) -> u64 {
        let mut d = Digest::new(CrcAlgorithm::Crc64Nvme);
        parts.iter().for_each(|p| d.update(p));
        d.finalize()
    }

    #[test]
    fn check_values_of_the_catalogue() {
        // The "check" of CRC-64/NVME in the catalogue of parametrised CRC algorithms, and
        // the empty input (init XOR xorout).
        assert_eq!(digest(&[b"123456789"]), 0xae8b_1486_0a79_9888);
        assert_eq!(digest(&[]), 0);
        assert_eq!(reference(b"123456789"), 0xae8b_1486_0a79_9888);
    }

    #[test]
    fn slice_by_8_matches_bit_by_bit_for_every_length_and_split() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let data: Vec<u8> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for len in 0..data.len() {
            let d = &data[..len];
            let want = reference(d);
            assert_eq!(digest(&[d]), want, "length {len}");
            let split = len * 7 / 13;
            assert_eq!(
                digest(&[&d[..split], &d[split..]]),
                want,
                "length {len} split {split}"
            );
        }
    }
}
