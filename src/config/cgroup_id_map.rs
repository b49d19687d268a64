//! `cgroup_id_map`, as ebpf_exporter has it: a map of the program's that
//! the exporter keeps filled with the cgroups whose path matches
//! `regexps`, so the program counts only their events. Checked here
//! against the object; filled by [`crate::programs::cgroups`].

use serde_saphyr::Spanned;

use super::raw::RawCgroupIdMap;
use super::validate::Validator;
use super::{CgroupIdMap, CgroupIdMapKind};
use crate::programs::ObjectInfo;

impl Validator<'_> {
    pub(super) fn cgroup_id_map(
        &mut self,
        raw: Option<&Spanned<RawCgroupIdMap>>,
        info: &ObjectInfo,
    ) -> Option<CgroupIdMap> {
        let raw = &raw?.value;
        let before = self.errors.len();
        let kind = match raw.kind.value.as_str() {
            "hash" => Some(CgroupIdMapKind::Hash),
            "cgrp_storage" => Some(CgroupIdMapKind::CgrpStorage),
            other => {
                self.error(
                    raw.kind.referenced,
                    "cgroup_id_map.type",
                    format!("unknown type {other:?}: use hash (u64 cgroup id keys) or cgrp_storage"),
                );
                None
            }
        };
        match info.map(&raw.name.value) {
            None => self.error(
                raw.name.referenced,
                "cgroup_id_map.name",
                format!(
                    "the program has no map {:?} (maps: {})",
                    raw.name.value,
                    info.maps
                        .iter()
                        .map(|m| m.name.as_str())
                        .filter(|n| !n.contains('.'))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some(map) => {
                let key_size = match kind {
                    Some(CgroupIdMapKind::Hash) => 8,
                    _ => 4,
                };
                if kind.is_some() && (map.key_size != key_size || map.value_size != 8) {
                    self.error(
                        raw.name.referenced,
                        "cgroup_id_map.name",
                        format!(
                            "map {:?} has {}-byte keys and {}-byte values; a {} cgroup_id_map has {key_size}-byte \
                             keys and u64 values",
                            map.name, map.key_size, map.value_size, raw.kind.value
                        ),
                    );
                }
            }
        }
        let mut regexps = Vec::new();
        for (i, r) in raw.regexps.value.iter().enumerate() {
            match regex::Regex::new(&r.value) {
                Ok(re) => regexps.push(re),
                Err(e) => self.error(
                    r.referenced,
                    &format!("cgroup_id_map.regexps[{i}]"),
                    format!("{e}"),
                ),
            }
        }
        if raw.regexps.value.is_empty() {
            self.error(
                raw.regexps.referenced,
                "cgroup_id_map.regexps",
                "no regexps: list the cgroup paths to select",
            );
        }
        (self.errors.len() == before).then(|| CgroupIdMap {
            map: raw.name.value.clone(),
            kind: kind.expect("checked above"),
            regexps,
        })
    }
}
