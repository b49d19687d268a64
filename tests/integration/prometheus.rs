//! The example Prometheus setup of `prometheus/` and the dashboards of
//! `dashboards/` against the real thing. promtool checks the example config
//! and rules and runs the rules' unit tests (`prometheus/tests/`), which
//! must cover every rule and fail without it. Then a real Prometheus, on
//! the example config with 1 s intervals, scrapes real exporters while
//! workloads make every program fire: every query of every dashboard, every
//! template variable and every recording rule must return data, and the
//! example alerts must fire exactly where an exporter is broken.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::binary::{answers_ok, embedded, http, priority_min_turn, promtool_check, Exporter};
use crate::common::{bpf_available, free_port, private_loopback, tool_available, yaml};
use crate::dashboards::{self, interpolate, regex_of_all};
use crate::guards;
use crate::workload::*;

pub(crate) const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/prometheus");

/// The example configs of `prometheus/`: one host, and a fleet on
/// Kubernetes (which loads the fleet rules too).
const EXAMPLE_CONFIGS: [&str; 2] = ["prometheus.yml", "kubernetes.yml"];

/// `prometheus/prometheus.yml`, parsed.
pub(crate) fn example_config() -> Value {
    yaml(&format!("{EXAMPLES}/prometheus.yml"))
}

