//! What `packaging/` and the `Dockerfile` ship, checked with the tools
//! that would refuse them: `systemd-analyze verify` (every line it prints
//! is a warning, so any output fails) and `security --offline=true` on
//! the units, `kubernetes-validate --strict` on every manifest, and the
//! built binary on what they pass it: its flags, and the DaemonSet's
//! configs through `--config.check` on the real kernel. The capabilities
//! the unit and the pods grant are held to the set the exporter keeps.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{bpf_available, tool_available};

const BIN: &str = env!("CARGO_BIN_EXE_bpf-exporter");
const PACKAGING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging");
/// Where the unit installs the binary (`make dist`'s `dist/bpf-exporter`).
const INSTALLED_BIN: &str = "/usr/local/bin/bpf-exporter";

/// The capabilities the exporter keeps when every feature is in use:
/// CAP_BPF, CAP_PERFMON always, CAP_NET_ADMIN for XDP/tc/cgroup-network
/// configs, CAP_SYSLOG for `ksym`, CAP_DAC_READ_SEARCH for tracefs.
/// CAP_SYS_ADMIN (`--bpf.stats`, uprobes, kernels before 5.8) is left to
/// the operator to add.
const KEPT_CAPABILITIES: [&str; 5] = [
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_NET_ADMIN",
    "CAP_SYSLOG",
    "CAP_DAC_READ_SEARCH",
];

/// The highest `systemd-analyze security` exposure the service may have:
/// what it measured (2.1 with systemd 252) when made as low as its needs
/// allow. A change that loosens the unit has to raise this on purpose.
const MAX_EXPOSURE: f64 = 2.1;

/// A command's exit status and everything it printed.
fn run(command: &mut Command) -> (bool, String) {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn unit(name: &str) -> String {
    let path = format!("{PACKAGING}/systemd/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The units in a scratch directory, the service's ExecStart pointing at
/// the binary this build made: `verify` checks that the command exists,
/// and it is not installed at its real place on a build machine.
fn units_with_built_binary(service: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    assert!(service.contains(&format!("ExecStart={INSTALLED_BIN} ")));
    let dir = tempfile::tempdir().unwrap();
    let service_path = dir.path().join("bpf-exporter.service");
    let socket_path = dir.path().join("bpf-exporter.socket");
    std::fs::write(&service_path, service.replace(INSTALLED_BIN, BIN)).unwrap();
    std::fs::write(&socket_path, unit("bpf-exporter.socket")).unwrap();
    (dir, service_path, socket_path)
}

fn verify(service: &str) -> (bool, String) {
    let (_dir, service, socket) = units_with_built_binary(service);
    run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(service)
        .arg(socket))
}

#[test]
fn the_systemd_units_verify_without_a_warning() {
    if !tool_available("systemd-analyze") {
        return;
    }
    let (ok, out) = verify(&unit("bpf-exporter.service"));
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify:\n{out}");
    // The check catches what it is for: a misspelt directive is a warning.
    let misspelt = unit("bpf-exporter.service").replace("ProtectSystem=", "ProtectSytem=");
    let (_, out) = verify(&misspelt);
    assert!(
        out.contains("ProtectSytem"),
        "no warning for a misspelt directive:\n{out}"
    );
}

/// The overall exposure `systemd-analyze security --offline=true` gives
/// the service, and its whole report.
fn exposure(service: &str) -> (f64, String) {
    let (_dir, service, _) = units_with_built_binary(service);
    let (_, out) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(service));
    let score = out
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for bpf-exporter.service: "))
        .and_then(|(_, rest)| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    (score, out)
}

#[test]
fn the_service_exposure_stays_at_or_below_its_measured_score() {
    if !tool_available("systemd-analyze") {
        return;
    }
    let (score, report) = exposure(&unit("bpf-exporter.service"));
    eprintln!("systemd-analyze security: exposure {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{report}"
    );
    // The score moves with the unit: without the system call filter it is
    // higher.
    let (loose, _) =
        exposure(&unit("bpf-exporter.service").replace("SystemCallFilter=", "#SystemCallFilter="));
    assert!(loose > score, "{loose} <= {score}");
}

/// The values of every `key=` line of a unit, split on spaces.
fn unit_values(text: &str, key: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .flat_map(|v| v.split_whitespace().map(str::to_string))
        .collect()
}

/// Every YAML document of every manifest under `packaging/kubernetes/`:
/// (file, document).
fn manifests() -> Vec<(PathBuf, Value)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(Path::new(&format!("{PACKAGING}/kubernetes")), &mut files);
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    files
        .into_iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let docs: Vec<Value> =
                serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            docs.into_iter().map(move |d| (file.clone(), d))
        })
        .collect()
}

