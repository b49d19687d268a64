//! The Grafana dashboards of `dashboards/` and the provisioning examples of
//! `dashboards/provisioning/`, read as Grafana's file provisioning reads
//! them. Checked here without Grafana: what each dashboard needs to work
//! there (a Prometheus data source variable, job and instance variables,
//! units, stable uids, links that lead somewhere) and the shape of its
//! queries (filtered by job and instance, windows from Grafana's
//! variables). The queries themselves, with Grafana's variables filled in,
//! are what the end-to-end test (`prometheus.rs`) evaluates.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::common::yaml;

pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards");

/// Each dashboard and its uid. Links and bookmarks go by uid, so a uid
/// never changes once shipped; the overview keeps the one the single
/// dashboard it replaced had.
const UIDS: [(&str, &str); 7] = [
    ("overview.json", "bpf-exporter-overview"),
    ("syscalls.json", "bpf-exporter-syscalls"),
    ("block-io.json", "bpf-exporter-block-io"),
    ("scheduler.json", "bpf-exporter-scheduler"),
    ("network.json", "bpf-exporter-network"),
    ("memory.json", "bpf-exporter-memory"),
    ("exporter-health.json", "bpf-exporter-health"),
];

/// Grafana unit ids the dashboards use; a typo (`ops/s` for `ops`) would
/// show raw numbers.
const UNITS: [&str; 8] = ["s", "ops", "iops", "pps", "short", "percentunit", "none", "bytes"];

/// The data source every panel and query names: the dashboard's
/// data source variable.
const DATA_SOURCE: &str = "${DS_PROMETHEUS}";

/// Every query's selectors carry these two matchers.
const FILTERS: [&str; 2] = [r#"job=~"$job""#, r#"instance=~"$instance""#];

pub struct Dashboard {
    pub file: String,
    /// The file as written: for counting what the parsed form must yield.
    pub text: String,
    pub json: Value,
}

/// One PromQL query of a panel.
pub struct Query {
    pub panel: String,
    pub expr: String,
    pub legend: String,
}

/// A query variable: `label_values(selector, label)`.
pub struct Variable {
    pub name: String,
    pub selector: String,
    pub label: String,
}

/// Every dashboard of `dashboards/`, by file name.
pub fn all() -> Vec<Dashboard> {
    let mut files: Vec<_> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            Dashboard { file, text, json }
        })
        .collect()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

impl Dashboard {
    pub fn uid(&self) -> &str {
        str_of(&self.json, "uid")
    }

    /// Every panel but rows, collapsed rows' panels included.
    pub fn panels(&self) -> Vec<&Value> {
        let mut out = Vec::new();
        for panel in self.json["panels"].as_array().unwrap() {
            if panel["type"] == "row" {
                out.extend(panel["panels"].as_array().into_iter().flatten());
            } else {
                out.push(panel);
            }
        }
        out
    }

    pub fn queries(&self) -> Vec<Query> {
        self.panels()
            .into_iter()
            .flat_map(|panel| {
                panel["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|target| Query {
                        panel: str_of(panel, "title").to_string(),
                        expr: str_of(target, "expr").to_string(),
                        legend: str_of(target, "legendFormat").to_string(),
                    })
            })
            .collect()
    }

    fn template(&self, kind: &str) -> Vec<&Value> {
        self.json["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["type"] == kind)
            .collect()
    }

    /// The query variables in the order Grafana resolves them (one may
    /// use those before it).
    pub fn variables(&self) -> Vec<Variable> {
        self.template("query")
            .into_iter()
            .map(|v| {
                let name = str_of(v, "name").to_string();
                let query = str_of(&v["query"], "query");
                let (selector, label) = label_values(query).unwrap_or_else(|| {
                    panic!(
                        "{}: ${name} is not label_values(selector, label): {query}",
                        self.file
                    )
                });
                Variable {
                    name,
                    selector: selector.to_string(),
                    label: label.to_string(),
                }
            })
            .collect()
    }
}

/// `label_values(selector, label)` → `(selector, label)`.
fn label_values(query: &str) -> Option<(&str, &str)> {
    let args = query.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let (selector, label) = args.rsplit_once(',')?;
    Some((selector.trim(), label.trim()))
}

