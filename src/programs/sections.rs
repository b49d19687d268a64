//! Sections ebpf_exporter gives a meaning of its own, which libbpf does
//! not know or cannot attach, so their programs load with the right type
//! and attach where the section says:
//!
//! - `xdp/<interface>`: an XDP program for that interface;
//! - `perf_event/type=N,config=M,frequency=F` (or `period=P`): a
//!   perf_event program run by that perf event, opened on every CPU. The
//!   type and config are numbers or perf's names (`type=software,config=cpu-clock`),
//!   read by the same functions as an `attach:` entry's `perf_event:`;
//! - `uprobe//proc/self/exe:post_attach_mark`: a program run once, right
//!   after the rest of its config is attached (see [`super::mark`]).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use libbpf_rs::ProgramType;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnSection {
    Xdp { interface: String },
    PerfEvent(PerfEvent),
    PostAttachMark,
}

/// ebpf_exporter's section for a program that initialises its config: a
/// uprobe on the exporter's own `post_attach_mark()`.
pub const POST_ATTACH_MARK: &str = "uprobe//proc/self/exe:post_attach_mark";

/// A perf event as `perf_event_open(2)` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerfEvent {
    /// `PERF_TYPE_HARDWARE` (0), `PERF_TYPE_SOFTWARE` (1), …
    pub kind: u32,
    pub config: u64,
    pub sample: Sample,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// Samples per second.
    Frequency(u64),
    /// Events per sample.
    Period(u64),
}

/// `perf_event_attr.type` by perf's names: `enum perf_type_id` of
/// include/uapi/linux/perf_event.h.
const TYPES: &[(&str, u32)] = &[
    ("hardware", 0),
    ("software", 1),
    ("tracepoint", 2),
    ("hw_cache", 3),
    ("raw", 4),
    ("breakpoint", 5),
];

/// `config` of type hardware by perf's names (`perf list hw`): `enum
/// perf_hw_id` of include/uapi/linux/perf_event.h.
const HARDWARE: &[(&str, u64)] = &[
    ("cpu-cycles", 0),
    ("instructions", 1),
    ("cache-references", 2),
    ("cache-misses", 3),
    ("branch-instructions", 4),
    ("branch-misses", 5),
    ("bus-cycles", 6),
    ("stalled-cycles-frontend", 7),
    ("stalled-cycles-backend", 8),
    ("ref-cycles", 9),
];

/// `config` of type software by perf's names (`perf list sw`): `enum
/// perf_sw_ids` of include/uapi/linux/perf_event.h.
const SOFTWARE: &[(&str, u64)] = &[
    ("cpu-clock", 0),
    ("task-clock", 1),
    ("page-faults", 2),
    ("context-switches", 3),
    ("cpu-migrations", 4),
    ("minor-faults", 5),
    ("major-faults", 6),
    ("alignment-faults", 7),
    ("emulation-faults", 8),
    ("dummy", 9),
    ("bpf-output", 10),
    ("cgroup-switches", 11),
];

/// A number, decimal or `0x` hexadecimal (raw PMU configs are written so).
fn number(value: &str) -> Option<u64> {
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

fn names<T>(table: &[(&str, T)]) -> String {
    table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

impl PerfEvent {
    /// `type`: a number, or a name such as `software`.
    pub fn kind(value: &str) -> Result<u32, String> {
        if let Some(n) = number(value) {
            return u32::try_from(n).map_err(|_| format!("type {n} is too big"));
        }
        TYPES
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, kind)| *kind)
            .ok_or_else(|| {
                format!(
                    "unknown perf event type {value:?} (a number, or one of: {})",
                    names(TYPES)
                )
            })
    }

    /// `config` of an event of type `kind`: a number, or for hardware and
    /// software events a name such as `cpu-clock`.
    pub fn config(kind: u32, value: &str) -> Result<u64, String> {
        if let Some(n) = number(value) {
            return Ok(n);
        }
        let (type_name, table) = match kind {
            0 => ("hardware", HARDWARE),
            1 => ("software", SOFTWARE),
            _ => {
                return Err(format!(
                    "config {value:?} is not a number (names are known for types hardware and software only)"
                ))
            }
        };
        table
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, config)| *config)
            .ok_or_else(|| format!("unknown {type_name} event {value:?} (known: {})", names(table)))
    }

    /// How often a sample runs the program: one of `frequency` and `period`,
    /// neither of them 0.
    pub fn sample(frequency: Option<u64>, period: Option<u64>) -> Result<Sample, String> {
        match (frequency, period) {
            (Some(0), _) => Err("frequency 0 would never sample: give samples per second".into()),
            (_, Some(0)) => Err("period 0 would never sample: give events per sample".into()),
            (Some(f), None) => Ok(Sample::Frequency(f)),
            (None, Some(p)) => Ok(Sample::Period(p)),
            (None, None) => Err("frequency (or period) is missing".into()),
            (Some(_), Some(_)) => Err("give one of frequency and period, not both".into()),
        }
    }
}

