//! The kernel filesystems that attaching needs: tracefs, where libbpf looks
//! up tracepoint ids. A fresh host or container may not have it mounted.

use std::ffi::CString;
use std::path::Path;

use crate::metrics::{Failure, Reason};

/// Where libbpf looks for tracefs, in its order of preference.
const TRACEFS_PATHS: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Makes sure tracefs is reachable, mounting it at `/sys/kernel/tracing`
/// when it is not and we may, and says where it is. The error says exactly
/// what is missing.
pub fn ensure_tracefs() -> Result<&'static str, Failure> {
    let mut closed = None;
    for path in TRACEFS_PATHS {
        match std::fs::metadata(Path::new(path).join("events")) {
            Ok(m) if m.is_dir() => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => closed = closed.or(Some(*path)),
            _ => {}
        }
    }
    // Mounted but closed: mounting again would fail with EPERM and say
    // the wrong thing.
    if let Some(path) = closed {
        return Err(Failure::new(
            Reason::Permission,
            crate::privileges::tracefs_hint(path),
        ));
    }
    let target = TRACEFS_PATHS[0];
    if !Path::new(target).is_dir() {
        return Err(Failure::new(
            Reason::HookMissing,
            format!(
                "tracefs is not mounted and {target} does not exist: this kernel lacks CONFIG_TRACING, \
                 or /sys is not the host's (in a container, mount the host's /sys)"
            ),
        ));
    }
    mount("tracefs", target, "tracefs").map_err(|e| {
        Failure::new(
            Reason::Permission,
            format!(
                "tracefs is not mounted and mounting it at {target} failed ({e}): run \
                 `mount -t tracefs tracefs {target}` as root, or give the exporter CAP_SYS_ADMIN"
            ),
        )
    })?;
    tracing::info!("mounted tracefs at {target}");
    Ok(target)
}

fn mount(source: &str, target: &str, fstype: &str) -> std::io::Result<()> {
    let c = |s: &str| CString::new(s).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e));
    let (source, target, fstype) = (c(source)?, c(target)?, c(fstype)?);
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Where tracefs (at `root`) keeps the id of the tracepoint a
/// `tracepoint/<category>/<name>` section attaches to: the file attaching
/// reads.
pub fn tracepoint_id_path(root: &str, section: &str) -> std::path::PathBuf {
    let event = section.split_once('/').map_or("", |(_, event)| event);
    Path::new(root).join("events").join(event).join("id")
}

/// Sections whose auto-attach goes through tracefs.
pub fn needs_tracefs(section: &str) -> bool {
    section.starts_with("tracepoint/") || section.starts_with("tp/")
}
