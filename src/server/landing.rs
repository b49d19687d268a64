//! The page a human sees when opening the exporter in a browser: mostly to
//! answer "why is metric X missing?" via each config's and program's error.
//!
//! Config names, paths and error messages end up in HTML here, and some of
//! them come from files or the kernel, so every one is escaped.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::metrics::{ConfigStatus, SeriesLimited, Snapshot};
use crate::privileges::Privileges;

/// Escapes text for HTML element content and quoted attribute values.
fn html_escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    html_escape(&mut out, s);
    out
}

/// The whole page: version, a link to the metrics, the snapshot's age, one
/// row per config, and the capabilities kept at start.
pub(super) fn landing_page(
    telemetry_path: &str,
    snapshot: &Snapshot,
    privileges: Option<&Privileges>,
) -> String {
    let mut html = String::with_capacity(2048);
    // Relative link, so the page keeps working behind a path-prefixing proxy.
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>bpf-exporter</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em; }}\n\
         table {{ border-collapse: collapse; margin-bottom: 1em; }}\n\
         th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }}\n\
         .running {{ color: #060; }} .degraded {{ color: #a60; }} .failed, .invalid, .over_budget, .error {{ color: #a00; }}\n\
         </style>\n</head>\n<body>\n<h1>bpf-exporter</h1>\n\
         <p>Prometheus exporter that turns eBPF maps into metrics. Version {}.</p>\n\
         <p><a href=\".{}\">Metrics</a> · <a href=\"./-/status\">Status (JSON)</a></p>\n",
        esc(env!("CARGO_PKG_VERSION")),
        esc(telemetry_path),
    );
    if snapshot.taken_at > SystemTime::UNIX_EPOCH {
        let age = SystemTime::now()
            .duration_since(snapshot.taken_at)
            .map(|d| format!("{:.1} s ago", d.as_secs_f64()))
            .unwrap_or_else(|_| "just now".to_string());
        let _ = writeln!(html, "<p>Last snapshot taken {}.</p>", esc(&age));
    }
    if let Some(why) = &snapshot.not_ready {
        let _ = writeln!(html, "<p class=\"error\">Not ready: {}.</p>", esc(why));
    }
    html.push_str("<h2>Configs</h2>\n");
    if snapshot.configs.is_empty() {
        html.push_str("<p>No configs selected: only the exporter's own metrics are served.</p>\n");
    } else {
        html.push_str(
            "<table>\n<thead><tr><th>Name</th><th>Source</th><th>Program</th>\
             <th>State</th><th>Reason</th><th>Error</th><th>BPF programs</th></tr></thead>\n<tbody>\n",
        );
        for config in &snapshot.configs {
            config_row(&mut html, config);
        }
        html.push_str("</tbody>\n</table>\n");
    }
    series_limits(&mut html, &snapshot.series_limited);
    if let Some(privileges) = privileges {
        capabilities(&mut html, privileges);
    }
    html.push_str("</body>\n</html>\n");
    html
}

/// Families whose series limit left label sets out: why some series of a
/// big map are missing, and what to raise.
fn series_limits(html: &mut String, limited: &[SeriesLimited]) {
    if limited.is_empty() {
        return;
    }
    html.push_str(
        "<h2>Series limits reached</h2>\n<p class=\"error\">These families hold as many series as their \
         limit allows; new label sets are left out (raise <code>series_limit</code> in the config, or \
         <code>--metrics.series-limit</code>).</p>\n<table>\n<thead><tr><th>Config</th><th>Metric</th>\
         <th>Limit</th><th>Label sets left out</th></tr></thead>\n<tbody>\n",
    );
    for l in limited {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.config),
            esc(&l.metric),
            l.limit,
            l.dropped
        );
    }
    html.push_str("</tbody>\n</table>\n");
}

fn capabilities(html: &mut String, privileges: &Privileges) {
    html.push_str(
        "<h2>Capabilities</h2>\n<table>\n<thead><tr><th>Capability</th><th>Kept for</th></tr></thead>\n<tbody>\n",
    );
    for need in &privileges.kept {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(&need.capability),
            esc(&need.reason)
        );
    }
    for need in &privileges.missing {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td class=\"error\">needed for {}, but not held</td></tr>",
            esc(&need.capability),
            esc(&need.reason)
        );
    }
    html.push_str("</tbody>\n</table>\n");
    if !privileges.dropped.is_empty() {
        let _ = writeln!(
            html,
            "<p>Dropped at start: {}.</p>",
            esc(&privileges.dropped.join(", "))
        );
    }
}

