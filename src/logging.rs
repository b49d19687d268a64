//! Log lines as Prometheus exporters write them: `--log.format logfmt`
//! (the default) or `json`, every line with `time`, `level`, `msg` and the
//! event's fields, one line per event whatever the message holds (a
//! config's failure report spans lines; log collectors split on newlines).
//!
//! A formatter of its own because tracing-subscriber's json layout nests
//! the fields and names them differently, and it has no logfmt; the
//! escaping rules are small and tested here.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime as _;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Logfmt,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "logfmt" => Ok(LogFormat::Logfmt),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("{s:?}: use logfmt or json")),
        }
    }
}

/// Installs the global subscriber: `level` and up, to stderr, each line
/// with its time unless not `timestamps`.
pub fn init(level: tracing::Level, format: LogFormat, timestamps: bool) {
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(Line { format, timestamps })
        .init();
}

struct Line {
    format: LogFormat,
    timestamps: bool,
}

/// An event's message and other fields, as text.
#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.rest.push((field.name(), value));
        }
    }
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut time = String::new();
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut time))?;
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        let pairs = [
            ("time", time.as_str()),
            ("level", level.as_str()),
            ("msg", fields.message.as_str()),
        ]
        .into_iter()
        .skip(usize::from(!self.timestamps))
        .chain(fields.rest.iter().map(|(k, v)| (*k, v.as_str())));
        writeln!(writer, "{}", render(self.format, pairs))
    }
}

fn render<'a>(format: LogFormat, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    match format {
        LogFormat::Json => {
            let object: serde_json::Map<String, serde_json::Value> = pairs
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
                .collect();
            serde_json::Value::Object(object).to_string()
        }
        LogFormat::Logfmt => {
            let mut line = String::new();
            for (i, (key, value)) in pairs.enumerate() {
                if i > 0 {
                    line.push(' ');
                }
                let _ = write!(line, "{key}={}", logfmt_value(value));
            }
            line
        }
    }
}

/// A value bare when it can be, else quoted with `"`, `\` and control
/// characters escaped (as go-logfmt writes them).
fn logfmt_value(value: &str) -> String {
    let bare = !value.is_empty()
        && !value
            .chars()
            .any(|c| c <= ' ' || c == '=' || c == '"' || c == '\u{7f}');
    if bare {
        return value.to_string();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04x}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRS: [(&str, &str); 5] = [
        ("time", "2026-12-02T18:00:00.000Z"),
        ("level", "error"),
        ("msg", "config syscalls is failed:\n  attach \"x\" refused"),
        ("address", "[::]:9435"),
        ("empty", ""),
    ];

    #[test]
    fn logfmt_quotes_what_needs_it_and_stays_on_one_line() {
        let line = render(LogFormat::Logfmt, PAIRS.into_iter());
        assert_eq!(
            line,
            r#"time=2026-12-02T18:00:00.000Z level=error msg="config syscalls is failed:\n  attach \"x\" refused" address=[::]:9435 empty="""#
        );
        assert_eq!(logfmt_value("a=b"), r#""a=b""#);
        assert_eq!(logfmt_value("back\\slash x"), r#""back\\slash x""#);
        assert_eq!(logfmt_value("bell\u{7}"), r#""bell\u0007""#);
    }

    #[test]
    fn json_is_one_object_per_line_with_the_same_keys() {
        let line = render(LogFormat::Json, PAIRS.into_iter());
        assert!(!line.contains('\n'));
        let object: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(object["msg"], PAIRS[2].1);
        assert_eq!(object["level"], "error");
        assert_eq!(object["address"], "[::]:9435");
    }

    #[test]
    fn formats_are_named_as_on_the_command_line() {
        assert_eq!("logfmt".parse(), Ok(LogFormat::Logfmt));
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert!("text".parse::<LogFormat>().is_err());
    }
}
