//! What guards against blow-ups, through the kernel: a hash map's entries
//! against its max_entries (and the alert on them), the series of keys
//! that leave a map, and a config's CPU time against its budget
//! (tests/bpf/full_map.bpf.c and cpu_hog.bpf.c, driven by
//! `sched_get_priority_min` and `_max` calls of their own arguments).

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::binary::{embedded, priority_min_turn, sample_text, Exporter};
use crate::common::{bpf_available, tool_available, yaml};
use crate::prometheus::{promtool, EXAMPLES};

/// tests/bpf/full_map.bpf.c's first key and its map's size.
const FULL_MAP_BASE: i32 = 7100;
const FULL_MAP_ENTRIES: usize = 8;
/// The argument tests/bpf/cpu_hog.bpf.c spins on.
const HOG_POLICY: i32 = 7001;

fn priority_min(policy: i32, calls: usize) {
    for _ in 0..calls {
        // SAFETY: a query with no memory arguments (an unknown policy is
        // EINVAL, after the tracepoint saw it).
        unsafe { libc::sched_get_priority_min(policy) };
    }
}

fn priority_max(policy: i32) {
    // SAFETY: as above.
    unsafe { libc::sched_get_priority_max(policy) };
}

/// Held while a test drives the calls of this file's programs, or has one
/// of them attached and counting: every exporter counts the machine's
/// calls ([`priority_min_turn`]).
type Turn = crate::binary::PriorityMinTurn;

/// Fills tests/bpf/full_map.bpf.c's map: one call of each of its keys.
pub(crate) fn fill_full_map(_turn: &Turn) {
    for n in 0..FULL_MAP_ENTRIES as i32 {
        priority_min(FULL_MAP_BASE + n, 1);
    }
}

/// The /metrics page once `check` holds of it (reads run every 100 ms).
fn page_when(exporter: &Exporter, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = exporter.get("/metrics", "").2;
        if check(&page) {
            return page;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}:\n{page}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) const FULL_MAP: &str = "program: full_map\nmetrics:\n  counters:\n    - name: full_map_calls_total\n      \
                        help: Calls by policy.\n      labels:\n        - name: policy\n          size: 4\n          \
                        decoders: [{name: uint}]\n    - name: full_map_refused_total\n      \
                        help: Calls whose new key the full map refused.\n";

const ENTRIES: &str = r#"bpf_exporter_map_entries{config="full",map="full_map_calls_total"}"#;
const MAX_ENTRIES: &str = r#"bpf_exporter_map_max_entries{config="full",map="full_map_calls_total"}"#;
const REFUSED: &str = "ebpf_full_map_refused_total";

