//! `hex`: bytes → lowercase hex, for keys that are identifiers rather than
//! numbers (hashes, addresses, cookies), matching ebpf_exporter's output so
//! existing dashboards keep their label values.
//!
//! Bytes are printed in memory order, not as a number: a 4-byte key `01 00 00
//! 00` is `01000000`. Use `uint` first when the value is a number.

use super::{DecodeError, Decoder, DecoderOptions};

#[derive(Debug)]
struct Hex;

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("hex", &[])?;
    Ok(Box::new(Hex))
}

/// Hand-rolled rather than `write!("{:02x}")` because it runs for every row
/// of every scrape.
const DIGITS: &[u8; 16] = b"0123456789abcdef";

impl Decoder for Hex {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::with_capacity(input.len() * 2);
        for &byte in input {
            // Both indexes are a nibble, always < 16.
            out.push(DIGITS[usize::from(byte >> 4)]);
            out.push(DIGITS[usize::from(byte & 0x0f)]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_table() {
        let all_bytes: Vec<u8> = (0..=255).collect();
        let all_hex: String = (0..=255u8).map(|b| format!("{b:02x}")).collect();
        let cases: &[(&str, &[u8], &str)] = &[
            ("empty", &[], ""),
            ("zero", &[0], "00"),
            ("one byte", &[0xab], "ab"),
            ("memory order", &[1, 0, 0, 0], "01000000"),
            ("u64 max", &[0xff; 8], "ffffffffffffffff"),
            ("ascii", b"hi\0", "686900"),
            ("invalid utf-8 is fine", &[0xc3, 0x28], "c328"),
            ("every byte", &all_bytes, &all_hex),
        ];
        let decoder = build(&DecoderOptions::default()).unwrap();
        for (name, input, want) in cases {
            let got = decoder.decode(input);
            assert_eq!(got, Ok(want.as_bytes().to_vec()), "case {name}");
        }
    }
}