/// The section form: `type=1,config=0,frequency=99`.
impl std::fmt::Display for PerfEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (key, value) = match self.sample {
            Sample::Frequency(v) => ("frequency", v),
            Sample::Period(v) => ("period", v),
        };
        write!(f, "type={},config={},{key}={value}", self.kind, self.config)
    }
}

/// The section's own meaning, if it has one: `None` for every section
/// libbpf knows (`xdp`, `xdp/devmap`, `perf_event`, …), `Some(Err)` for
/// one of these forms written wrong.
pub fn parse(section: &str) -> Option<Result<OwnSection, String>> {
    if section == POST_ATTACH_MARK {
        return Some(Ok(OwnSection::PostAttachMark));
    }
    if let Some(interface) = section.strip_prefix("xdp/") {
        return match interface {
            "" | "devmap" | "cpumap" => None,
            interface => Some(Ok(OwnSection::Xdp {
                interface: interface.to_string(),
            })),
        };
    }
    let spec = section.strip_prefix("perf_event/")?;
    Some(perf_event(spec).map(OwnSection::PerfEvent).map_err(|e| {
        format!("SEC(\"{section}\"): {e}; write it as perf_event/type=N,config=M,frequency=F (or period=P)")
    }))
}

fn perf_event(spec: &str) -> Result<PerfEvent, String> {
    let (mut kind, mut config, mut frequency, mut period) = (None, None, None, None);
    for part in spec.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not key=value"))?;
        let count = || number(value).ok_or_else(|| format!("{key}={value:?} is not a number"));
        match key {
            "type" => kind = Some(PerfEvent::kind(value)?),
            "config" => config = Some(value),
            "frequency" => frequency = Some(count()?),
            "period" => period = Some(count()?),
            other => {
                return Err(format!(
                    "unknown key {other:?} (known: type, config, frequency, period)"
                ))
            }
        }
    }
    let kind = kind.ok_or("type is missing")?;
    Ok(PerfEvent {
        kind,
        config: PerfEvent::config(kind, config.ok_or("config is missing")?)?,
        sample: PerfEvent::sample(frequency, period)?,
    })
}

impl OwnSection {
    pub fn prog_type(&self) -> ProgramType {
        match self {
            OwnSection::Xdp { .. } => ProgramType::Xdp,
            OwnSection::PerfEvent(_) => ProgramType::PerfEvent,
            OwnSection::PostAttachMark => ProgramType::Kprobe,
        }
    }
}

/// Opens `event` on every online CPU, for every process.
pub fn open_on_every_cpu(event: PerfEvent) -> io::Result<Vec<OwnedFd>> {
    online_cpus()?.into_iter().map(|cpu| open(event, cpu)).collect()
}

