//! The PCI ID database (`pci.ids`, from the PCI ID Project) that the
//! `pci_vendor`, `pci_device`, `pci_class` and `pci_subclass` decoders look
//! names up in.
//!
//! The file is found at the first of [`PATHS`] that exists (Debian's
//! `pci.ids` package installs `/usr/share/misc/pci.ids`; Fedora and Arch
//! use `/usr/share/hwdata/pci.ids`), read and parsed once, on the first
//! decode that needs it, and kept for the life of the process. When no file
//! is found, one warning is logged and every pci decoder answers
//! [`MISSING`] (`missing pci.ids db`), the label ebpf_exporter gives in the
//! same case, so rows still show instead of being dropped.
//!
//! Only what the decoders need is kept: vendors, devices (by vendor and
//! device id), classes and subclasses. Subsystem and programming-interface
//! lines (two tabs) are skipped, and so is any line that is not
//! `<hex id>  <name>` with the width its level expects.

use std::collections::HashMap;
use std::io::Read;
use std::sync::OnceLock;

use super::DecodeError;

/// Where the database is looked for, in order.
pub(super) const PATHS: &[&str] = &[
    "/usr/share/misc/pci.ids",
    "/usr/share/hwdata/pci.ids",
    "/usr/share/pci.ids",
    "/usr/share/misc/pci.ids.gz",
    "/usr/share/hwdata/pci.ids.gz",
];

/// The label value of every pci decoder when no database is found.
pub(super) const MISSING: &str = "missing pci.ids db";

/// Where a pci decoder gets the database: [`system`], or a fixture in tests.
pub(super) type Source = fn() -> Option<&'static PciIds>;

/// Names by id, as parsed from one `pci.ids` file.
#[derive(Debug, Default)]
pub(super) struct PciIds {
    vendors: HashMap<u16, String>,
    /// By `vendor << 16 | device`, the number `pci_device` reads.
    devices: HashMap<u32, String>,
    classes: HashMap<u8, Class>,
}

#[derive(Debug, Default)]
struct Class {
    name: String,
    subclasses: HashMap<u8, String>,
}

impl PciIds {
    pub(super) fn vendor(&self, vendor: u16) -> Option<&str> {
        self.vendors.get(&vendor).map(String::as_str)
    }

    /// The device `vendor << 16 | device`.
    pub(super) fn device(&self, vendor_device: u32) -> Option<&str> {
        self.devices.get(&vendor_device).map(String::as_str)
    }

    pub(super) fn class(&self, class: u8) -> Option<&str> {
        self.classes.get(&class).map(|c| c.name.as_str())
    }

    pub(super) fn subclass(&self, class: u8, subclass: u8) -> Option<&str> {
        let class = self.classes.get(&class)?;
        class.subclasses.get(&subclass).map(String::as_str)
    }

    /// Parses the text of a `pci.ids` file; lines it does not understand
    /// are skipped, so it never fails.
    pub(super) fn parse(text: &str) -> PciIds {
        // What a line starting with one tab belongs to.
        enum Section {
            None,
            Vendor(u16),
            Class(u8),
        }
        let mut db = PciIds::default();
        let mut section = Section::None;
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') || line.starts_with("\t\t") {
                continue;
            }
            if let Some(rest) = line.strip_prefix("C ") {
                section = match entry(rest, 2) {
                    Some((id, name)) => {
                        let id = id as u8;
                        db.classes.insert(
                            id,
                            Class {
                                name: name.to_string(),
                                subclasses: HashMap::new(),
                            },
                        );
                        Section::Class(id)
                    }
                    None => Section::None,
                };
            } else if let Some(rest) = line.strip_prefix('\t') {
                match section {
                    Section::Vendor(vendor) => {
                        if let Some((device, name)) = entry(rest, 4) {
                            db.devices
                                .insert(u32::from(vendor) << 16 | device, name.to_string());
                        }
                    }
                    Section::Class(class) => {
                        if let (Some((subclass, name)), Some(class)) =
                            (entry(rest, 2), db.classes.get_mut(&class))
                        {
                            class.subclasses.insert(subclass as u8, name.to_string());
                        }
                    }
                    Section::None => {}
                }
            } else {
                section = match entry(line, 4) {
                    Some((id, name)) => {
                        let id = id as u16;
                        db.vendors.insert(id, name.to_string());
                        Section::Vendor(id)
                    }
                    None => Section::None,
                };
            }
        }
        db
    }
}