/// The rule files `config` loads, relative to `prometheus/`.
fn rule_files_of(config: &Value) -> Vec<String> {
    let files: Vec<String> = config["rule_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert!(!files.is_empty());
    files
}

/// The rule files of every example config, each once.
fn rule_files() -> Vec<String> {
    let mut files: Vec<String> = EXAMPLE_CONFIGS
        .iter()
        .flat_map(|c| rule_files_of(&yaml(&format!("{EXAMPLES}/{c}"))))
        .collect();
    files.sort();
    files.dedup();
    files
}

/// The unit test files of `prometheus/tests/`, relative to `prometheus/`.
fn rule_tests() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(format!("{EXAMPLES}/tests"))
        .unwrap()
        .map(|e| format!("tests/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".yml"))
        .collect();
    files.sort();
    files
}

/// The distinct names of the rules of `kind` (`record`, `alert`) in
/// `files`.
fn rule_names(files: &[String], kind: &str) -> BTreeSet<String> {
    files
        .iter()
        .flat_map(|file| {
            let rules = yaml(&format!("{EXAMPLES}/{file}"));
            rules["groups"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|g| g["rules"].as_array().unwrap())
                .filter_map(|rule| rule[kind].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `config` as Debian's promtool can check it: Debian builds Prometheus
/// without Kubernetes service discovery, so each `kubernetes_sd_configs`
/// becomes a static target carrying the labels pod discovery would give
/// it (the relabelling still reads them), and the rule files are named
/// by absolute path.
fn without_kubernetes_sd(mut config: Value) -> Value {
    config["rule_files"] = json!(rule_files_of(&config)
        .iter()
        .map(|f| format!("{EXAMPLES}/{f}"))
        .collect::<Vec<_>>());
    for job in config["scrape_configs"].as_array_mut().unwrap() {
        if job
            .as_object_mut()
            .unwrap()
            .remove("kubernetes_sd_configs")
            .is_some()
        {
            job["static_configs"] = json!([{
                "targets": ["10.0.0.1:9435"],
                "labels": {
                    "__meta_kubernetes_pod_container_port_name": "metrics",
                    "__meta_kubernetes_pod_node_name": "node-1",
                    "__meta_kubernetes_namespace": "bpf-exporter",
                    "__meta_kubernetes_pod_name": "bpf-exporter-x1",
                },
            }]);
        }
    }
    config
}

/// promtool run in `prometheus/` (where the example files name each other
/// relative to): whether it succeeded, and all it printed.
pub(crate) fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(EXAMPLES)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_example_config_and_rules_pass_promtool_and_their_unit_tests() {
    if !tool_available("promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in EXAMPLE_CONFIGS {
        let config = yaml(&format!("{EXAMPLES}/{name}"));
        let loads = rule_files_of(&config).len();
        let path = dir.path().join(name);
        // JSON is YAML: promtool reads the config as written.
        std::fs::write(
            &path,
            serde_json::to_string(&without_kubernetes_sd(config)).unwrap(),
        )
        .unwrap();
        let (ok, out) = promtool(&["check", "config", path.to_str().unwrap()]);
        assert!(
            ok && out.contains(&format!("{loads} rule files found")),
            "{name}: {out}"
        );
    }
    let files = rule_files();
    let mut args = vec!["check", "rules"];
    args.extend(files.iter().map(String::as_str));
    let (ok, out) = promtool(&args);
    assert!(ok, "{out}");
    let tests = rule_tests();
    assert_eq!(
        tests.len(),
        files.len(),
        "a unit test file per rule file: {tests:?}"
    );
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let (ok, out) = promtool(&args);
    assert!(ok && out.matches("SUCCESS").count() == tests.len(), "{out}");
}

/// The unit tests' cases, from every test file: (alert name, whether
/// the case expects it to fire) and the expressions of the expression
/// tests that expect samples.
fn rule_test_cases() -> (BTreeSet<(String, bool)>, BTreeSet<String>) {
    let (mut alerts, mut exprs) = (BTreeSet::new(), BTreeSet::new());
    for file in rule_tests() {
        let tests = yaml(&format!("{EXAMPLES}/{file}"));
        for test in tests["tests"].as_array().unwrap() {
            for case in test["alert_rule_test"].as_array().into_iter().flatten() {
                let fires = case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
                alerts.insert((case["alertname"].as_str().unwrap().to_string(), fires));
            }
            for case in test["promql_expr_test"].as_array().into_iter().flatten() {
                if case["exp_samples"].as_array().is_some_and(|s| !s.is_empty()) {
                    exprs.insert(case["expr"].as_str().unwrap().to_string());
                }
            }
        }
    }
    (alerts, exprs)
}

#[test]
fn the_rule_unit_tests_cover_every_rule_and_fail_without_it() {
    if !tool_available("promtool") {
        return;
    }
    let (alerts, exprs) = rule_test_cases();
    let files = rule_files();
    for alert in rule_names(&files, "alert") {
        for fires in [true, false] {
            assert!(
                alerts.contains(&(alert.clone(), fires)),
                "no unit test expects {alert} {}",
                if fires { "to fire" } else { "to stay quiet" }
            );
        }
    }
    let records = rule_names(&files, "record");
    assert!(records.len() >= 10, "{records:?}");
    for record in &records {
        assert!(exprs.contains(record), "no unit test evaluates {record}");
    }

    // Each rule left out in turn: its tests must notice.
    let dir = tempfile::tempdir().unwrap();
    let names = rule_names(&files, "alert")
        .into_iter()
        .chain(records.iter().cloned());
    for name in names {
        let mut tested_file = None;
        let mut altered = Vec::new();
        for file in &files {
            let mut rules = yaml(&format!("{EXAMPLES}/{file}"));
            for group in rules["groups"].as_array_mut().unwrap() {
                let list = group["rules"].as_array_mut().unwrap();
                let before = list.len();
                list.retain(|r| r["alert"] != name.as_str() && r["record"] != name.as_str());
                if list.len() != before {
                    tested_file = Some(file.clone());
                }
            }
            // JSON is YAML: promtool reads the altered rules as written.
            let path = dir.path().join(file.replace('/', "_"));
            std::fs::write(&path, serde_json::to_string(&rules).unwrap()).unwrap();
            altered.push(path.to_string_lossy().into_owned());
        }
        let tested_file = tested_file.unwrap();
        let test_file = rule_tests()
            .into_iter()
            .find(|t| {
                yaml(&format!("{EXAMPLES}/{t}"))["rule_files"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f.as_str().unwrap().ends_with(tested_file.as_str()))
            })
            .unwrap_or_else(|| panic!("no unit test file loads {tested_file}"));
        let mut tests = yaml(&format!("{EXAMPLES}/{test_file}"));
        tests["rule_files"] = json!(altered);
        let path = dir.path().join("test.yml");
        std::fs::write(&path, serde_json::to_string(&tests).unwrap()).unwrap();
        let (ok, out) = promtool(&["test", "rules", path.to_str().unwrap()]);
        assert!(
            !ok && out.contains(&name),
            "{test_file} passes without {name}:\n{out}"
        );
    }
}

/// The example config for a test: every interval 1 s (rate() windows fill
/// in seconds), the rule files by absolute path, and the job scraping
/// `targets`.
fn scrape_config(targets: &[String]) -> Value {
    let mut config = example_config();
    config["global"]["scrape_interval"] = json!("1s");
    config["global"]["evaluation_interval"] = json!("1s");
    config["rule_files"] = json!(rule_files_of(&config)
        .iter()
        .map(|f| format!("{EXAMPLES}/{f}"))
        .collect::<Vec<_>>());
    let job = &mut config["scrape_configs"][0];
    job["scrape_interval"] = json!("1s");
    job["scrape_timeout"] = json!("1s");
    job["static_configs"] = json!([{ "targets": targets }]);
    config
}

/// One series of a query's answer: its labels and value.
type Series = (BTreeMap<String, String>, f64);

/// A Prometheus server with a TSDB of its own; killed, and its files
/// removed, on drop.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(config: &Value) -> Prometheus {
        Prometheus::start_with(config, &[])
    }

    /// A server on `config`, started with `flags` beside its own
    /// (`--enable-feature=native-histograms`).
    fn start_with(config: &Value, flags: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, serde_json::to_string_pretty(config).unwrap()).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let prometheus = Prometheus { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !answers_ok(port, "/-/ready") {
            assert!(
                Instant::now() < deadline,
                "prometheus not ready after 60s:\n{}",
                prometheus.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The instant query `expr`, evaluated now.
    fn query(&self, expr: &str) -> Result<Vec<Series>, String> {
        let path = format!("/api/v1/query?query={}", url_encode(expr));
        let (_, _, body) = http(self.port, "GET", &path, "").ok_or("no answer from prometheus")?;
        let answer: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if answer["status"] != "success" {
            return Err(format!("{}: {}", answer["errorType"], answer["error"]));
        }
        let value = |v: &Value| {
            v[1].as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        let data = &answer["data"];
        match data["resultType"].as_str() {
            Some("vector") => Ok(data["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let labels = s["metric"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect();
                    (labels, value(&s["value"]))
                })
                .collect()),
            Some("scalar") => Ok(vec![(BTreeMap::new(), value(&data["result"]))]),
            other => Err(format!("a {other:?} result, not an instant vector")),
        }
    }

    /// Polls `expr` until its answer satisfies `done`; that answer.
    fn wait_for(&self, what: &str, expr: &str, done: impl Fn(&[Series]) -> bool) -> Vec<Series> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self.query(expr);
            match answer {
                Ok(series) if done(&series) => return series,
                _ if Instant::now() > deadline => {
                    panic!("gave up waiting for {what}: {expr} is {answer:?}\n{}", self.log())
                }
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

/// `text` as a URL query value: everything but RFC 3986's unreserved
/// characters percent-encoded.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What is wrong with the answer to `expr`, if anything: an error, no
/// series, nothing but NaN (a panel Grafana draws empty), or a legend
/// naming a label no series has.
fn problem(prometheus: &Prometheus, expr: &str, legend: &str) -> Option<String> {
    let series = match prometheus.query(expr) {
        Ok(series) => series,
        Err(e) => return Some(format!("error: {e}")),
    };
    if series.is_empty() {
        return Some("no data".into());
    }
    if series.iter().all(|(_, v)| v.is_nan()) {
        return Some(format!("only NaN, in {} series", series.len()));
    }
    let legend_labels = regex::Regex::new(r"\{\{\s*(\w+)\s*\}\}").unwrap();
    for label in legend_labels.captures_iter(legend) {
        if !series.iter().any(|(labels, _)| labels.contains_key(&label[1])) {
            return Some(format!("the legend names {}, which no series has", &label[0]));
        }
    }
    None
}

/// A second exporter with something wrong in each of its configs, for the
/// alerts to find: rows its decoder cannot decode (a syscall number read
/// as an IP address), an XDP program that cannot attach (the healthy
/// exporter holds this thread's `lo`), a config some of whose programs the
/// kernel refuses (tests/bpf/test_isolation.bpf.c), a config over its CPU
/// budget (tests/bpf/cpu_hog.bpf.c), a full hash map
/// (tests/bpf/full_map.bpf.c); and its last reload was refused. Its
/// config directory goes with it.
struct BrokenExporter {
    exporter: Exporter,
    _dir: tempfile::TempDir,
}

impl BrokenExporter {
    fn start() -> BrokenExporter {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write(
            "undecodable.yaml",
            "program: syscalls\nmetrics:\n  counters:\n    - name: syscalls_total\n      help: Not addresses.\n      \
             labels:\n        - name: address\n          size: 8\n          decoders:\n            - name: inet_ip\n",
        );
        write(
            "xdp_conflict.yaml",
            &format!("program: xdp_packets\n{}", embedded("xdp_packets")),
        );
        let partial = "program: test_isolation\nmetrics:\n  counters:\n    - name: isolation_events_total\n      help: getppid calls.\n";
        write("partial.yaml", partial);
        write("over_budget.yaml", &guards::hog("cpu_budget: 0.0001\n"));
        write("full.yaml", guards::FULL_MAP);
        // Its errors are what it is for: the alerts report them.
        let exporter = Exporter::start_unlogged(&[
            "--config.dir",
            dir.path().to_str().unwrap(),
            "--web.enable-lifecycle",
            "--bpf.cpu-budget-window",
            "1s",
        ]);
        let turn = priority_min_turn();
        guards::overrun(&turn, &exporter, "over_budget");
        guards::fill_full_map(&turn);
        drop(turn);
        write("partial.yaml", &format!("{partial}  gauges: [\n"));
        let (status, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
        assert_eq!(status, 500, "{body}");
        BrokenExporter { exporter, _dir: dir }
    }
}

/// Makes every program of the healthy exporter fire, most the way its own
/// test does. Machine-wide events (syscalls, their latency, run queue
/// waits, page faults, softirqs) come with the rest. Nothing here adds to
/// what another test counts exactly: those tests' syscalls, uids,
/// cgroups, loop devices, ports, fragment timers and drop reason are their
/// own, and the connects here wait while connects are counted
/// ([`crate::common::tcp_connect`]).
fn drive_every_program() {
    std::thread::scope(|s| {
        s.spawn(|| OomCgroup::create(&unique("bpf-exporter-oom"), 32 << 20).oom_kill_a_task());
        s.spawn(|| {
            let device = LoopDevice::attach(4 << 20);
            direct_io(&device.open_direct(), 20, 50);
        });
        s.spawn(|| {
            // The healthy exporter's XDP program holds this thread's `lo`;
            // the loss takes one of its own.
            private_loopback();
            let (mut client, mut server) = connected("127.0.0.1:0");
            retransmit_through_loss(&mut client, &mut server, b"lost, then retransmitted");
        });
        for _ in 0..10 {
            assert!(Command::new("/bin/true").status().unwrap().success());
        }
        for _ in 0..100 {
            // SAFETY: no descriptor is -1; the call only fails (EBADF).
            assert_eq!(unsafe { libc::close(-1) }, -1);
        }
        // Connects: the lossy one above, and one refused.
        refused_connect();
        // Through the XDP program on this thread's `lo`, with net_rx runs;
        // drops (NO_SOCKET), not the socket filter drops packet_drops'
        // test counts; timer_list timers started for the timeouts.
        udp_round_trips(500);
        datagrams_to_a_closed_port(50);
        receive_timeouts(50);
    });
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn every_dashboard_query_and_recording_rule_has_data_and_alerts_fire_where_exporters_are_broken() {
    if !bpf_available() || !tool_available("prometheus") {
        return;
    }
    // A network namespace of its own: the exporters and Prometheus talk
    // over its `lo`, where the healthy exporter's XDP program counts them.
    std::thread::spawn(|| {
        private_loopback();
        end_to_end();
    })
    .join()
    .unwrap();
}

fn end_to_end() {
    let started = Instant::now();
    let names: Vec<&str> = std::iter::once("default")
        .chain(
            bpf_exporter::config::EMBEDDED_CONFIGS
                .iter()
                .filter(|c| !c.default)
                .map(|c| c.name),
        )
        .collect();
    let healthy = Exporter::start(&["--config.names", &names.join(","), "--bpf.stats"]);
    let broken = BrokenExporter::start();
    let targets = [healthy.port, broken.exporter.port, free_port()].map(|port| format!("127.0.0.1:{port}"));
    let [healthy_at, broken_at, down_at] = &targets;
    let prometheus = Prometheus::start(&scrape_config(&targets));
    prometheus.wait_for(
        "every target scraped twice",
        "count_over_time(up[1h]) >= 2",
        |s| s.len() == 3,
    );

    drive_every_program();
    let driven = unix(SystemTime::now());
    // Every series the workloads made has two samples after them, as rate()
    // needs.
    let last_scrape = format!("timestamp(up{{instance=\"{healthy_at}\"}})");
    prometheus.wait_for("two scrapes after the workloads", &last_scrape, |s| {
        s.first().is_some_and(|(_, t)| *t >= driven + 2.0)
    });
    let window = format!("{}s", started.elapsed().as_secs() + 1);
    eprintln!(
        "workloads done after {:?}; queries over {window}",
        started.elapsed()
    );
    promtool_check(&healthy.get("/metrics", "").2);

    // Grafana's variables as a dashboard opened on the whole test has
    // them: intervals spanning it, every value of each query variable.
    let mut failures = Vec::new();
    let (mut evaluated, mut written) = (0, 0);
    let mut misspelt = None;
    let dashboards = dashboards::all();
    for d in &dashboards {
        let mut values: BTreeMap<String, String> = [
            ("DS_PROMETHEUS", "prometheus"),
            ("__rate_interval", &window),
            ("__interval", &window),
            ("__range", &window),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for v in d.variables() {
            let expr = interpolate(&format!("count by ({}) ({})", v.label, v.selector), &values);
            let found = expr.clone().and_then(|e| prometheus.query(&e));
            let options: BTreeSet<String> = found
                .iter()
                .flatten()
                .filter_map(|(labels, _)| labels.get(&v.label).cloned())
                .collect();
            if options.is_empty() {
                failures.push(format!(
                    "{}: ${}: {expr:?}\n    no values: {found:?}",
                    d.file, v.name
                ));
            }
            // Down targets are instances too: up says so.
            if v.name == "instance" {
                assert_eq!(options, BTreeSet::from(targets.clone()), "{}", d.file);
            }
            let options: Vec<String> = options.into_iter().collect();
            values.insert(v.name.clone(), regex_of_all(&options));
        }
        written += d.text.matches("\"expr\":").count();
        for q in d.queries() {
            evaluated += 1;
            let found = interpolate(&q.expr, &values).map(|e| (problem(&prometheus, &e, &q.legend), e));
            match found {
                Ok((None, _)) => {}
                Ok((Some(problem), expr)) => {
                    failures.push(format!("{}: {}: {expr}\n    {problem}", d.file, q.panel))
                }
                Err(e) => failures.push(format!("{}: {}: {}\n    {e}", d.file, q.panel, q.expr)),
            }
            // The check catches what it is for: the same query with its
            // metric misspelt has no data.
            if misspelt.is_none() && q.expr.contains("ebpf_") {
                let wrong = interpolate(&q.expr.replacen("ebpf_", "ebpf_misspelt_", 1), &values).unwrap();
                misspelt = Some((problem(&prometheus, &wrong, &q.legend), wrong));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures among {evaluated} queries and the template variables:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every query the files hold was evaluated, and there are plenty.
    assert_eq!(evaluated, written);
    assert!(
        dashboards.len() >= 7 && evaluated >= 80,
        "{} dashboards, {evaluated} queries",
        dashboards.len()
    );
    let (misspelt, wrong) = misspelt.unwrap();
    assert_eq!(misspelt.as_deref(), Some("no data"), "{wrong}");
    eprintln!("{evaluated} queries of {} dashboards have data", dashboards.len());

    for record in rule_names(&rule_files_of(&example_config()), "record") {
        let expr = format!("{record}{{instance=\"{healthy_at}\"}}");
        prometheus.wait_for(&format!("data from {record}"), &expr, |s| {
            s.iter().any(|(_, v)| !v.is_nan())
        });
    }

    // The alerts fire (or wait out their for:) where something is broken,
    // and only there: nothing about the healthy exporter.
    let expected = BTreeSet::from([
        ("BpfExporterDown", down_at.as_str(), ""),
        ("BpfExporterConfigNotRunning", broken_at, "xdp_conflict"),
        ("BpfExporterProgramNotAttached", broken_at, "partial"),
        ("BpfExporterReloadFailed", broken_at, ""),
        ("BpfExporterDecodeErrors", broken_at, "undecodable"),
        ("BpfExporterConfigOverBudget", broken_at, "over_budget"),
        ("BpfExporterMapNearlyFull", broken_at, "full"),
    ]);
    let alerts = prometheus.wait_for("the alerts", "ALERTS", |series| {
        let found: BTreeSet<(&str, &str, &str)> = series
            .iter()
            .map(|(labels, _)| {
                let label = |name: &str| labels.get(name).map_or("", String::as_str);
                (label("alertname"), label("instance"), label("config"))
            })
            .collect();
        found == expected
    });
    let with = |alert: &str, label: &str, value: &str| {
        alerts
            .iter()
            .any(|(l, _)| l["alertname"] == alert && l.get(label).is_some_and(|v| v == value))
    };
    assert!(
        with("BpfExporterProgramNotAttached", "program", "rejected_by_verifier"),
        "{alerts:?}"
    );
    assert!(
        with("BpfExporterConfigNotRunning", "state", "failed"),
        "{alerts:?}"
    );
    assert!(
        with("BpfExporterDecodeErrors", "decoder", "inet_ip"),
        "{alerts:?}"
    );
    assert!(
        with("BpfExporterMapNearlyFull", "map", "full_map_calls_total"),
        "{alerts:?}"
    );
    eprintln!("done after {:?}", started.elapsed());
}

/// A real Prometheus scrapes over TLS, with a client certificate and basic
/// auth, and sees exactly the events driven; a job with the wrong password
/// is refused (`up` 0) and gets no series.
#[test]
fn prometheus_scrapes_over_tls_with_basic_auth_and_counts_exactly() {
    use crate::binary::priority_min_queries;
    use crate::web::{secured_web_config, Pki};
    if !bpf_available() || !tool_available("prometheus") || !tool_available("curl") {
        return;
    }
    let pki = Pki::new();
    let web = pki.path("web.yml");
    std::fs::write(&web, secured_web_config(&pki)).unwrap();
    let exporter = Exporter::spawn_answering(
        &["--config.names", "syscalls", "--web.config.file", &web],
        Stdio::inherit(),
        |port| {
            Command::new("curl")
                .args([
                    "-sf",
                    "-o",
                    "/dev/null",
                    "--cacert",
                    &pki.path("ca.crt"),
                    "--cert",
                    &pki.path("client.crt"),
                ])
                .args(["--key", &pki.path("client.key"), "-u", "alice:secret"])
                .arg(format!("https://127.0.0.1:{port}/-/ready"))
                .status()
                .is_ok_and(|s| s.success())
        },
    );
    let target = format!("127.0.0.1:{}", exporter.port);
    let job = |name: &str, password: &str| {
        json!({
            "job_name": name,
            "scheme": "https",
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "tls_config": {
                "ca_file": pki.path("ca.crt"),
                "cert_file": pki.path("client.crt"),
                "key_file": pki.path("client.key"),
            },
            "basic_auth": { "username": "alice", "password": password },
            "static_configs": [{ "targets": [target] }],
        })
    };
    let prometheus = Prometheus::start(&json!({
        "global": { "scrape_interval": "1s" },
        "scrape_configs": [job("tls", "secret"), job("wrong", "guess")],
    }));
    let series = r#"ebpf_syscalls_total{job="tls",syscall="sched_get_priority_min"}"#;
    let scraped = |s: &[Series]| s.len() == 1 && s[0].1.is_finite();
    prometheus.wait_for("a scrape over TLS", r#"up{job="tls"} == 1"#, |s| s.len() == 1);
    // The series exists once the call has been made at least once.
    let _turn = crate::binary::priority_min_turn();
    priority_min_queries(1);
    let before = prometheus.wait_for("a first scrape of the series", series, scraped)[0].1;
    priority_min_queries(400);
    prometheus.wait_for("the 400 calls", series, |s| {
        scraped(s) && s[0].1 >= before + 400.0
    });
    // Exactly 400: a later scrape must not have more.
    std::thread::sleep(Duration::from_secs(2));
    let after = prometheus.query(series).unwrap()[0].1;
    assert_eq!(after - before, 400.0);
    let up = prometheus.wait_for("both jobs scraped", "up", |s| s.len() == 2);
    for (labels, value) in up {
        let expected = if labels["job"] == "tls" { 1.0 } else { 0.0 };
        assert_eq!(value, expected, "up{labels:?}");
    }
    assert!(prometheus
        .query(r#"ebpf_syscalls_total{job="wrong"}"#)
        .unwrap()
        .is_empty());
    exporter.stop();
}

/// The truth program's exp2 histograms (1 to 1024, and 0 then 1 to 512),
/// exact in schema 0; the per-CPU one in microseconds (1 µs to 1.024 ms),
/// in schema 0 at the nearest powers of two; and a linear one, which stays
/// classic.
const NATIVE_HISTOGRAMS: &str = "metrics:
  histograms:
    - name: truth_exp2
      help: truth_observe arguments, exp2 buckets.
      bucket_type: exp2
      bucket_max: 10
      labels:
        - {name: bucket, size: 4, decoders: [{name: uint}]}
    - name: truth_exp2zero
      help: truth_observe arguments, exp2zero buckets.
      bucket_type: exp2zero
      bucket_max: 10
      labels:
        - {name: bucket, size: 4, decoders: [{name: uint}]}
    - name: truth_exp2_percpu
      help: truth_observe arguments as microseconds, exp2 buckets in seconds.
      bucket_type: exp2
      bucket_max: 10
      bucket_multiplier: 0.000001
      labels:
        - {name: bucket, size: 4, decoders: [{name: uint}]}
    - name: truth_linear
      help: truth_observe arguments, linear buckets.
      bucket_type: linear
      bucket_max: 20
      labels:
        - {name: bucket, size: 4, decoders: [{name: uint}]}
";

/// The first value of an answer that must have one series.
fn only_value(answer: &[Series]) -> f64 {
    assert_eq!(answer.len(), 1, "{answer:?}");
    answer[0].1
}

/// A real Prometheus with native histograms scrapes the exporter with
/// `--metrics.native-histograms` and stores each exp2 histogram as one
/// native series, the one in microseconds (bounds 1e-6 × 2^i, at the
/// nearest powers of two) too; a Prometheus without them scrapes the same
/// exporter and stores the classic buckets. Over a known workload the two
/// give the same count and sum exactly, and quantiles within a bucket (a
/// factor of 2) of each other, from the totals and from rate() alike.
#[test]
fn native_histograms_in_prometheus_agree_with_the_classic_buckets() {
    use crate::truth::{program_source, Target, PROBES};
    if !bpf_available() || !tool_available("prometheus") {
        return;
    }
    let mut target = Target::spawn();
    let dir = tempfile::tempdir().unwrap();
    let source = program_source("truth", PROBES, NATIVE_HISTOGRAMS, target.pid());
    std::fs::write(dir.path().join("truth.yaml"), &source.text).unwrap();
    // Every capability kept: after the drop to CAP_BPF, CAP_PERFMON and
    // CAP_SYS_PTRACE, Linux 6.18 refuses the uprobes on this root process
    // (EACCES), and keeping CAP_SYS_ADMIN alone is what lets them attach.
    let exporter = Exporter::start(&[
        "--config.dir",
        dir.path().to_str().unwrap(),
        "--metrics.native-histograms",
        "--capabilities.keep=all",
    ]);
    let config = json!({
        "global": { "scrape_interval": "1s", "scrape_timeout": "1s" },
        "scrape_configs": [{
            "job_name": "bpf-exporter",
            "static_configs": [{ "targets": [format!("127.0.0.1:{}", exporter.port)] }],
        }],
    });
    let native = Prometheus::start_with(&config, &["--enable-feature=native-histograms"]);
    let classic = Prometheus::start(&config);

    // A first observation makes every series; rate() then sees the whole
    // workload inside its window.
    target.run("observe 3");
    native.wait_for("the native series", "histogram_count(ebpf_truth_exp2)", |s| {
        s.len() == 1
    });
    classic.wait_for("the classic series", "ebpf_truth_exp2_count", |s| s.len() == 1);
    let started = Instant::now();
    // 0 five times, 1 to 1000, ten 2000s and a 5000 (above the top bucket,
    // 1024): a spread over every bucket and the overflow.
    let mut values: Vec<u64> = vec![3, 0, 0, 0, 0, 0];
    values.extend(1..=1000);
    values.extend([2000; 10]);
    values.push(5000);
    let words: Vec<String> = values[1..].iter().map(u64::to_string).collect();
    target.run(&format!("observe {}", words.join(" ")));
    let (count, sum) = (values.len() as f64, values.iter().sum::<u64>() as f64);
    const EXP2S: [&str; 3] = ["ebpf_truth_exp2", "ebpf_truth_exp2zero", "ebpf_truth_exp2_percpu"];
    for name in EXP2S {
        native.wait_for(
            &format!("every observation in {name}"),
            &format!("histogram_count({name})"),
            |s| s.len() == 1 && s[0].1 == count,
        );
        classic.wait_for(
            &format!("every observation in {name}_count"),
            &format!("{name}_count"),
            |s| s.len() == 1 && s[0].1 == count,
        );
    }
    // A few scrapes more, so rate() has samples after the workload.
    std::thread::sleep(Duration::from_secs(3));
    let window = format!("{}s", started.elapsed().as_secs() + 3);
    let query = |prometheus: &Prometheus, expr: &str| only_value(&prometheus.query(expr).unwrap());

    for name in EXP2S {
        let (n, c) = (
            query(&native, &format!("histogram_sum({name})")),
            query(&classic, &format!("{name}_sum")),
        );
        assert_eq!(n, c, "{name}");
        let expected = if name.ends_with("percpu") { sum * 1e-6 } else { sum };
        assert!(
            (c - expected).abs() <= expected * 1e-12,
            "{name}: {c} against {expected}"
        );
        for q in [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99] {
            for (native_expr, classic_expr) in [
                (
                    format!("histogram_quantile({q}, {name})"),
                    format!("histogram_quantile({q}, sum by (le) ({name}_bucket))"),
                ),
                (
                    format!("histogram_quantile({q}, rate({name}[{window}]))"),
                    format!("histogram_quantile({q}, sum by (le) (rate({name}_bucket[{window}])))"),
                ),
            ] {
                let (n, c) = (query(&native, &native_expr), query(&classic, &classic_expr));
                eprintln!("{native_expr} = {n}, {classic_expr} = {c}");
                assert!(
                    n.is_finite() && c > 0.0 && (0.5..=2.0).contains(&(n / c)),
                    "{native_expr} = {n} against {classic_expr} = {c}"
                );
                // From the totals, below exp2's top bound (1024): the same
                // quantile, and for microseconds the same placed 2^-20 /
                // 1e-6 = 0.954 low, as its native buckets are.
                if !native_expr.contains("rate(") && name != "ebpf_truth_exp2zero" && q <= 0.9 {
                    let shift = if name.ends_with("percpu") {
                        2f64.powi(-20) / 1e-6
                    } else {
                        1.0
                    };
                    assert!(
                        (n - c * shift).abs() <= c * 1e-9,
                        "{native_expr} = {n} against {classic_expr} = {c}"
                    );
                }
            }
        }
    }
    // One series for each exp2 histogram, where the classic ones take a
    // series per bucket (11 and +Inf), _sum and _count; the linear one
    // stays classic (21 buckets and +Inf) in both.
    let series = |prometheus: &Prometheus, name: &str| {
        query(
            prometheus,
            &format!("count({{__name__=~\"{name}(_bucket|_sum|_count)?\"}})"),
        )
    };
    for (name, classic_series) in [
        ("ebpf_truth_exp2", 14.0),
        ("ebpf_truth_exp2zero", 14.0),
        ("ebpf_truth_exp2_percpu", 14.0),
        ("ebpf_truth_linear", 24.0),
    ] {
        let native_series = if name == "ebpf_truth_linear" { 24.0 } else { 1.0 };
        assert_eq!(series(&native, name), native_series, "{name}");
        assert_eq!(series(&classic, name), classic_series, "{name}");
    }
    assert_eq!(query(&native, "ebpf_truth_linear_count"), count);
    exporter.stop();
}
