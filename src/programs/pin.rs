//! The exporter's own maps, pinned (`pin: true`): the maps a config's
//! metrics read live in bpffs at `<--bpf.pin-dir>/<config>/<map>`, so
//! their values outlive the exporter, across a restart or an upgrade.
//! (Maps other programs pinned, which configs only read, are
//! [`super::pinned`]'s.)
//!
//! libbpf does the pinning: given a map's pin path before load, it reuses
//! the map pinned there when its definition matches, and pins the map it
//! makes when none is. When the definition does not match, libbpf fails
//! the load with "Invalid argument"; [`prepare`] compares first, as
//! libbpf does (`map_is_reuse_compat` in libbpf.c), and refuses the
//! config with the pin, the fields that differ and the fix.
//!
//! Pins stay when their config goes: outliving the exporter is the point.
//! Removing the directory (`rm -r <pin-dir>/<config>`) starts afresh.

use std::fs::DirBuilder;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use libbpf_rs::MapHandle;

use super::MapMeta;
use crate::config::Config;
use crate::metrics::{Failure, Reason};

/// bpffs's `f_type` in statfs (`BPF_FS_MAGIC`, include/uapi/linux/magic.h).
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;

/// `--bpf.pin-dir`'s default: the bpffs systemd mounts at boot.
pub const DEFAULT_DIR: &str = "/sys/fs/bpf/bpf-exporter";

/// Where configs with `pin: true` pin their maps, and whether they may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinDir {
    /// `--bpf.pin-dir`: each config's maps go in a directory of its name.
    pub path: PathBuf,
    /// `--config.check`: pins are checked but neither reused nor made, so
    /// a check beside a running exporter neither counts into its maps nor
    /// leaves pins behind.
    pub check_only: bool,
}

impl Default for PinDir {
    fn default() -> Self {
        PinDir {
            path: PathBuf::from(DEFAULT_DIR),
            check_only: false,
        }
    }
}

/// A map of a config, and the path libbpf is to pin it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub map: String,
    pub path: PathBuf,
    /// A map of the same layout is pinned there: the program gets it, and
    /// its values carry on.
    pub reused: bool,
}

/// The pins of `config`'s maps under `dir`, once the directory is known
/// to be on bpffs (and made) and every map pinned there already is known
/// to match the object's. None without `pin: true`, and none to set under
/// `--config.check` (the checks still run).
pub fn prepare(config: &Config, dir: &PinDir) -> Result<Vec<Pin>, Failure> {
    if config.pin_maps.is_empty() {
        return Ok(Vec::new());
    }
    let config_dir = dir.path.join(&config.name);
    on_bpffs(&dir.path, &config_dir)?;
    if !dir.check_only {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config_dir)
            .map_err(|e| cannot_create(&config_dir, &e))?;
    }
    let mut pins = Vec::new();
    let mut mismatches = Vec::new();
    for declared in &config.pin_maps {
        let path = config_dir.join(&declared.name);
        let pinned = pinned_map(&path, &declared.name)?;
        if let Some(pinned) = &pinned {
            let differences = differences(pinned, declared);
            if !differences.is_empty() {
                mismatches.push(mismatch(&path, declared, &config.program, &differences));
            }
        }
        pins.push(Pin {
            map: declared.name.clone(),
            path,
            reused: pinned.is_some(),
        });
    }
    if !mismatches.is_empty() {
        return Err(Failure::new(Reason::ObjectInvalid, mismatches.join("; ")));
    }
    Ok(if dir.check_only { Vec::new() } else { pins })
}

/// Says, once `config` has loaded, which of its maps carry on from their
/// pins and which were made and pinned.
pub fn log(config: &str, pins: &[Pin]) {
    for pin in pins {
        let path = pin.path.display();
        if pin.reused {
            tracing::info!(config, map = %pin.map, %path, "pinned map reused: its values carry on");
        } else {
            tracing::info!(config, map = %pin.map, %path, "pinned map created");
        }
    }
}

/// `config_dir` (under `--bpf.pin-dir` `pin_dir`) is, or would be made,
/// on a bpffs: the deepest of its directories that exists is on one.
fn on_bpffs(pin_dir: &Path, config_dir: &Path) -> Result<(), Failure> {
    // A relative path ends in "", which is the working directory.
    let existing = config_dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("."));
    let f_type = fs_type(existing).map_err(|e| {
        Failure::new(
            Reason::Failed,
            format!(
                "--bpf.pin-dir {}: cannot look at {}: {e}",
                pin_dir.display(),
                existing.display()
            ),
        )
    })?;
    if f_type == BPF_FS_MAGIC {
        return Ok(());
    }
    Err(Failure::new(
        Reason::HookMissing,
        format!(
            "--bpf.pin-dir {} is not on a bpffs ({} is on a filesystem of type {f_type:#x}), and maps \
             are pinned only in bpffs: mount it (`mount -t bpf bpf /sys/fs/bpf`; systemd's \
             sys-fs-bpf.mount does at boot), or give --bpf.pin-dir a directory on a bpffs",
            pin_dir.display(),
            existing.display()
        ),
    ))
}

