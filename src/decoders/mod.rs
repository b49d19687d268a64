//! Label decoders: each turns the bytes of one label (a slice of a map key, or
//! the output of the previous decoder in the chain) into new bytes, exactly as
//! cloudflare/ebpf_exporter's decoders do, so its configs carry over.
//!
//! Adding a decoder is one file in this folder with a table test at its
//! bottom, plus one line in [`REGISTRY`].

use std::collections::BTreeMap;
use std::fmt;

mod cgroup;
mod dname;
mod errno;
mod errno_table;
mod hex;
mod ifname;
mod inet_ip;
mod kstack;
mod ksym;
mod majorminor;
mod pci_class;
mod pci_device;
mod pci_ids;
mod pci_subclass;
mod pci_vendor;
mod regexp;
mod skb_drop_reason;
mod static_map;
mod string;
mod syscall;
mod uint;

/// Why a decoder did not produce a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// An allow-list (`regexp`) refused the value: the whole row is dropped.
    /// Not an error; not counted as one.
    Skip,
    /// The input cannot be decoded (wrong size, not a number, …). The row is
    /// dropped and counted in `bpf_exporter_decode_errors_total`.
    Invalid(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Skip => f.write_str("skipped by allow-list"),
            DecodeError::Invalid(msg) => f.write_str(msg),
        }
    }
}

/// Options a decoder entry in a config may carry, already type-checked by the
/// config parser. Each decoder refuses the options it does not use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecoderOptions {
    pub static_map: Option<BTreeMap<String, String>>,
    pub regexps: Option<Vec<String>>,
    pub allow_unknown: Option<bool>,
}

impl DecoderOptions {
    /// Refuses every option but `allowed`, so a misplaced option is an error
    /// instead of being silently ignored.
    pub fn only(&self, decoder: &str, allowed: &[&str]) -> Result<(), String> {
        let given = [
            ("static_map", self.static_map.is_some()),
            ("regexps", self.regexps.is_some()),
            ("allow_unknown", self.allow_unknown.is_some()),
        ];
        for (option, present) in given {
            if present && !allowed.contains(&option) {
                return Err(if allowed.is_empty() {
                    format!("decoder \"{decoder}\" takes no options, remove `{option}`")
                } else {
                    format!(
                        "decoder \"{decoder}\" does not take `{option}` (it takes: {})",
                        allowed.join(", ")
                    )
                });
            }
        }
        Ok(())
    }
}

/// A configured decoder, built once at config load and used for every row.
pub trait Decoder: Send + Sync + fmt::Debug {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError>;

    /// True when the answer for the same input can change while the
    /// exporter runs: a cgroup path, an interface name, a kernel symbol once
    /// a module loads. Cached label sets that used such a decoder are
    /// decoded again after a while instead of kept for good.
    fn answer_can_change(&self) -> bool {
        false
    }
}

/// Builds a decoder from its options; the error says what to fix.
pub type Builder = fn(&DecoderOptions) -> Result<Box<dyn Decoder>, String>;

/// Every decoder by config name.
pub const REGISTRY: &[(&str, Builder)] = &[
    ("cgroup", cgroup::build),
    ("dname", dname::build),
    ("errno", errno::build),
    ("hex", hex::build),
    ("ifname", ifname::build),
    ("inet_ip", inet_ip::build),
    ("kstack", kstack::build),
    ("ksym", ksym::build),
    ("majorminor", majorminor::build),
    ("pci_class", pci_class::build),
    ("pci_device", pci_device::build),
    ("pci_subclass", pci_subclass::build),
    ("pci_vendor", pci_vendor::build),
    ("regexp", regexp::build),
    ("skb_drop_reason", skb_drop_reason::build),
    ("static_map", static_map::build),
    ("string", string::build),
    ("syscall", syscall::build),
    ("uint", uint::build),
];

/// A decoder of a label's chain, with its registry name for errors and
/// self-metrics.
#[derive(Debug)]
pub struct Configured {
    pub name: &'static str,
    pub decoder: Box<dyn Decoder>,
}

/// The decoder named `name` with its registry name, or an error listing the
/// known ones.
pub fn configure(name: &str, options: &DecoderOptions) -> Result<Configured, String> {
    match REGISTRY.iter().find(|(n, _)| *n == name) {
        Some((name, builder)) => Ok(Configured {
            name,
            decoder: builder(options)?,
        }),
        None => Err(format!(
            "unknown decoder \"{name}\" (known: {})",
            known_names().join(", ")
        )),
    }
}

/// Like [`configure`], without the name.
pub fn build(name: &str, options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    configure(name, options).map(|c| c.decoder)
}

pub use cgroup::cgroup2_root;
pub use ksym::{addresses_of as kallsyms_addresses_of, shows_addresses as kallsyms_shows_addresses};

pub fn known_names() -> Vec<&'static str> {
    let mut names: Vec<_> = REGISTRY.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names
}

/// Table-test runner shared by the decoders' tests: each case is a name, an
/// input, and the expected output or `Invalid` message.
#[cfg(test)]
pub(crate) fn check_cases(decoder: &dyn Decoder, cases: &[(&str, &[u8], Result<&str, &str>)]) {
    for (name, input, want) in cases {
        let want = match want {
            Ok(s) => Ok(s.as_bytes().to_vec()),
            Err(msg) => Err(DecodeError::Invalid(msg.to_string())),
        };
        assert_eq!(decoder.decode(input), want, "case {name}");
    }
}

