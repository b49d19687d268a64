//! `dname`: a DNS name in wire format (length-prefixed labels, as in a
//! query's QNAME) → dotted text, e.g. `\x07example\x03com` → `example.com`.
//!
//! It usually follows `string`, which stops at the wire format's final zero
//! length (the root label), so the result has no trailing dot. Without
//! `string` first that zero, and any zero padding after it, each become a
//! `.`: the decoder does exactly what ebpf_exporter's does, byte for byte,
//! so its configs produce the same label values. For the same reason an
//! empty name is `.` (the root), and a name whose length bytes run past its
//! end (truncated by the BPF program's buffer) comes back unchanged rather
//! than as an error: the row is kept and the raw name stays visible.
//!
//! The result must be UTF-8 to be a label value; when it is not (a label
//! holding binary bytes, a length byte turned `.` inside a multi-byte
//! character), that is an error naming the input, like `string`'s.

use super::{DecodeError, Decoder, DecoderOptions};

#[derive(Debug)]
struct Dname;

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("dname", &[])?;
    Ok(Box::new(Dname))
}

impl Decoder for Dname {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let name = dotted(input);
        match std::str::from_utf8(&name) {
            Ok(_) => Ok(name),
            Err(_) => Err(DecodeError::Invalid(format!(
                "dname decoder: {} does not decode to UTF-8 text",
                super::quoted(input)
            ))),
        }
    }
}

/// Every length byte becomes `.`, the leading one dropped. Malformed names
/// are returned as they are.
fn dotted(input: &[u8]) -> Vec<u8> {
    if input.is_empty() {
        return b".".to_vec();
    }
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some((&len, after)) = rest.split_first() {
        let Some((label, next)) = after.split_at_checked(usize::from(len)) else {
            return input.to_vec();
        };
        out.push(b'.');
        out.extend_from_slice(label);
        rest = next;
    }
    out.remove(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_table() {
        let long_label = "x".repeat(63);
        let cases: &[(&str, &[u8], Result<&str, &str>)] = &[
            // ebpf_exporter's own cases.
            ("empty is the root", b"", Ok(".")),
            ("one label", b"\x03com", Ok("com")),
            ("two labels", b"\x07example\x03com", Ok("example.com")),
            ("length past the end", b"\x05com", Ok("\x05com")),
            // More.
            (
                "three labels",
                b"\x03www\x07example\x03org",
                Ok("www.example.org"),
            ),
            ("one-byte label", b"\x01a", Ok("a")),
            ("root label alone", b"\x00", Ok("")),
            ("root label kept without string", b"\x03com\x00", Ok("com.")),
            ("padding after the root label", b"\x03com\x00\x00", Ok("com..")),
            ("empty label inside", b"\x03com\x00\x03net", Ok("com..net")),
            (
                "truncated second label",
                b"\x07example\x05co",
                Ok("\x07example\x05co"),
            ),
            (
                "label of 63 bytes",
                &[b"\x3f".as_slice(), &[b'x'; 63]].concat(),
                Ok(&long_label),
            ),
            ("dots inside a label are kept", b"\x03a.b\x01c", Ok("a.b.c")),
            ("utf-8 label", "\x06héllo".as_bytes(), Ok("héllo")),
            (
                "binary label",
                b"\x02\xff\xfe",
                Err("dname decoder: \"\\x02\\xff\\xfe\" does not decode to UTF-8 text"),
            ),
            (
                "malformed and binary",
                b"\x09\xff",
                Err("dname decoder: \"\\t\\xff\" does not decode to UTF-8 text"),
            ),
        ];
        super::super::check_cases(&*build(&DecoderOptions::default()).unwrap(), cases);
    }

    #[test]
    fn after_string_drops_the_root_label() {
        let chain = [
            super::super::configure("string", &DecoderOptions::default()).unwrap(),
            super::super::configure("dname", &DecoderOptions::default()).unwrap(),
        ];
        let mut qname = [0u8; 32];
        qname[..12].copy_from_slice(b"\x07example\x03com");
        assert_eq!(
            super::super::decode_chain(&chain, &qname),
            Ok(b"example.com".to_vec())
        );
    }
}
