//! `regexp`: an allow-list. A value matching any of `regexps` passes
//! unchanged; any other drops the whole row ([`DecodeError::Skip`]), which is
//! how ebpf_exporter configs keep cardinality down (e.g. only some `comm`s).
//!
//! Patterns are compiled once when the config loads, so a typo fails the
//! load instead of every scrape. Matching is unanchored, as Go's
//! `MatchString` is: write `^bash$` to match exactly. The `regex` crate's
//! syntax is RE2's, the same as Go's `regexp`, so patterns carry over.

use regex::Regex;

use super::{DecodeError, Decoder, DecoderOptions};

#[derive(Debug)]
struct RegexpAllowList {
    patterns: Vec<Regex>,
}

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("regexp", &["regexps"])?;
    let sources = match options.regexps.as_deref() {
        Some(sources) if !sources.is_empty() => sources,
        // An empty allow-list would drop every row: surely a mistake.
        _ => {
            return Err(
                "decoder \"regexp\" needs at least one pattern: add `regexps:` with a list of \
                 regular expressions"
                    .to_string(),
            )
        }
    };
    let patterns = sources
        .iter()
        .map(|source| {
            Regex::new(source).map_err(|err| format!("decoder \"regexp\": invalid pattern {source:?}: {err}"))
        })
        .collect::<Result<_, _>>()?;
    Ok(Box::new(RegexpAllowList { patterns }))
}

impl Decoder for RegexpAllowList {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let text = std::str::from_utf8(input).map_err(|_| {
            DecodeError::Invalid(format!(
                "regexp decoder: {} is not valid UTF-8",
                super::quoted(input)
            ))
        })?;
        if self.patterns.iter().any(|pattern| pattern.is_match(text)) {
            Ok(input.to_vec())
        } else {
            Err(DecodeError::Skip)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(patterns: &[&str]) -> DecoderOptions {
        DecoderOptions {
            regexps: Some(patterns.iter().map(|p| p.to_string()).collect()),
            ..DecoderOptions::default()
        }
    }

    #[test]
    fn decodes_table() {
        // (case, patterns, input, expected)
        type Case<'a> = (&'a str, &'a [&'a str], &'a [u8], Result<&'a [u8], DecodeError>);
        let cases: &[Case<'_>] = &[
            ("match", &["^bash$"], b"bash", Ok(b"bash")),
            ("no match", &["^bash$"], b"zsh", Err(DecodeError::Skip)),
            ("unanchored", &["ash"], b"bash", Ok(b"bash")),
            (
                "anchored refuses substring",
                &["^bash$"],
                b"bashful",
                Err(DecodeError::Skip),
            ),
            ("second pattern", &["^sh$", "^bash$"], b"bash", Ok(b"bash")),
            (
                "no pattern matches",
                &["^sh$", "^bash$"],
                b"fish",
                Err(DecodeError::Skip),
            ),
            ("empty input, match-all", &[".*"], b"", Ok(b"")),
            (
                "empty input, non-empty pattern",
                &["."],
                b"",
                Err(DecodeError::Skip),
            ),
            (
                "unicode",
                &["^h.llo$"],
                "héllo".as_bytes(),
                Ok("héllo".as_bytes()),
            ),
            (
                "invalid utf-8",
                &[".*"],
                b"a\xff",
                Err(DecodeError::Invalid(
                    "regexp decoder: \"a\\xff\" is not valid UTF-8".to_string(),
                )),
            ),
        ];
        for (name, patterns, input, want) in cases {
            let decoder = build(&options(patterns)).unwrap();
            let want = want.clone().map(<[u8]>::to_vec);
            assert_eq!(decoder.decode(input), want, "case {name}");
        }
    }

    #[test]
    fn build_errors() {
        let cases: &[(&str, DecoderOptions, &str)] = &[
            ("no regexps", DecoderOptions::default(), "add `regexps:`"),
            ("empty regexps", options(&[]), "add `regexps:`"),
            (
                "invalid pattern",
                options(&["ok", "(unclosed"]),
                "invalid pattern \"(unclosed\"",
            ),
            (
                "invalid pattern names the regex error",
                options(&["(unclosed"]),
                "unclosed group",
            ),
            (
                "foreign option",
                DecoderOptions {
                    allow_unknown: Some(false),
                    ..options(&["x"])
                },
                "does not take `allow_unknown`",
            ),
        ];
        for (name, options, want) in cases {
            let err = build(options).unwrap_err();
            assert!(err.contains(want), "case {name}: {err}");
        }
    }
}
