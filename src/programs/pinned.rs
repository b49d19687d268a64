//! Maps other programs pinned in bpffs (a firewall's drop counters, a tc
//! classifier's stats): a config whose `pinned:` names them runs no program
//! and reads those maps. What they hold is learnt from the kernel, as
//! there is no object: type, key and value sizes, entries. Their BTF is
//! not read (the kernel hands out BTF by id only to CAP_SYS_ADMIN), so the
//! labels give their sizes.
//!
//! A pin that goes away (its tool exits) or is replaced (re-pinned)
//! changes the config's identity (see `config::sources`), so the next look
//! at the configs reloads it: the new version runs on the new map, or is
//! refused while the pin is gone, and `/` and the self-metrics say so.

use std::path::{Path, PathBuf};

use libbpf_rs::MapHandle;

use super::{MapMeta, ObjectInfo};
use crate::metrics::{Failure, Reason};

/// What each pinned map holds, as an object's maps would say.
pub fn inspect(pins: &[(String, PathBuf)]) -> Result<ObjectInfo, Vec<(usize, String)>> {
    let mut maps = Vec::new();
    let mut errors = Vec::new();
    for (i, (name, path)) in pins.iter().enumerate() {
        match MapHandle::from_pinned_path(path).and_then(|handle| MapMeta::of_loaded(name, &handle)) {
            Ok(map) => maps.push(map),
            Err(e) => errors.push((i, gone(path, &e.to_string()).message)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ObjectInfo {
        maps,
        programs: Vec::new(),
        globals: Vec::new(),
        constants: Vec::new(),
    })
}

/// A pin that cannot be opened, with what usually lies behind it.
pub fn gone(path: &Path, error: &str) -> Failure {
    Failure::new(
        Reason::HookMissing,
        format!(
            "cannot open the pinned map {}: {error}: the program that pins it is not running, or pins it \
             elsewhere (see `bpftool map show pinned {}`); the config comes up when the pin is back",
            path.display(),
            path.display()
        ),
    )
}
