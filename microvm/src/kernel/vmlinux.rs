//! The ELF vmlinux inside a bzImage, decompressed on the host once.
//!
//! A bzImage decompresses itself in the guest before the kernel proper starts: under
//! nested virtualisation that in-guest LZ4 pass over 53 MB (Debian's cloud kernel) is the
//! largest single cost of a boot (measured in the sandbox: first console line 2.38 s from
//! the bzImage, 1.43 s from its vmlinux). The monitor boots an ELF vmlinux directly, so
//! `isolab kernel fetch` keeps one beside the bzImage.
//!
//! Only LZ4 is handled, the compression Debian builds its kernels with: the payload is
//! LZ4's legacy frame (magic `02 21 4c 18`, then blocks each prefixed by its compressed
//! size) followed by the kernel's 4-byte uncompressed size, which checks the result.

#[derive(Debug, thiserror::Error)]
pub enum VmlinuxError {
    #[error("not a bzImage with a compressed payload (boot protocol 2.08 or later)")]
    NotABzImage,
    #[error("the bzImage's payload is not LZ4 (it starts {0:02x?}); only LZ4 is supported")]
    NotLz4([u8; 4]),
    #[error("the LZ4 payload is corrupt at byte {0}")]
    Corrupt(usize),
    #[error("the payload decompressed to {got} bytes, but the kernel says {want}")]
    Size { got: usize, want: usize },
    #[error("the decompressed kernel is not an ELF file")]
    NotElf,
}

const LEGACY_MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];
/// A legacy-frame block decompresses to at most 8 MiB.
const BLOCK_MAX: usize = 8 << 20;

/// The ELF vmlinux a bzImage carries.
pub fn extract(bzimage: &[u8]) -> Result<Vec<u8>, VmlinuxError> {
    let payload = payload(bzimage).ok_or(VmlinuxError::NotABzImage)?;
    let (stream, size) = payload.split_at(payload.len() - 4);
    let want = u32::from_le_bytes(size.try_into().expect("4 bytes")) as usize;
    let magic: [u8; 4] = stream
        .get(..4)
        .and_then(|m| m.try_into().ok())
        .ok_or(VmlinuxError::NotABzImage)?;
    if magic != LEGACY_MAGIC {
        return Err(VmlinuxError::NotLz4(magic));
    }
    let mut out = Vec::with_capacity(want);
    let mut at = 4;
    while at < stream.len() {
        let len = stream
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or(VmlinuxError::Corrupt(at))?;
        let block = stream
            .get(at + 4..at + 4 + len)
            .ok_or(VmlinuxError::Corrupt(at))?;
        decompress_block(block, &mut out, BLOCK_MAX).map_err(|e| VmlinuxError::Corrupt(at + e))?;
        at += 4 + len;
    }
    if out.len() != want {
        return Err(VmlinuxError::Size {
            got: out.len(),
            want,
        });
    }
    if !out.starts_with(b"\x7fELF") {
        return Err(VmlinuxError::NotElf);
    }
    Ok(out)
}