/// A multi-value variable with all its values selected, as Grafana writes
/// it into a Prometheus query: `(a|b)`, each value's regex metacharacters
/// escaped, the escapes doubled for the PromQL string they land in.
pub fn regex_of_all(values: &[String]) -> String {
    let escaped: Vec<String> = values
        .iter()
        .map(|v| {
            v.chars().fold(String::new(), |mut out, c| {
                if r"\^$*+?.()|{}[]".contains(c) {
                    out.push_str(r"\\");
                }
                out.push(c);
                out
            })
        })
        .collect();
    format!("({})", escaped.join("|"))
}

/// `text` with Grafana's variables (`$name`, `${name}`, `${name:format}`,
/// `[[name]]`) replaced by `values`. A variable without a value is an
/// error: it is a typo, or one the end-to-end test does not fill in.
pub fn interpolate(text: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let pattern = regex::Regex::new(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]").unwrap();
    let mut missing = Vec::new();
    let out = pattern.replace_all(text, |c: &regex::Captures| {
        let name = c.get(1).or(c.get(2)).or(c.get(3)).unwrap().as_str();
        values.get(name).cloned().unwrap_or_else(|| {
            missing.push(name.to_string());
            String::new()
        })
    });
    if missing.is_empty() {
        Ok(out.into_owned())
    } else {
        Err(format!("no value for ${}", missing.join(", $")))
    }
}

