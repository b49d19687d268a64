//! Every BPF program and map loaded on the host, whoever loaded them
//! (`--collector.host-bpf`): what `bpftool prog` and `bpftool map` show, as
//! metrics, so an operator sees what BPF costs the machine (memory locked,
//! run time when statistics are on) and what else runs beside the
//! exporter.
//!
//! Listing them by id (`BPF_PROG_GET_NEXT_ID`) and opening them by id needs
//! CAP_SYS_ADMIN; the exporter keeps it for this collector alone. The
//! memory each one locks is read from its fd's `/proc/self/fdinfo` entry,
//! as bpftool does: the kernel says it nowhere else.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use super::self_metrics::{named_family as family, sample};
use super::{Family, MetricKind, Value};

/// The host's programs and maps as families; none (with a debug line) when
/// they cannot be listed.
pub fn families() -> Vec<Family> {
    let (mut info, mut runs, mut run_time, mut prog_memlock) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (fd, p) in each(
        libbpf_sys::bpf_prog_get_next_id,
        libbpf_sys::bpf_prog_get_fd_by_id,
        prog_info,
    ) {
        let id = p.id.to_string();
        // SAFETY: libbpf returns a static string for any type, or NULL.
        let kind = type_name(unsafe { libbpf_sys::libbpf_bpf_prog_type_str(p.type_) });
        let tag: String = p.tag.iter().map(|b| format!("{b:02x}")).collect();
        info.push(sample(&[&id, &c_name(&p.name), &kind, &tag], Value::Gauge(1.0)));
        runs.push(sample(&[&id], Value::Counter(p.run_cnt)));
        run_time.push(sample(&[&id], Value::FloatCounter(p.run_time_ns as f64 / 1e9)));
        if let Some(bytes) = memlock(&fd) {
            prog_memlock.push(sample(&[&id], Value::Gauge(bytes as f64)));
        }
    }
    let (mut maps, mut max_entries, mut map_memlock) = (Vec::new(), Vec::new(), Vec::new());
    for (fd, m) in each(
        libbpf_sys::bpf_map_get_next_id,
        libbpf_sys::bpf_map_get_fd_by_id,
        map_info,
    ) {
        let id = m.id.to_string();
        // SAFETY: as above.
        let kind = type_name(unsafe { libbpf_sys::libbpf_bpf_map_type_str(m.type_) });
        maps.push(sample(&[&id, &c_name(&m.name), &kind], Value::Gauge(1.0)));
        max_entries.push(sample(&[&id], Value::Gauge(f64::from(m.max_entries))));
        if let Some(bytes) = memlock(&fd) {
            map_memlock.push(sample(&[&id], Value::Gauge(bytes as f64)));
        }
    }
    vec![
        family("bpf_host_program_info", "Every BPF program loaded on the host, by kernel id; always 1.", MetricKind::Gauge, &["id", "name", "type", "tag"], info),
        family("bpf_host_program_runs_total", "Times each program ran (counted only while BPF statistics are on: --bpf.stats or kernel.bpf_stats_enabled).", MetricKind::Counter, &["id"], runs),
        family("bpf_host_program_run_time_seconds_total", "Time each program spent running (while BPF statistics are on).", MetricKind::Counter, &["id"], run_time),
        family("bpf_host_program_memlock_bytes", "Memory each program locks.", MetricKind::Gauge, &["id"], prog_memlock),
        family("bpf_host_map_info", "Every BPF map on the host, by kernel id; always 1.", MetricKind::Gauge, &["id", "name", "type"], maps),
        family("bpf_host_map_max_entries", "Entries each map can hold.", MetricKind::Gauge, &["id"], max_entries),
        family("bpf_host_map_memlock_bytes", "Memory each map locks.", MetricKind::Gauge, &["id"], map_memlock),
    ]
}

/// Every object of one kind, from the first id on: an fd of it and its
/// info. One that goes away between the listing and the open is skipped.
fn each<I>(
    next: unsafe extern "C" fn(u32, *mut u32) -> i32,
    open: unsafe extern "C" fn(u32) -> i32,
    info: fn(&OwnedFd) -> Option<I>,
) -> Vec<(OwnedFd, I)> {
    let mut found = Vec::new();
    let mut id = 0u32;
    loop {
        // SAFETY: `id` is a valid place for the kernel to write the next id.
        if unsafe { next(id, &mut id) } != 0 {
            break;
        }
        // SAFETY: a plain syscall wrapper taking an id.
        let fd = unsafe { open(id) };
        if fd < 0 {
            continue;
        }
        // SAFETY: the kernel returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if let Some(i) = info(&fd) {
            found.push((fd, i));
        }
    }
    if found.is_empty() && id == 0 {
        tracing::debug!(
            "listing the host's BPF objects failed: {}",
            std::io::Error::last_os_error()
        );
    }
    found
}

fn prog_info(fd: &OwnedFd) -> Option<libbpf_sys::bpf_prog_info> {
    crate::programs::stats::info(fd.as_fd()).ok()
}

fn map_info(fd: &OwnedFd) -> Option<libbpf_sys::bpf_map_info> {
    // SAFETY: as in prog_info.
    let mut info: libbpf_sys::bpf_map_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: `info` is `len` bytes long.
    let rc = unsafe { libbpf_sys::bpf_map_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    (rc == 0).then_some(info)
}

/// The `memlock:` line of the fd's fdinfo.
fn memlock(fd: &OwnedFd) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

fn c_name(name: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn type_name(name: *const std::ffi::c_char) -> String {
    if name.is_null() {
        return "unknown".to_string();
    }
    // SAFETY: libbpf's type names are static NUL-terminated strings.
    unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
}
