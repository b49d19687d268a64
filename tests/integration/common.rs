//! Shared test plumbing: BPF availability, assembling configs, reading
//! counters, histograms and gauges out of snapshots, histogram deltas and
//! shape checks, example YAML files, pipes, a private loopback, TCP connects
//! that keep out of a connect-counting test's way, a bpffs of a test's own.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{TcpStream, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::os::fd::FromRawFd;
use std::sync::{PoisonError, RwLock, RwLockWriteGuard};

use std::path::Path;
use std::sync::Arc;

use bpf_exporter::cli::Args;
use bpf_exporter::config::{self, Source};
use bpf_exporter::exporter::{self, Exporter, Threads};
use bpf_exporter::metrics::{ConfigStatus, Family, Histogram, Snapshot, SnapshotCell, Value};
use bpf_exporter::reload::trigger::Trigger;
use bpf_exporter::reload::{self, ReloadOutcome};
use bpf_exporter::settings::Settings;
use clap::Parser;

/// Under `CI=true` what a test needs must be there: CI must prove the
/// kernel paths and the tools' checks, never skip them.
fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// True when this process may load BPF programs. Without BPF a test skips
/// with a note, except under `CI=true`, where it fails.
pub fn bpf_available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    if ci() {
        panic!("CI=true but these tests cannot load BPF (not root): run them as root");
    }
    eprintln!("skipping: loading BPF needs root");
    false
}

/// True when the program `name` (promtool, prometheus: Debian's
/// `prometheus` package, which `make deps` installs) is on the PATH.
/// Without it a test skips with a note, except under `CI=true`, where it
/// fails.
pub fn tool_available(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(name))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    });
    if !found {
        assert!(
            !ci(),
            "CI=true but {name} is not installed (make deps installs it)"
        );
        eprintln!("skipping: {name} is not installed");
    }
    found
}

/// Starts embedded configs by name; every one must come up fully.
pub fn start(names: &[&str]) -> Exporter {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    start_sources(&embedded_sources(&names))
}

/// The embedded configs named.
pub fn embedded_sources(names: &[String]) -> Vec<Source> {
    config::sources(None, Some(names)).unwrap().sources
}

pub fn start_sources(sources: &[Source]) -> Exporter {
    let (exporter, _) = Exporter::with_sources(sources);
    assert_all_good(&exporter.statuses());
    exporter
}

pub fn assert_all_good(statuses: &[ConfigStatus]) {
    assert!(
        statuses.iter().all(ConfigStatus::is_good),
        "configs did not all load:\n{}",
        exporter::report(statuses)
    );
}

/// The exporter as the binary runs it, on `dir`, without the HTTP server:
/// the reader and reloader on their threads, reads every hour unless
/// `args` say otherwise (so only reloads publish), no watcher.
pub struct Threaded {
    pub threads: Threads,
    pub cell: Arc<SnapshotCell>,
}

impl Threaded {
    pub fn start(dir: &Path) -> Threaded {
        Threaded::with_args(dir, &[])
    }

    pub fn with_args(dir: &Path, args: &[&str]) -> Threaded {
        let dir_arg = format!("--config.dir={}", dir.display());
        let mut all = vec!["bpf-exporter", &dir_arg];
        if !args.iter().any(|a| a.starts_with("--maps.read-interval")) {
            all.push("--maps.read-interval=1h");
        }
        all.extend_from_slice(args);
        let settings = Settings::from(Args::parse_from(all));
        let listing = settings.selection.read().unwrap();
        let (fleet, _) = reload::start(&listing, &settings.load, settings.strict);
        let cell = Arc::new(SnapshotCell::default());
        let threads = exporter::spawn(fleet, &listing, &settings, Arc::clone(&cell)).unwrap();
        Threaded { threads, cell }
    }

    /// Reloads, waits, and returns the outcome; panics if the configs could
    /// not be listed.
    pub fn reload(&self, trigger: Trigger) -> ReloadOutcome {
        match &*self.threads.reloader.reload(trigger) {
            Ok(outcome) => outcome.clone(),
            Err(e) => panic!("the reload failed: {e}"),
        }
    }
}

/// The value of the series of family `name` with exactly these labels.
fn value<'a>(snapshot: &'a Snapshot, name: &str, labels: &[(&str, &str)]) -> Option<&'a Value> {
    let family = snapshot.families.iter().find(|f| f.name == name)?;
    family
        .samples
        .iter()
        .find(|s| {
            labels.len() == family.label_names.len()
                && labels.iter().all(|(k, v)| {
                    family
                        .label_names
                        .iter()
                        .position(|n| n == k)
                        .is_some_and(|i| s.label_values[i] == *v)
                })
        })
        .map(|s| &s.value)
}

/// Family `name`; panics when the snapshot has none.
pub fn family<'a>(snapshot: &'a Snapshot, name: &str) -> &'a Family {
    snapshot
        .families
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no family {name}"))
}

/// Every series of family `name` (none when absent), by label values in the
/// family's label order.
pub fn series(snapshot: &Snapshot, name: &str) -> BTreeMap<Vec<String>, Value> {
    snapshot
        .families
        .iter()
        .filter(|f| f.name == name)
        .flat_map(|f| &f.samples)
        .map(|s| (s.label_values.to_vec(), s.value.clone()))
        .collect()
}