/// `<id>  <name>` with an id of exactly `digits` hex digits (at most 4) and
/// a non-empty name.
fn entry(line: &str, digits: usize) -> Option<(u32, &str)> {
    let (id, name) = line.split_once(|c: char| c.is_ascii_whitespace())?;
    let name = name.trim();
    if id.len() != digits || !id.bytes().all(|b| b.is_ascii_hexdigit()) || name.is_empty() {
        return None;
    }
    Some((u32::from_str_radix(id, 16).ok()?, name))
}

/// The host's database: loaded from [`PATHS`] on first use, `None` (after
/// one warning) when there is none.
pub(super) fn system() -> Option<&'static PciIds> {
    static DB: OnceLock<Option<PciIds>> = OnceLock::new();
    DB.get_or_init(|| load(PATHS)).as_ref()
}

fn load(paths: &[&str]) -> Option<PciIds> {
    for path in paths {
        match read(path) {
            Ok(text) => {
                let db = PciIds::parse(&text);
                tracing::debug!(
                    path,
                    vendors = db.vendors.len(),
                    devices = db.devices.len(),
                    "PCI ID database loaded"
                );
                return Some(db);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path, "cannot read the PCI ID database: {e}"),
        }
    }
    tracing::warn!(
        "no PCI ID database (looked for {}): pci_* decoders answer \"{MISSING}\"; \
         install the pci.ids package",
        paths.join(", ")
    );
    None
}

/// The text of a database file, gunzipped when its name ends in `.gz`. Not
/// being UTF-8 only costs the names with bad bytes a replacement character.
fn read(path: &str) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    let bytes = if path.ends_with(".gz") {
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice()).read_to_end(&mut text)?;
        text
    } else {
        bytes
    };
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The number a pci decoder reads: decimal text, as `uint` prints it.
pub(super) fn number(decoder: &str, input: &[u8]) -> Result<u64, DecodeError> {
    std::str::from_utf8(input)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| {
            DecodeError::Invalid(format!(
                "{decoder} decoder: expected a decimal id (put `uint` before it), got {}",
                super::quoted(input)
            ))
        })
}

/// A few real entries of `pci.ids`, enough for the decoders' tables, plus
/// lines the parser must skip.
#[cfg(test)]
pub(super) const FIXTURE: &str = "#
#\tList of PCI ID's (excerpt)
#

# Syntax:
# vendor  vendor_name
#\tdevice  device_name\t\t\t\t<-- single tab
#\t\tsubvendor subdevice  subsystem_name\t<-- two tabs

0010  Allied Telesis, Inc (Wrong ID)
\t8139  AT-2500TX V3 Ethernet
1002  Advanced Micro Devices, Inc. [AMD/ATI]
\t73df  Navi 22 [Radeon RX 6700/6700 XT/6750 XT / 6800M/6850M XT]
10de  NVIDIA Corporation
\t2704  AD103 [GeForce RTX 4080]
144d  Samsung Electronics Co Ltd
\ta80a  NVMe SSD Controller PM9A1/PM9A3/980PRO
14e4  Broadcom Inc. and subsidiaries
\t1614  BCM57454 NetXtreme-E 10Gb/25Gb/40Gb/50Gb/100Gb Ethernet
15b3  Mellanox Technologies
\t101f  MT2894 Family [ConnectX-6 Lx]
8086  Intel Corporation
\t1000  82542 Gigabit Ethernet Controller (Fiber)
\t\t0e11 b0df  NC6132 Gigabit Ethernet Adapter (1000-SX)
\t# a comment inside a vendor
\t10  device id too short
\tzzzz  not hex
bad  vendor id too short
\tbeef  device of a bad vendor line

# List of known device classes, subclasses and programming interfaces

# Syntax:
# C class\tclass_name
#\tsubclass\tsubclass_name  \t\t<-- single tab
#\t\tprog-if  prog-if_name  \t<-- two tabs

C 00  Unclassified device
\t00  Non-VGA unclassified device
\t05  Image coprocessor
C 01  Mass storage controller
\t08  Non-Volatile memory controller
\t\t02  NVM Express
C 02  Network controller
\t00  Ethernet controller
C 03  Display controller
\t02  3D controller
C 06  Bridge
\t00  Host bridge
\t04  PCI bridge
C 0c  Serial bus controller
\t03  USB controller
\t\t30  XHCI
C 123  class id too long
\t01  subclass of a bad class line
";

