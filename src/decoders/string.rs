//! `string`: a fixed-size C char array (`comm`, a path, a cgroup name) → the
//! text before its first NUL.
//!
//! The kernel fills these with `bpf_probe_read_str` and friends, which leave
//! whatever followed the terminator (zeros, or stale bytes from a reused map
//! slot), so everything from the first NUL on is dropped rather than only
//! trailing zeros. Invalid UTF-8 is refused instead of being replaced: label
//! values must be UTF-8 in the exposition format, and a mangled value would
//! create a series that never matches anything.

use super::{DecodeError, Decoder, DecoderOptions};

#[derive(Debug)]
struct CString;

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("string", &[])?;
    Ok(Box::new(CString))
}

impl Decoder for CString {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        // `split` always yields at least one piece, so the fallback is unused.
        let text = input.split(|&b| b == 0).next().unwrap_or(input);
        match std::str::from_utf8(text) {
            Ok(_) => Ok(text.to_vec()),
            Err(err) => Err(DecodeError::Invalid(format!(
                "string decoder: {} is not valid UTF-8 (bad byte at offset {})",
                super::quoted(text),
                err.valid_up_to()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_table() {
        let cases: &[(&str, &[u8], Result<&str, &str>)] = &[
            ("empty", b"", Ok("")),
            ("only NUL", b"\0", Ok("")),
            ("all NULs", &[0; 16], Ok("")),
            ("no NUL", b"bash", Ok("bash")),
            ("trailing NULs", b"bash\0\0\0\0", Ok("bash")),
            ("stale bytes after NUL", b"sh\0sh-old\xff", Ok("sh")),
            ("utf-8", "héllo\0".as_bytes(), Ok("héllo")),
            (
                "invalid utf-8",
                b"ab\xff\0",
                Err("string decoder: \"ab\\xff\" is not valid UTF-8 (bad byte at offset 2)"),
            ),
            (
                "truncated multi-byte char",
                b"\xc3",
                Err("string decoder: \"\\xc3\" is not valid UTF-8 (bad byte at offset 0)"),
            ),
        ];
        super::super::check_cases(&*build(&DecoderOptions::default()).unwrap(), cases);
    }
}
