//! Label decoders: each turns the bytes of one label (a slice of a map key, or
//! the output of the previous decoder in the chain) into new bytes, exactly as
//! cloudflare/ebpf_exporter's decoders do, so its configs carry over.
//!
//! Adding a decoder is one file in this folder with a table test at its
//! bottom, plus one line in [`REGISTRY`].

use std::collections::BTreeMap;
use std::fmt;

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
}

/// Builds a decoder from its options; the error says what to fix.
pub type Builder = fn(&DecoderOptions) -> Result<Box<dyn Decoder>, String>;

/// Every decoder by config name.
pub const REGISTRY: &[(&str, Builder)] = &[];

/// The decoder named `name`, or an error listing the known ones.
pub fn build(name: &str, options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    match REGISTRY.iter().find(|(n, _)| *n == name) {
        Some((_, builder)) => builder(options),
        None => Err(format!(
            "unknown decoder \"{name}\" (known: {})",
            known_names().join(", ")
        )),
    }
}

pub fn known_names() -> Vec<&'static str> {
    let mut names: Vec<_> = REGISTRY.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names
}

/// Runs a label's decoder chain over its key bytes.
pub fn decode_chain(chain: &[Box<dyn Decoder>], input: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut value = input.to_vec();
    for decoder in chain {
        value = decoder.decode(&value)?;
    }
    Ok(value)
}