#[cfg(test)]
pub(super) fn fixture() -> Option<&'static PciIds> {
    static DB: OnceLock<PciIds> = OnceLock::new();
    Some(DB.get_or_init(|| PciIds::parse(FIXTURE)))
}

#[cfg(test)]
pub(super) fn missing() -> Option<&'static PciIds> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixture() {
        let db = fixture().unwrap();
        assert_eq!(db.vendor(0x8086), Some("Intel Corporation"));
        assert_eq!(db.vendor(0x0010), Some("Allied Telesis, Inc (Wrong ID)"));
        assert_eq!(
            db.device(0x8086_1000),
            Some("82542 Gigabit Ethernet Controller (Fiber)")
        );
        assert_eq!(db.device(0x0010_8139), Some("AT-2500TX V3 Ethernet"));
        assert_eq!(db.class(0x0c), Some("Serial bus controller"));
        assert_eq!(db.subclass(0x01, 0x08), Some("Non-Volatile memory controller"));
        assert_eq!(db.subclass(0x01, 0x02), None);
        assert_eq!(db.class(0xfd), None);
        assert_eq!(db.subclass(0xfd, 0x00), None);
    }

    #[test]
    fn skips_lines_it_does_not_understand() {
        let db = fixture().unwrap();
        // 7 good vendor lines with 1 good device line each, 6 good classes.
        assert_eq!(db.vendors.len(), 7, "{:?}", db.vendors);
        assert_eq!(db.devices.len(), 7, "{:?}", db.devices);
        assert_eq!(db.classes.len(), 6);
        // Subsystem (two tabs) and prog-if lines are not devices/subclasses.
        assert_eq!(db.device(0x8086_0e11), None);
        assert_eq!(db.subclass(0x0c, 0x30), None);
        // Tab lines after a bad header do not attach to the entry before it.
        assert_eq!(db.device(0x8086_beef), None);
        assert_eq!(db.subclass(0x0c, 0x01), None);
    }

    #[test]
    fn parses_anything_without_panicking() {
        for text in [
            "",
            "\t",
            "\t\t",
            "C",
            "C ",
            "C 0",
            "C 0x  y",
            "ffff",
            "ffff ",
            "\tffff  x",
            "é  x",
            "C é",
        ] {
            PciIds::parse(text);
        }
    }

    #[test]
    fn loads_the_first_file_found() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "8086  Intel Corporation\n").unwrap();
        let missing = dir.path().join("missing");
        let db = load(&[missing.to_str().unwrap(), plain.to_str().unwrap()]).unwrap();
        assert_eq!(db.vendor(0x8086), Some("Intel Corporation"));
    }

    #[test]
    fn loads_gzipped_files() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("pci.ids.gz");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(b"C 02  Network controller\n").unwrap();
        std::fs::write(&gz, encoder.finish().unwrap()).unwrap();
        let db = load(&[gz.to_str().unwrap()]).unwrap();
        assert_eq!(db.class(0x02), Some("Network controller"));
    }

    #[test]
    fn no_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(&[dir.path().join("absent").to_str().unwrap()]).is_none());
    }

    #[test]
    fn numbers() {
        assert_eq!(number("pci_x", b"4318"), Ok(4318));
        assert_eq!(number("pci_x", b"18446744073709551615"), Ok(u64::MAX));
        for bad in [&b""[..], b"-1", b"0x10", b" 1", b"\xff", b"18446744073709551616"] {
            assert!(number("pci_x", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            number("pci_x", b"ab"),
            Err(DecodeError::Invalid(
                "pci_x decoder: expected a decimal id (put `uint` before it), got \"ab\"".into()
            ))
        );
    }

    #[test]
    fn reads_this_host() {
        // Whatever version the host has, these names have been stable for
        // decades.
        let Some(db) = system() else { return };
        assert_eq!(db.vendor(0x8086), Some("Intel Corporation"));
        assert_eq!(db.class(0x02), Some("Network controller"));
        assert_eq!(db.subclass(0x02, 0x00), Some("Ethernet controller"));
        assert!(db.devices.len() > 10_000, "{}", db.devices.len());
    }
}
