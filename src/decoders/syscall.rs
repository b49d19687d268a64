//! `syscall`: a syscall number in decimal (the output of `uint`) → its name,
//! e.g. `0` → `read` on x86_64, `63` → `read` on aarch64.
//!
//! Numbers differ per architecture, so the table is the build target's own,
//! generated from the kernel headers (see `syscall_table_x86_64.rs` and
//! `syscall_table_aarch64.rs`). Tests build every table on every host, so a
//! table is checked even where it is not the native one. On an
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
    Some(super::syscall_table_x86_64::SYSCALLS)
}

#[cfg(target_arch = "aarch64")]
fn table() -> Option<&'static [(u64, &'static str)]> {
    Some(super::syscall_table_aarch64::SYSCALLS)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
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
    use super::super::{syscall_table_aarch64, syscall_table_x86_64};
    use super::*;

    type Cases<'a> = &'a [(&'a str, &'a [u8], Result<&'a str, &'a str>)];

    /// Input errors, the same whatever the table.
    const INVALID: Cases<'static> = &[
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
        (
            "u64 max",
            b"18446744073709551615",
            Ok("unknown_syscall:18446744073709551615"),
        ),
        ("negative", b"-1", Ok("unknown_syscall:18446744073709551615")),
    ];

    fn check(table: &'static [(u64, &'static str)], cases: Cases<'_>) {
        let decoder = Syscall { table };
        super::super::check_cases(&decoder, cases);
        super::super::check_cases(&decoder, INVALID);
    }

    #[test]
    fn decodes_x86_64_table() {
        let cases: Cases<'_> = &[
            ("first", b"0", Ok("read")),
            ("write", b"1", Ok("write")),
            ("openat", b"257", Ok("openat")),
            ("exit_group", b"231", Ok("exit_group")),
            ("last in table", b"450", Ok("set_mempolicy_home_node")),
            ("explicit plus", b"+1", Ok("write")),
            ("gap in numbering", b"335", Ok("unknown_syscall:335")),
            ("past the table", b"451", Ok("unknown_syscall:451")),
        ];
        check(syscall_table_x86_64::SYSCALLS, cases);
    }

    #[test]
    fn decodes_aarch64_table() {
        // Numbers checked against arch/arm64's generated unistd_64.h.
        let cases: Cases<'_> = &[
            ("first", b"0", Ok("io_setup")),
            ("read", b"63", Ok("read")),
            ("write", b"64", Ok("write")),
            ("openat", b"56", Ok("openat")),
            ("close", b"57", Ok("close")),
            ("exit_group", b"94", Ok("exit_group")),
            ("lsetxattr, an l- variant", b"6", Ok("lsetxattr")),
            ("pread64", b"67", Ok("pread64")),
            ("64-bit fcntl", b"25", Ok("fcntl")),
            ("64-bit lseek", b"62", Ok("lseek")),
            ("new stat", b"79", Ok("newfstatat")),
            ("renameat kept by arm64", b"38", Ok("renameat")),
            ("getrlimit kept by arm64", b"163", Ok("getrlimit")),
            ("64-bit mmap", b"222", Ok("mmap")),
            ("clone", b"220", Ok("clone")),
            ("execve", b"221", Ok("execve")),
            ("bpf", b"280", Ok("bpf")),
            ("first after the gap", b"424", Ok("pidfd_send_signal")),
            ("clone3", b"435", Ok("clone3")),
            ("memfd_secret kept by arm64", b"447", Ok("memfd_secret")),
            ("cachestat, 6.5", b"451", Ok("cachestat")),
            ("mseal, 6.10", b"462", Ok("mseal")),
            ("last in table, 6.17", b"469", Ok("file_setattr")),
            ("reserved for arch calls", b"244", Ok("unknown_syscall:244")),
            ("32-bit time64 calls", b"403", Ok("unknown_syscall:403")),
            ("x86_64's exit_group number", b"231", Ok("munlockall")),
            ("past the table", b"470", Ok("unknown_syscall:470")),
        ];
        check(syscall_table_aarch64::SYSCALLS, cases);
    }

    #[test]
    fn tables_are_strictly_sorted() {
        // Binary search needs it; a hand edit could break it.
        for table in [syscall_table_x86_64::SYSCALLS, syscall_table_aarch64::SYSCALLS] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn native_table_is_the_build_targets() {
        let native = match std::env::consts::ARCH {
            "x86_64" => Some(syscall_table_x86_64::SYSCALLS),
            "aarch64" => Some(syscall_table_aarch64::SYSCALLS),
            _ => None,
        };
        assert_eq!(table(), native);
        match native {
            Some(_) => assert!(build(&DecoderOptions::default()).is_ok()),
            None => assert_eq!(
                build(&DecoderOptions::default()).unwrap_err(),
                format!("syscall decoder has no table for {}", std::env::consts::ARCH)
            ),
        }
    }
}
