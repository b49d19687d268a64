//! Objects compiled outside the build and read at run time, in
//! ebpf_exporter's layout (`<name>.yaml` beside `<name>.bpf.o` in
//! `--config.dir`) or named by a config's `object:`: they run instead of an
//! embedded program, are checked the same way, and replacing one is a
//! change a reload applies.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::binary::{embedded, priority_min_queries, priority_min_turn, Exporter};
use crate::common::bpf_available;

/// Compiles `source` (relative to the repository) into `out` with clang, as
/// the README tells users to, with the flags of the build (`build/bpf.rs`).
pub(crate) fn compile(source: &str, out: &Path) {
    compile_with(source, &[], out);
}

/// [`compile`] with more clang arguments (`-DNAME`).
pub(crate) fn compile_with(source: &str, extra: &[&str], out: &Path) {
    use crate::bpf_build::bpf;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let args = bpf::arch(std::env::consts::ARCH).and_then(|arch| bpf::clang_args(root, arch));
    let output = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf"])
        .args(args.unwrap())
        .arg(format!("-I{}", env!("BPF_EXPORTER_LIBBPF_INCLUDE")))
        .args(extra)
        .arg("-c")
        .arg(root.join(source))
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "clang {source}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Used to: a `.bpf.o` beside its config was ignored, silently, and the
/// embedded program of the same name ran instead.
#[test]
fn an_object_beside_its_config_runs_instead_of_the_embedded_program_and_reloads_when_replaced() {
    if !bpf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let object = dir.path().join("syscalls.bpf.o");
    compile("tests/objects/syscalls_twice.bpf.c", &object);
    std::fs::write(dir.path().join("syscalls.yaml"), embedded("syscalls")).unwrap();
    let exporter = Exporter::watching(dir.path());
    let status = exporter.config_status("syscalls");
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["program"], object.to_str().unwrap(), "{status}");
    assert_eq!(exporter.count_priority_min_queries(500, 1000), 1000);

    // The embedded program's source, compiled as a user would: counts once.
    let replacement = dir.path().join("syscalls.bpf.o.new");
    compile("bpf/syscalls.bpf.c", &replacement);
    std::fs::rename(&replacement, &object).unwrap();
    let (code, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(exporter.count_priority_min_queries(500, 500), 500);
    exporter.stop();
}

#[test]
fn a_config_names_its_object_relative_to_its_directory() {
    if !bpf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("objects")).unwrap();
    compile(
        "tests/objects/syscalls_twice.bpf.c",
        &dir.path().join("objects/twice.bpf.o"),
    );
    let text = format!("object: objects/twice.bpf.o\n{}", embedded("syscalls"));
    std::fs::write(dir.path().join("mine.yaml"), text).unwrap();
    let exporter = Exporter::watching(dir.path());
    assert_eq!(exporter.config_status("mine")["state"], "running");
    assert_eq!(exporter.count_priority_min_queries(500, 1000), 1000);
    exporter.stop();
}

#[test]
fn a_run_time_object_is_checked_like_an_embedded_one_and_fails_alone() {
    if !bpf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("syscalls.yaml"), embedded("syscalls")).unwrap();
    // A map the object does not have: located, with what it has.
    compile(
        "tests/objects/syscalls_twice.bpf.c",
        &dir.path().join("renamed.bpf.o"),
    );
    let renamed = embedded("syscalls").replace("- name: syscalls_total", "- name: sys_total");
    std::fs::write(dir.path().join("renamed.yaml"), renamed).unwrap();
    // Not an object at all.
    std::fs::write(dir.path().join("junk.bpf.o"), "not ELF").unwrap();
    std::fs::write(dir.path().join("junk.yaml"), embedded("syscalls")).unwrap();
    let exporter = Exporter::watching(dir.path());
    assert_eq!(exporter.config_status("syscalls")["state"], "running");
    let renamed = exporter.config_status("renamed");
    assert_eq!(renamed["state"], "invalid", "{renamed}");
    let error = renamed["error"].as_str().unwrap();
    assert!(
        error.contains("renamed.yaml:")
            && error.contains(": metrics.counters[0].name: the program has no map")
            && error.contains("(maps: syscalls_total;"),
        "{error}"
    );
    let junk = exporter.config_status("junk");
    assert_eq!(junk["state"], "invalid", "{junk}");
    let error = junk["error"].as_str().unwrap();
    assert!(
        error.contains("junk.bpf.o is not a BPF object (an ELF file): build it with `clang"),
        "{error}"
    );
    assert_eq!(exporter.count_priority_min_queries(500, 500), 500);
    exporter.stop();
}

