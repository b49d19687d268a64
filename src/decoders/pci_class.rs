//! `pci_class`: a PCI base class in decimal (the output of `uint`) → the
//! class's name from the PCI ID database, e.g. `2` → `Network controller`.
//! This is the top byte of the 24-bit class code (`pci_dev->class >> 16`);
//! `pci_subclass` takes the top two.
//!
//! As in ebpf_exporter: a class not in the database becomes
//! `unknown pci class: 0x<id>` (lowercase hex, at least 2 digits), and
//! with no database at all every class becomes `missing pci.ids db` (see
//! [`super::pci_ids`]). Input that is not a decimal number is an error, even
//! when the database is missing.

use super::pci_ids::{self, MISSING};
use super::{DecodeError, Decoder, DecoderOptions};

#[derive(Debug)]
struct PciClass {
    db: pci_ids::Source,
}

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("pci_class", &[])?;
    Ok(Box::new(PciClass { db: pci_ids::system }))
}

impl Decoder for PciClass {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let id = pci_ids::number("pci_class", input)?;
        let Some(db) = (self.db)() else {
            return Ok(MISSING.into());
        };
        Ok(match u8::try_from(id).ok().and_then(|id| db.class(id)) {
            Some(name) => name.into(),
            None => format!("unknown pci class: 0x{id:02x}").into_bytes(),
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
            ("storage", b"1", Ok("Mass storage controller")),
            ("network", b"2", Ok("Network controller")),
            ("display", b"3", Ok("Display controller")),
            ("bridge", b"6", Ok("Bridge")),
            ("serial bus", b"12", Ok("Serial bus controller")),
            ("unknown", b"253", Ok("unknown pci class: 0xfd")),
            ("zero", b"0", Ok("Unclassified device")),
            ("class and subclass given", b"512", Ok("unknown pci class: 0x200")),
            (
                "empty",
                b"",
                Err("pci_class decoder: expected a decimal id (put `uint` before it), got \"\""),
            ),
        ];
        super::super::check_cases(&PciClass { db: pci_ids::fixture }, cases);
    }

    #[test]
    fn missing_database() {
        let cases: &[(&str, &[u8], Result<&str, &str>)] = &[
            ("storage", b"1", Ok("missing pci.ids db")),
            ("network", b"2", Ok("missing pci.ids db")),
            ("bridge", b"6", Ok("missing pci.ids db")),
        ];
        super::super::check_cases(&PciClass { db: pci_ids::missing }, cases);
    }
}
