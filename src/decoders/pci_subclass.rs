//! `pci_subclass`: a PCI class and subclass in decimal (the output of
//! `uint`), as `class << 8 | subclass` → the subclass's name from the PCI ID
//! database, e.g. `264` (0x0108) → `Non-Volatile memory controller`. This
//! is the top two bytes of the 24-bit class code (`pci_dev->class >> 8`).
//!
//! As in ebpf_exporter: an unknown class becomes `unknown pci class:
//! 0x<class>`, a known class with an unknown subclass becomes
//! `unknown pci subclass: 0x<subclass> (class 0x<class>)` (lowercase hex,
//! at least 2 digits each), and with no database at all every id becomes
//! `missing pci.ids db` (see [`super::pci_ids`]). Input that is not a
//! decimal number is an error, even when the database is missing.

use super::pci_ids::{self, MISSING};
use super::{DecodeError, Decoder, DecoderOptions};

#[derive(Debug)]
struct PciSubclass {
    db: pci_ids::Source,
}

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("pci_subclass", &[])?;
    Ok(Box::new(PciSubclass { db: pci_ids::system }))
}

impl Decoder for PciSubclass {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let id = pci_ids::number("pci_subclass", input)?;
        let Some(db) = (self.db)() else {
            return Ok(MISSING.into());
        };
        let (class, subclass) = (id >> 8, (id & 0xff) as u8);
        let Some(class) = u8::try_from(class).ok().filter(|&c| db.class(c).is_some()) else {
            return Ok(format!("unknown pci class: 0x{class:02x}").into_bytes());
        };
        Ok(match db.subclass(class, subclass) {
            Some(name) => name.into(),
            None => format!("unknown pci subclass: 0x{subclass:02x} (class 0x{class:02x})").into_bytes(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_table() {
        // ebpf_exporter's cases, then ours.
        let cases: &[(&str, &[u8], Result<&str, &str>)] = &[
            ("image coprocessor, 0x0005", b"5", Ok("Image coprocessor")),
            ("nvme, 0x0108", b"264", Ok("Non-Volatile memory controller")),
            ("ethernet, 0x0200", b"512", Ok("Ethernet controller")),
            ("3d, 0x0302", b"770", Ok("3D controller")),
            ("usb, 0x0c03", b"3075", Ok("USB controller")),
            ("host bridge, 0x0600", b"1536", Ok("Host bridge")),
            ("pci bridge, 0x0604", b"1540", Ok("PCI bridge")),
            ("unknown class, 0xfd00", b"64768", Ok("unknown pci class: 0xfd")),
            (
                "unknown subclass, 0x010b",
                b"267",
                Ok("unknown pci subclass: 0x0b (class 0x01)"),
            ),
            (
                "unknown subclass of class 0, 0x0003",
                b"3",
                Ok("unknown pci subclass: 0x03 (class 0x00)"),
            ),
            (
                "full class code with prog-if, 0x010802",
                b"67586",
                Ok("unknown pci class: 0x108"),
            ),
            (
                "u64 max",
                b"18446744073709551615",
                Ok("unknown pci class: 0xffffffffffffff"),
            ),
            (
                "not decimal",
                b"nvme",
                Err("pci_subclass decoder: expected a decimal id (put `uint` before it), got \"nvme\""),
            ),
        ];
        super::super::check_cases(&PciSubclass { db: pci_ids::fixture }, cases);
    }

    #[test]
    fn missing_database() {
        let cases: &[(&str, &[u8], Result<&str, &str>)] = &[
            ("image coprocessor", b"5", Ok("missing pci.ids db")),
            ("nvme", b"264", Ok("missing pci.ids db")),
            ("ethernet", b"512", Ok("missing pci.ids db")),
        ];
        super::super::check_cases(&PciSubclass { db: pci_ids::missing }, cases);
    }
}
