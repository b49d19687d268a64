//! The standard `process_*` metrics of the Prometheus client libraries
//! (same names and meanings as Go's process collector), so the exporter's
//! own CPU, memory and descriptors sit beside what it exports and a
//! dashboard built for any exporter shows them.
//!
//! Read from /proc/self with a few lines rather than a crate: five numbers
//! from two files do not justify procfs's dependency tree. They are read
//! with each snapshot, so a scrape costs nothing extra and the values are
//! as fresh as the maps' (`--maps.read-interval`).

use std::time::Duration;

use super::{Family, MetricKind, Sample, Value};

/// The process families, or none (with a debug line) where /proc cannot be
/// read: the exporter's metrics must not fail for want of its own.
pub fn families() -> Vec<Family> {
    match read() {
        Ok(p) => vec![
            family(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                MetricKind::Counter,
                Value::FloatCounter(p.cpu.as_secs_f64()),
            ),
            family(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                MetricKind::Gauge,
                Value::Gauge(p.resident as f64),
            ),
            family(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                MetricKind::Gauge,
                Value::Gauge(p.virtual_memory as f64),
            ),
            family(
                "process_open_fds",
                "Number of open file descriptors.",
                MetricKind::Gauge,
                Value::Gauge(p.open_fds as f64),
            ),
            family(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                MetricKind::Gauge,
                Value::Gauge(p.max_fds as f64),
            ),
            family(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                MetricKind::Gauge,
                Value::Gauge(p.start_time),
            ),
        ],
        Err(e) => {
            tracing::debug!("process metrics left out: cannot read /proc/self: {e}");
            Vec::new()
        }
    }
}

struct Process {
    cpu: Duration,
    resident: u64,
    virtual_memory: u64,
    open_fds: usize,
    max_fds: u64,
    start_time: f64,
}

fn read() -> std::io::Result<Process> {
    let invalid = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("/proc/self/stat: {what}"),
        )
    };
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name, in parentheses, may hold spaces: fields start
    // after its closing one, at field 3 (state).
    let rest = stat.rsplit_once(')').ok_or_else(|| invalid("no command name"))?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> std::io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| invalid(&format!("field {n}")))
    };
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let (ticks, page) = (ticks.max(1) as f64, page.max(1) as u64);
    // proc(5): utime 14, stime 15, starttime 22 (ticks since boot),
    // vsize 23 (bytes), rss 24 (pages).
    let cpu = Duration::from_secs_f64((field(14)? + field(15)?) as f64 / ticks);
    let boot = std::fs::read_to_string("/proc/stat")?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())
        .ok_or_else(|| invalid("no btime in /proc/stat"))?;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes `limit` only.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Process {
        cpu,
        resident: field(24)? * page,
        virtual_memory: field(23)?,
        open_fds: std::fs::read_dir("/proc/self/fd")?.count(),
        max_fds: limit.rlim_cur,
        start_time: boot as f64 + field(22)? as f64 / ticks,
    })
}

fn family(name: &str, help: &str, kind: MetricKind, value: Value) -> Family {
    Family {
        name: name.to_string(),
        help: help.to_string(),
        kind,
        label_names: Vec::new(),
        samples: vec![Sample {
            label_values: [].into(),
            value,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(families: &[Family], name: &str) -> f64 {
        let family = families.iter().find(|f| f.name == name).unwrap();
        match family.samples[0].value {
            Value::Gauge(v) | Value::FloatCounter(v) => v,
            _ => panic!("{name}: unexpected value"),
        }
    }

    /// Used to fail now and then: other tests open and close files while
    /// this one counts, so a count is compared only with the process's fds
    /// listed just before and just after it, when the two agree.
    fn open_fds_now() -> f64 {
        for _ in 0..1000 {
            let before = std::fs::read_dir("/proc/self/fd").unwrap().count();
            let exported = value(&families(), "process_open_fds");
            let after = std::fs::read_dir("/proc/self/fd").unwrap().count();
            if before == after {
                assert_eq!(exported, before as f64);
                return exported;
            }
        }
        panic!("the process's fds never held still across one count");
    }

    #[test]
    fn open_fds_follow_the_files_opened() {
        let files: Vec<_> = (0..50)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let during = open_fds_now();
        assert!(during >= 53.0, "{during}");
        drop(files);
        open_fds_now();
        assert!(value(&families(), "process_max_fds") >= during);
    }

    #[test]
    fn cpu_time_grows_with_work_and_start_time_is_about_now() {
        let before = value(&families(), "process_cpu_seconds_total");
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = value(&families(), "process_cpu_seconds_total");
        assert!(after - before >= 0.1, "{before} → {after}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value(&families(), "process_start_time_seconds");
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "started at {start}, now {now}"
        );
        let resident = value(&families(), "process_resident_memory_bytes");
        assert!(resident > 1e6 && resident < value(&families(), "process_virtual_memory_bytes"));
    }
}
