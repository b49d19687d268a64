//! `inet_ip`: an IP address as the kernel stores it (network byte order) →
//! its text, e.g. `1.1.1.1` or `2400:cb00:4:1024::a29e:fd8f`.
//!
//! The label's size picks the family: 4 bytes are IPv4 (`__be32`,
//! `in_addr`), 16 bytes IPv6 (`in6_addr`). IPv6 is printed in RFC 5952 form
//! (lowercase, longest zero run as `::`), as Go's `net.IP` prints it for
//! ebpf_exporter, and an IPv4-mapped address (`::ffff:a.b.c.d`, which dual
//! stack sockets report for IPv4 peers) is printed as plain `a.b.c.d` like
//! Go does, so one peer gets one label value whichever socket saw it.
//!
//! Any other size is an error rather than ebpf_exporter's `?<hex>`: it means
//! the label's `size` does not match the address field, and a hex blob as a
//! label value would hide that.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{DecodeError, Decoder, DecoderOptions};

#[derive(Debug)]
struct InetIp;

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("inet_ip", &[])?;
    Ok(Box::new(InetIp))
}

impl Decoder for InetIp {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let text = if let Ok(v4) = <[u8; 4]>::try_from(input) {
            Ipv4Addr::from(v4).to_string()
        } else if let Ok(v6) = <[u8; 16]>::try_from(input) {
            let v6 = Ipv6Addr::from(v6);
            match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => v6.to_string(),
            }
        } else {
            return Err(DecodeError::Invalid(format!(
                "inet_ip decoder: cannot decode {} bytes, expected 4 (IPv4) or 16 (IPv6): set the \
                 label's size to the address field's",
                input.len()
            )));
        };
        Ok(text.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(text: &str) -> Vec<u8> {
        text.parse::<Ipv6Addr>().unwrap().octets().to_vec()
    }

    #[test]
    fn decodes_table() {
        let size_error = |n: usize| {
            format!(
                "inet_ip decoder: cannot decode {n} bytes, expected 4 (IPv4) or 16 (IPv6): set the \
                 label's size to the address field's"
            )
        };
        let (e0, e8, e6, e17) = (size_error(0), size_error(8), size_error(6), size_error(17));
        let cases: &[(&str, Vec<u8>, Result<&str, &str>)] = &[
            // ebpf_exporter's own cases.
            ("ebpf_exporter v4", vec![1, 2, 3, 4], Ok("1.2.3.4")),
            (
                "ebpf_exporter v6",
                vec![
                    0x24, 0x00, 0xcb, 0x00, 0x00, 0x04, 0x10, 0x24, 0x00, 0x00, 0x00, 0x00, 0xa2, 0x9e, 0xfd,
                    0x8f,
                ],
                Ok("2400:cb00:4:1024::a29e:fd8f"),
            ),
            ("v4 zero", vec![0; 4], Ok("0.0.0.0")),
            ("v4 broadcast", vec![255; 4], Ok("255.255.255.255")),
            ("v4 loopback", vec![127, 0, 0, 1], Ok("127.0.0.1")),
            (
                "v4 is network order",
                0x0a00_0001u32.to_be_bytes().to_vec(),
                Ok("10.0.0.1"),
            ),
            ("v6 unspecified", vec![0; 16], Ok("::")),
            ("v6 loopback", v6("::1"), Ok("::1")),
            (
                "v6 all ones",
                vec![0xff; 16],
                Ok("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ),
            ("v6 link local", v6("fe80::1:2"), Ok("fe80::1:2")),
            ("v6 lowercase", v6("2001:DB8::ABCD"), Ok("2001:db8::abcd")),
            (
                "v6 leading zeros dropped",
                v6("2001:0db8:0000:0001::0001"),
                Ok("2001:db8:0:1::1"),
            ),
            (
                "v6 one zero group is not compressed",
                v6("2001:db8:0:1:1:1:1:1"),
                Ok("2001:db8:0:1:1:1:1:1"),
            ),
            (
                "v6 longest zero run wins",
                v6("2001:0:0:1:0:0:0:1"),
                Ok("2001:0:0:1::1"),
            ),
            (
                "v6 first of equal zero runs wins",
                v6("2001:db8:0:0:1:0:0:1"),
                Ok("2001:db8::1:0:0:1"),
            ),
            ("v6 trailing zeros", v6("2001:db8::"), Ok("2001:db8::")),
            (
                "v4-mapped prints as v4",
                v6("::ffff:192.0.2.128"),
                Ok("192.0.2.128"),
            ),
            ("v4-mapped zero", v6("::ffff:0.0.0.0"), Ok("0.0.0.0")),
            ("v4-compatible is plain v6", v6("::192.0.2.128"), Ok("::c000:280")),
            (
                "v4-translated is plain v6",
                v6("::ffff:0:192.0.2.128"),
                Ok("::ffff:0:c000:280"),
            ),
            (
                "NAT64 is plain v6",
                v6("64:ff9b::192.0.2.128"),
                Ok("64:ff9b::c000:280"),
            ),
            ("empty", vec![], Err(&e0)),
            ("padded v4", vec![1, 2, 3, 4, 0, 0, 0, 0], Err(&e8)),
            ("mac address", vec![2, 0, 0, 0, 0, 1], Err(&e6)),
            ("v6 plus one", vec![0; 17], Err(&e17)),
        ];
        let cases: Vec<_> = cases.iter().map(|(n, i, w)| (*n, i.as_slice(), *w)).collect();
        super::super::check_cases(&*build(&DecoderOptions::default()).unwrap(), &cases);
    }
}
