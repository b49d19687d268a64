//! Keeps a config's `cgroup_id_map` filled: the cgroups whose path matches
//! its regexps are in the map, the others not, as cgroups come and go.
//! Filled once before the program attaches, so its first events are
//! already filtered, then looked at again every second by a thread of its
//! own (cgroupfs sends no events for a new directory in a subtree).
//!
//! BPF sees cgroup v2 ids, so the cgroup2 mount is walked (on hybrid hosts
//! `/sys/fs/cgroup/unified`, not the v1 trees beside it), and its paths
//! are what the regexps match. A cgroup's id is its directory's inode
//! number on cgroup2; a
//! `cgrp_storage` map is written through an open fd of the directory, as
//! the kernel asks.

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::config::{CgroupIdMap, CgroupIdMapKind};

const RESCAN: Duration = Duration::from_secs(1);

/// Stops filling when dropped.
#[derive(Debug)]
pub struct CgroupFiller {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CgroupFiller {
    pub fn start(map: MapHandle, spec: CgroupIdMap) -> CgroupFiller {
        if crate::decoders::cgroup2_root().is_none() {
            tracing::warn!(
                "cgroup_id_map {}: no cgroup2 filesystem is mounted, and BPF sees cgroup v2 ids: the map stays \
                 empty until one is (`mount -t cgroup2 none /sys/fs/cgroup/unified`)",
                spec.map
            );
        }
        let mut filled = BTreeSet::new();
        fill(&map, &spec, &mut filled);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("bpf-cgroups".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::sleep(RESCAN);
                    fill(&map, &spec, &mut filled);
                }
            })
            .map_err(|e| tracing::warn!("cannot start the cgroup_id_map thread: {e}; it is filled once"))
            .ok();
        CgroupFiller { stop, thread }
    }
}

impl Drop for CgroupFiller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Brings the map to the matching cgroups; `filled` is what it holds.
fn fill(map: &MapHandle, spec: &CgroupIdMap, filled: &mut BTreeSet<u64>) {
    let Some(root) = crate::decoders::cgroup2_root() else {
        return;
    };
    let mut now = Vec::new();
    walk(&root, &mut now);
    let matching: Vec<(u64, PathBuf)> = now
        .into_iter()
        .filter(|(_, path)| {
            path.to_str()
                .is_some_and(|p| spec.regexps.iter().any(|r| r.is_match(p)))
        })
        .collect();
    let one = 1u64.to_ne_bytes();
    for (id, path) in &matching {
        if filled.contains(id) {
            continue;
        }
        let written = match spec.kind {
            CgroupIdMapKind::Hash => map.update(&id.to_ne_bytes(), &one, MapFlags::ANY),
            CgroupIdMapKind::CgrpStorage => match std::fs::File::open(path) {
                Ok(dir) => map.update(&(dir.as_raw_fd() as u32).to_ne_bytes(), &one, MapFlags::ANY),
                Err(_) => continue,
            },
        };
        match written {
            Ok(()) => {
                filled.insert(*id);
            }
            Err(e) => {
                tracing::warn!(cgroup = %path.display(), "cannot add to cgroup_id_map {}: {e}", spec.map)
            }
        }
    }
    let gone: Vec<u64> = filled
        .iter()
        .copied()
        .filter(|id| !matching.iter().any(|(m, _)| m == id))
        .collect();
    for id in gone {
        // Cgroup storage goes with its cgroup; a hash entry must be removed.
        if spec.kind == CgroupIdMapKind::Hash {
            let _ = map.delete(&id.to_ne_bytes());
        }
        filled.remove(&id);
    }
}

/// Every cgroup under `dir`, with its id.
fn walk(dir: &Path, out: &mut Vec<(u64, PathBuf)>) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    out.push((meta.ino(), dir.to_path_buf()));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&entry.path(), out);
        }
    }
}
