//! `errno`: an error number in decimal (the output of `uint`) → its name,
//! e.g. `2` → `ENOENT`, so dashboards need no lookup table.
//!
//! BPF programs often record a return value, i.e. `-errno`, so a negative
//! input is taken by its absolute value: `-2` is `ENOENT` too. (A negative
//! value read by `uint` from a 4- or 8-byte key arrives as a large unsigned
//! number instead; that is not reinterpreted, since the decoder cannot know
//! the field's width.)
//!
//! A number with no name becomes `unknown:<n>`, where `<n>` is the absolute
//! value — exactly what ebpf_exporter's `errno` decoder prints (it uses
//! `unix.ErrnoName` and falls back to `unknown:%d`), so configs and
//! dashboards carry over. That includes `0` (success has no errno name) and
//! the kernel-internal codes such as `ERESTARTSYS` (512), which are not in
//! the uapi headers the table comes from. Input that is not a decimal
//! integer is an error.

use super::errno_table::ERRNOS;
use super::{DecodeError, Decoder, DecoderOptions};

#[derive(Debug)]
struct Errno;

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("errno", &[])?;
    Ok(Box::new(Errno))
}

impl Decoder for Errno {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let number = parse(input).ok_or_else(|| {
            DecodeError::Invalid(format!(
                "errno decoder: expected a decimal errno, got {}",
                super::quoted(input)
            ))
        })?;
        let name = ERRNOS
            .binary_search_by_key(&number, |&(nr, _)| nr)
            .ok()
            .and_then(|i| ERRNOS.get(i))
            .map(|&(_, name)| name);
        Ok(match name {
            Some(name) => name.as_bytes().to_vec(),
            None => format!("unknown:{number}").into_bytes(),
        })
    }
}

/// The absolute value of a decimal `i64`, or a `u64` too big for `i64` (as
/// `uint` prints for a large 8-byte key) so that no `uint` output is refused.
fn parse(input: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(input).ok()?;
    text.parse::<i64>()
        .map(i64::unsigned_abs)
        .or_else(|_| text.parse::<u64>())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_table() {
        let cases: &[(&str, &[u8], Result<&str, &str>)] = &[
            ("EPERM", b"1", Ok("EPERM")),
            ("ENOENT", b"2", Ok("ENOENT")),
            ("negated", b"-2", Ok("ENOENT")),
            ("explicit plus", b"+13", Ok("EACCES")),
            ("last of errno-base.h", b"34", Ok("ERANGE")),
            ("EAGAIN, not its alias EWOULDBLOCK", b"11", Ok("EAGAIN")),
            ("EDEADLK, not its alias EDEADLOCK", b"35", Ok("EDEADLK")),
            ("EOPNOTSUPP", b"95", Ok("EOPNOTSUPP")),
            ("last in table", b"133", Ok("EHWPOISON")),
            ("zero", b"0", Ok("unknown:0")),
            ("gap in numbering", b"41", Ok("unknown:41")),
            ("past the table", b"134", Ok("unknown:134")),
            ("kernel-internal", b"-512", Ok("unknown:512")),
            (
                "i64 min",
                b"-9223372036854775808",
                Ok("unknown:9223372036854775808"),
            ),
            (
                "u64 max",
                b"18446744073709551615",
                Ok("unknown:18446744073709551615"),
            ),
            (
                "empty",
                b"",
                Err("errno decoder: expected a decimal errno, got \"\""),
            ),
            (
                "name instead of number",
                b"ENOENT",
                Err("errno decoder: expected a decimal errno, got \"ENOENT\""),
            ),
            (
                "raw bytes instead of uint output",
                &[2, 0, 0, 0],
                Err("errno decoder: expected a decimal errno, got \"\\x02\\x00\\x00\\x00\""),
            ),
            (
                "too big",
                b"18446744073709551616",
                Err("errno decoder: expected a decimal errno, got \"18446744073709551616\""),
            ),
            (
                "invalid utf-8",
                b"1\xff",
                Err("errno decoder: expected a decimal errno, got \"1\\xff\""),
            ),
        ];
        super::super::check_cases(&*build(&DecoderOptions::default()).unwrap(), cases);
    }

    #[test]
    fn table_is_strictly_sorted() {
        // Binary search needs it; a hand edit could break it.
        assert!(ERRNOS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