fn open(event: PerfEvent, cpu: i32) -> io::Result<OwnedFd> {
    // SAFETY: zero is a valid value for every field of perf_event_attr.
    let mut attr: libbpf_sys::perf_event_attr = unsafe { std::mem::zeroed() };
    attr.type_ = event.kind;
    attr.size = std::mem::size_of::<libbpf_sys::perf_event_attr>() as u32;
    attr.config = event.config;
    match event.sample {
        Sample::Frequency(f) => {
            attr.set_freq(1);
            attr.__bindgen_anon_1.sample_freq = f;
        }
        Sample::Period(p) => attr.__bindgen_anon_1.sample_period = p,
    }
    // SAFETY: `attr` is a valid, sized perf_event_attr; the other
    // arguments are plain integers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const libbpf_sys::perf_event_attr,
            -1i32,
            cpu,
            -1i32,
            libc::c_ulong::from(libbpf_sys::PERF_FLAG_FD_CLOEXEC),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `/sys/devices/system/cpu/online`: `0-3,5`.
fn online_cpus() -> io::Result<Vec<i32>> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("online CPUs {text:?}"));
    let mut cpus = Vec::new();
    for range in text.trim().split(',').filter(|r| !r.is_empty()) {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let (first, last): (i32, i32) = (
            first.parse().map_err(|_| bad())?,
            last.parse().map_err(|_| bad())?,
        );
        cpus.extend(first..=last);
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ebpf_exporter_sections_are_read_and_libbpf_ones_left_alone() {
        assert_eq!(
            parse("xdp/eth0"),
            Some(Ok(OwnSection::Xdp {
                interface: "eth0".into()
            }))
        );
        for known in ["xdp", "xdp/devmap", "xdp/cpumap", "perf_event", "tracepoint/x/y"] {
            assert_eq!(parse(known), None, "{known}");
        }
        assert_eq!(
            parse("perf_event/type=0,config=3,frequency=1"),
            Some(Ok(OwnSection::PerfEvent(PerfEvent {
                kind: 0,
                config: 3,
                sample: Sample::Frequency(1)
            })))
        );
        assert_eq!(
            parse("perf_event/type=1,config=0,period=1000"),
            Some(Ok(OwnSection::PerfEvent(PerfEvent {
                kind: 1,
                config: 0,
                sample: Sample::Period(1000)
            })))
        );
        let err = parse("perf_event/type=1,frequency=9").unwrap().unwrap_err();
        assert!(
            err.contains("config is missing") && err.contains("perf_event/type=N"),
            "{err}"
        );
        let err = parse("perf_event/type=1,config=0,freq=9").unwrap().unwrap_err();
        assert!(err.contains("unknown key \"freq\""), "{err}");
        assert_eq!(parse(POST_ATTACH_MARK), Some(Ok(OwnSection::PostAttachMark)));
    }

    /// What an `attach:` entry's `perf_event:` takes, the section takes.
    #[test]
    fn perf_event_sections_take_perf_names_and_one_sample_setting() {
        assert_eq!(
            parse("perf_event/type=software,config=cpu-clock,frequency=99"),
            parse("perf_event/type=1,config=0,frequency=99")
        );
        assert_eq!(
            parse("perf_event/type=hardware,config=cpu-cycles,period=0x10000"),
            Some(Ok(OwnSection::PerfEvent(PerfEvent {
                kind: 0,
                config: 0,
                sample: Sample::Period(65536)
            })))
        );
        assert_eq!(
            parse("perf_event/type=4,config=0x1a3,frequency=1")
                .unwrap()
                .map(|s| match s {
                    OwnSection::PerfEvent(e) => e.to_string(),
                    other => format!("{other:?}"),
                }),
            Ok("type=4,config=419,frequency=1".to_string())
        );
        for (section, says) in [
            (
                "perf_event/type=1,config=0,frequency=9,period=9",
                "give one of frequency and period",
            ),
            (
                "perf_event/type=1,config=0,period=0",
                "period 0 would never sample",
            ),
            (
                "perf_event/type=1,config=cpu-clok,frequency=9",
                "unknown software event \"cpu-clok\"",
            ),
            (
                "perf_event/type=raw,config=cpu-clock,frequency=9",
                "names are known for types hardware",
            ),
            (
                "perf_event/type=soft,config=0,frequency=9",
                "unknown perf event type \"soft\"",
            ),
        ] {
            let err = parse(section).unwrap().unwrap_err();
            assert!(err.contains(says), "{section}: {err}");
        }
    }
}
