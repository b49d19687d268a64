//! Open, load and attach one config's program, so that one failure costs
//! as little as possible: a program the kernel refuses is left out and the
//! rest of the object still loads; a program that cannot attach is reported
//! and the others stay attached.
//!
//! Every failure carries its kind ([`Reason`]): a reload decides from it
//! whether the old version must make way (an exclusive hook) or simply
//! stays, and the self-metrics label it. Attachments can be dropped and
//! made again on the loaded object ([`Loaded::detach`], [`Loaded::attach`]),
//! so an old version that made way keeps its maps and their values.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Mutex, Once};

use libbpf_rs::{
    AsRawLibbpf, ErrorKind, Link, MapCore, MapHandle, Object, ObjectBuilder, OpenObject, PrintLevel,
    UprobeOpts,
};

use super::mark::Marks;
use super::sections::{OwnSection, POST_ATTACH_MARK};
use super::{fs, Hook, ProgramObject};
use crate::config::{AttachSpec, Config, XdpMode};
use crate::metrics::{ConfigState, ConfigStatus, Failure, ProgramStatus, Reason};

/// Lines of the verifier log kept in an error: its tail says why.
const VERIFIER_TAIL_LINES: usize = 20;

/// A config's object, loaded, with its attachments. Dropping it detaches
/// everything, XDP included (links, not netlink attachments, so nothing
/// outlives the exporter).
#[derive(Debug)]
pub struct Loaded {
    /// `None` for a config of pinned maps, which loads no program.
    object: Option<Object>,
    /// Maps pinned by other programs, by the name the config gives them.
    pinned: Vec<(String, MapHandle)>,
    /// What keeps each program attached, by program name: links, and XDP
    /// link fds (`bpf_link_create`).
    links: Vec<(String, Link)>,
    xdp_links: Vec<(String, OwnedFd)>,
    programs: Vec<ProgramStatus>,
    /// Programs the kernel refused at load: never attachable.
    refused: Vec<String>,
    /// Keeps the config's `cgroup_id_map` filled while loaded.
    cgroups: Option<super::cgroups::CgroupFiller>,
}

impl Loaded {
    /// A handle on map `name` that the reader may keep and use from any
    /// thread (it holds its own fd).
    pub fn map(&self, name: &str) -> Option<MapHandle> {
        if let Some((_, pinned)) = self.pinned.iter().find(|(n, _)| n == name) {
            return MapHandle::try_from(pinned).ok();
        }
        let map = self.object.as_ref()?.maps().find(|m| m.name() == name)?;
        MapHandle::try_from(&map).ok()
    }

    /// Each loaded program's name and an fd of its own, for reading its
    /// run-time statistics from another thread.
    pub fn program_fds(&self) -> Vec<(String, OwnedFd)> {
        let Some(object) = &self.object else {
            return Vec::new();
        };
        object
            .progs()
            .filter(|p| {
                // A program left out of the load has no fd (-1), which must
                // not be borrowed.
                // SAFETY: the pointer is a live program of this object.
                unsafe { libbpf_sys::bpf_program__fd(p.as_libbpf_object().as_ptr()) >= 0 }
            })
            .filter_map(|p| {
                let fd = p.as_fd().try_clone_to_owned().ok()?;
                Some((p.name().to_string_lossy().into_owned(), fd))
            })
            .collect()
    }

    pub fn programs(&self) -> &[ProgramStatus] {
        &self.programs
    }

    /// Every program attached.
    pub fn fully_attached(&self) -> bool {
        self.programs.iter().all(|p| p.attached)
    }

    /// Some program could not attach because an exclusive hook is taken.
    pub fn hook_busy(&self) -> bool {
        self.programs.iter().any(|p| p.reason == Some(Reason::HookBusy))
    }

    /// How `config`, loaded as this, stands: running with every program
    /// attached, degraded with some, failed with none.
    pub fn status(&self, config: &Config) -> ConfigStatus {
        let attached = self.programs.iter().filter(|p| p.attached).count();
        let state = match attached {
            // Pinned maps only: nothing to attach.
            0 if self.programs.is_empty() => ConfigState::Running,
            0 => ConfigState::Failed,
            n if n == self.programs.len() => ConfigState::Running,
            _ => ConfigState::Degraded,
        };
        ConfigStatus {
            name: config.name.clone(),
            source: config.origin.clone(),
            program: config.program.clone(),
            state,
            reason: self.programs.iter().find_map(|p| p.reason),
            error: None,
            rejected: None,
            programs: self.programs.clone(),
            cpu_budget: None,
        }
    }

