//! `pci_vendor`: a PCI vendor id in decimal (the output of `uint`) → the
//! vendor's name from the PCI ID database, e.g. `32902` (0x8086) →
//! `Intel Corporation`.
//!
//! As in ebpf_exporter: an id not in the database becomes
//! `unknown pci vendor: 0x<id>` (lowercase hex, at least 2 digits), and
//! with no database at all every id becomes `missing pci.ids db` (see
//! [`super::pci_ids`] for where it is looked for). Two differences, both
//! where ebpf_exporter's answer is a mistake rather than a format: ids below
//! 0x1000 are found (ebpf_exporter looks them up without their leading zero
//! and misses them), and input that is not a decimal number is an error even
//! when the database is missing.

use super::pci_ids::{self, MISSING};
use super::{DecodeError, Decoder, DecoderOptions};

#[derive(Debug)]
struct PciVendor {
    db: pci_ids::Source,
}

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("pci_vendor", &[])?;
    Ok(Box::new(PciVendor { db: pci_ids::system }))
}

impl Decoder for PciVendor {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let id = pci_ids::number("pci_vendor", input)?;
        let Some(db) = (self.db)() else {
            return Ok(MISSING.into());
        };
        Ok(match u16::try_from(id).ok().and_then(|id| db.vendor(id)) {
            Some(name) => name.into(),
            None => format!("unknown pci vendor: 0x{id:02x}").into_bytes(),
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
            ("intel, 0x8086", b"32902", Ok("Intel Corporation")),
            (
                "amd, 0x1002",
                b"4098",
                Ok("Advanced Micro Devices, Inc. [AMD/ATI]"),
            ),
            ("nvidia, 0x10de", b"4318", Ok("NVIDIA Corporation")),
            ("mellanox, 0x15b3", b"5555", Ok("Mellanox Technologies")),
            ("samsung, 0x144d", b"5197", Ok("Samsung Electronics Co Ltd")),
            ("broadcom, 0x14e4", b"5348", Ok("Broadcom Inc. and subsidiaries")),
            ("unknown, 0xbeef", b"48879", Ok("unknown pci vendor: 0xbeef")),
            (
                "id with a leading zero, 0x0010",
                b"16",
                Ok("Allied Telesis, Inc (Wrong ID)"),
            ),
            ("unknown small id", b"1", Ok("unknown pci vendor: 0x01")),
            ("wider than 16 bits", b"98438", Ok("unknown pci vendor: 0x18086")),
            (
                "u64 max",
                b"18446744073709551615",
                Ok("unknown pci vendor: 0xffffffffffffffff"),
            ),
            (
                "not decimal",
                b"0x8086",
                Err("pci_vendor decoder: expected a decimal id (put `uint` before it), got \"0x8086\""),
            ),
            (
                "raw bytes",
                &[0x86, 0x80],
                Err("pci_vendor decoder: expected a decimal id (put `uint` before it), got \"\\x86\\x80\""),
            ),
        ];
        super::super::check_cases(&PciVendor { db: pci_ids::fixture }, cases);
    }

    #[test]
    fn missing_database() {
        let cases: &[(&str, &[u8], Result<&str, &str>)] = &[
            ("intel", b"32902", Ok("missing pci.ids db")),
            ("amd", b"4098", Ok("missing pci.ids db")),
            ("nvidia", b"4318", Ok("missing pci.ids db")),
            (
                "still refuses bad input",
                b"",
                Err("pci_vendor decoder: expected a decimal id (put `uint` before it), got \"\""),
            ),
        ];
        super::super::check_cases(&PciVendor { db: pci_ids::missing }, cases);
    }
}
