//! `uint`: an unsigned integer key field → its decimal text, the usual first
//! step before `syscall`, `errno` or `static_map`.
//!
//! Map keys are laid out by the BPF program in host byte order, so that is
//! the order read here (little-endian on every architecture we build for).
//! Only the widths a C integer can have are accepted: any other size means
//! the label's `size` in the config does not match the key struct, and
//! guessing would silently produce wrong label values.

use super::{DecodeError, Decoder, DecoderOptions};

#[derive(Debug)]
struct Uint;

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("uint", &[])?;
    Ok(Box::new(Uint))
}

impl Decoder for Uint {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let value = match *input {
            [a] => u64::from(a),
            [a, b] => u64::from(u16::from_ne_bytes([a, b])),
            [a, b, c, d] => u64::from(u32::from_ne_bytes([a, b, c, d])),
            [a, b, c, d, e, f, g, h] => u64::from_ne_bytes([a, b, c, d, e, f, g, h]),
            _ => {
                return Err(DecodeError::Invalid(format!(
                    "uint decoder: cannot decode {} bytes, expected 1, 2, 4 or 8",
                    input.len()
                )))
            }
        };
        Ok(value.to_string().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_table() {
        let cases: &[(&str, Vec<u8>, Result<&str, &str>)] = &[
            ("u8 zero", vec![0], Ok("0")),
            ("u8 max", vec![0xff], Ok("255")),
            ("u16", 0x0102u16.to_ne_bytes().to_vec(), Ok("258")),
            ("u16 max", u16::MAX.to_ne_bytes().to_vec(), Ok("65535")),
            ("u32", 70_000u32.to_ne_bytes().to_vec(), Ok("70000")),
            ("u32 max", u32::MAX.to_ne_bytes().to_vec(), Ok("4294967295")),
            ("u64 zero", vec![0; 8], Ok("0")),
            ("u64", 1u64.to_ne_bytes().to_vec(), Ok("1")),
            (
                "u64 max",
                u64::MAX.to_ne_bytes().to_vec(),
                Ok("18446744073709551615"),
            ),
            (
                "empty",
                vec![],
                Err("uint decoder: cannot decode 0 bytes, expected 1, 2, 4 or 8"),
            ),
            (
                "3 bytes",
                vec![1, 2, 3],
                Err("uint decoder: cannot decode 3 bytes, expected 1, 2, 4 or 8"),
            ),
            (
                "16 bytes",
                vec![0; 16],
                Err("uint decoder: cannot decode 16 bytes, expected 1, 2, 4 or 8"),
            ),
        ];
        let cases: Vec<_> = cases
            .iter()
            .map(|(name, input, want)| (*name, input.as_slice(), *want))
            .collect();
        super::super::check_cases(&*build(&DecoderOptions::default()).unwrap(), &cases);
    }
}