/// The one document of `kind` named `name`.
fn manifest(kind: &str, name: &str) -> Value {
    let found: Vec<Value> = manifests()
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "{kind} {name}");
    found.into_iter().next().unwrap()
}

/// The exporter containers of every workload manifest: (workload name,
/// container).
fn exporter_containers() -> Vec<(String, Value)> {
    manifests()
        .into_iter()
        .filter_map(|(_, d)| {
            let name = d["metadata"]["name"].as_str()?.to_string();
            let containers = d["spec"]["template"]["spec"]["containers"].as_array()?.clone();
            Some(containers.into_iter().map(move |c| (name.clone(), c)))
        })
        .flatten()
        .filter(|(_, c)| {
            c["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("bpf-exporter:"))
        })
        .collect()
}

#[test]
fn the_unit_and_the_daemonset_grant_exactly_the_capabilities_the_exporter_keeps() {
    let kept: BTreeSet<String> = KEPT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    let service = unit("bpf-exporter.service");
    assert_eq!(unit_values(&service, "CapabilityBoundingSet"), kept);
    assert_eq!(unit_values(&service, "AmbientCapabilities"), kept);
    let containers = exporter_containers();
    assert!(containers.len() >= 2, "{containers:?}");
    for (workload, container) in containers {
        let caps = &container["securityContext"]["capabilities"];
        assert_eq!(caps["drop"], serde_json::json!(["ALL"]), "{workload}");
        let added: BTreeSet<String> = caps["add"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("CAP_{}", c.as_str().unwrap()))
            .collect();
        // The node's exporter may need them all; a sidecar, fewer, and
        // CAP_SYS_ADMIN if it runs uprobes (which the node's leaves to the
        // operator).
        if workload == "bpf-exporter" {
            assert_eq!(added, kept, "{workload}");
        } else {
            let allowed: BTreeSet<String> = kept.iter().cloned().chain(["CAP_SYS_ADMIN".into()]).collect();
            assert!(added.is_subset(&allowed), "{workload}: {added:?}");
        }
        assert_ne!(container["securityContext"]["privileged"], true, "{workload}");
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"], false,
            "{workload}"
        );
    }
}

#[test]
fn the_flags_the_unit_and_the_manifests_pass_are_the_binarys() {
    let (ok, help) = run(Command::new(BIN).arg("--help"));
    assert!(ok, "{help}");
    let service = unit("bpf-exporter.service");
    let exec_start = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let mut passed: Vec<(String, String)> = exec_start
        .split_whitespace()
        .skip(1)
        .map(|a| ("bpf-exporter.service".to_string(), a.to_string()))
        .collect();
    for (workload, container) in exporter_containers() {
        for arg in container["args"].as_array().unwrap() {
            passed.push((workload.clone(), arg.as_str().unwrap().to_string()));
        }
    }
    let flags = ["--web.systemd-socket", "--config.dir", "--log.format"];
    for flag in flags {
        assert!(
            passed.iter().any(|(_, a)| a.split('=').next() == Some(flag)),
            "{flag} unused"
        );
    }
    for (place, arg) in passed {
        let flag = arg.split('=').next().unwrap();
        assert!(flag.starts_with("--"), "{place}: {arg} is not a flag");
        assert!(
            help.split_whitespace().any(|w| w.trim_end_matches(',') == flag),
            "{place} passes {flag}, which `bpf-exporter --help` does not list"
        );
    }
    // Probes ask the paths the server answers.
    for (workload, container) in exporter_containers() {
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"], "/-/healthy",
            "{workload}"
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"], "/-/ready",
            "{workload}"
        );
    }
}

