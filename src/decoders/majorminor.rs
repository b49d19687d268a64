//! `majorminor`: a block device number → the device's name from
//! `/proc/partitions`, e.g. `sda`, `nvme0n1p2` or `loop0`.
//!
//! The input is the key bytes themselves (no `uint` before it): a `u32` in
//! host byte order holding the number as the kernel's `new_encode_dev()`
//! packs it for userspace (include/linux/kdev_t.h), which is what BPF
//! programs store: the minor's low byte, 12 bits of major, then the rest of
//! the minor. Only the first 4 bytes are read, as ebpf_exporter does; fewer
//! is an error.
//!
//! A number missing from `/proc/partitions` becomes `unknown:<major>:<minor>`,
//! exactly as ebpf_exporter's decoder prints it. Names found are cached;
//! a miss reads the file again, since devices (loop, hot-plugged disks)
//! appear after the exporter starts. A file that cannot be read is an error.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{DecodeError, Decoder, DecoderOptions};

const PARTITIONS: &str = "/proc/partitions";

struct MajorMinor {
    /// Returns the text of `/proc/partitions`; a fixed table in tests.
    read_partitions: fn() -> std::io::Result<String>,
    /// Device number (as encoded) → name, from the last read of the file.
    cache: Mutex<HashMap<u32, Vec<u8>>>,
}

impl std::fmt::Debug for MajorMinor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MajorMinor").finish_non_exhaustive()
    }
}

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("majorminor", &[])?;
    Ok(Box::new(MajorMinor::new(|| std::fs::read_to_string(PARTITIONS))))
}