/// The `f_type` statfs gives for `path`'s filesystem.
fn fs_type(path: &Path) -> std::io::Result<u32> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: zero is a valid value for every field of statfs.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stat` is a statfs to fill.
    if unsafe { libc::statfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The magic numbers are 32 bits; f_type's width differs by architecture.
    Ok(stat.f_type as u32)
}

fn cannot_create(dir: &Path, e: &std::io::Error) -> Failure {
    let shown = dir.display();
    match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM | libc::EROFS) => Failure::new(
            Reason::Permission,
            format!(
                "cannot make the pin directory {shown}: {e}: make it for the exporter's user \
                 (`mkdir -p {shown}` and `chown` it; under systemd, also ReadWritePaths=), or give \
                 --bpf.pin-dir a directory the exporter may write (bpffs also refuses names with a `.`)"
            ),
        ),
        _ => Failure::new(
            Reason::Failed,
            format!("cannot make the pin directory {shown}: {e}"),
        ),
    }
}

/// What is pinned at `path`, if anything: `None` when nothing is, or an
/// error when what is there is no map the exporter can open.
fn pinned_map(path: &Path, name: &str) -> Result<Option<MapMeta>, Failure> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Failure::new(
                Reason::Failed,
                format!("cannot look at {shown}: {e}"),
            ))
        }
        Ok(_) => {}
    }
    let handle = MapHandle::from_pinned_path(path).map_err(|e| {
        let reason = match e.kind() {
            libbpf_rs::ErrorKind::PermissionDenied => Reason::Permission,
            _ => Reason::Failed,
        };
        Failure::new(
            reason,
            format!(
                "cannot open the map pinned at {shown}: {e}: the exporter reuses the maps it pinned there; \
                 if another user's or tool's pin is in the way, remove it (`rm {shown}`)"
            ),
        )
    })?;
    // bpf_obj_get opens any pinned object; only a map's fd is a bpf-map.
    let kind =
        std::fs::read_link(format!("/proc/self/fd/{}", handle.as_fd().as_raw_fd())).unwrap_or_default();
    if kind != Path::new("anon_inode:bpf-map") {
        return Err(Failure::new(
            Reason::Failed,
            format!(
                "{shown} is pinned, but not a map ({}): the exporter pins its maps there; remove it \
                 (`rm {shown}`)",
                kind.display()
            ),
        ));
    }
    MapMeta::of_loaded(name, &handle).map(Some).map_err(|e| {
        Failure::new(
            Reason::Failed,
            format!("cannot read what the map pinned at {shown} is: {e}"),
        )
    })
}

/// What libbpf compares before reusing a pinned map, where `pinned` and
/// `declared` differ: `field: pinned X, program Y` each.
fn differences(pinned: &MapMeta, declared: &MapMeta) -> Vec<String> {
    let fields = [
        (
            "type",
            format!("{:?}", pinned.map_type),
            format!("{:?}", declared.map_type),
        ),
        (
            "key_size",
            pinned.key_size.to_string(),
            declared.key_size.to_string(),
        ),
        (
            "value_size",
            pinned.value_size.to_string(),
            declared.value_size.to_string(),
        ),
        (
            "max_entries",
            pinned.max_entries.to_string(),
            declared.max_entries.to_string(),
        ),
        (
            "map_flags",
            format!("{:#x}", pinned.flags),
            format!("{:#x}", declared.flags),
        ),
        ("map_extra", pinned.extra.to_string(), declared.extra.to_string()),
    ];
    fields
        .into_iter()
        .filter(|(_, pinned, declared)| pinned != declared)
        .map(|(field, pinned, declared)| format!("{field}: pinned {pinned}, program {declared}"))
        .collect()
}

fn mismatch(path: &Path, declared: &MapMeta, program: &str, differences: &[String]) -> String {
    let shown = path.display();
    format!(
        "the map pinned at {shown} does not match map {} of {program} ({}), so its values cannot carry \
         over: to start {} afresh, `rm {shown}` (its values are lost) and restart the exporter; to keep \
         them, run the version of the program that pinned it",
        declared.name,
        differences.join(", "),
        declared.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use libbpf_rs::MapType;

    fn map(max_entries: u32, value_size: u32) -> MapMeta {
        MapMeta {
            name: "syscalls_total".into(),
            map_type: MapType::Hash,
            key_size: 8,
            value_size,
            max_entries,
            flags: 0,
            extra: 0,
            key: None,
        }
    }

    #[test]
    fn a_layout_mismatch_names_every_field_that_differs_old_and_new() {
        assert!(differences(&map(1024, 8), &map(1024, 8)).is_empty());
        let mut other = map(16, 4);
        other.map_type = MapType::PercpuHash;
        other.flags = 1;
        assert_eq!(
            differences(&other, &map(1024, 8)),
            [
                "type: pinned PercpuHash, program Hash",
                "value_size: pinned 4, program 8",
                "max_entries: pinned 16, program 1024",
                "map_flags: pinned 0x1, program 0x0",
            ]
        );
        let message = mismatch(
            Path::new("/sys/fs/bpf/bpf-exporter/syscalls/syscalls_total"),
            &map(1024, 8),
            "syscalls",
            &differences(&map(16, 8), &map(1024, 8)),
        );
        assert_eq!(
            message,
            "the map pinned at /sys/fs/bpf/bpf-exporter/syscalls/syscalls_total does not match map \
             syscalls_total of syscalls (max_entries: pinned 16, program 1024), so its values cannot \
             carry over: to start syscalls_total afresh, `rm /sys/fs/bpf/bpf-exporter/syscalls/syscalls_total` \
             (its values are lost) and restart the exporter; to keep them, run the version of the \
             program that pinned it"
        );
    }

    #[test]
    fn a_pin_dir_off_bpffs_is_refused_with_the_mount_to_make() {
        let tmp = tempfile::tempdir().unwrap();
        let pin_dir = tmp.path().join("pins");
        let failure = on_bpffs(&pin_dir, &pin_dir.join("syscalls")).unwrap_err();
        assert_eq!(failure.reason, Reason::HookMissing);
        assert!(
            failure.message.starts_with(&format!(
                "--bpf.pin-dir {} is not on a bpffs ({} is on a filesystem of type 0x",
                pin_dir.display(),
                tmp.path().display()
            )) && failure.message.contains("`mount -t bpf bpf /sys/fs/bpf`"),
            "{}",
            failure.message
        );
    }
}
