//! `pci_device`: a PCI device in decimal (the output of `uint`), as
//! `vendor << 16 | device` → the device's name from the PCI ID database,
//! e.g. `2156269568` (0x80861000) → `82542 Gigabit Ethernet Controller
//! (Fiber)`. A BPF program builds the number from `pci_dev->vendor` and
//! `pci_dev->device`; the vendor is part of it because device ids are only
//! unique within a vendor.
//!
//! As in ebpf_exporter: an id not in the database becomes
//! `unknown pci device: 0x<id>` (lowercase hex, at least 4 digits), and
//! with no database at all every id becomes `missing pci.ids db` (see
//! [`super::pci_ids`]). Input that is not a decimal number is an error, even
//! when the database is missing.

use super::pci_ids::{self, MISSING};
use super::{DecodeError, Decoder, DecoderOptions};

#[derive(Debug)]
struct PciDevice {
    db: pci_ids::Source,
}

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("pci_device", &[])?;
    Ok(Box::new(PciDevice { db: pci_ids::system }))
}

impl Decoder for PciDevice {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let id = pci_ids::number("pci_device", input)?;
        let Some(db) = (self.db)() else {
            return Ok(MISSING.into());
        };
        Ok(match u32::try_from(id).ok().and_then(|id| db.device(id)) {
            Some(name) => name.into(),
            None => format!("unknown pci device: 0x{id:04x}").into_bytes(),
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
            (
                "intel 0x80861000",
                b"2156269568",
                Ok("82542 Gigabit Ethernet Controller (Fiber)"),
            ),
            (
                "amd 0x100273df",
                b"268596191",
                Ok("Navi 22 [Radeon RX 6700/6700 XT/6750 XT / 6800M/6850M XT]"),
            ),
            ("nvidia 0x10de2704", b"282994436", Ok("AD103 [GeForce RTX 4080]")),
            (
                "mellanox 0x15b3101f",
                b"364056607",
                Ok("MT2894 Family [ConnectX-6 Lx]"),
            ),
            (
                "samsung 0x144da80a",
                b"340633610",
                Ok("NVMe SSD Controller PM9A1/PM9A3/980PRO"),
            ),
            (
                "broadcom 0x14e41614",
                b"350492180",
                Ok("BCM57454 NetXtreme-E 10Gb/25Gb/40Gb/50Gb/100Gb Ethernet"),
            ),
            (
                "unknown 0xdeadbeef",
                b"3735928559",
                Ok("unknown pci device: 0xdeadbeef"),
            ),
            (
                "vendor with a leading zero, 0x00108139",
                b"1081657",
                Ok("AT-2500TX V3 Ethernet"),
            ),
            (
                "device id without its vendor",
                b"4096",
                Ok("unknown pci device: 0x1000"),
            ),
            ("short id", b"16", Ok("unknown pci device: 0x0010")),
            (
                "wider than 32 bits",
                b"4294967296",
                Ok("unknown pci device: 0x100000000"),
            ),
            (
                "hex digits are read as decimal",
                b"80861000",
                Ok("unknown pci device: 0x4d1d748"),
            ),
            (
                "negative",
                b"-1",
                Err("pci_device decoder: expected a decimal id (put `uint` before it), got \"-1\""),
            ),
        ];
        super::super::check_cases(&PciDevice { db: pci_ids::fixture }, cases);
    }

    #[test]
    fn missing_database() {
        let cases: &[(&str, &[u8], Result<&str, &str>)] = &[
            ("intel", b"2156269568", Ok("missing pci.ids db")),
            ("amd", b"268596191", Ok("missing pci.ids db")),
            ("nvidia", b"282994436", Ok("missing pci.ids db")),
        ];
        super::super::check_cases(&PciDevice { db: pci_ids::missing }, cases);
    }
}
