//! Checks that bytes are a real PNG: the signature, a well-formed `IHDR`
//! whose checksum matches, at least one `IDAT`, and an `IEND` — enough to
//! tell an image from a file merely named `.png`, without decoding pixels.

/// What the header of a PNG says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PngInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bits per sample.
    pub bit_depth: u8,
    /// PNG colour type (0, 2, 3, 4 or 6).
    pub color_type: u8,
}

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Walks the chunks of a PNG and returns its header, or why it is not one.
pub fn inspect(bytes: &[u8]) -> Result<PngInfo, String> {
    let rest = bytes
        .strip_prefix(&SIGNATURE)
        .ok_or("not a PNG (bad signature)")?;
    let mut pos = 0usize;
    let mut info = None;
    let mut saw_data = false;
    while pos + 12 <= rest.len() {
        let len =
            u32::from_be_bytes([rest[pos], rest[pos + 1], rest[pos + 2], rest[pos + 3]]) as usize;
        let kind = &rest[pos + 4..pos + 8];
        let end = pos + 8 + len;
        if end + 4 > rest.len() {
            return Err(format!(
                "chunk {} runs past the end",
                String::from_utf8_lossy(kind)
            ));
        }
        let data = &rest[pos + 8..end];
        let crc = u32::from_be_bytes([rest[end], rest[end + 1], rest[end + 2], rest[end + 3]]);
        if crc32(&rest[pos + 4..end]) != crc {
            return Err(format!(
                "chunk {} has a bad checksum",
                String::from_utf8_lossy(kind)
            ));
        }
        match kind {
            b"IHDR" => {
                if info.is_some() || pos != 0 || len != 13 {
                    return Err("malformed IHDR".into());
                }
                let width = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let height = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                if width == 0 || height == 0 {
                    return Err("zero-sized image".into());
                }
                info = Some(PngInfo {
                    width,
                    height,
                    bit_depth: data[8],
                    color_type: data[9],
                });
            }
            b"IDAT" => saw_data = true,
            b"IEND" => {
                let info = info.ok_or("no IHDR")?;
                return if saw_data {
                    Ok(info)
                } else {
                    Err("no image data (IDAT)".into())
                };
            }
            _ => {}
        }
        if info.is_none() {
            return Err("the first chunk is not IHDR".into());
        }
        pos = end + 4;
    }
    Err("truncated: no IEND".into())
}

/// CRC-32 (ISO 3309), as PNG chunks use.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
        out
    }

    fn png(width: u32, height: u32, with_data: bool) -> Vec<u8> {
        let mut ihdr = width.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut out = SIGNATURE.to_vec();
        out.extend(chunk(b"IHDR", &ihdr));
        if with_data {
            out.extend(chunk(
                b"IDAT",
                &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
            ));
        }
        out.extend(chunk(b"IEND", &[]));
        out
    }

    #[test]
    fn a_png_reports_its_size() {
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
        let info = inspect(&png(640, 480, true)).unwrap();
        assert_eq!((info.width, info.height, info.color_type), (640, 480, 2));
    }

    #[test]
    fn fakes_are_refused() {
        assert!(inspect(b"not a png at all").is_err());
        assert!(inspect(&png(10, 10, false)).unwrap_err().contains("IDAT"));
        let mut bad = png(10, 10, true);
        bad[20] ^= 1;
        assert!(inspect(&bad).unwrap_err().contains("checksum"));
        let full = png(10, 10, true);
        assert!(inspect(&full[..full.len() - 12]).is_err());
    }
}
