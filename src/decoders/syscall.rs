//! `syscall`: a syscall number in decimal (the output of `uint`) → its name,
//! e.g. `0` → `read` on x86_64.
//!
//! Numbers differ per architecture, so the table is the build target's own,
//! generated from the kernel headers (see `syscall_table_x86_64.rs`). On an
//! architecture without a table the decoder refuses to build rather than
//! print wrong names. A number missing from the table (a syscall newer than
//! the table, or garbage) becomes `unknown_syscall:<n>`, as in ebpf_exporter,
//! so the row is kept and the number is still visible.
//!
//! Input that is not a decimal integer is an error. A negative input is
//! taken as its 64-bit two's complement, as ebpf_exporter's `uint64(n)` does,
//! so `-1` gives `unknown_syscall:18446744073709551615` like a `u64` key
//! holding -1 would.

use super::{DecodeError, Decoder, DecoderOptions};

#[cfg(target_arch = "x86_64")]
use super::syscall_table_x86_64::SYSCALLS;

#[derive(Debug)]
struct Syscall {
    table: &'static [(u64, &'static str)],
}

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("syscall", &[])?;
    Ok(Box::new(Syscall {
        table: table()
            .ok_or_else(|| format!("syscall decoder has no table for {}", std::env::consts::ARCH))?,
    }))
}

#[cfg(target_arch = "x86_64")]
fn table() -> Option<&'static [(u64, &'static str)]> {
    Some(SYSCALLS)
}

#[cfg(not(target_arch = "x86_64"))]
fn table() -> Option<&'static [(u64, &'static str)]> {
    None
}

impl Decoder for Syscall {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let number = parse(input).ok_or_else(|| {
            DecodeError::Invalid(format!(
                "syscall decoder: expected a decimal syscall number, got {}",
                super::quoted(input)
            ))
        })?;
        Ok(match lookup(self.table, number) {
            Some(name) => name.as_bytes().to_vec(),
            None => format!("unknown_syscall:{number}").into_bytes(),
        })
    }
}

fn parse(input: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(input).ok()?;
    text.parse::<u64>()
        .ok()
        // Two's complement on purpose, see the module doc.
        .or_else(|| text.parse::<i64>().ok().map(|n| n as u64))
}

fn lookup(table: &'static [(u64, &'static str)], number: u64) -> Option<&'static str> {
    table
        .binary_search_by_key(&number, |&(nr, _)| nr)
        .ok()
        .and_then(|i| table.get(i))
        .map(|&(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn decodes_table() {
        let cases: &[(&str, &[u8], Result<&str, &str>)] = &[
            ("first", b"0", Ok("read")),
            ("write", b"1", Ok("write")),
            ("openat", b"257", Ok("openat")),
            ("exit_group", b"231", Ok("exit_group")),
            ("last in table", b"450", Ok("set_mempolicy_home_node")),
            ("explicit plus", b"+1", Ok("write")),
            ("gap in numbering", b"335", Ok("unknown_syscall:335")),
            ("past the table", b"451", Ok("unknown_syscall:451")),
            (
                "u64 max",
                b"18446744073709551615",
                Ok("unknown_syscall:18446744073709551615"),
            ),
            ("negative", b"-1", Ok("unknown_syscall:18446744073709551615")),
            (
                "empty",
                b"",
                Err("syscall decoder: expected a decimal syscall number, got \"\""),
            ),
            (
                "raw bytes instead of uint output",
                &[0, 0, 0, 0],
                Err("syscall decoder: expected a decimal syscall number, got \"\\x00\\x00\\x00\\x00\""),
            ),
            (
                "not a number",
                b"read",
                Err("syscall decoder: expected a decimal syscall number, got \"read\""),
            ),
            (
                "whitespace",
                b" 1",
                Err("syscall decoder: expected a decimal syscall number, got \" 1\""),
            ),
            (
                "too big",
                b"18446744073709551616",
                Err("syscall decoder: expected a decimal syscall number, got \"18446744073709551616\""),
            ),
            (
                "invalid utf-8",
                b"\xff",
                Err("syscall decoder: expected a decimal syscall number, got \"\\xff\""),
            ),
        ];
        super::super::check_cases(&*build(&DecoderOptions::default()).unwrap(), cases);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn table_is_strictly_sorted() {
        // Binary search needs it; a hand edit could break it.
        assert!(SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[test]
    fn refuses_to_build_without_table() {
        let err = build(&DecoderOptions::default()).unwrap_err();
        assert_eq!(
            err,
            format!("syscall decoder has no table for {}", std::env::consts::ARCH)
        );
    }
}