/// Used to: `--debug`, `--log.no-timestamps`, `--btf.path` and
/// `--capabilities.keep=none`, flags of ebpf_exporter's systemd units and
/// manifests, made the exporter refuse to start.
#[test]
fn ebpf_exporter_flags_carry_over_with_their_meaning() {
    if !bpf_available() {
        return;
    }
    let log = tempfile::NamedTempFile::new().unwrap();
    let exporter = Exporter::spawn_until(
        &[
            "--config.names",
            "syscalls",
            "--debug",
            "--log.no-timestamps",
            "--btf.path",
            "/sys/kernel/btf/vmlinux",
            "--capabilities.keep",
            "none",
        ],
        std::process::Stdio::from(log.reopen().unwrap()),
        "/-/ready",
    );
    assert_eq!(exporter.count_priority_min_queries(500, 500), 500);
    exporter.stop();
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(text.lines().any(|l| l.starts_with("level=debug ")), "{text}");
    assert!(
        text.lines()
            .all(|l| l.starts_with("level=") && !l.contains("time=")),
        "{text}"
    );

    // What has no equivalent meaning is refused, naming what to use.
    for (args, says) in [
        (
            &["--config.skip-cache-size", "1000"][..],
            "size it with --labels.cache-size",
        ),
        (
            &["--btf.path", "/nonexistent/vmlinux"],
            "--btf.path /nonexistent/vmlinux: cannot read it",
        ),
        (
            &["--web.listen-address", "fd://3"],
            "only fd://0, the first, can be served",
        ),
    ] {
        let out = Command::new(crate::binary::BIN)
            .args(["--config.names", "syscalls"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(says),
            "{args:?}: {stderr}"
        );
    }
}

/// Used to: with `--metrics.prefix=ebpf_exporter_` the map metrics matched
/// ebpf_exporter's names but its own metrics, which its alerts use, did
/// not exist.
#[test]
fn ebpf_exporter_names_line_up_under_its_prefix_and_self_metrics() {
    if !bpf_available() {
        return;
    }
    let exporter = Exporter::start(&[
        "--config.names",
        "syscalls",
        "--metrics.prefix",
        "ebpf_exporter_",
        "--metrics.ebpf-exporter-self",
        "--bpf.stats",
    ]);
    let series = r#"ebpf_exporter_syscalls_total{syscall="sched_get_priority_min"}"#;
    assert_eq!(exporter.count_priority_min_queries_in(series, 500, 500), 500);
    let body = exporter.get("/metrics", "").2;
    crate::binary::promtool_check(&body);
    assert!(
        body.contains("ebpf_exporter_enabled_configs{name=\"syscalls\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains("ebpf_exporter_decoder_errors_total{config=\"syscalls\"} 0\n"),
        "{body}"
    );
    // The program as the kernel knows it: the id and tag bpftool shows.
    let info = body
        .lines()
        .find(|l| l.starts_with("ebpf_exporter_ebpf_program_info{"))
        .unwrap_or_else(|| panic!("no program info:\n{body}"));
    let label = |name: &str| {
        let start = info.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        info[start..].split('"').next().unwrap().to_string()
    };
    assert_eq!(
        (label("config"), label("program")),
        ("syscalls".into(), "sys_enter".into())
    );
    let (id, tag) = (label("id"), label("tag"));
    let bpftool = Command::new("bpftool")
        .args(["prog", "show", "id", &id, "--json"])
        .output()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&bpftool.stdout).unwrap();
    assert_eq!(shown["name"], "sys_enter", "{shown}");
    assert_eq!(shown["tag"], tag.as_str(), "{shown}");
    assert!(
        body.contains(&format!("ebpf_exporter_ebpf_program_attached{{id=\"{id}\"}} 1\n")),
        "{body}"
    );
    let runs = crate::binary::sample_text(
        &body,
        &format!("ebpf_exporter_ebpf_program_run_count_total{{id=\"{id}\"}}"),
    )
    .unwrap_or_else(|| panic!("no run count:\n{body}"));
    assert!(runs.parse::<u64>().unwrap() >= 500, "{runs}");
    assert!(
        body.contains(&format!(
            "ebpf_exporter_ebpf_program_run_time_seconds{{id=\"{id}\"}} "
        )),
        "{body}"
    );
    exporter.stop();
}

/// ebpf_exporter's `kaddrs`: the address of each named kernel symbol is
/// written into the program's `kaddr_<symbol>` before it loads.
#[test]
fn kaddrs_give_the_program_kernel_symbol_addresses() {
    if !bpf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = "kaddrs:\n  - schedule\nmetrics:\n  gauges:\n    - name: kaddr_seen\n      help: The address given.\n";
    // As given, a symbol the kernel does not have, and one the program has
    // no variable for.
    for (name, kaddrs) in [
        ("kaddr_seen", "- schedule"),
        ("no_symbol", "- schedule\n  - no_such_symbol_here"),
        ("no_variable", "- schedule\n  - nowhere"),
    ] {
        compile(
            "tests/objects/kaddr_seen.bpf.c",
            &dir.path().join(format!("{name}.bpf.o")),
        );
        std::fs::write(
            dir.path().join(format!("{name}.yaml")),
            config.replace("- schedule", kaddrs),
        )
        .unwrap();
    }
    let check = |name: &str| {
        let out = Command::new(crate::binary::BIN)
            .args([
                "--config.check",
                "--config.dir",
                dir.path().to_str().unwrap(),
                "--config.names",
                name,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let report = check("no_symbol");
    assert!(
        report.contains("failed")
            && report.contains("kaddrs: this kernel has no symbol \"no_such_symbol_here\""),
        "{report}"
    );
    let report = check("no_variable");
    assert!(
        report.contains("invalid")
            && report.contains(
                "no_variable.yaml:3:5: kaddrs[1]: the program has no `const volatile u64 kaddr_nowhere` to write \
                 the address of \"nowhere\" into (its constants: kaddr_schedule, kaddr_no_such_symbol_here)"
            ),
        "{report}"
    );

    let exporter = Exporter::start(&[
        "--config.dir",
        dir.path().to_str().unwrap(),
        "--config.names",
        "kaddr_seen",
    ]);
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap();
    let schedule = kallsyms
        .lines()
        .find_map(|l| l.strip_suffix(" schedule").and_then(|l| l.split(' ').next()))
        .map(|a| u64::from_str_radix(a, 16).unwrap())
        .unwrap();
    assert_ne!(schedule, 0, "the test runs as root and sees addresses");
    // Gauges read 64 bits as signed: a kernel address is negative.
    let want = schedule as i64 as f64;
    let seen = || {
        let body = exporter.get("/metrics", "").2;
        crate::binary::sample_text(&body, "ebpf_kaddr_seen").and_then(|v| v.parse::<f64>().ok())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen() != Some(want) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(seen(), Some(want), "schedule is at {schedule:#x}");
    exporter.stop();
}

/// ebpf_exporter's event counters: each event the program writes into a
/// perf event array is its label set counted once; `flush_interval` makes
/// the counts start again from zero.
#[test]
fn perf_event_array_counters_count_each_event_exactly_and_flush() {
    event_counters_count_each_event_exactly_and_flush(&[], true);
}

/// The same over a ring buffer, which reports no lost events.
#[test]
fn ring_buffer_event_counters_count_each_event_exactly_and_flush() {
    event_counters_count_each_event_exactly_and_flush(&["-DRING_BUFFER"], false);
}

fn event_counters_count_each_event_exactly_and_flush(clang_args: &[&str], counts_lost: bool) {
    if !bpf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    compile_with(
        "tests/objects/syscall_events.bpf.c",
        clang_args,
        &dir.path().join("syscall_events.bpf.o"),
    );
    let config = "metrics:\n  counters:\n    - name: syscall_events_total\n      help: Syscalls, by event.\n      \
                  perf_event_array: true\n      flush_interval: 2s\n      labels:\n        - name: syscall\n          \
                  size: 8\n          decoders:\n            - name: uint\n            - name: syscall\n";
    std::fs::write(dir.path().join("syscall_events.yaml"), config).unwrap();
    let exporter = Exporter::watching(dir.path());
    let series = r#"ebpf_syscall_events_total{syscall="sched_get_priority_min"}"#;
    // Used to: a count that a flush fell in the middle of came out short
    // (each starts at a random point of the flush period, later still when
    // another test held the turn). Each count now starts just after a
    // flush, in one turn held throughout, so a whole period is ahead.
    let turn = priority_min_turn();
    let just_flushed = || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while exporter.get("/metrics", "").2.contains(series) {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    priority_min_queries(1);
    assert!(
        exporter.sample_reaching(series, 1) >= 1,
        "the first event never counted"
    );
    just_flushed();
    assert_eq!(
        exporter.count_priority_min_queries_holding(&turn, series, 500, 500),
        500
    );
    let body = exporter.get("/metrics", "").2;
    assert_eq!(
        body.contains(
            r#"bpf_exporter_map_events_lost_total{config="syscall_events",map="syscall_events_total"} 0"#
        ),
        counts_lost,
        "{body}"
    );
    // Flushed: the series goes, and counts start from zero.
    just_flushed();
    assert_eq!(
        exporter.count_priority_min_queries_holding(&turn, series, 200, 200),
        200
    );
    drop(turn);
    exporter.stop();
}

/// A veth pair for the length of a test (`name` and its peer `name`p).
struct Veth(&'static str);

impl Veth {
    fn new(name: &'static str) -> Veth {
        let _ = Command::new("ip").args(["link", "del", name]).output();
        let peer = format!("{name}p");
        let ok = Command::new("ip")
            .args(["link", "add", name, "type", "veth", "peer", "name", &peer])
            .status()
            .unwrap();
        assert!(ok.success(), "ip link add {name} type veth peer name {peer}");
        Veth(name)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", self.0]).output();
    }
}

/// Used to: `SEC("xdp/<interface>")` and `SEC("perf_event/type=…")`,
/// sections ebpf_exporter handles itself, failed at load as "refused by
/// the kernel".
#[test]
fn ebpf_exporter_sections_attach_where_they_say() {
    if !bpf_available() {
        return;
    }
    let veth = Veth::new("bpfxsec0");
    let dir = tempfile::tempdir().unwrap();
    compile(
        "tests/objects/own_sections.bpf.c",
        &dir.path().join("own_sections.bpf.o"),
    );
    std::fs::write(dir.path().join("own_sections.yaml"), CPU_SAMPLES).unwrap();
    let exporter = Exporter::watching(dir.path());
    let status = exporter.config_status("own_sections");
    assert_eq!(status["state"], "running", "{status}");
    let program = |name: &str| {
        status["programs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .clone()
    };
    // The XDP program is the one on the interface.
    let link = Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", veth.0])
        .output()
        .unwrap();
    let link: serde_json::Value = serde_json::from_slice(&link.stdout).unwrap();
    assert_eq!(link[0]["xdp"]["prog"]["id"], program("pass")["id"], "{link}");
    // The perf event fires on every CPU: 200 samples a busy second each.
    for (cpu, got) in samples_per_busy_cpu(&exporter).into_iter().enumerate() {
        // Shared, noisy machines: a spinner may get a fraction of its CPU.
        assert!(
            (40..=800).contains(&got),
            "cpu {cpu}: {got} samples in 2 s at 200 per second"
        );
    }
    exporter.stop();
}

/// What `ebpf_cpu_samples_total{cpu="N"}` gains on each CPU while every
/// CPU is kept busy for 2 s (cpu-clock counts a CPU's busy time).
fn samples_per_busy_cpu(exporter: &Exporter) -> Vec<u64> {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let samples = |cpu: usize| {
        let body = exporter.get("/metrics", "").2;
        crate::binary::sample_text(&body, &format!("ebpf_cpu_samples_total{{cpu=\"{cpu}\"}}"))
            .map_or(0, |v| v.parse::<u64>().unwrap())
    };
    let before: Vec<u64> = (0..cpus).map(samples).collect();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let spinners: Vec<_> = (0..cpus)
        .map(|_| std::thread::spawn(move || while std::time::Instant::now() < until {}))
        .collect();
    spinners.into_iter().for_each(|s| s.join().unwrap());
    std::thread::sleep(std::time::Duration::from_millis(300));
    before
        .into_iter()
        .enumerate()
        .map(|(cpu, before)| samples(cpu) - before)
        .collect()
}

/// The kernel's perf_event links of program `id`, as bpftool lists them:
/// one per CPU the event was opened on.
fn perf_event_links(id: &serde_json::Value) -> usize {
    let out = Command::new("bpftool")
        .args(["link", "show", "--json"])
        .output()
        .unwrap();
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    links
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["prog_id"] == *id && l["type"] == "perf_event")
        .count()
}

const CPU_SAMPLES: &str = "metrics:\n  counters:\n    - name: cpu_samples_total\n      help: Samples, by CPU.\n      \
                           labels:\n        - name: cpu\n          size: 4\n          decoders:\n            - name: uint\n";

/// Used to: `attach:` entries had no `perf_event:`, so a bare
/// `SEC("perf_event")` program could not run at all.
#[test]
fn perf_event_attach_entry_opens_its_event_on_every_cpu() {
    if !bpf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    compile(
        "tests/bpf/perf_event_entry.bpf.c",
        &dir.path().join("perf_event_entry.bpf.o"),
    );
    let path = dir.path().join("perf_event_entry.yaml");
    let config =
        |event: &str| format!("{CPU_SAMPLES}attach:\n  - program: on_sample\n    perf_event: {event}\n");
    std::fs::write(&path, config("{type: 1, config: 0, frequency: 99}")).unwrap();
    let exporter = Exporter::watching(dir.path());
    let cpus = std::thread::available_parallelism().unwrap().get();
    let attached_id = || {
        let status = exporter.config_status("perf_event_entry");
        assert_eq!(status["state"], "running", "{status}");
        let program = &status["programs"][0];
        assert_eq!(
            (&program["name"], &program["attached"]),
            (&"on_sample".into(), &true.into()),
            "{status}"
        );
        program["id"].clone()
    };
    assert_eq!(perf_event_links(&attached_id()), cpus);
    for (cpu, got) in samples_per_busy_cpu(&exporter).into_iter().enumerate() {
        assert!(
            (20..=400).contains(&got),
            "cpu {cpu}: {got} samples in 2 s at 99 per second"
        );
    }

    // perf's names for the same event, as the section form takes them too.
    std::fs::write(
        &path,
        config("{type: software, config: cpu-clock, period: 1000000}"),
    )
    .unwrap();
    let (code, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(perf_event_links(&attached_id()), cpus);
    exporter.stop();
}

/// The configs of `dir` that run `tests/objects/post_attach_mark.bpf.c`:
/// `mark_a` exports its runs and the process it ran in, `mark_b` (the same
/// object) its own runs.
pub(crate) fn write_post_attach_mark_configs(dir: &Path) {
    for name in ["mark_a", "mark_b"] {
        compile(
            "tests/objects/post_attach_mark.bpf.c",
            &dir.join(format!("{name}.bpf.o")),
        );
    }
    std::fs::write(
        dir.join("mark_a.yaml"),
        "metrics:\n  counters:\n    - name: mark_a_runs_total\n      help: Runs of do_init.\n  \
         gauges:\n    - name: mark_pid\n      help: The process do_init ran in.\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("mark_b.yaml"),
        "metrics:\n  counters:\n    - name: mark_b_runs_total\n      help: Runs of do_init.\n",
    )
    .unwrap();
}

/// Each config's post_attach_mark program ran exactly once, in `exporter`.
pub(crate) fn assert_marked_once(exporter: &Exporter) {
    for series in ["ebpf_mark_a_runs_total", "ebpf_mark_b_runs_total"] {
        assert_eq!(exporter.sample_reaching(series, 1), 1, "{series}");
    }
    // No second run shows up later either.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let body = exporter.get("/metrics", "").2;
    for series in ["ebpf_mark_a_runs_total", "ebpf_mark_b_runs_total"] {
        assert_eq!(crate::binary::sample_text(&body, series), Some("1"), "{body}");
    }
    let pid = crate::binary::sample_text(&body, "ebpf_mark_pid");
    assert_eq!(pid, Some(exporter.pid().to_string().as_str()), "{body}");
}

/// Used to: `SEC("uprobe//proc/self/exe:post_attach_mark")`, ebpf_exporter's
/// way for a program to initialise its config, failed to attach with a
/// hint to add an `attach:` entry: the exporter had no such function.
#[test]
fn post_attach_mark_runs_once_per_attached_version_of_its_config() {
    if !bpf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_post_attach_mark_configs(dir.path());
    let exporter = Exporter::watching(dir.path());
    for name in ["mark_a", "mark_b"] {
        let status = exporter.config_status(name);
        assert_eq!(status["state"], "running", "{status}");
    }
    assert_marked_once(&exporter);

    // A new version of mark_a: its own program runs once, in its new
    // object; mark_b's, already run, does not run again.
    let path = dir.path().join("mark_a.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("help: Runs of do_init.", "help: Runs, again."),
    )
    .unwrap();
    let (code, _, body) = exporter.request("POST", "/-/reload", "").unwrap();
    assert_eq!(code, 200, "{body}");
    crate::binary::until(&exporter, "the new version of mark_a", |m| {
        m.contains("# HELP ebpf_mark_a_runs_total Runs, again.")
    });
    assert_marked_once(&exporter);
    exporter.stop();
}

/// Compiles `tests/target/usdt_target.c` to `out`; `false` when
/// `<sys/sdt.h>` is not installed (Debian's systemtap-sdt-dev, which `make
/// deps` installs), except under `CI=true`, where that fails.
fn compile_usdt_target(out: &Path) -> bool {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/target/usdt_target.c");
    let output = Command::new("clang")
        .args(["-O2", source, "-o"])
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && stderr.contains("sys/sdt.h") {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but <sys/sdt.h> is missing (make deps installs systemtap-sdt-dev)"
        );
        eprintln!("skipping: <sys/sdt.h> is missing (systemtap-sdt-dev)");
        return false;
    }
    assert!(output.status.success(), "clang usdt_target.c: {stderr}");
    true
}

/// USDT probes attach from their `SEC("usdt/<binary>:<provider>:<name>")`
/// and count exactly. Used to: one that could not attach said only "No
/// such file or directory"; now each says why, in the program's error.
#[test]
fn usdt_probes_count_exactly_and_each_one_that_cannot_attach_says_why() {
    if !bpf_available() {
        return;
    }
    let bin = tempfile::tempdir().unwrap();
    let bin_dir = bin.path().display().to_string();
    if !compile_usdt_target(&bin.path().join("bpfx_usdt_target")) {
        return;
    }
    // An ELF binary without USDT notes, and a shell-script shim on PATH
    // (as pyenv's python3 is) in front of the real binary.
    std::fs::copy(crate::truth::TARGET, bin.path().join("bpfx_usdt_plain")).unwrap();
    let shim = bin.path().join("bpfx_usdt_shim");
    std::fs::write(&shim, "#!/bin/sh\nexec bpfx_usdt_target \"$@\"\n").unwrap();
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    compile(
        "tests/objects/usdt_probes.bpf.c",
        &dir.path().join("usdt_probes.bpf.o"),
    );
    std::fs::write(
        dir.path().join("usdt_probes.yaml"),
        "metrics:\n  counters:\n    - name: usdt_ticks_total\n      help: bpfx:tick probes fired.\n    \
         - name: usdt_tick_args_total\n      help: Their arguments, added up.\n",
    )
    .unwrap();
    // libbpf looks for a binary named without a path on the exporter's PATH.
    let path = format!("PATH={bin_dir}:{}", std::env::var("PATH").unwrap());
    let exporter = Exporter::spawn_wrapped(
        &["env", &path],
        &["--config.dir", dir.path().to_str().unwrap()],
        std::process::Stdio::inherit(),
        |port| crate::binary::answers_ok(port, "/-/ready"),
    );
    let status = exporter.config_status("usdt_probes");
    assert_eq!(status["state"], "degraded", "{status}");
    let error = |name: &str| -> String {
        let program = status["programs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {status}"));
        program["error"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(error("tick"), "");
    for (program, says) in [
        (
            "no_notes",
            format!(
                "bpfx_usdt_plain (found at {bin_dir}/bpfx_usdt_plain) has no USDT notes (.note.stapsdt): it was \
                 not built with SystemTap SDT probes (see `readelf -n {bin_dir}/bpfx_usdt_plain`)"
            ),
        ),
        (
            "shim",
            format!(
                "bpfx_usdt_shim is not an ELF file (a script, found at {bin_dir}/bpfx_usdt_shim): name the real \
                 binary, by its absolute path"
            ),
        ),
        (
            "missing_probe",
            format!(
                "bpfx_usdt_target (found at {bin_dir}/bpfx_usdt_target) has no USDT probe bpfx:no_such_probe; \
                 its probes: bpfx:tick, bpfx:tock (see `readelf -n {bin_dir}/bpfx_usdt_target`)"
            ),
        ),
        (
            "missing_binary",
            format!("there is no bpfx_usdt_missing in PATH ({bin_dir}:"),
        ),
    ] {
        let error = error(program);
        assert!(
            error.starts_with("attaching SEC \"usdt/") && error.contains(&says),
            "{program}: {error}"
        );
    }

    let ok = Command::new(bin.path().join("bpfx_usdt_target"))
        .arg("100")
        .status()
        .unwrap();
    assert!(ok.success());
    assert_eq!(exporter.sample_reaching("ebpf_usdt_ticks_total", 100), 100);
    assert_eq!(exporter.sample("ebpf_usdt_tick_args_total"), 5050);
    exporter.stop();
}

/// `--collector.host-bpf`: every program and map of the host, as bpftool
/// lists them; the exporter's own among them, and one it did not load.
#[test]
fn host_bpf_collector_lists_every_program_and_map_as_bpftool_does() {
    if !bpf_available() {
        return;
    }
    let exporter = Exporter::start(&["--config.names", "syscalls", "--collector.host-bpf"]);
    let status = exporter.config_status("syscalls");
    let id = status["programs"][0]["id"].as_u64().unwrap();
    let body = exporter.get("/metrics", "").2;
    crate::binary::promtool_check(&body);
    let shown = |what: &str| -> serde_json::Value {
        let out = Command::new("bpftool")
            .args([what, "show", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let progs = shown("prog");
    let ours = progs.as_array().unwrap().iter().find(|p| p["id"] == id).unwrap();
    assert!(
        body.contains(&format!(
            "bpf_host_program_info{{id=\"{id}\",name=\"sys_enter\",type=\"tracepoint\",tag=\"{}\"}} 1\n",
            ours["tag"].as_str().unwrap()
        )),
        "{body}"
    );
    let memlock =
        crate::binary::sample_text(&body, &format!("bpf_host_program_memlock_bytes{{id=\"{id}\"}}"));
    assert_eq!(
        memlock.map(|m| m.parse::<u64>().unwrap()),
        ours["bytes_memlock"].as_u64(),
        "{body}"
    );
    // Every program bpftool lists at the time is listed (ones that came
    // and went between the two looks aside).
    let listed = body
        .lines()
        .filter(|l| l.starts_with("bpf_host_program_info{"))
        .count();
    assert!(
        listed >= 1 && listed + 5 >= progs.as_array().unwrap().len(),
        "{listed} listed:\n{body}"
    );
    let maps = shown("map");
    let syscalls = maps
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "syscalls_total")
        .unwrap();
    let map_id = syscalls["id"].as_u64().unwrap();
    assert!(
        body.contains(&format!(
            "bpf_host_map_info{{id=\"{map_id}\",name=\"syscalls_total\",type=\"hash\"}} 1\n"
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!("bpf_host_map_max_entries{{id=\"{map_id}\"}} 1024\n")),
        "{body}"
    );
    exporter.stop();
}

/// A cgroup of the test's own, removed when dropped.
struct Cgroup(PathBuf);

impl Cgroup {
    /// Under the cgroup2 mount, whose ids BPF sees.
    fn new(name: &str) -> Cgroup {
        let unified = crate::oom::cgroup_mount(|fstype, _| fstype == "cgroup2").expect("no cgroup2 mount");
        let path = Path::new(&unified).join(name);
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path).unwrap();
        Cgroup(path)
    }

    /// `n` sched_get_priority_min calls from a process in this cgroup.
    fn priority_min_queries(&self, n: usize) {
        // Every other exporter of the tests counts these calls too.
        let _turn = crate::binary::priority_min_turn();
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec python3 -c 'import os\nfor _ in range({n}): os.sched_get_priority_min(0)'",
            self.0.display()
        );
        let ok = Command::new("sh").args(["-c", &script]).status().unwrap();
        assert!(ok.success(), "{script}");
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// ebpf_exporter's `cgroup_id_map`: the exporter keeps the program's map
/// filled with the cgroups whose path matches, as they come and go.
#[test]
fn cgroup_id_map_holds_the_matching_cgroups_as_they_come_and_go() {
    if !bpf_available() {
        return;
    }
    let pid = std::process::id();
    let dir = tempfile::tempdir().unwrap();
    compile(
        "tests/objects/cgroup_filtered.bpf.c",
        &dir.path().join("cgroup_filtered.bpf.o"),
    );
    let unified = crate::oom::cgroup_mount(|fstype, _| fstype == "cgroup2").expect("no cgroup2 mount");
    let config = format!(
        "cgroup_id_map:\n  name: cgroup_filter\n  type: hash\n  regexps: [\"^{unified}/bpfx_in_{pid}\"]\n\
         metrics:\n  counters:\n    - name: filtered_calls_total\n      help: Calls from the selected cgroups.\n      \
         labels:\n        - name: syscall\n          size: 8\n          decoders:\n            - name: uint\n            \
         - name: syscall\n"
    );
    std::fs::write(dir.path().join("cgroup_filtered.yaml"), config).unwrap();
    let inside = Cgroup::new(&format!("bpfx_in_{pid}"));
    let outside = Cgroup::new(&format!("bpfx_out_{pid}"));
    let exporter = Exporter::watching(dir.path());
    let series = r#"ebpf_filtered_calls_total{syscall="sched_get_priority_min"}"#;
    let count = |want: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let seen = exporter.sample(series);
            if seen >= want || std::time::Instant::now() > deadline {
                std::thread::sleep(std::time::Duration::from_millis(300));
                return exporter.sample(series);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    outside.priority_min_queries(200);
    inside.priority_min_queries(300);
    assert_eq!(count(300), 300, "only the matching cgroup's calls count");

    // A matching cgroup made while running is added within a rescan.
    let later = Cgroup::new(&format!("bpfx_in_{pid}_later"));
    std::thread::sleep(std::time::Duration::from_millis(2500));
    later.priority_min_queries(100);
    assert_eq!(count(400), 400);
    exporter.stop();
}
