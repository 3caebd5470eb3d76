//! A PNG encoder for 8-bit RGB pictures: the file structure (signature,
//! IHDR, IDAT, IEND, each chunk with its CRC-32) written here, the zlib
//! stream by `miniz_oxide`. Enough for the plot; no reading, no palettes.

/// The eight bytes every PNG file starts with.
pub const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
/// zlib level: plots are mostly flat colour, which any level squeezes well.
const COMPRESSION_LEVEL: u8 = 6;
/// PNG's largest width or height (2^31 - 1); far above any plot.
const SIDE_MAX: u32 = i32::MAX as u32;

/// The PNG file of a `width` x `height` picture whose pixels are `rgb`, three
/// bytes a pixel, rows top to bottom.
pub fn encode_rgb(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    assert!(width > 0 && height > 0 && width <= SIDE_MAX && height <= SIDE_MAX);
    let row_len = width as usize * 3;
    assert_eq!(rgb.len(), row_len * height as usize, "pixel buffer size");
    // Each row gets filter type 0 (none) in front.
    let mut raw = Vec::with_capacity((row_len + 1) * height as usize);
    for row in rgb.chunks_exact(row_len) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let compressed = miniz_oxide::deflate::compress_to_vec_zlib(&raw, COMPRESSION_LEVEL);

    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate, filter method 0, no interlace.
    header.extend_from_slice(&[8, 2, 0, 0, 0]);

    let mut file = Vec::with_capacity(compressed.len() + 64);
    file.extend_from_slice(&SIGNATURE);
    chunk(&mut file, b"IHDR", &header);
    chunk(&mut file, b"IDAT", &compressed);
    chunk(&mut file, b"IEND", &[]);
    file
}

fn chunk(file: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let len = u32::try_from(data.len()).expect("a PNG chunk holds less than 4 GiB");
    file.extend_from_slice(&len.to_be_bytes());
    let start = file.len();
    file.extend_from_slice(kind);
    file.extend_from_slice(data);
    let crc = crc32(&file[start..]);
    file.extend_from_slice(&crc.to_be_bytes());
}

/// CRC-32 as PNG (and zip, and Ethernet) define it: polynomial 0xEDB88320
/// reflected, initial and final value all ones.
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut n = 0;
        while n < 256 {
            let mut c = n as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            table[n] = c;
            n += 1;
        }
        table
    };
    let mut crc = u32::MAX;
    for &byte in bytes {
        crc = TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Reads back what [`encode_rgb`] writes, checking every chunk's CRC: for
/// tests of the encoder and of pictures drawn with it.
#[cfg(test)]
pub fn decode_rgb(file: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    if file.len() < 8 || file[..8] != SIGNATURE {
        return Err("no PNG signature".into());
    }
    let mut at = 8;
    let (mut width, mut height, mut idat) = (0u32, 0u32, Vec::new());
    loop {
        let header = file.get(at..at + 8).ok_or("truncated chunk header")?;
        let len = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = header[4..8].try_into().unwrap();
        let body = file.get(at + 4..at + 8 + len).ok_or("truncated chunk")?;
        let crc = file.get(at + 8 + len..at + 12 + len).ok_or("truncated CRC")?;
        if crc32(body).to_be_bytes() != crc {
            return Err(format!("bad CRC in {}", String::from_utf8_lossy(&kind)));
        }
        let data = &body[4..];
        match &kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[..4].try_into().unwrap());
                height = u32::from_be_bytes(data[4..8].try_into().unwrap());
                if data[8..13] != [8, 2, 0, 0, 0] {
                    return Err("not 8-bit RGB".into());
                }
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => return Err(format!("unexpected chunk {}", String::from_utf8_lossy(&kind))),
        }
        at += 12 + len;
    }
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&idat).map_err(|e| format!("inflate: {e:?}"))?;
    let row_len = width as usize * 3;
    if raw.len() != (row_len + 1) * height as usize {
        return Err(format!("{} bytes of image data for {width} x {height}", raw.len()));
    }
    let mut rgb = Vec::with_capacity(row_len * height as usize);
    for row in raw.chunks_exact(row_len + 1) {
        if row[0] != 0 {
            return Err(format!("filter type {}", row[0]));
        }
        rgb.extend_from_slice(&row[1..]);
    }
    Ok((width, height, rgb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_known_inputs() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        // The IEND chunk's CRC, the same in every PNG file.
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }

    #[test]
    fn round_trip() {
        let (width, height) = (7, 3);
        let rgb: Vec<u8> = (0..width * height * 3).map(|i| (i * 37 % 251) as u8).collect();
        let file = encode_rgb(width, height, &rgb);
        assert_eq!(file[..8], SIGNATURE);
        assert_eq!(&file[12..16], b"IHDR");
        assert_eq!(&file[file.len() - 8..file.len() - 4], b"IEND");
        assert_eq!(decode_rgb(&file).unwrap(), (width, height, rgb));
    }

    #[test]
    fn a_flipped_bit_is_caught() {
        let file = encode_rgb(2, 2, &[255; 12]);
        for at in [20, file.len() - 14] {
            let mut broken = file.clone();
            broken[at] ^= 1;
            assert!(decode_rgb(&broken).is_err(), "byte {at}");
        }
    }

    #[test]
    #[should_panic(expected = "pixel buffer size")]
    fn wrong_buffer_size_is_a_bug() {
        encode_rgb(2, 2, &[0; 11]);
    }
}
