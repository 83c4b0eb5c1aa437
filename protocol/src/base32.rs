//! RFC 4648 base32, lowercase, without padding: for fingerprints in relay
//! addresses (case-insensitive on input, so a person may type either case).

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The character for the low five bits of `v`.
fn symbol(v: u16) -> char {
    char::from(ALPHABET.get(usize::from(v & 31)).copied().unwrap_or(b'a'))
}

pub(crate) fn encode(bytes: &[u8]) -> String {
    to_fives(bytes)
        .into_iter()
        .map(|v| symbol(v.into()))
        .collect()
}

/// Decodes exactly `N` bytes. Rejects other lengths, characters outside the
/// alphabet and non-zero padding bits (so every value has one encoding).
pub(crate) fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 8 / 5 + usize::from(!(N * 8).is_multiple_of(5)) {
        return None;
    }
    let fives = text
        .bytes()
        .map(|c| match c.to_ascii_lowercase() {
            c @ b'a'..=b'z' => Some(c - b'a'),
            c @ b'2'..=b'7' => Some(c - b'2' + 26),
            _ => None,
        })
        .collect::<Option<Vec<u8>>>()?;
    from_fives(&fives)?.try_into().ok()
}

/// Bytes as 5-bit values, most significant bits first; the last value is
/// padded with zero bits. (The invitation code uses it with an alphabet of
/// its own.)
pub(crate) fn to_fives(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut acc: u16 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        acc = (acc << 8) | u16::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(((acc >> bits) & 31) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(((acc << (5 - bits)) & 31) as u8);
    }
    out
}

/// 5-bit values (each below 32) back to bytes. `None` unless what is left
/// over is fewer than five bits, all zero, so every byte string has exactly
/// one encoding.
pub(crate) fn from_fives(fives: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(fives.len() * 5 / 8);
    let mut acc: u16 = 0;
    let mut bits = 0u32;
    for &v in fives {
        acc = (acc << 5) | u16::from(v & 31);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (bits < 5 && acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        assert_eq!(encode(b"foobar"), "mzxw6ytboi");
        assert_eq!(encode(b"fo"), "mzxq");
        assert_eq!(decode::<6>("MZXW6YTBOI"), Some(*b"foobar"));
        assert_eq!(decode::<2>("mzxq"), Some(*b"fo"));
        assert_eq!(decode::<2>("mzxr"), None, "non-zero padding bits");
        assert_eq!(decode::<2>("mzx1"), None);
        assert_eq!(decode::<2>("mzxqa"), None);
    }

    #[test]
    fn round_trip_32() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37 + 11) as u8);
        let text = encode(&bytes);
        assert_eq!(text.len(), 52);
        assert_eq!(decode::<32>(&text), Some(bytes));
    }
}
