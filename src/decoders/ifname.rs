//! `ifname`: a network interface index → the interface's name, e.g. `1` →
//! `lo`, the way XDP, tc and skb programs see interfaces (`ifindex`).
//!
//! The input is the key bytes themselves (no `uint` before it): a `u32` in
//! host byte order. Only the first 4 bytes are read, as ebpf_exporter does,
//! so a label size that includes padding works; fewer is an error.
//!
//! An index with no interface (deleted since the program counted it, or
//! from another network namespace: names are looked up in the exporter's
//! own) becomes `unknown:<index>`, exactly as ebpf_exporter prints it.
//!
//! Names are not cached: one `if_indextoname()` is a single ioctl, cheaper
//! than keeping a cache right, and a renamed interface shows its new name on
//! the next read. Other lookup failures (no socket could be opened) are
//! errors, so they are counted instead of mislabelling rows.

use std::ffi::CStr;
use std::io;

use super::{DecodeError, Decoder, DecoderOptions};

/// Index → name, `None` when no interface has it.
type Lookup = fn(u32) -> io::Result<Option<Vec<u8>>>;

struct IfName {
    /// `if_indextoname()`; a fixed table in tests.
    lookup: Lookup,
}

impl std::fmt::Debug for IfName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IfName").finish_non_exhaustive()
    }
}

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("ifname", &[])?;
    Ok(Box::new(IfName {
        lookup: if_indextoname,
    }))
}

impl Decoder for IfName {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let Some(&[a, b, c, d]) = input.get(..4) else {
            return Err(DecodeError::Invalid(format!(
                "ifname decoder: cannot decode {} bytes, expected a 4-byte interface index",
                input.len()
            )));
        };
        let index = u32::from_ne_bytes([a, b, c, d]);
        match (self.lookup)(index) {
            Ok(Some(name)) => Ok(name),
            Ok(None) => Ok(format!("unknown:{index}").into_bytes()),
            Err(e) => Err(DecodeError::Invalid(format!(
                "ifname decoder: looking up interface {index}: {e}"
            ))),
        }
    }

    /// Interfaces come, go and get renamed.
    fn answer_can_change(&self) -> bool {
        true
    }
}

fn if_indextoname(index: u32) -> io::Result<Option<Vec<u8>>> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes if_indextoname may write,
    // NUL included.
    let found = unsafe { libc::if_indextoname(index, name.as_mut_ptr()) };
    if found.is_null() {
        let err = io::Error::last_os_error();
        // ENXIO is what the kernel's SIOCGIFNAME says for an unused index.
        return match err.raw_os_error() {
            Some(libc::ENXIO | libc::ENODEV) => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(name.as_ptr()) };
    Ok(Some(name.to_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ebpf_exporter's test interfaces.
    fn fixed(index: u32) -> io::Result<Option<Vec<u8>>> {
        Ok(match index {
            1 => Some(b"lo".to_vec()),
            2_734_686_214 => Some(b"eth42".to_vec()),
            _ => None,
        })
    }

    fn failing(_: u32) -> io::Result<Option<Vec<u8>>> {
        Err(io::Error::from_raw_os_error(libc::EMFILE))
    }

    #[test]
    fn decodes_table() {
        let cases: &[(&str, &[u8], Result<&str, &str>)] = &[
            // ebpf_exporter's own cases.
            ("lo", &[1, 0, 0, 0], Ok("lo")),
            ("high index", &[0x06, 0, 0, 0xa3], Ok("eth42")),
            ("zero", &[0, 0, 0, 0], Ok("unknown:0")),
            // More.
            ("unused index", &[7, 0, 0, 0], Ok("unknown:7")),
            ("u32 max", &[0xff; 4], Ok("unknown:4294967295")),
            (
                "padding after the index is ignored",
                &[1, 0, 0, 0, 9, 9, 9, 9],
                Ok("lo"),
            ),
            (
                "too short",
                &[1, 0],
                Err("ifname decoder: cannot decode 2 bytes, expected a 4-byte interface index"),
            ),
            (
                "empty",
                &[],
                Err("ifname decoder: cannot decode 0 bytes, expected a 4-byte interface index"),
            ),
        ];
        super::super::check_cases(&IfName { lookup: fixed }, cases);
        assert!(build(&DecoderOptions::default()).unwrap().answer_can_change());
    }

    #[test]
    fn lookup_failure_is_an_error() {
        assert_eq!(
            IfName { lookup: failing }.decode(&[1, 0, 0, 0]),
            Err(DecodeError::Invalid(format!(
                "ifname decoder: looking up interface 1: {}",
                io::Error::from_raw_os_error(libc::EMFILE)
            )))
        );
    }

    #[test]
    fn reads_this_host() {
        // Every interface in /sys/class/net decodes to its name; an index
        // past them all is unknown.
        let decoder = build(&DecoderOptions::default()).unwrap();
        let Ok(interfaces) = std::fs::read_dir("/sys/class/net") else {
            return;
        };
        let mut highest = 0;
        for entry in interfaces.flatten() {
            let Ok(index) = std::fs::read_to_string(entry.path().join("ifindex")) else {
                continue;
            };
            let index: u32 = index.trim().parse().unwrap();
            highest = highest.max(index);
            let name = entry.file_name().into_encoded_bytes();
            assert_eq!(decoder.decode(&index.to_ne_bytes()), Ok(name));
        }
        assert!(highest > 0, "no interfaces in /sys/class/net");
        let past = (highest + 1000).to_ne_bytes();
        assert_eq!(
            decoder.decode(&past),
            Ok(format!("unknown:{}", highest + 1000).into_bytes())
        );
    }
}
