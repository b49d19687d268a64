//! Content negotiation for the telemetry path: which exposition format and
//! whether gzip, from `Accept` and `Accept-Encoding`.
//!
//! Scrapers differ: Prometheus itself prefers OpenMetrics, or the protobuf
//! format when its native histograms are on, while `curl`, older Prometheus
//! servers and many other tools only speak the classic text format. The
//! choice is made the way Prometheus client libraries make
//! it, so the exporter answers each scraper as its other targets do. Both
//! headers are untrusted input: anything malformed counts as not asked for,
//! never as an error.

use crate::metrics::exposition::{Exposition, Format};

/// One element of a comma-separated, q-weighted header (`Accept`,
/// `Accept-Encoding`).
#[derive(Debug, Clone, PartialEq)]
struct HeaderItem<'a> {
    /// The element without its parameters, trimmed (`text/plain`, `gzip`).
    value: &'a str,
    /// Parameters other than `q`, keys as sent, values unquoted.
    params: Vec<(&'a str, &'a str)>,
    /// Quality in `0.0..=1.0`; `1.0` when absent, `0.0` when malformed so a
    /// garbled element can never win a negotiation.
    q: f32,
}

/// Splits a header like `a/b;version=1;q=0.5, c/d` into its elements.
fn parse_header_list(header: &str) -> impl Iterator<Item = HeaderItem<'_>> {
    header.split(',').filter_map(|element| {
        let mut parts = element.split(';');
        let value = parts.next()?.trim();
        if value.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        let mut q = 1.0f32;
        for param in parts {
            let Some((key, val)) = param.split_once('=') else {
                continue;
            };
            let key = key.trim();
            let val = val.trim().trim_matches('"');
            if key.eq_ignore_ascii_case("q") {
                q = match val.parse::<f32>() {
                    Ok(q) if (0.0..=1.0).contains(&q) => q,
                    _ => 0.0,
                };
            } else {
                params.push((key, val));
            }
        }
        Some(HeaderItem { value, params, q })
    })
}

fn param<'a>(item: &HeaderItem<'a>, name: &str) -> Option<&'a str> {
    item.params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// Raises `slot` to `q`: a range listed twice counts with its best q.
fn raise(slot: &mut Option<f32>, q: f32) {
    *slot = Some(slot.map_or(q, |old| old.max(q)));
}

/// Picks the format for an `Accept` header.
///
/// The protobuf format is chosen only when it is listed explicitly
/// (`application/vnd.google.protobuf` with
/// `proto=io.prometheus.client.MetricFamily` and `encoding=delimited`, as
/// Prometheus asks for it) and its q is at least that of every text format.
/// Otherwise OpenMetrics is chosen only when `application/openmetrics-text`
/// (version 1.0.0, 0.0.1 or unspecified: both versions parse the same in
/// Prometheus) is listed explicitly and its q is at least that of
/// `text/plain`. The q of `text/plain` is taken from the most specific range
/// that matches it (`text/plain`, else `text/*`, else `*/*`), as RFC 9110
/// prescribes. A bare `*/*` (curl, browsers) or no header at all yields
/// text 0.0.4, like Go clients do.
pub(super) fn negotiate(accept: Option<&str>) -> Exposition {
    let Some(accept) = accept else {
        return Exposition::Text(Format::Text004);
    };
    let mut protobuf_q: Option<f32> = None;
    let mut om_q: Option<f32> = None;
    let mut text_plain_q: Option<f32> = None;
    let mut text_any_q: Option<f32> = None;
    let mut any_q: Option<f32> = None;
    for item in parse_header_list(accept) {
        let v = item.value;
        if v.eq_ignore_ascii_case("application/vnd.google.protobuf") {
            if param(&item, "proto") == Some("io.prometheus.client.MetricFamily")
                && param(&item, "encoding") == Some("delimited")
            {
                raise(&mut protobuf_q, item.q);
            }
        } else if v.eq_ignore_ascii_case("application/openmetrics-text") {
            let version_ok = match param(&item, "version") {
                None => true,
                Some(ver) => ver == "1.0.0" || ver == "0.0.1",
            };
            if version_ok {
                raise(&mut om_q, item.q);
            }
        } else if v.eq_ignore_ascii_case("text/plain") {
            raise(&mut text_plain_q, item.q);
        } else if v.eq_ignore_ascii_case("text/*") {
            raise(&mut text_any_q, item.q);
        } else if v == "*/*" {
            raise(&mut any_q, item.q);
        }
    }
    let text_q = text_plain_q.or(text_any_q).or(any_q).unwrap_or(0.0);
    let om_q = om_q.filter(|&q| q > 0.0 && q >= text_q);
    match protobuf_q {
        Some(q) if q > 0.0 && q >= text_q && q >= om_q.unwrap_or(0.0) => Exposition::Protobuf,
        _ if om_q.is_some() => Exposition::Text(Format::OpenMetrics),
        _ => Exposition::Text(Format::Text004),
    }
}

