//! `syscall`: a syscall number in decimal (the output of `uint`) → its name,
//! e.g. `0` → `read` on x86_64, `63` → `read` on aarch64.
//!
//! Numbers differ per architecture, so the table is the build target's own.
//! The tables come from the `syscall-numbers` crate, generated from the
//! kernel's own syscall tables and kept current upstream (a `cargo update`
//! brings new syscalls), not kept by hand here: a hand-kept table went
//! stale at 450 while kernels moved on. Tests check every table on every
//! host. On an architecture without a table the decoder refuses to build
//! rather than print wrong names. A number missing from the table (a
//! syscall newer than the crate, or garbage) becomes `unknown_syscall:<n>`,
//! as in ebpf_exporter, so the row is kept and the number is still visible.
//!
//! Input that is not a decimal integer is an error. A negative input is
//! taken as its 64-bit two's complement, as ebpf_exporter's `uint64(n)` does,
//! so `-1` gives `unknown_syscall:18446744073709551615` like a `u64` key
//! holding -1 would.

use std::ffi::c_long;

use super::{DecodeError, Decoder, DecoderOptions};

/// A syscall number's name in one architecture's table.
type Table = fn(c_long) -> Option<&'static str>;

#[derive(Debug)]
struct Syscall {
    table: Table,
}

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("syscall", &[])?;
    Ok(Box::new(Syscall {
        table: table()
            .ok_or_else(|| format!("syscall decoder has no table for {}", std::env::consts::ARCH))?,
    }))
}

#[cfg(target_arch = "x86_64")]
fn table() -> Option<Table> {
    Some(syscall_numbers::x86_64::sys_call_name)
}

#[cfg(target_arch = "aarch64")]
fn table() -> Option<Table> {
    Some(syscall_numbers::aarch64::sys_call_name)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn table() -> Option<Table> {
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
        let name = c_long::try_from(number).ok().and_then(self.table);
        Ok(match name {
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

#[cfg(test)]
mod tests {
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

    fn check(table: Table, cases: Cases<'_>) {
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
            (
                "set_mempolicy_home_node, 5.17",
                b"450",
                Ok("set_mempolicy_home_node"),
            ),
            ("explicit plus", b"+1", Ok("write")),
            ("gap in numbering", b"340", Ok("unknown_syscall:340")),
            ("far past the table", b"100000", Ok("unknown_syscall:100000")),
        ];
        check(syscall_numbers::x86_64::sys_call_name, cases);
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
            ("file_setattr, 6.17", b"469", Ok("file_setattr")),
            ("reserved for arch calls", b"244", Ok("unknown_syscall:244")),
            ("32-bit time64 calls", b"403", Ok("unknown_syscall:403")),
            ("x86_64's exit_group number", b"231", Ok("munlockall")),
            ("far past the table", b"100000", Ok("unknown_syscall:100000")),
        ];
        check(syscall_numbers::aarch64::sys_call_name, cases);
    }

    /// The x86_64 table used to stop at 450, so these exported as
    /// `unknown_syscall:N` on current kernels.
    #[test]
    fn x86_64_syscalls_of_current_kernels_have_names() {
        let cases: Cases<'_> = &[
            ("uretprobe, 6.11", b"335", Ok("uretprobe")),
            ("cachestat, 6.5", b"451", Ok("cachestat")),
            ("fchmodat2, 6.6", b"452", Ok("fchmodat2")),
            ("statmount, 6.8", b"457", Ok("statmount")),
            ("mseal, 6.10", b"462", Ok("mseal")),
            ("setxattrat, 6.13", b"463", Ok("setxattrat")),
            ("file_setattr, 6.17", b"469", Ok("file_setattr")),
        ];
        check(syscall_numbers::x86_64::sys_call_name, cases);
    }

    #[test]
    fn native_table_is_the_build_targets() {
        let native: Option<Table> = match std::env::consts::ARCH {
            "x86_64" => Some(syscall_numbers::x86_64::sys_call_name),
            "aarch64" => Some(syscall_numbers::aarch64::sys_call_name),
            _ => None,
        };
        let read = |t: Option<Table>| t.and_then(|t| t(0));
        assert_eq!(read(table()), read(native));
        match native {
            Some(_) => assert!(build(&DecoderOptions::default()).is_ok()),
            None => assert_eq!(
                build(&DecoderOptions::default()).unwrap_err(),
                format!("syscall decoder has no table for {}", std::env::consts::ARCH)
            ),
        }
    }
}
