//! sha256 digests: computed while the bytes stream past, compared as lower-case hex.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

/// A reader that hashes and counts everything read through it.
#[derive(Debug)]
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
    /// How many zero bytes the stream has ended with so far: a tar archive ends with at
    /// least two zero blocks, so fewer means it was cut short.
    trailing_zeros: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            len: 0,
            trailing_zeros: 0,
        }
    }

    pub(crate) fn trailing_zeros(&self) -> u64 {
        self.trailing_zeros
    }

    /// Reads what is left (so the digest covers the whole stream), then returns it.
    pub(crate) fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((format!("{:x}", self.hasher.finalize()), self.len))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let chunk = &buf[..n];
        self.hasher.update(chunk);
        self.len += n as u64;
        match chunk.iter().rposition(|&b| b != 0) {
            Some(last) => self.trailing_zeros = (n - last - 1) as u64,
            None => self.trailing_zeros += n as u64,
        }
        Ok(n)
    }
}

/// The sha256 of a byte string, as hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// `sha256:<64 hex>` → the hex; anything else (another algorithm, a malformed digest) → None.
pub(crate) fn parse_sha256(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|hex| is_hex64(hex))
}

pub(crate) fn is_hex64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_what_passes_through() {
        let mut reader = HashingReader::new(&b"abc\0\0"[..]);
        let mut first = [0u8; 2];
        reader.read_exact(&mut first).unwrap();
        let (hex, len) = reader.finish().unwrap();
        assert_eq!(len, 5);
        assert_eq!(hex, sha256_hex(b"abc\0\0"));
        assert_eq!(sha256_hex(b""), EMPTY);
    }

    #[test]
    fn counts_trailing_zeros_across_reads() {
        let data = [1u8, 0, 0, 2, 0, 0, 0];
        let mut reader = HashingReader::new(&data[..]);
        let mut buf = [0u8; 3];
        reader.read_exact(&mut buf).unwrap();
        assert_eq!(reader.trailing_zeros(), 2);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(reader.trailing_zeros(), 3);
    }

    #[test]
    fn parses_only_sha256() {
        assert_eq!(parse_sha256(&format!("sha256:{EMPTY}")), Some(EMPTY));
        assert_eq!(parse_sha256(&format!("sha512:{EMPTY}")), None);
        assert_eq!(parse_sha256("sha256:ABC"), None);
    }
}