/// True when the client accepts gzip with q > 0, explicitly or via `*`.
pub(super) fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(header) = accept_encoding else {
        return false;
    };
    let mut gzip_q = None;
    let mut any_q = None;
    for item in parse_header_list(header) {
        if item.value.eq_ignore_ascii_case("gzip") || item.value.eq_ignore_ascii_case("x-gzip") {
            raise(&mut gzip_q, item.q);
        } else if item.value == "*" {
            raise(&mut any_q, item.q);
        }
    }
    gzip_q.or(any_q).is_some_and(|q| q > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        const TEXT: Exposition = Exposition::Text(Format::Text004);
        const OPENMETRICS: Exposition = Exposition::Text(Format::OpenMetrics);
        const PROTOBUF: Exposition = Exposition::Protobuf;
        let cases: &[(Option<&str>, Exposition)] = &[
            (None, TEXT),
            (Some(""), TEXT),
            (Some("*/*"), TEXT),
            (Some("text/plain"), TEXT),
            (Some("application/json"), TEXT),
            (Some("application/openmetrics-text"), OPENMETRICS),
            // Prometheus 2.x
            (
                Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                OPENMETRICS,
            ),
            (
                Some("application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"),
                OPENMETRICS,
            ),
            // Prometheus 3.x with native histograms, protobuf first
            (
                Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.2,text/plain;version=0.0.4;q=0.1,*/*;q=0.05"),
                PROTOBUF,
            ),
            // Prometheus 2.42 with --enable-feature=native-histograms
            (
                Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                PROTOBUF,
            ),
            (Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"), PROTOBUF),
            // Other protobuf encodings and messages are not served; without
            // its parameters it is not the exposition.
            (Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"), TEXT),
            (Some("application/vnd.google.protobuf;proto=io.prometheus.write.WriteRequest;encoding=delimited, application/openmetrics-text;q=0.1"), OPENMETRICS),
            (Some("application/vnd.google.protobuf"), TEXT),
            (Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0"), TEXT),
            (Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.4, application/openmetrics-text;q=0.5"), OPENMETRICS),
            (Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.4, */*;q=0.5"), TEXT),
            (Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5, text/plain;q=0.5"), PROTOBUF),
            // Prometheus with scrape_protocols: [PrometheusText0.0.4, OpenMetricsText1.0.0]
            (
                Some("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,*/*;q=0.1"),
                TEXT,
            ),
            (Some("text/plain;q=0.5, application/openmetrics-text;q=0.5"), OPENMETRICS),
            (Some("application/openmetrics-text;q=0.5, */*"), TEXT),
            (Some("application/openmetrics-text;q=0.5, text/*;q=0.4"), OPENMETRICS),
            (Some("application/openmetrics-text;q=0"), TEXT),
            (Some("application/openmetrics-text;q=bogus"), TEXT),
            (Some("application/openmetrics-text;version=2.0.0"), TEXT),
            (Some(" Application/OpenMetrics-Text ; Version=\"1.0.0\" ; Q=0.9 , text/plain;q=0.8"), OPENMETRICS),
            (Some(",,;;=,;q=,"), TEXT),
        ];
        for (accept, want) in cases {
            assert_eq!(negotiate(*accept), *want, "Accept: {accept:?}");
        }
    }

    #[test]
    fn gzip_negotiation() {
        assert!(!accepts_gzip(None));
        assert!(!accepts_gzip(Some("")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("gzip, deflate, br")));
        assert!(accepts_gzip(Some("GZIP;q=0.1")));
        assert!(accepts_gzip(Some("x-gzip")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("gzip;q=0.0, *")));
        assert!(!accepts_gzip(Some("gzip;q=bogus")));
    }
}