/// The vector selectors of a PromQL expression: each metric name (or bare
/// `{…}`) with the text of its matchers. Function names, keywords, label
/// lists of `by (…)` and friends, numbers, strings and `[…]` windows are
/// not selectors.
fn selectors(expr: &str) -> Vec<(String, String)> {
    const KEYWORDS: [&str; 20] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "atan2",
        "group_left",
        "group_right",
        // Aggregations, which may have `by (…)` before their parentheses.
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
    ];
    const LISTS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // Past the string that opens at `from`.
    let past_string = |mut from: usize| {
        from += 1;
        while from < chars.len() && chars[from] != '"' {
            from += if chars[from] == '\\' { 2 } else { 1 };
        }
        from + 1
    };
    // Past the first `close` from `from` on, outside strings.
    let skip_to = |mut from: usize, close: char| {
        while from < chars.len() && chars[from] != close {
            from = if chars[from] == '"' {
                past_string(from)
            } else {
                from + 1
            };
        }
        (from + 1).min(chars.len())
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i = past_string(i);
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c == '{' {
            let end = skip_to(i, '}');
            out.push((String::new(), chars[i + 1..end - 1].iter().collect()));
            i = end;
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next] == ' ' {
                next += 1;
            }
            let follows = chars.get(next).copied();
            if LISTS.contains(&word.as_str()) && follows == Some('(') {
                i = skip_to(next, ')');
            } else if follows == Some('(') || KEYWORDS.contains(&word.as_str()) {
                // A function or an operator.
            } else if follows == Some('{') {
                let end = skip_to(next, '}');
                out.push((word, chars[next + 1..end - 1].iter().collect()));
                i = end;
            } else {
                out.push((word, String::new()));
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn selectors_are_found_and_label_lists_functions_and_windows_are_not() {
    let expr = r#"topk(10, sum by (syscall, le) (rate(a_total{job=~"$job", x="}"}[5m]))) / on (job) group_left (x) b + 0.99 * c"#;
    assert_eq!(
        selectors(expr),
        [
            ("a_total".to_string(), r#"job=~"$job", x="}""#.to_string()),
            ("b".to_string(), String::new()),
            ("c".to_string(), String::new()),
        ]
    );
    assert_eq!(selectors(r#"time() - {__name__="up"}"#).len(), 1);
}

#[test]
fn interpolation_fills_every_form_and_names_what_it_cannot() {
    let values = BTreeMap::from([
        ("job".to_string(), "(bpf-exporter)".to_string()),
        ("__rate_interval".to_string(), "30s".to_string()),
    ]);
    assert_eq!(
        interpolate(
            r#"rate(x{job=~"$job"}[$__rate_interval]) ${job} ${job:regex} [[job]]"#,
            &values
        )
        .unwrap(),
        r#"rate(x{job=~"(bpf-exporter)"}[30s]) (bpf-exporter) (bpf-exporter) (bpf-exporter)"#
    );
    assert_eq!(
        interpolate("x{instance=~\"$instance\"} $jbo", &values).unwrap_err(),
        "no value for $instance, $jbo"
    );
    assert_eq!(
        regex_of_all(&["127.0.0.1:9435".into(), "b".into()]),
        r"(127\\.0\\.0\\.1:9435|b)"
    );
    assert_eq!(
        label_values(r#"label_values(up{job=~"$job"}, instance)"#),
        Some((r#"up{job=~"$job"}"#, "instance"))
    );
}

#[test]
fn dashboards_are_the_families_with_stable_uids_tags_and_titles() {
    let dashboards = all();
    let found: BTreeMap<&str, &str> = dashboards.iter().map(|d| (d.file.as_str(), d.uid())).collect();
    assert_eq!(found, BTreeMap::from(UIDS));
    for d in &dashboards {
        let tags: Vec<&str> = d.json["tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(tags.contains(&"bpf-exporter"), "{}: tags {tags:?}", d.file);
        assert!(
            str_of(&d.json, "title").starts_with("bpf-exporter: "),
            "{}",
            d.file
        );
        assert!(!str_of(&d.json, "description").is_empty(), "{}", d.file);
        // Provisioning gives dashboards their ids; a fixed one would clash.
        assert!(d.json["id"].is_null(), "{}", d.file);
    }
}

#[test]
fn dashboards_select_a_prometheus_data_source_then_job_then_instance() {
    for d in all() {
        let file = &d.file;
        let sources = d.template("datasource");
        assert_eq!(sources.len(), 1, "{file}");
        assert_eq!(sources[0]["query"], "prometheus", "{file}");
        assert_eq!(
            format!("${{{}}}", str_of(sources[0], "name")),
            DATA_SOURCE,
            "{file}"
        );
        let variables = d.variables();
        let names: Vec<&str> = variables.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names[..2], ["job", "instance"], "{file}");
        assert_eq!(
            (variables[0].label.as_str(), variables[1].label.as_str()),
            ("job", "instance")
        );
        assert!(
            variables[1].selector.contains(FILTERS[0]),
            "{file}: instance does not depend on job"
        );
        for v in d.template("query") {
            let name = str_of(v, "name");
            assert_eq!(v["datasource"]["uid"], DATA_SOURCE, "{file}: ${name}");
            assert_eq!(
                (&v["multi"], &v["includeAll"]),
                (&Value::Bool(true), &Value::Bool(true)),
                "{file}: ${name}"
            );
            assert_eq!(v["definition"], v["query"]["query"], "{file}: ${name}");
            // Later variables follow the ones before them.
            if name != "job" {
                assert!(
                    str_of(&v["query"], "query").contains(FILTERS[0]),
                    "{file}: ${name}"
                );
            }
        }
        for panel in d.panels() {
            let title = str_of(panel, "title");
            assert_eq!(panel["datasource"]["type"], "prometheus", "{file}: {title}");
            assert_eq!(panel["datasource"]["uid"], DATA_SOURCE, "{file}: {title}");
            for target in panel["targets"].as_array().unwrap() {
                assert_eq!(target["datasource"]["uid"], DATA_SOURCE, "{file}: {title}");
            }
        }
    }
}

#[test]
fn every_panel_has_a_unit_and_a_description_and_panels_do_not_overlap() {
    for d in all() {
        let mut ids = BTreeSet::new();
        let mut cells = BTreeMap::new();
        for panel in d.json["panels"].as_array().unwrap() {
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{}: id {} twice",
                d.file,
                panel["id"]
            );
            let title = str_of(panel, "title");
            let at = &panel["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| at[k].as_u64().unwrap());
            assert!(x + w <= 24, "{}: {title} is wider than the dashboard", d.file);
            for row in y..y + h {
                for column in x..x + w {
                    if let Some(other) = cells.insert((row, column), title) {
                        panic!("{}: {title} overlaps {other}", d.file);
                    }
                }
            }
        }
        for panel in d.panels() {
            let title = str_of(panel, "title");
            let unit = str_of(&panel["fieldConfig"]["defaults"], "unit");
            assert!(UNITS.contains(&unit), "{}: {title}: unit {unit:?}", d.file);
            assert!(!str_of(panel, "description").is_empty(), "{}: {title}", d.file);
            if panel["type"] == "heatmap" {
                assert_eq!(panel["options"]["yAxis"]["unit"], "s", "{}: {title}", d.file);
                assert_eq!(panel["options"]["calculate"], false, "{}: {title}", d.file);
            }
        }
    }
}

#[test]
fn every_query_filters_by_job_and_instance_and_takes_its_window_from_grafana() {
    let windows = regex::Regex::new(r"\[([^\]]*)\]").unwrap();
    for d in all() {
        let heatmaps: Vec<&str> = d
            .panels()
            .into_iter()
            .filter(|p| p["type"] == "heatmap")
            .map(|p| str_of(p, "title"))
            .collect();
        for q in d.queries() {
            let at = format!("{}: {}: {}", d.file, q.panel, q.expr);
            let found = selectors(&q.expr);
            assert!(!found.is_empty(), "{at}");
            for (name, matchers) in found {
                for filter in FILTERS {
                    assert!(matchers.contains(filter), "{at}: {name} lacks {filter}");
                }
            }
            for window in windows.captures_iter(&q.expr) {
                assert!(
                    ["$__rate_interval", "$__range"].contains(&&window[1]),
                    "{at}: window [{}]",
                    &window[1]
                );
            }
            if heatmaps.contains(&q.panel.as_str()) {
                assert!(
                    q.expr.starts_with("sum by (le) (rate(") && q.expr.contains("_bucket{"),
                    "{at}: a heatmap takes the buckets' rates by le"
                );
            }
            if q.expr.contains("histogram_quantile(") {
                assert!(q.expr.contains("_bucket{") && q.expr.contains("rate("), "{at}");
            }
        }
        for panel in d.panels() {
            if panel["type"] == "heatmap" {
                assert_eq!(
                    panel["targets"][0]["format"], "heatmap",
                    "{}: {}",
                    d.file, panel["title"]
                );
            }
        }
    }
}

#[test]
fn the_overview_links_to_every_family_dashboard_and_every_link_leads_somewhere() {
    let dashboards = all();
    let uids: BTreeSet<&str> = UIDS.iter().map(|(_, uid)| *uid).collect();
    let mut linked = BTreeSet::new();
    for d in &dashboards {
        // The dashboard list by tag: every dashboard reaches every other.
        let links = d.json["links"].as_array().unwrap();
        assert!(
            links
                .iter()
                .any(|l| l["type"] == "dashboards" && l["tags"] == serde_json::json!(["bpf-exporter"])),
            "{}",
            d.file
        );
        for panel in d.panels() {
            for link in panel["links"].as_array().into_iter().flatten() {
                let url = str_of(link, "url");
                let uid = url
                    .strip_prefix("/d/")
                    .and_then(|rest| rest.split('?').next())
                    .unwrap_or_else(|| panic!("{}: {url}", d.file));
                assert!(
                    uids.contains(uid),
                    "{}: a link to {uid}, which no dashboard has",
                    d.file
                );
                assert!(
                    url.contains("${job:queryparam}&${instance:queryparam}"),
                    "{}: {url}",
                    d.file
                );
                if d.uid() == "bpf-exporter-overview" {
                    linked.insert(uid);
                }
            }
        }
    }
    let families: BTreeSet<&str> = uids
        .into_iter()
        .filter(|u| *u != "bpf-exporter-overview")
        .collect();
    assert_eq!(linked, families);
}

#[test]
fn provisioning_examples_name_a_prometheus_data_source_and_a_file_provider() {
    let read = |file: &str| yaml(&format!("{DIR}/provisioning/{file}"));
    let sources = read("datasource.yaml");
    assert_eq!(sources["apiVersion"], 1);
    let source = &sources["datasources"][0];
    assert_eq!(source["type"], "prometheus");
    assert!(source["url"].as_str().is_some_and(|u| u.starts_with("http")));
    // Grafana works $__rate_interval out from the scrape interval it is
    // told: the example Prometheus config's.
    let prometheus = crate::prometheus::example_config();
    assert_eq!(
        source["jsonData"]["timeInterval"],
        prometheus["scrape_configs"][0]["scrape_interval"]
    );
    let providers = read("dashboards.yaml");
    assert_eq!(providers["apiVersion"], 1);
    let provider = &providers["providers"][0];
    assert_eq!(provider["type"], "file");
    assert!(provider["options"]["path"]
        .as_str()
        .is_some_and(|p| p.starts_with('/')));
}