impl MajorMinor {
    fn new(read_partitions: fn() -> std::io::Result<String>) -> Self {
        MajorMinor {
            read_partitions,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl Decoder for MajorMinor {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let Some(&[a, b, c, d]) = input.get(..4) else {
            return Err(DecodeError::Invalid(format!(
                "majorminor decoder: cannot decode {} bytes, expected a 4-byte device number",
                input.len()
            )));
        };
        let dev = u32::from_ne_bytes([a, b, c, d]);
        // A poisoned lock only means another decode panicked; the map is
        // still a valid cache.
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(name) = cache.get(&dev) {
            return Ok(name.clone());
        }
        let text = (self.read_partitions)()
            .map_err(|e| DecodeError::Invalid(format!("majorminor decoder: reading {PARTITIONS}: {e}")))?;
        *cache = parse_partitions(&text);
        Ok(match cache.get(&dev) {
            Some(name) => name.clone(),
            None => {
                let (major, minor) = split(dev);
                format!("unknown:{major}:{minor}").into_bytes()
            }
        })
    }
}

/// (major, minor) of a `new_encode_dev()` number.
fn split(dev: u32) -> (u32, u32) {
    let major = (dev >> 8) & 0xfff;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    (major, minor)
}

/// The inverse of [`split`], for numbers that fit `new_encode_dev()`:
/// major < 2^12, minor < 2^20.
fn encode(major: u32, minor: u32) -> Option<u32> {
    (major <= 0xfff && minor <= 0xfffff).then_some((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// Every device in the text of `/proc/partitions` by encoded number. Lines
/// that are not four fields `major minor #blocks name` with numeric
/// major and minor (the header, the blank line after it) are skipped.
fn parse_partitions(text: &str) -> HashMap<u32, Vec<u8>> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [major, minor, _blocks, name] = fields[..] else {
                return None;
            };
            let dev = encode(major.parse().ok()?, minor.parse().ok()?)?;
            Some((dev, name.as_bytes().to_vec()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARTITIONS_TEXT: &str = "major minor  #blocks  name

 259        0  500107608 nvme0n1
 259        1    1048576 nvme0n1p1
   8        0  976762584 sda
   8       16  976762584 sdb
   8       17  976760832 sdb1
   7        0     102400 loop0
 253        0   20971520 dm-0
 259  1048575       1024 wide_minor
4095        3       1024 widest_major
4096        0       1024 major_too_wide
   8       18
";

    fn fixed() -> std::io::Result<String> {
        Ok(PARTITIONS_TEXT.to_string())
    }

    fn unreadable() -> std::io::Result<String> {
        Err(std::io::Error::from(std::io::ErrorKind::NotFound))
    }

    fn dev(major: u32, minor: u32) -> Vec<u8> {
        encode(major, minor).unwrap().to_ne_bytes().to_vec()
    }

    #[test]
    fn decodes_table() {
        let cases: &[(&str, Vec<u8>, Result<&str, &str>)] = &[
            ("sda, 8:0", dev(8, 0), Ok("sda")),
            ("sdb, 8:16", dev(8, 16), Ok("sdb")),
            ("partition", dev(8, 17), Ok("sdb1")),
            ("nvme, major above 255", dev(259, 0), Ok("nvme0n1")),
            ("loop", dev(7, 0), Ok("loop0")),
            ("device mapper", dev(253, 0), Ok("dm-0")),
            ("minor above 255", dev(259, 1_048_575), Ok("wide_minor")),
            ("major of 12 bits", dev(4095, 3), Ok("widest_major")),
            (
                "ebpf_exporter's sda bytes",
                vec![0x00, 0x08, 0x00, 0x00],
                Ok("sda"),
            ),
            (
                "ebpf_exporter's unknown bytes",
                vec![0x10, 0x88, 0x00, 0x00],
                Ok("unknown:136:16"),
            ),
            ("line without a name", dev(8, 18), Ok("unknown:8:18")),
            ("unknown", dev(8, 32), Ok("unknown:8:32")),
            ("zero", dev(0, 0), Ok("unknown:0:0")),
            (
                "bytes past the first 4 are ignored",
                [dev(8, 0), vec![9, 9]].concat(),
                Ok("sda"),
            ),
            (
                "too short",
                vec![0, 8, 0],
                Err("majorminor decoder: cannot decode 3 bytes, expected a 4-byte device number"),
            ),
            (
                "empty",
                vec![],
                Err("majorminor decoder: cannot decode 0 bytes, expected a 4-byte device number"),
            ),
        ];
        let decoder = MajorMinor::new(fixed);
        // Twice: the second pass answers from the cache.
        for _ in 0..2 {
            let cases: Vec<_> = cases.iter().map(|(n, i, w)| (*n, i.as_slice(), *w)).collect();
            super::super::check_cases(&decoder, &cases);
        }
    }

    #[test]
    fn split_inverts_new_encode_dev() {
        // new_encode_dev(MKDEV(259, 0x12345)) by hand: 0x45 | 259 << 8 | 0x12300 << 12.
        assert_eq!(split(0x1230_0000 | (259 << 8) | 0x45), (259, 0x12345));
        for (major, minor) in [(0, 0), (8, 0), (259, 7), (4095, 0xfffff), (1, 256)] {
            assert_eq!(split(encode(major, minor).unwrap()), (major, minor));
        }
        assert_eq!(encode(4096, 0), None);
        assert_eq!(encode(0, 0x100000), None);
    }

    #[test]
    fn a_device_that_appears_later_is_found() {
        use std::sync::atomic::{AtomicBool, Ordering};
        static PLUGGED: AtomicBool = AtomicBool::new(false);
        fn later() -> std::io::Result<String> {
            let mut text = PARTITIONS_TEXT.to_string();
            if PLUGGED.load(Ordering::SeqCst) {
                text.push_str("   7        5     102400 loop5\n");
            }
            Ok(text)
        }
        let decoder = MajorMinor::new(later);
        assert_eq!(decoder.decode(&dev(7, 5)), Ok(b"unknown:7:5".to_vec()));
        PLUGGED.store(true, Ordering::SeqCst);
        assert_eq!(decoder.decode(&dev(7, 5)), Ok(b"loop5".to_vec()));
        assert_eq!(decoder.decode(&dev(8, 0)), Ok(b"sda".to_vec()));
    }

    #[test]
    fn unreadable_partitions_is_an_error() {
        let decoder = MajorMinor::new(unreadable);
        assert_eq!(
            decoder.decode(&dev(8, 0)),
            Err(DecodeError::Invalid(
                "majorminor decoder: reading /proc/partitions: entity not found".into()
            ))
        );
    }

    #[test]
    fn reads_this_host() {
        // Whatever the host has, every device listed decodes to its name.
        let Ok(text) = std::fs::read_to_string(PARTITIONS) else {
            return;
        };
        let decoder = build(&DecoderOptions::default()).unwrap();
        for (dev, name) in parse_partitions(&text) {
            assert_eq!(decoder.decode(&dev.to_ne_bytes()), Ok(name));
        }
    }
}