/// The compressed payload, located by the setup header (`payload_offset` and
/// `payload_length`, relative to the protected-mode code after the setup sectors).
fn payload(bzimage: &[u8]) -> Option<&[u8]> {
    let u32_at = |at: usize| {
        Some(u32::from_le_bytes(
            bzimage.get(at..at + 4)?.try_into().ok()?,
        ))
    };
    if u32_at(0x202)? != 0x5372_6448
        || u16::from_le_bytes(bzimage.get(0x206..0x208)?.try_into().ok()?) < 0x0208
    {
        return None;
    }
    let setup_sects = match *bzimage.get(0x1f1)? {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + u32_at(0x248)? as usize;
    let len = u32_at(0x24c)? as usize;
    bzimage
        .get(start..start.checked_add(len)?)
        .filter(|p| p.len() > 8)
}

/// Appends one LZ4 block's output to `out`; on corrupt input, the offset in `block`.
fn decompress_block(block: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), usize> {
    let start = out.len();
    let mut i = 0;
    let length = |i: &mut usize, mut n: usize| -> Result<usize, usize> {
        if n == 15 {
            loop {
                let b = *block.get(*i).ok_or(*i)?;
                *i += 1;
                n += usize::from(b);
                if b != 255 {
                    break;
                }
            }
        }
        Ok(n)
    };
    while i < block.len() {
        let token = block[i];
        i += 1;
        let literals = length(&mut i, usize::from(token >> 4))?;
        out.extend_from_slice(block.get(i..i + literals).ok_or(i)?);
        i += literals;
        if i == block.len() {
            break; // the last sequence has literals only
        }
        let offset = usize::from(u16::from_le_bytes(
            block.get(i..i + 2).ok_or(i)?.try_into().expect("2 bytes"),
        ));
        i += 2;
        let matched = length(&mut i, usize::from(token & 0xf))? + 4;
        if offset == 0 || offset > out.len() - start || out.len() - start + matched > max {
            return Err(i);
        }
        // Byte by byte: a match may overlap the bytes it produces (offset < length).
        let from = out.len() - offset;
        for k in 0..matched {
            out.push(out[from + k]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bzImage-shaped buffer: setup header fields, then `payload` at its offset.
    fn bzimage(payload: &[u8]) -> Vec<u8> {
        let mut image = vec![0u8; 5 * 512];
        image[0x1f1] = 4;
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        image[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        image.extend([0u8; 16]);
        image.extend(payload);
        image
    }

    fn legacy_frame(blocks: &[&[u8]], size: u32) -> Vec<u8> {
        let mut frame = LEGACY_MAGIC.to_vec();
        for block in blocks {
            frame.extend((block.len() as u32).to_le_bytes());
            frame.extend(*block);
        }
        frame.extend(size.to_le_bytes());
        frame
    }

    #[test]
    fn blocks_with_literals_and_overlapping_matches_decode() {
        // "\x7fELF" literal, then a match of 4+3 bytes at offset 1 (runs of 'F'), then
        // the literal "ab".
        let block: &[u8] = &[0x43, 0x7f, b'E', b'L', b'F', 0x01, 0x00, 0x20, b'a', b'b'];
        let mut out = Vec::new();
        decompress_block(block, &mut out, BLOCK_MAX).unwrap();
        assert_eq!(out, b"\x7fELFFFFFFFFab");
        let image = bzimage(&legacy_frame(&[block, &[0x10, b'!']], 14));
        assert_eq!(extract(&image).unwrap(), b"\x7fELFFFFFFFFab!");
    }

    #[test]
    fn long_literal_lengths_continue_in_extra_bytes() {
        let mut block = vec![0xf0, 255, 2];
        block.extend([b'x'; 15 + 255 + 2]);
        let mut out = Vec::new();
        decompress_block(&block, &mut out, BLOCK_MAX).unwrap();
        assert_eq!(out.len(), 272);
    }

    #[test]
    fn wrong_input_is_refused_by_name() {
        assert!(matches!(extract(b"short"), Err(VmlinuxError::NotABzImage)));
        let gzip = bzimage(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(extract(&gzip), Err(VmlinuxError::NotLz4(_))));
        let bad_offset = bzimage(&legacy_frame(&[&[0x10, b'x', 0x05, 0x00]], 9));
        assert!(matches!(
            extract(&bad_offset),
            Err(VmlinuxError::Corrupt(_))
        ));
        let wrong_size = bzimage(&legacy_frame(&[&[0x40, 0x7f, b'E', b'L', b'F']], 5));
        assert!(matches!(
            extract(&wrong_size),
            Err(VmlinuxError::Size { got: 4, want: 5 })
        ));
        let not_elf = bzimage(&legacy_frame(&[&[0x20, b'M', b'Z']], 2));
        assert!(matches!(extract(&not_elf), Err(VmlinuxError::NotElf)));
    }
}
