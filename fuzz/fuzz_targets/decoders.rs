//! Every decoder must answer any bytes with a value or a `DecodeError`,
//! never a panic: map keys are whatever the BPF program wrote.
//!
//! The first byte picks a decoder from the registry (so decoders added later
//! are fuzzed with no change here) and the rest is its input. The same
//! input also goes through `uint` and then every decoder, the chain most
//! configs use. Each decoder is built with every option set of [`options`]
//! it accepts: none for most, a mapping for `static_map`, patterns for
//! `regexp`.

#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bpf_exporter::decoders::{self, decode_chain, Configured, Decoder, DecoderOptions, REGISTRY};
use libfuzzer_sys::fuzz_target;

fn options() -> Vec<DecoderOptions> {
    let map: BTreeMap<String, String> = [("1", "one"), ("255", "max_u8"), ("", "empty")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vec![
        DecoderOptions::default(),
        DecoderOptions {
            static_map: Some(map.clone()),
            ..DecoderOptions::default()
        },
        DecoderOptions {
            static_map: Some(map),
            allow_unknown: Some(true),
            ..DecoderOptions::default()
        },
        DecoderOptions {
            regexps: Some(vec!["^a.*z$".into(), "[0-9]{2,}".into(), "^$".into()]),
            ..DecoderOptions::default()
        },
    ]
}

/// Every decoder the registry can build, once per option set it accepts.
fn built() -> &'static [Box<dyn Decoder>] {
    static BUILT: OnceLock<Vec<Box<dyn Decoder>>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let options = options();
        REGISTRY
            .iter()
            .flat_map(|(name, build)| {
                let found: Vec<_> = options.iter().filter_map(|o| build(o).ok()).collect();
                assert!(
                    !found.is_empty(),
                    "decoder {name:?} builds with none of the fuzz option sets"
                );
                found
            })
            .collect()
    })
}

/// `uint` followed by each of [`built`].
fn chains() -> &'static [Vec<Configured>] {
    static CHAINS: OnceLock<Vec<Vec<Configured>>> = OnceLock::new();
    CHAINS.get_or_init(|| {
        let options = options();
        REGISTRY
            .iter()
            .flat_map(|(name, _)| options.iter().filter_map(|o| decoders::configure(name, o).ok()))
            .map(|decoder| {
                let uint = decoders::configure("uint", &DecoderOptions::default()).expect("uint builds");
                vec![uint, decoder]
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, input)) = data.split_first() else {
        return;
    };
    let built = built();
    let _ = built[usize::from(pick) % built.len()].decode(input);
    for chain in chains() {
        let _ = decode_chain(chain, input);
    }
});