    /// The failures of the unattached programs, one line each.
    pub fn failures(&self) -> Failure {
        let reason = self
            .programs
            .iter()
            .find_map(|p| p.reason)
            .unwrap_or(Reason::Failed);
        let message = self
            .programs
            .iter()
            .filter_map(|p| p.error.as_deref())
            .collect::<Vec<_>>()
            .join("; ");
        Failure::new(reason, message)
    }

    /// Detaches every program but keeps the object, its programs and maps
    /// (and the values in them), so [`Loaded::attach`] can put it back.
    /// A `post_attach_mark` program has run and holds no attachment: it
    /// stays as it is, and does not run again.
    pub fn detach(&mut self) {
        self.links.clear();
        self.xdp_links.clear();
        for p in self
            .programs
            .iter_mut()
            .filter(|p| p.attached && p.section != POST_ATTACH_MARK)
        {
            p.attached = false;
            p.reason = Some(Reason::HookBusy);
            p.error = Some("detached to make way for a new version of the config".to_string());
        }
    }

    /// Attaches every loaded program that is not attached, where `config`
    /// says (its `attach:` entries, else the program's section); then, if
    /// any is a `post_attach_mark` program, calls `post_attach_mark()` once.
    pub fn attach(&mut self, config: &Config) {
        let Some(object) = self.object.as_mut() else {
            return;
        };
        let mut marks = Marks::default();
        for prog in object.progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            let attached = self.programs.iter().any(|p| p.name == name && p.attached);
            if attached || self.refused.contains(&name) {
                continue;
            }
            let section = prog.section().to_string_lossy().into_owned();
            let explicit: Vec<&AttachSpec> = config.attach.iter().filter(|a| a.program() == name).collect();
            let (mut links, mut xdp_links) = (Vec::new(), Vec::new());
            let result = if explicit.is_empty() {
                attach_from_section(&prog, &section, &mut links, &mut xdp_links, &mut marks)
            } else {
                explicit.iter().try_for_each(|spec| match spec {
                    AttachSpec::Xdp { interface, mode, .. } => {
                        attach_xdp(&prog, interface, *mode).map(|fd| xdp_links.push(fd))
                    }
                    AttachSpec::Uprobe {
                        binary,
                        function,
                        pid,
                        ..
                    } => attach_uprobe(&prog, &section, binary, function, *pid).map(|link| links.push(link)),
                    AttachSpec::PerfEvent { event, .. } => {
                        attach_perf_event(&prog, &section, *event, &mut links)
                    }
                })
            };
            // All of a program's attach points or none: a half-attached
            // program would count some of its events.
            if result.is_ok() {
                self.links.extend(links.into_iter().map(|l| (name.clone(), l)));
                self.xdp_links
                    .extend(xdp_links.into_iter().map(|l| (name.clone(), l)));
            }
            let (id, tag) = match super::stats::identity(prog.as_fd()) {
                Ok((id, tag)) => (Some(id), Some(tag)),
                Err(_) => (None, None),
            };
            let status = ProgramStatus {
                name: name.clone(),
                section,
                id,
                tag,
                attached: result.is_ok(),
                reason: result.as_ref().err().map(|f| f.reason),
                error: result.err().map(|f| f.message),
            };
            match self.programs.iter_mut().find(|p| p.name == name) {
                Some(old) => *old = status,
                None => self.programs.push(status),
            }
        }
        marks.call();
        self.programs.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

/// Loads `config`'s program, attached by [`Loaded::attach`]. `Err` means
/// nothing could be loaded; programs the kernel refused are in
/// [`Loaded::programs`]. `btf` is the kernel BTF to relocate against
/// instead of the running kernel's (`--btf.path`); `pin_dir` is where a
/// config with `pin: true` pins its maps.
pub fn load(config: &Config, btf: Option<&Path>, pin_dir: &super::pin::PinDir) -> Result<Loaded, Failure> {
    if let ProgramObject::Pinned(pins) = &config.object {
        return open_pinned(pins);
    }
    let pins = super::pin::prepare(config, pin_dir)?;
    let opts = OpenOptions {
        btf,
        constants: kaddrs(config)?,
        pins: &pins,
    };
    let (object, refused) = load_isolating_failures(&config.object, &opts)?;
    super::pin::log(&config.name, &pins);
    let mut loaded = Loaded {
        object: Some(object),
        pinned: Vec::new(),
        links: Vec::new(),
        xdp_links: Vec::new(),
        programs: refused
            .iter()
            .map(|(name, section, failure)| ProgramStatus {
                name: name.clone(),
                section: section.clone(),
                reason: Some(failure.reason),
                error: Some(failure.message.clone()),
                ..ProgramStatus::default()
            })
            .collect(),
        refused: refused.into_iter().map(|(name, _, _)| name).collect(),
        cgroups: None,
    };
    if let Some(spec) = &config.cgroup_id_map {
        let map = loaded.map(&spec.map).ok_or_else(|| {
            Failure::new(
                Reason::ObjectInvalid,
                format!("cgroup_id_map: no map {:?} in the loaded object", spec.map),
            )
        })?;
        loaded.cgroups = Some(super::cgroups::CgroupFiller::start(map, spec.clone()));
    }
    Ok(loaded)
}

/// A config of maps other programs pinned: no program, the maps opened
/// from their pins.
fn open_pinned(pins: &[(String, std::path::PathBuf)]) -> Result<Loaded, Failure> {
    let pinned = pins
        .iter()
        .map(|(name, path)| {
            MapHandle::from_pinned_path(path)
                .map(|handle| (name.clone(), handle))
                .map_err(|e| super::pinned::gone(path, &e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    Ok(Loaded {
        object: None,
        pinned,
        links: Vec::new(),
        xdp_links: Vec::new(),
        programs: Vec::new(),
        refused: Vec::new(),
        cgroups: None,
    })
}

/// Programs the kernel refused: name, section, why.
type Refused = Vec<(String, String, Failure)>;

/// Loads the object; when the kernel refuses it, loads each program alone to
/// find the ones at fault, then loads the object without them.
fn load_isolating_failures(
    embedded: &ProgramObject,
    opts: &OpenOptions<'_>,
) -> Result<(Object, Refused), Failure> {
    let first = with_captured_log(|| {
        open(embedded, opts)?
            .load()
            .map_err(|e| Failure::new(Reason::Failed, e.to_string()))
    });
    let whole_error = match first {
        (Ok(object), _) => return Ok((object, Vec::new())),
        (Err(e), log) => (e, log),
    };
    let programs: Vec<(String, String)> = super::inspect(embedded.name(), embedded.bytes())
        .map_err(|e| Failure::new(Reason::ObjectInvalid, format!("{e:#}")))?
        .programs
        .into_iter()
        .map(|p| (p.name, p.section))
        .collect();
    let mut refused = Vec::new();
    for (name, section) in &programs {
        let (result, log) = with_captured_log(|| {
            let mut obj = open(embedded, opts).map_err(|e| (ErrorKind::Other, e.message))?;
            for mut p in obj.progs_mut() {
                p.set_autoload(p.name() == name.as_str());
            }
            obj.load().map(drop).map_err(|e| (e.kind(), e.to_string()))
        });
        if let Err((kind, error)) = result {
            refused.push((
                name.clone(),
                section.clone(),
                load_error(name, section, kind, &error, &log),
            ));
        }
    }
    if refused.is_empty() {
        return Err(Failure::new(
            Reason::Failed,
            format!(
                "loading the object failed: {}{}",
                whole_error.0,
                log_tail(&whole_error.1)
            ),
        ));
    }
    if refused.len() == programs.len() {
        let detail = refused
            .iter()
            .map(|(_, _, e)| e.message.as_str())
            .collect::<Vec<_>>();
        return Err(Failure::new(refused[0].2.reason, detail.join("; ")));
    }
    let (result, log) = with_captured_log(|| {
        let mut obj = open(embedded, opts).map_err(|e| e.message)?;
        for mut p in obj.progs_mut() {
            let skip = refused.iter().any(|(n, _, _)| p.name() == n.as_str());
            p.set_autoload(!skip);
        }
        obj.load().map_err(|e| e.to_string())
    });
    for (name, _, error) in &refused {
        tracing::warn!(program = %name, "left out: {error}");
    }
    result.map(|object| (object, refused)).map_err(|e| {
        Failure::new(
            Reason::Failed,
            format!(
                "loading the object without the refused programs failed: {e}{}",
                log_tail(&log)
            ),
        )
    })
}

/// What every open of a config's object is given before load.
struct OpenOptions<'a> {
    /// `--btf.path`.
    btf: Option<&'a Path>,
    /// Values for `.rodata` variables: map, offset, value.
    constants: Vec<(String, usize, u64)>,
    /// Maps libbpf reuses from their pins, or pins once made.
    pins: &'a [super::pin::Pin],
}

/// The address of each `kaddrs` symbol, where the program wants it.
fn kaddrs(config: &Config) -> Result<Vec<(String, usize, u64)>, Failure> {
    if config.kaddrs.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = config.kaddrs.iter().map(|k| k.symbol.as_str()).collect();
    let addresses = crate::decoders::kallsyms_addresses_of(&names)
        .map_err(|e| Failure::new(Reason::Failed, format!("kaddrs: reading /proc/kallsyms: {e}")))?;
    config
        .kaddrs
        .iter()
        .zip(addresses)
        .map(|(k, address)| match address {
            Some(0) => Err(Failure::new(
                Reason::Permission,
                format!(
                    "kaddrs: /proc/kallsyms hides the address of {} from the exporter: grant it CAP_SYSLOG \
                     (or set kernel.kptr_restrict to 0 or 1)",
                    k.symbol
                ),
            )),
            Some(address) => Ok((k.map.clone(), k.offset, address)),
            None => Err(Failure::new(
                Reason::HookMissing,
                format!(
                    "kaddrs: this kernel has no symbol {:?} in /proc/kallsyms: fix kaddrs, or the program \
                     for this kernel",
                    k.symbol
                ),
            )),
        })
        .collect()
}

fn open(object: &ProgramObject, opts: &OpenOptions<'_>) -> Result<OpenObject, Failure> {
    let mut builder = ObjectBuilder::default();
    if let Some(btf) = opts.btf {
        builder.btf_custom_path(btf).map_err(|e| {
            Failure::new(
                Reason::ObjectInvalid,
                format!("--btf.path {}: {e}", btf.display()),
            )
        })?;
    }
    let mut open = builder
        .name(object.name())
        .and_then(|b| b.open_memory(object.bytes()))
        .map_err(|e| {
            Failure::new(
                Reason::ObjectInvalid,
                format!("opening the BPF object {}: {e}", object.describe()),
            )
        })?;
    for mut prog in open.progs_mut() {
        let section = prog.section().to_string_lossy().into_owned();
        if let Some(Ok(own)) = super::sections::parse(&section) {
            prog.set_prog_type(own.prog_type());
            if matches!(own, OwnSection::Xdp { .. }) {
                prog.set_attach_type(libbpf_rs::ProgramAttachType::Xdp);
            }
        }
    }
    for pin in opts.pins {
        let set = open
            .maps_mut()
            .find(|m| m.name().to_str() == Some(pin.map.as_str()))
            .map(|mut m| m.set_pin_path(&pin.path));
        match set {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                return Err(Failure::new(
                    Reason::Failed,
                    format!("pinning map {} at {}: {e}", pin.map, pin.path.display()),
                ))
            }
            None => {
                return Err(Failure::new(
                    Reason::ObjectInvalid,
                    format!("pin: no map {} in {} to pin", pin.map, object.describe()),
                ))
            }
        }
    }
    for (map, offset, value) in &opts.constants {
        let written = open
            .maps_mut()
            .find(|m| m.name().to_str() == Some(map.as_str()))
            .and_then(|mut m| {
                m.initial_value_mut()?
                    .get_mut(*offset..*offset + 8)
                    .map(|b| b.copy_from_slice(&value.to_ne_bytes()))
            });
        if written.is_none() {
            return Err(Failure::new(
                Reason::ObjectInvalid,
                format!("kaddrs: no 8 bytes at offset {offset} of {map} to write into"),
            ));
        }
    }
    Ok(open)
}

/// Explains a refused program, with what to do about it.
fn load_error(name: &str, section: &str, kind: ErrorKind, error: &str, log: &[String]) -> Failure {
    let verifier_said = log.iter().any(|l| l.contains("BEGIN PROG LOAD LOG"));
    let permission_hint = crate::privileges::permission_hint(section);
    let (reason, hint) = if verifier_said {
        (
            Reason::VerifierRefused,
            ": the verifier rejected it; the end of its log below says why",
        )
    } else if log
        .iter()
        .any(|l| l.contains("failed to find kernel BTF type ID"))
    {
        (Reason::HookMissing, MISSING_HOOK_HINT)
    } else if kind == ErrorKind::PermissionDenied && is_trampoline(section) {
        (
            Reason::HookMissing,
            ": this kernel refuses fentry/fexit/LSM programs (no BTF trampolines, or a lockdown or LSM \
             policy); use a tracepoint or tp_btf hook instead",
        )
    } else if kind == ErrorKind::PermissionDenied {
        (Reason::Permission, permission_hint.as_str())
    } else {
        (Reason::Failed, "")
    };
    Failure::new(
        reason,
        format!(
            "program {name:?} (SEC \"{section}\") was refused by the kernel: {error}{hint}{}",
            log_tail(log)
        ),
    )
}

/// Why a hook named in a section can be missing: tracepoints and kernel
/// functions come and go with the architecture, version and configuration
/// (exceptions/page_fault_user is x86's own, for one).
const MISSING_HOOK_HINT: &str = ": this kernel has no such tracepoint or function (its tracepoints are \
     listed in /sys/kernel/tracing/available_events); some exist only on some architectures, versions \
     or configurations";

/// Sections that attach to a tracepoint by name and fail to attach, not to
/// load, when the kernel lacks it.
fn is_tracepoint(section: &str) -> bool {
    ["tracepoint/", "tp/", "raw_tp/", "raw_tracepoint/"]
        .iter()
        .any(|p| section.starts_with(p))
}

fn is_trampoline(section: &str) -> bool {
    ["fentry", "fexit", "fmod_ret", "lsm", "freplace"]
        .iter()
        .any(|p| {
            section == *p || section.starts_with(&format!("{p}/")) || section.starts_with(&format!("{p}.s/"))
        })
}

/// Attaches where the section says, adding what keeps it attached to
/// `links` (or `xdp_links`, or `marks` for the one call).
fn attach_from_section(
    prog: &libbpf_rs::ProgramMut<'_>,
    section: &str,
    links: &mut Vec<Link>,
    xdp_links: &mut Vec<OwnedFd>,
    marks: &mut Marks,
) -> Result<(), Failure> {
    match super::sections::parse(section) {
        Some(Ok(OwnSection::Xdp { interface })) => {
            return attach_xdp(prog, &interface, XdpMode::Auto).map(|fd| xdp_links.push(fd));
        }
        Some(Ok(OwnSection::PerfEvent(event))) => return attach_perf_event(prog, section, event, links),
        Some(Ok(OwnSection::PostAttachMark)) => return marks.attach(prog),
        Some(Err(message)) => return Err(Failure::new(Reason::ObjectInvalid, message)),
        None => {}
    }
    if fs::needs_tracefs(section) {
        fs::ensure_tracefs()?;
    }
    // libbpf's warnings say what its errno does not (a usdt.bpf.h left out).
    let (result, log) = with_captured_log(|| prog.attach());
    let link = result.map_err(|e| {
        let uprobe = matches!(Hook::of_section(section), Some(Hook::Uprobe | Hook::Uretprobe));
        let (reason, hint) = if ["kprobe", "kretprobe", "ksyscall", "kretsyscall"]
            .iter()
            .any(|p| section.starts_with(p))
        {
            (
                Reason::HookMissing,
                ": kprobes are unavailable (kernel without CONFIG_KPROBES) or the function does not exist \
                 or is inlined (see /sys/kernel/tracing/available_filter_functions); prefer a tracepoint"
                    .to_string(),
            )
        } else if let Some(why) = super::usdt::diagnose(section) {
            (Reason::HookMissing, format!(": {why}"))
        } else if super::needs_attach_entry(section) {
            (
                Reason::ObjectInvalid,
                ": this section does not say where to attach; add an `attach:` entry for the program"
                    .to_string(),
            )
        } else if e.kind() == ErrorKind::NotFound && uprobe {
            // libbpf's form: uprobe/<binary>:<function>.
            let target = section.split_once('/').map_or("", |(_, t)| t);
            let (binary, function) = target.split_once(':').unwrap_or((target, ""));
            (
                Reason::HookMissing,
                format!(
                    ": there is no file {binary}, or it has no function {function:?} in its symbol tables \
                     (see `nm -D {binary}`)"
                ),
            )
        } else if e.kind() == ErrorKind::NotFound && is_tracepoint(section) {
            (Reason::HookMissing, MISSING_HOOK_HINT.to_string())
        } else if e.kind() == ErrorKind::PermissionDenied {
            (Reason::Permission, crate::privileges::permission_hint(section))
        } else {
            (Reason::Failed, log_tail(&log))
        };
        Failure::new(reason, format!("attaching SEC \"{section}\" failed: {e}{hint}"))
    })?;
    links.push(link);
    Ok(())
}

/// Opens `event` on every CPU and attaches the program to each.
fn attach_perf_event(
    prog: &libbpf_rs::ProgramMut<'_>,
    section: &str,
    event: super::sections::PerfEvent,
    links: &mut Vec<Link>,
) -> Result<(), Failure> {
    let fds = super::sections::open_on_every_cpu(event).map_err(|e| {
        let (reason, hint) = match e.raw_os_error() {
            Some(libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV) => (
                Reason::HookMissing,
                ": this machine has no such perf event (a VM often lacks hardware counters; \
                 software events, type=1, always work)"
                    .to_string(),
            ),
            Some(libc::EACCES | libc::EPERM) => {
                (Reason::Permission, crate::privileges::permission_hint(section))
            }
            _ => (Reason::Failed, String::new()),
        };
        Failure::new(
            reason,
            format!("opening perf event {event} for SEC \"{section}\" failed: {e}{hint}"),
        )
    })?;
    for fd in fds {
        let link = prog.attach_perf_event(fd.as_raw_fd()).map_err(|e| {
            Failure::new(
                Reason::Failed,
                format!("attaching SEC \"{section}\" to perf event {event} failed: {e}"),
            )
        })?;
        // The link owns the perf event now and closes it when it goes.
        let _ = std::os::fd::IntoRawFd::into_raw_fd(fd);
        links.push(link);
    }
    Ok(())
}

/// Attaches through a BPF link, which the kernel removes when the exporter
/// exits, unlike a netlink XDP attachment that would stay on the interface.
fn attach_xdp(prog: &libbpf_rs::ProgramMut<'_>, interface: &str, mode: XdpMode) -> Result<OwnedFd, Failure> {
    let missing = || {
        Failure::new(
            Reason::HookMissing,
            format!("no network interface {interface:?} (see `ip link`): fix attach.xdp.interface"),
        )
    };
    let name = std::ffi::CString::new(interface).map_err(|_| missing())?;
    // SAFETY: `name` is a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(missing());
    }
    let flags = match mode {
        XdpMode::Auto => 0,
        XdpMode::Generic => libbpf_sys::XDP_FLAGS_SKB_MODE,
        XdpMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
        XdpMode::Offload => libbpf_sys::XDP_FLAGS_HW_MODE,
    };
    // SAFETY: zero is a valid value for every field of the options struct.
    let mut opts: libbpf_sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _;
    opts.flags = flags;
    let fd = prog.as_fd().as_raw_fd();
    // SAFETY: `fd` is a loaded program and `opts` is initialised with its size.
    let rc = unsafe { libbpf_sys::bpf_link_create(fd, ifindex as i32, libbpf_sys::BPF_XDP, &opts) };
    if rc < 0 {
        let err = std::io::Error::from_raw_os_error(-rc);
        let (reason, hint) = match -rc {
            libc::EBUSY | libc::EEXIST => (
                Reason::HookBusy,
                format!(
                    ": another XDP program is attached to {interface} (see `ip link show {interface}`); \
                     an interface takes one XDP program per mode"
                ),
            ),
            libc::EOPNOTSUPP | libc::EINVAL if mode != XdpMode::Generic => (
                Reason::HookMissing,
                format!(": {interface}'s driver may not support XDP mode {mode}; try `mode: generic`"),
            ),
            libc::EPERM => (Reason::Permission, crate::privileges::permission_hint("xdp")),
            _ => (Reason::Failed, String::new()),
        };
        return Err(Failure::new(
            reason,
            format!("attaching XDP to {interface} (mode {mode}) failed: {err}{hint}"),
        ));
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

/// Attaches to `function` of `binary` (every process running it, or `pid`
/// only), as a return probe when the program's section says `uretprobe`.
fn attach_uprobe(
    prog: &libbpf_rs::ProgramMut<'_>,
    section: &str,
    binary: &str,
    function: &str,
    pid: Option<i32>,
) -> Result<Link, Failure> {
    let retprobe = Hook::of_section(section) == Some(Hook::Uretprobe);
    let what = format!(
        "attaching {} to {function} in {binary}{}",
        if retprobe { "a uretprobe" } else { "a uprobe" },
        pid.map_or(String::new(), |p| format!(" (pid {p})"))
    );
    if !Path::new(binary).is_file() {
        return Err(Failure::new(
            Reason::HookMissing,
            format!("{what} failed: there is no file {binary}: fix attach.uprobe.binary"),
        ));
    }
    if let Some(pid) = pid {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(Failure::new(
                Reason::HookMissing,
                format!("{what} failed: there is no process {pid}: fix attach.uprobe.pid"),
            ));
        }
    }
    let opts = UprobeOpts {
        func_name: Some(function.to_string()),
        retprobe,
        ..Default::default()
    };
    prog.attach_uprobe_with_opts(pid.unwrap_or(-1), binary, 0, opts)
        .map_err(|e| {
            let (reason, hint) = match e.kind() {
                ErrorKind::NotFound => (
                    Reason::HookMissing,
                    format!(
                        ": {binary} has no function {function:?} in its symbol tables (see `nm -D {binary}`); \
                         fix attach.uprobe.function"
                    ),
                ),
                ErrorKind::PermissionDenied => (
                    Reason::Permission,
                    crate::privileges::uprobe_hint(section, pid.is_some() || binary.starts_with("/proc/")),
                ),
                _ => (Reason::Failed, String::new()),
            };
            Failure::new(reason, format!("{what} failed: {e:#}{hint}"))
        })
}

/// libbpf's messages during the current load, for verifier logs in errors.
static CAPTURED: Mutex<Option<Vec<String>>> = Mutex::new(None);
/// Serialises loads so captured messages belong to one load.
static LOADING: Mutex<()> = Mutex::new(());

fn print(level: PrintLevel, message: String) {
    for line in message.lines() {
        match level {
            PrintLevel::Warn => tracing::debug!(target: "libbpf", "{line}"),
            _ => tracing::trace!(target: "libbpf", "{line}"),
        }
    }
    if let Ok(mut captured) = CAPTURED.lock() {
        if let Some(lines) = captured.as_mut() {
            lines.extend(message.lines().map(str::to_string));
        }
    }
}

fn with_captured_log<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        libbpf_rs::set_print(Some((PrintLevel::Info, print)));
    });
    let _guard = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    *CAPTURED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
    let result = f();
    let log = CAPTURED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default();
    (result, log)
}

/// The end of the verifier log if libbpf printed one, else its last
/// warnings: where the reason for a refusal is.
fn log_tail(log: &[String]) -> String {
    let verifier: Vec<&String> = log
        .iter()
        .skip_while(|l| !l.contains("BEGIN PROG LOAD LOG"))
        .skip(1)
        .take_while(|l| !l.contains("END PROG LOAD LOG"))
        .collect();
    let (title, lines): (&str, Vec<&String>) = if verifier.is_empty() {
        (
            "libbpf",
            log.iter().filter(|l| l.starts_with("libbpf:")).collect(),
        )
    } else {
        ("verifier log", verifier)
    };
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(VERIFIER_TAIL_LINES)..];
    let mut out = format!("\n  {title} (last {} lines):", tail.len());
    for line in tail {
        out.push_str("\n    ");
        out.push_str(line.trim_end());
    }
    out
}