/// Runs a label's decoder chain over its key bytes; an error names the
/// decoder that failed.
pub fn decode_chain(chain: &[Configured], input: &[u8]) -> Result<Vec<u8>, (&'static str, DecodeError)> {
    let mut value = input.to_vec();
    for step in chain {
        value = step.decoder.decode(&value).map_err(|e| (step.name, e))?;
    }
    Ok(value)
}

/// Shows a decoder's input in an error message with non-printable bytes
/// escaped, since it is often binary and the message ends up in logs.
fn quoted(input: &[u8]) -> String {
    format!("\"{}\"", input.escape_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_decoder_lists_known_ones() {
        let err = build("nope", &DecoderOptions::default()).unwrap_err();
        assert_eq!(
            err,
            "unknown decoder \"nope\" (known: cgroup, dname, errno, hex, ifname, inet_ip, kstack, ksym, majorminor, pci_class, pci_device, pci_subclass, pci_vendor, regexp, skb_drop_reason, static_map, string, syscall, uint)"
        );
    }

    #[test]
    fn registry_names_are_unique() {
        let names = known_names();
        assert!(names.windows(2).all(|w| w[0] != w[1]), "{names:?}");
        assert_eq!(names.len(), REGISTRY.len());
    }

    #[test]
    fn every_decoder_refuses_options_it_does_not_take() {
        // (decoder, options including at least one it does not take)
        let cases: &[(&str, DecoderOptions)] = &[
            ("cgroup", with_every_option()),
            ("dname", with_every_option()),
            ("errno", with_every_option()),
            ("hex", with_every_option()),
            ("ifname", with_every_option()),
            ("inet_ip", with_every_option()),
            ("kstack", with_every_option()),
            ("ksym", with_every_option()),
            ("majorminor", with_every_option()),
            ("pci_class", with_every_option()),
            ("pci_device", with_every_option()),
            ("pci_subclass", with_every_option()),
            ("pci_vendor", with_every_option()),
            ("regexp", with_every_option()),
            ("skb_drop_reason", with_every_option()),
            ("static_map", with_regexps()),
            ("string", with_every_option()),
            ("syscall", with_every_option()),
            ("uint", with_regexps()),
        ];
        assert_eq!(cases.len(), REGISTRY.len(), "a decoder is missing here");
        for (name, options) in cases {
            let err = build(name, options).unwrap_err();
            assert!(err.starts_with(&format!("decoder \"{name}\"")), "{name}: {err}");
        }
    }

    fn with_every_option() -> DecoderOptions {
        DecoderOptions {
            allow_unknown: Some(true),
            regexps: Some(vec!["x".into()]),
            static_map: Some(BTreeMap::new()),
        }
    }

    fn with_regexps() -> DecoderOptions {
        DecoderOptions {
            regexps: Some(vec!["x".into()]),
            ..DecoderOptions::default()
        }
    }

    fn chain(names: &[&str]) -> Vec<Configured> {
        names
            .iter()
            .map(|name| configure(name, &DecoderOptions::default()).unwrap())
            .collect()
    }

    #[test]
    fn chains() {
        // (case, decoder names, input, expected)
        type Case<'a> = (&'a str, &'a [&'a str], &'a [u8], Result<&'a str, DecodeError>);
        let cases: &[Case<'_>] = &[
            ("empty chain passes bytes through", &[], b"abc", Ok("abc")),
            ("uint then hex", &["uint", "hex"], &[7], Ok("37")),
            (
                "uint then errno",
                &["uint", "errno"],
                &2u32.to_ne_bytes(),
                Ok("ENOENT"),
            ),
            ("string then hex", &["string", "hex"], b"ab\0cd", Ok("6162")),
            (
                "first error stops the chain",
                &["uint", "errno"],
                &[1, 2, 3],
                Err(DecodeError::Invalid(
                    "uint decoder: cannot decode 3 bytes, expected 1, 2, 4 or 8".into(),
                )),
            ),
        ];
        for (name, names, input, want) in cases {
            let got = decode_chain(&chain(names), input).map_err(|(_, e)| e);
            let want = want.clone().map(|s| s.as_bytes().to_vec());
            assert_eq!(got, want, "case {name}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn uint_then_syscall() {
        let chain = chain(&["uint", "syscall"]);
        assert_eq!(decode_chain(&chain, &[0; 8]), Ok(b"read".to_vec()));
        let bad = decode_chain(&chain, &[0; 3]).unwrap_err();
        assert_eq!(bad.0, "uint", "the error names the decoder that failed");
    }

    #[test]
    fn no_decoder_panics_on_odd_input() {
        // Wrong sizes, binary, invalid UTF-8, numbers at the edges: each
        // decoder answers with a value or an error, never a panic. Decoders
        // that cannot build here (options needed, no cgroup2 mount) are
        // covered by their own tests.
        let mut inputs: Vec<Vec<u8>> = (0..=40).map(|n| vec![0xff; n]).collect();
        inputs.extend((0..=40).map(|n| vec![0; n]));
        inputs.extend((0..=40).map(|n| (0..n as u8).collect()));
        for text in [
            "0",
            "1",
            "-1",
            "18446744073709551615",
            "18446744073709551616",
            " 1",
            "+1",
            "x",
        ] {
            inputs.push(text.as_bytes().to_vec());
        }
        inputs.extend([b"\xc3".to_vec(), b"\x3fab".to_vec(), b"\x01\x00\x01".to_vec()]);
        for name in known_names() {
            let Ok(decoder) = build(name, &DecoderOptions::default()) else {
                continue;
            };
            for input in &inputs {
                let _ = decoder.decode(input);
            }
        }
    }

    #[test]
    fn quoted_escapes_binary() {
        assert_eq!(quoted(b"a\"\0\xff"), r#""a\"\x00\xff""#);
    }
}