/// The value of counter `name` with exactly these labels, 0 when absent.
pub fn counter(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(snapshot, name, labels) {
        None => 0,
        Some(Value::Counter(v)) => *v,
        Some(other) => panic!("{name} is not a counter: {other:?}"),
    }
}

/// Histogram `name` with exactly these labels; panics when absent.
pub fn histogram(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Histogram {
    find_histogram(snapshot, name, labels)
        .unwrap_or_else(|| panic!("no histogram {name}{labels:?} in {:#?}", snapshot.families))
}

/// Histogram `name` with exactly these labels, `None` while the series does
/// not exist (a label set appears with its first event).
pub fn find_histogram(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Option<Histogram> {
    value(snapshot, name, labels).map(|v| match v {
        Value::Histogram(h) => h.clone(),
        other => panic!("{name} is not a histogram: {other:?}"),
    })
}

/// `after - before` bucket by bucket; an absent `before` counts as zeros.
pub fn delta(after: &Histogram, before: Option<&Histogram>) -> Histogram {
    let Some(before) = before else {
        return after.clone();
    };
    assert_eq!(
        after.buckets.iter().map(|b| b.0).collect::<Vec<_>>(),
        before.buckets.iter().map(|b| b.0).collect::<Vec<_>>(),
        "bucket bounds changed between reads"
    );
    Histogram {
        buckets: after
            .buckets
            .iter()
            .zip(&before.buckets)
            .map(|(a, b)| (a.0, a.1 - b.1))
            .collect(),
        count: after.count - before.count,
        sum: after.sum - before.sum,
    }
}

/// Cumulative buckets never decrease, `+Inf` (the count) is at least the
/// top bucket, and the bounds are 2^i × `unit` for each i in `buckets`
/// (`bucket_min..=bucket_max` of the config).
pub fn assert_consistent_exp2(h: &Histogram, unit: f64, buckets: RangeInclusive<i32>) {
    assert_eq!(h.buckets.len(), buckets.clone().count(), "{h:?}");
    for ((le, _), i) in h.buckets.iter().zip(buckets) {
        let want = unit * 2f64.powi(i);
        assert!((le / want - 1.0).abs() < 1e-9, "bucket {i}: le {le}, want {want}");
    }
    assert!(h.buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{h:?}");
    assert!(h.count >= h.buckets.last().unwrap().1, "{h:?}");
    assert!(h.sum >= 0.0, "{h:?}");
}

/// Gauge `name` with exactly these labels; panics when absent.
pub fn gauge(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> f64 {
    match value(snapshot, name, labels) {
        Some(Value::Gauge(v)) => *v,
        Some(other) => panic!("{name} is not a gauge: {other:?}"),
        None => panic!("no gauge {name}{labels:?} in {:#?}", snapshot.families),
    }
}

/// Sum of a counter over all its series.
pub fn counter_sum(snapshot: &Snapshot, name: &str) -> u64 {
    snapshot
        .families
        .iter()
        .filter(|f| f.name == name)
        .flat_map(|f| &f.samples)
        .map(|s| match s.value {
            Value::Counter(v) => v,
            _ => 0,
        })
        .sum()
}

/// The YAML file at `path` (an example config of the repository), parsed.
pub fn yaml(path: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A pipe: (read end, write end).
pub fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe() writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

/// A TCP port of 127.0.0.1 nothing listens on (in this thread's network
/// namespace), for a server to take.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Moves this test's thread into a new network namespace with `lo` up, so
/// the only packets on `lo` are the ones the test sends.
pub fn private_loopback() {
    // SAFETY: unshare affects only the calling thread's network namespace.
    assert_eq!(
        unsafe { libc::unshare(libc::CLONE_NEWNET) },
        0,
        "unshare: {}",
        std::io::Error::last_os_error()
    );
    let sock = std::net::UdpSocket::bind("0.0.0.0:0");
    drop(sock);
    // SAFETY: plain ioctls on a socket fd with a zeroed, named ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req), 0);
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &req), 0);
        libc::close(fd);
    }
}

/// Taken for reading around every TCP connect the tests of this binary
/// make, and for writing by a test counting connects machine-wide
/// (tcp_connect_latency's): their connects then never land in its count.
/// Other processes' still can, so that test retries as well.
static TCP_CONNECTS: RwLock<()> = RwLock::new(());

/// `TcpStream::connect`, never while connects are being counted.
pub fn tcp_connect(addr: impl ToSocketAddrs) -> std::io::Result<TcpStream> {
    let _counting_waits = TCP_CONNECTS.read().unwrap_or_else(PoisonError::into_inner);
    TcpStream::connect(addr)
}

/// Holds off [`tcp_connect`] everywhere until dropped.
pub fn hold_off_tcp_connects() -> RwLockWriteGuard<'static, ()> {
    TCP_CONNECTS.write().unwrap_or_else(PoisonError::into_inner)
}

/// A bpffs of the test's own, unmounted when dropped.
pub struct Bpffs(tempfile::TempDir);

impl Bpffs {
    pub fn new() -> Bpffs {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(ok.success(), "mount -t bpf bpf {}", dir.path().display());
        Bpffs(dir)
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.path().join(name)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

/// Runs bpftool, which must succeed.
pub fn bpftool(args: &[&str]) {
    let out = std::process::Command::new("bpftool").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "bpftool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
