//! `cpu --iters N`: a deterministic SHA-256 chain.

use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::json::Object;

/// The fixed 32-byte seed: the bytes 0x00, 0x01, ..., 0x1f.
pub const SEED: [u8; 32] = {
    let mut seed = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        seed[i] = i as u8;
        i += 1;
    }
    seed
};

/// `digest = SEED; repeat iters times: digest = sha256(digest)`.
pub fn chain(iters: u64) -> [u8; 32] {
    let mut digest = SEED;
    for _ in 0..iters {
        digest = Sha256::digest(digest).into();
    }
    digest
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

pub fn run(iters: u64) -> Object {
    let start = Instant::now();
    // Each round depends on the previous digest, so the loop can be neither skipped nor
    // reordered; `elapsed_ns` covers the loop only.
    let digest = chain(iters);
    let elapsed_ns = crate::nanos(start.elapsed());
    Object::mode("cpu")
        .with("iters", iters)
        .with("digest", hex(&digest))
        .with("elapsed_ns", elapsed_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_matches_a_direct_computation() {
        assert_eq!(chain(0), SEED);
        let once: [u8; 32] = Sha256::digest(SEED).into();
        assert_eq!(chain(1), once);
        let twice: [u8; 32] = Sha256::digest(once).into();
        assert_eq!(chain(2), twice);
    }

    #[test]
    fn hex_is_lower_case_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }
}