fn calls_of(page: &str, n: i32) -> Option<&str> {
    sample_text(
        page,
        &format!(r#"ebpf_full_map_calls_total{{policy="{}"}}"#, FULL_MAP_BASE + n),
    )
}

#[test]
fn map_entries_against_max_entries_show_a_full_hash_map_and_deleted_keys_leave_metrics() {
    if !bpf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("full.yaml"), FULL_MAP).unwrap();
    let turn = priority_min_turn();
    let exporter = Exporter::start(&["--config.dir", dir.path().to_str().unwrap()]);
    let page = exporter.get("/metrics", "").2;
    let capacity = FULL_MAP_ENTRIES.to_string();
    assert_eq!(sample_text(&page, MAX_ENTRIES), Some(capacity.as_str()), "{page}");
    assert_eq!(sample_text(&page, ENTRIES), Some("0"), "{page}");
    // An array holds all its entries: it has no max_entries to fill.
    assert_eq!(
        sample_text(
            &page,
            r#"bpf_exporter_map_entries{config="full",map="full_map_refused_total"}"#
        ),
        Some("1")
    );
    assert!(
        !page.contains(r#"bpf_exporter_map_max_entries{config="full",map="full_map_refused_total"}"#),
        "{page}"
    );

    // Five keys, key n called n + 1 times.
    for n in 0..5 {
        priority_min(FULL_MAP_BASE + n, n as usize + 1);
    }
    let page = page_when(&exporter, "five keys", |p| sample_text(p, ENTRIES) == Some("5"));
    for n in 0..5 {
        assert_eq!(calls_of(&page, n), Some((n + 1).to_string().as_str()), "{page}");
    }

    // Five more: three fit, the full map refuses the last two.
    for n in 5..10 {
        priority_min(FULL_MAP_BASE + n, 1);
    }
    let full = page_when(&exporter, "a full map", |p| {
        sample_text(p, ENTRIES) == Some(capacity.as_str()) && sample_text(p, REFUSED) == Some("2")
    });
    for n in 5..8 {
        assert_eq!(calls_of(&full, n), Some("1"), "{full}");
    }
    for n in 8..10 {
        assert_eq!(calls_of(&full, n), None, "a refused key is exported:\n{full}");
    }

    // The program deletes three keys: their series go with the next read.
    for n in [0, 2, 4] {
        priority_max(FULL_MAP_BASE + n);
    }
    let emptied = page_when(&exporter, "three keys deleted", |p| {
        sample_text(p, ENTRIES) == Some("5")
    });
    for n in [0, 2, 4] {
        assert_eq!(
            calls_of(&emptied, n),
            None,
            "a deleted key is exported:\n{emptied}"
        );
    }
    for (n, calls) in [(1, "2"), (3, "4"), (5, "1"), (6, "1"), (7, "1")] {
        assert_eq!(calls_of(&emptied, n), Some(calls), "{emptied}");
    }
    assert_eq!(sample_text(&emptied, MAX_ENTRIES), Some(capacity.as_str()));
    // With room again, a key refused before is counted.
    priority_min(FULL_MAP_BASE + 8, 3);
    let page = page_when(&exporter, "a key that fits again", |p| {
        calls_of(p, 8) == Some("3")
    });
    assert_eq!(sample_text(&page, ENTRIES), Some("6"));
    assert_eq!(sample_text(&page, REFUSED), Some("2"));
    drop(turn);

    alert_on(&full, &emptied);
    exporter.stop();
}

/// BpfExporterMapNearlyFull's expression (prometheus/rules/alerts.yml) on
/// the series the exporter served: it holds for the full map, not once
/// three of its eight keys are gone.
fn alert_on(full: &str, emptied: &str) {
    if !tool_available("promtool") {
        return;
    }
    let rules = yaml(&format!("{EXAMPLES}/rules/alerts.yml"));
    let expr = rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == "BpfExporterMapNearlyFull")
        .unwrap()["expr"]
        .as_str()
        .unwrap()
        .to_string();
    let input = |page: &str| {
        [ENTRIES, MAX_ENTRIES]
            .iter()
            .map(|series| {
                let value = sample_text(page, series).unwrap();
                serde_json::json!({ "series": series, "values": format!("{value}x5") })
            })
            .collect::<Vec<_>>()
    };
    let case = |page: &str, samples: serde_json::Value| {
        serde_json::json!({
            "interval": "1m",
            "input_series": input(page),
            "promql_expr_test": [{ "expr": expr, "eval_time": "5m", "exp_samples": samples }],
        })
    };
    let tests = serde_json::json!({
        "tests": [
            case(full, serde_json::json!([{ "labels": r#"{config="full", map="full_map_calls_total"}"#, "value": 1 }])),
            case(emptied, serde_json::json!([])),
        ],
    });
    let file = tempfile::NamedTempFile::new().unwrap();
    // JSON is YAML.
    std::fs::write(file.path(), tests.to_string()).unwrap();
    let (ok, out) = promtool(&["test", "rules", file.path().to_str().unwrap()]);
    assert!(ok, "{expr} on the exporter's values:\n{out}");
}

/// A config of tests/bpf/cpu_hog.bpf.c, with `budget` (a `cpu_budget:`
/// line, or nothing).
pub(crate) fn hog(budget: &str) -> String {
    format!(
        "program: cpu_hog\n{budget}metrics:\n  counters:\n    - name: cpu_hog_calls_total\n      \
         help: Costly calls.\n"
    )
}

const HOG_CALLS: &str = "ebpf_cpu_hog_calls_total";

/// Costly calls of tests/bpf/cpu_hog.bpf.c until the guard stops
/// `config`, which runs it: its status then, the calls made and the time
/// they took.
pub(crate) fn overrun(
    _turn: &Turn,
    exporter: &Exporter,
    config: &str,
) -> (serde_json::Value, usize, Duration) {
    let started = Instant::now();
    let mut calls = 0;
    let stopped = loop {
        priority_min(HOG_POLICY, 5);
        calls += 5;
        let status = exporter.config_status(config);
        if status["state"] != "running" {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{calls} costly calls in 20 s and still running: {status}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    (stopped, calls, started.elapsed())
}

/// The share of one CPU an over_budget error says the config used.
fn used_share(error: &str) -> f64 {
    let used = error
        .split("its programs used ")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .unwrap_or_else(|| panic!("no share in {error:?}"));
    used.parse::<f64>().unwrap() / 100.0
}

/// Whether the kernel still has program `id` (a detached program whose
/// last fd closed is freed, and its id with it).
fn program_exists(id: u32) -> bool {
    // SAFETY: a syscall wrapper with no pointers.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd >= 0 {
        // SAFETY: the fd is ours.
        unsafe { libc::close(fd) };
    }
    fd >= 0
}

#[test]
fn a_config_over_its_cpu_budget_is_detached_while_one_under_its_own_keeps_counting_exactly() {
    if !bpf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hog_file = dir.path().join("hog.yaml");
    // The hog takes the flag's budget; syscalls has its own, above it.
    std::fs::write(&hog_file, hog("")).unwrap();
    std::fs::write(
        dir.path().join("syscalls.yaml"),
        format!("cpu_budget: 0.5\n{}", embedded("syscalls")),
    )
    .unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    // Its hog is attached until the guard stops it.
    let turn = priority_min_turn();
    let exporter = Exporter::spawn_until(
        &[
            "--config.dir",
            dir.path().to_str().unwrap(),
            "--config.check-interval",
            "1h",
            "--web.enable-lifecycle",
            "--bpf.cpu-budget",
            "0.0001",
            "--bpf.cpu-budget-window",
            "1s",
        ],
        Stdio::from(log.reopen().unwrap()),
        "/-/ready",
    );
    let hog_status = exporter.config_status("hog");
    assert_eq!(hog_status["state"], "running", "{hog_status}");
    assert_eq!(hog_status["cpu_budget"], 0.0001, "{hog_status}");
    assert_eq!(exporter.config_status("syscalls")["cpu_budget"], 0.5);
    let id = hog_status["programs"][0]["id"].as_u64().unwrap() as u32;
    assert!(program_exists(id));
    // The budget turned BPF statistics on, without --bpf.stats.
    let page = page_when(&exporter, "run-time statistics", |p| {
        p.contains(r#"bpf_exporter_program_run_time_seconds_total{config="hog",program="hog"} "#)
    });
    assert_eq!(
        sample_text(&page, r#"bpf_exporter_config_cpu_budget_ratio{config="hog"}"#),
        Some("0.0001")
    );
    assert_eq!(
        sample_text(
            &page,
            r#"bpf_exporter_config_cpu_budget_ratio{config="syscalls"}"#
        ),
        Some("0.5")
    );

    let (stopped, calls, took) = overrun(&turn, &exporter, "hog");
    drop(turn);
    eprintln!(
        "cpu_hog over a budget of 0.01% of one CPU (window 1 s): detached after {calls} calls, {took:?}: {}",
        stopped["error"]
    );
    assert_eq!(stopped["state"], "over_budget", "{stopped}");
    assert_eq!(stopped["reason"], "over_budget", "{stopped}");
    assert_eq!(stopped["cpu_budget"], 0.0001, "{stopped}");
    let error = stopped["error"].as_str().unwrap();
    assert!(
        error.starts_with("over its CPU budget: its programs used ")
            && error.contains("its budget is 0.01% (--bpf.cpu-budget); they were detached")
            && error.contains("give ")
            && error.contains("hog.yaml a cpu_budget of its own above it"),
        "{error}"
    );
    let used = used_share(error);
    assert!(used > 0.0001, "{error}");
    let program = &stopped["programs"][0];
    assert_eq!(program["attached"], false, "{stopped}");
    assert_eq!(program["reason"], "over_budget", "{stopped}");
    assert_eq!(program["id"], id, "{stopped}");

    // Detached and unloaded: the kernel frees the program, and its series go.
    let deadline = Instant::now() + Duration::from_secs(10);
    while program_exists(id) {
        assert!(Instant::now() < deadline, "program {id} is still loaded");
        std::thread::sleep(Duration::from_millis(20));
    }
    let page = page_when(&exporter, "the hog's series gone", |p| !p.contains(HOG_CALLS));
    for line in [
        r#"bpf_exporter_config_state{config="hog",state="over_budget"} 1"#,
        r#"bpf_exporter_config_failures{config="hog",reason="over_budget"} 1"#,
        r#"bpf_exporter_program_attached{config="hog",program="hog"} 0"#,
        r#"bpf_exporter_config_state{config="syscalls",state="running"} 1"#,
    ] {
        assert!(page.contains(line), "{line}:\n{page}");
    }
    assert!(
        !page.contains(r#"bpf_exporter_program_runs_total{config="hog""#),
        "{page}"
    );
    let landing = exporter.get("/", "").2;
    assert!(
        landing.contains("class=\"over_budget\">over_budget</td>") && landing.contains("over its CPU budget"),
        "{landing}"
    );
    // Logged once.
    let logged = std::fs::read_to_string(log.path()).unwrap();
    let lines: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("over its CPU budget"))
        .collect();
    assert_eq!(lines.len(), 1, "{logged}");
    assert!(
        lines[0].contains("level=error") && lines[0].contains("config=hog"),
        "{logged}"
    );

    // The other config, under its own budget, keeps running over several
    // windows and counts exactly.
    assert_eq!(exporter.count_priority_min_queries(500, 500), 500);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(exporter.config_status("syscalls")["state"], "running");
    assert_eq!(exporter.count_priority_min_queries(500, 500), 500);

    // An unchanged file is not tried again; an edited one is, and under a
    // budget it stays under, the hog runs and counts every call.
    let (status, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(exporter.config_status("hog")["state"], "over_budget");
    std::fs::write(&hog_file, hog("cpu_budget: 100\n")).unwrap();
    let turn = priority_min_turn();
    let (status, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
    assert_eq!(status, 200, "{body}");
    let hog_status = exporter.config_status("hog");
    assert_eq!(hog_status["state"], "running", "{hog_status}");
    assert_eq!(hog_status["cpu_budget"], 100.0, "{hog_status}");
    priority_min(HOG_POLICY, 50);
    assert_eq!(exporter.sample_reaching(HOG_CALLS, 50), 50);
    drop(turn);
    let page = exporter.get("/metrics", "").2;
    let run_time = r#"bpf_exporter_program_run_time_seconds_total{config="hog",program="hog"}"#;
    let seconds: f64 = sample_text(&page, run_time).unwrap().parse().unwrap();
    eprintln!(
        "cpu_hog: {:.1} µs of run time per costly call (50 calls, and a comparison per other syscall)",
        seconds / 50.0 * 1e6
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(exporter.config_status("hog")["state"], "running");
    exporter.stop();
}

/// Statistics need CAP_SYS_ADMIN to turn on, which the exporter drops at
/// start when nothing then asks for them: a budget added later is refused
/// alone, saying how to have it.
#[test]
fn a_budget_added_after_the_start_dropped_cap_sys_admin_is_refused_alone_with_the_fix() {
    if !bpf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("syscalls.yaml"), embedded("syscalls")).unwrap();
    let exporter = Exporter::watching(dir.path());
    std::fs::write(dir.path().join("hog.yaml"), hog("cpu_budget: 0.01\n")).unwrap();
    let (status, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
    // A file event may have applied it first; either way it is reported.
    assert!(status == 500 || status == 200, "{status}: {body}");
    let refused = exporter.config_status("hog");
    assert_eq!(refused["state"], "failed", "{refused}");
    assert_eq!(refused["reason"], "permission", "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains(
            "cpu_budget is measured with the kernel's BPF run-time statistics, and turning them on failed"
        ) && error.contains("before it drops CAP_SYS_ADMIN")
            && error.contains("restart it"),
        "{error}"
    );
    assert_eq!(exporter.config_status("syscalls")["state"], "running");
    assert_eq!(exporter.count_priority_min_queries(500, 500), 500);
    exporter.stop();
}
