//! Standard base64 (with padding) as etcd's JSON gateway writes `bytes` fields. Hand
//! written: the one decoder this plugin needs is smaller than a dependency.

/// Decodes `text`; `None` if it is not standard base64.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_what_the_gateway_sends() {
        assert_eq!(decode("Zm9v").unwrap(), b"foo");
        assert_eq!(decode("YmFyYg==").unwrap(), b"barb");
        assert_eq!(decode("YQ==").unwrap(), b"a");
        assert_eq!(decode("").unwrap(), b"");
        assert!(decode("a*b").is_none());
    }
}
