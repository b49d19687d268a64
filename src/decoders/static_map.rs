//! `static_map`: replaces a value by a name from the config (`1: tcp`, ...),
//! for enums the exporter cannot know.
//!
//! A value missing from the map becomes `unknown:<value>` unless
//! `allow_unknown: true`, in which case it passes through unchanged — the
//! same as ebpf_exporter, so its configs and dashboards carry over. The
//! prefix keeps an unmapped value from looking like a mapped name while still
//! showing which value needs adding to the map.

use std::collections::BTreeMap;

use super::{DecodeError, Decoder, DecoderOptions};

#[derive(Debug)]
struct StaticMap {
    map: BTreeMap<String, String>,
    allow_unknown: bool,
}

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("static_map", &["static_map", "allow_unknown"])?;
    // ebpf_exporter labels every row "empty mapping" when the map is missing;
    // refusing the config instead surfaces the mistake at load.
    let map = options.static_map.clone().ok_or_else(|| {
        "decoder \"static_map\" needs a mapping: add `static_map:` with the values to replace".to_string()
    })?;
    Ok(Box::new(StaticMap {
        map,
        allow_unknown: options.allow_unknown.unwrap_or(false),
    }))
}

impl Decoder for StaticMap {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        // Keys are strings, so input that is not UTF-8 cannot match any.
        let mapped = std::str::from_utf8(input).ok().and_then(|key| self.map.get(key));
        Ok(match mapped {
            Some(name) => name.clone().into_bytes(),
            None if self.allow_unknown => input.to_vec(),
            None => [b"unknown:".as_slice(), input].concat(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(allow_unknown: Option<bool>) -> DecoderOptions {
        let map = [("1", "tcp"), ("17", "udp"), ("", "empty")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DecoderOptions {
            static_map: Some(map),
            allow_unknown,
            ..DecoderOptions::default()
        }
    }

    #[test]
    fn decodes_table() {
        // (case, allow_unknown, input, expected)
        type Case<'a> = (&'a str, Option<bool>, &'a [u8], &'a [u8]);
        let cases: &[Case<'_>] = &[
            ("mapped", None, b"1", b"tcp"),
            ("mapped, allow_unknown", Some(true), b"17", b"udp"),
            ("empty key can be mapped", None, b"", b"empty"),
            ("unknown", None, b"6", b"unknown:6"),
            ("unknown, allow_unknown false", Some(false), b"6", b"unknown:6"),
            ("unknown, allow_unknown", Some(true), b"6", b"6"),
            ("exact match only", None, b"1 ", b"unknown:1 "),
            ("case-sensitive", Some(true), b"TCP", b"TCP"),
            ("invalid utf-8", None, b"\xff", b"unknown:\xff"),
            ("invalid utf-8, allow_unknown", Some(true), b"\xff", b"\xff"),
        ];
        for (name, allow_unknown, input, want) in cases {
            let decoder = build(&options(*allow_unknown)).unwrap();
            assert_eq!(decoder.decode(input), Ok(want.to_vec()), "case {name}");
        }
    }

    #[test]
    fn empty_map_is_allowed() {
        let options = DecoderOptions {
            static_map: Some(BTreeMap::new()),
            ..DecoderOptions::default()
        };
        let decoder = build(&options).unwrap();
        assert_eq!(decoder.decode(b"x"), Ok(b"unknown:x".to_vec()));
    }

    #[test]
    fn build_errors() {
        let cases: &[(&str, DecoderOptions, &str)] = &[
            ("no map", DecoderOptions::default(), "add `static_map:`"),
            (
                "allow_unknown without map",
                DecoderOptions {
                    allow_unknown: Some(true),
                    ..DecoderOptions::default()
                },
                "add `static_map:`",
            ),
            (
                "foreign option",
                DecoderOptions {
                    regexps: Some(vec![]),
                    ..options(None)
                },
                "does not take `regexps`",
            ),
        ];
        for (name, options, want) in cases {
            let err = build(options).unwrap_err();
            assert!(err.contains(want), "case {name}: {err}");
        }
    }
}
