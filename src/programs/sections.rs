//! Sections ebpf_exporter gives a meaning of its own and libbpf does not
//! know, so their programs load with the right type and attach where the
//! section says:
//!
//! - `xdp/<interface>`: an XDP program for that interface;
//! - `perf_event/type=N,config=M,frequency=F` (or `period=P`): a
//!   perf_event program run by that perf event, opened on every CPU.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use libbpf_rs::ProgramType;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnSection {
    Xdp { interface: String },
    PerfEvent(PerfEvent),
}

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

/// The section's own meaning, if it has one: `None` for every section
/// libbpf knows (`xdp`, `xdp/devmap`, `perf_event`, …), `Some(Err)` for
/// one of these forms written wrong.
pub fn parse(section: &str) -> Option<Result<OwnSection, String>> {
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
    let (mut kind, mut config, mut sample) = (None, None, None);
    for part in spec.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not key=value"))?;
        let value: u64 = value
            .parse()
            .map_err(|_| format!("{key}={value:?} is not a number"))?;
        match key {
            "type" => kind = Some(u32::try_from(value).map_err(|_| format!("type={value} is too big"))?),
            "config" => config = Some(value),
            "frequency" => sample = Some(Sample::Frequency(value)),
            "period" => sample = Some(Sample::Period(value)),
            other => {
                return Err(format!(
                    "unknown key {other:?} (known: type, config, frequency, period)"
                ))
            }
        }
    }
    Ok(PerfEvent {
        kind: kind.ok_or("type is missing")?,
        config: config.ok_or("config is missing")?,
        sample: sample.ok_or("frequency (or period) is missing")?,
    })
}

impl OwnSection {
    pub fn prog_type(&self) -> ProgramType {
        match self {
            OwnSection::Xdp { .. } => ProgramType::Xdp,
            OwnSection::PerfEvent(_) => ProgramType::PerfEvent,
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
    }
}