fn config_row(html: &mut String, config: &ConfigStatus) {
    let state = config.state.as_str();
    let _ = write!(
        html,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{state}\">{state}</td><td>{}</td><td class=\"error\">{}",
        esc(&config.name),
        esc(&config.source),
        esc(&config.program),
        config.reason.map_or("", |r| r.as_str()),
        esc(config.error.as_deref().unwrap_or("")),
    );
    if let Some(rejected) = &config.rejected {
        let _ = write!(
            html,
            "<p>A newer version was refused; the version before it keeps running: {}</p>",
            esc(rejected)
        );
    }
    html.push_str("</td><td>");
    if config.programs.is_empty() {
        html.push_str("none");
    } else {
        html.push_str(
            "<table><thead><tr><th>Name</th><th>Section</th><th>Attached</th><th>Error</th></tr></thead><tbody>",
        );
        for program in &config.programs {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"error\">{}</td></tr>",
                esc(&program.name),
                esc(&program.section),
                if program.attached { "yes" } else { "no" },
                esc(program.error.as_deref().unwrap_or("")),
            );
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</td></tr>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::testing::snapshot;

    #[test]
    fn lists_configs_escaped() {
        let html = landing_page("/metrics", &snapshot(), None);
        assert!(html.contains("<title>bpf-exporter</title>"));
        assert!(html.contains("href=\"./metrics\""));
        assert!(html.contains("Last snapshot taken"));
        assert!(html.contains("<td>syscalls</td>"));
        assert!(html.contains("tracepoint/raw_syscalls/sys_enter"));
        assert!(html.contains("<td>yes</td>"));
        assert!(html.contains("broken&lt;script&gt;"));
        assert!(html.contains("/etc/x &amp; y.yaml"));
        assert!(html.contains("attach failed: &quot;&lt;nope&gt;&quot;"));
        assert!(html.contains("kprobe_&lt;x&gt;"));
        assert!(html.contains("ENOENT &lt;missing&gt;"));
        assert!(html.contains("<td>hook_missing</td>"));
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<nope>"));
    }

    #[test]
    fn shows_a_refused_change_beside_the_version_that_runs() {
        let mut snapshot = snapshot();
        snapshot.configs[0].rejected = Some("x.yaml:3:5: bad <thing>".into());
        let html = landing_page("/metrics", &snapshot, None);
        assert!(
            html.contains("the version before it keeps running: x.yaml:3:5: bad &lt;thing&gt;"),
            "{html}"
        );
    }

    #[test]
    fn lists_the_capabilities_kept_with_why_and_those_missing() {
        use crate::privileges::Need;
        let need = |cap: &str, reason: &str| Need {
            capability: cap.into(),
            reason: reason.into(),
        };
        let privileges = Privileges {
            kept: vec![need("CAP_BPF", "loading <programs>")],
            missing: vec![need("CAP_DAC_READ_SEARCH", "tracefs: syscalls")],
            dropped: vec!["CAP_SYS_ADMIN".into(), "CAP_NET_ADMIN".into()],
        };
        let html = landing_page("/metrics", &snapshot(), Some(&privileges));
        assert!(
            html.contains("<tr><td>CAP_BPF</td><td>loading &lt;programs&gt;</td></tr>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<td>CAP_DAC_READ_SEARCH</td><td class=\"error\">needed for tracefs: syscalls, but not held"
            ),
            "{html}"
        );
        assert!(
            html.contains("Dropped at start: CAP_SYS_ADMIN, CAP_NET_ADMIN."),
            "{html}"
        );
        assert!(!landing_page("/metrics", &snapshot(), None).contains("Capabilities"));
    }

    #[test]
    fn names_families_at_their_series_limit() {
        let html = landing_page("/metrics", &snapshot(), None);
        assert!(
            html.contains("<tr><td>syscalls</td><td>ebpf_syscalls_total</td><td>10</td><td>3</td></tr>"),
            "{html}"
        );
        assert!(!landing_page("/m", &Snapshot::default(), None).contains("Series limits"));
    }

    #[test]
    fn says_when_not_ready() {
        let html = landing_page("/m", &Snapshot::default(), None);
        assert!(html.contains("Not ready: starting: no snapshot published yet."));
        assert!(!html.contains("Last snapshot taken"));
        assert!(html.contains("No configs selected"));
        assert!(html.contains("href=\"./m\""));
    }
}