/// The kinds kubernetes-validate has no schema for: prometheus-operator's
/// custom resources. Their shape is checked against the DaemonSet and
/// the Service here instead.
const CUSTOM_KINDS: [&str; 2] = ["PodMonitor", "ServiceMonitor"];

fn kubernetes_validate(files: &[PathBuf]) -> (bool, String) {
    run(Command::new("kubernetes-validate").arg("--strict").args(files))
}

#[test]
fn every_kubernetes_manifest_passes_kubernetes_validate_strict() {
    if !tool_available("kubernetes-validate") {
        return;
    }
    let files: BTreeSet<PathBuf> = manifests().into_iter().map(|(f, _)| f).collect();
    let files: Vec<PathBuf> = files.into_iter().collect();
    let (ok, out) = kubernetes_validate(&files);
    assert!(ok, "{out}");
    let mut skipped = BTreeSet::new();
    for line in out.lines() {
        if line.starts_with("INFO ") && line.contains(" passed for resource ") {
            continue;
        }
        let custom = CUSTOM_KINDS.iter().find(|k| {
            line.starts_with("WARN ")
                && line.contains(&format!(
                    "Couldn't find schema for kind {k} with api version monitoring.coreos.com/v1"
                ))
        });
        match custom {
            Some(kind) => skipped.insert(*kind),
            None => panic!("kubernetes-validate: {line}\n{out}"),
        };
    }
    assert_eq!(skipped, BTreeSet::from(CUSTOM_KINDS), "{out}");
    // Strict means strict: a misspelt field fails.
    let dir = tempfile::tempdir().unwrap();
    let misspelt = dir.path().join("daemonset.yaml");
    let daemonset = std::fs::read_to_string(format!("{PACKAGING}/kubernetes/daemonset.yaml")).unwrap();
    std::fs::write(&misspelt, daemonset.replace("hostPID:", "hostPid:")).unwrap();
    let (ok, out) = kubernetes_validate(&[misspelt]);
    assert!(!ok && out.contains("hostPid"), "{out}");
}

#[test]
fn the_monitors_select_the_exporters_port_and_job() {
    let pods = manifest("DaemonSet", "bpf-exporter")["spec"]["template"].clone();
    let service = manifest("Service", "bpf-exporter");
    let labels = &pods["metadata"]["labels"];
    let container_ports = &pods["spec"]["containers"][0]["ports"];
    assert!(container_ports
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "metrics"));
    assert!(service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "metrics"));
    for (kind, endpoints, target_labels) in [
        ("PodMonitor", "podMetricsEndpoints", labels),
        ("ServiceMonitor", "endpoints", &service["metadata"]["labels"]),
    ] {
        let monitor = manifest(kind, "bpf-exporter");
        let spec = &monitor["spec"];
        for (key, value) in spec["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&target_labels[key], value, "{kind} selects {key}={value}");
        }
        // job="bpf-exporter", which the example alerts select.
        let job_label = spec["jobLabel"].as_str().unwrap();
        assert_eq!(target_labels[job_label], "bpf-exporter", "{kind}");
        let endpoint = &spec[endpoints][0];
        assert_eq!(endpoint["port"], "metrics", "{kind}");
        let relabelled =
            endpoint["relabelings"].as_array().unwrap().iter().any(|r| {
                r["targetLabel"] == "node" && r["sourceLabels"][0] == "__meta_kubernetes_pod_node_name"
            });
        assert!(relabelled, "{kind}: no node label");
    }
}

#[test]
fn the_daemonsets_configs_load_and_attach() {
    if !bpf_available() {
        return;
    }
    let configs = manifest("ConfigMap", "bpf-exporter-configs");
    let dir = tempfile::tempdir().unwrap();
    let data = configs["data"].as_object().unwrap();
    assert!(!data.is_empty());
    for (name, text) in data {
        std::fs::write(dir.path().join(name), text.as_str().unwrap()).unwrap();
    }
    let (ok, out) = run(Command::new(BIN)
        .arg("--config.check")
        .arg("--config.dir")
        .arg(dir.path()));
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("{} of {} configs good", data.len(), data.len())),
        "{out}"
    );
}
