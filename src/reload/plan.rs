//! What a reload is to do, worked out before anything is touched: which
//! configs are added, changed, removed or unchanged, compared by
//! [`Fingerprint`]. A pure function of what runs and what the files say,
//! so it is tested without a kernel.

use std::collections::BTreeMap;

use crate::fleet::{Fingerprint, Fleet};

/// What the plan needs to know of one config that the fleet has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// The version the fleet runs (or failed with).
    pub applied: Fingerprint,
    /// A newer version already refused, not worth trying again as is.
    pub refused: Option<Fingerprint>,
    /// Its failure depends on other configs (a metric name or an exclusive
    /// hook they hold): worth trying again when they change.
    pub retry: bool,
}

impl Known {
    pub fn of(fleet: &Fleet) -> BTreeMap<String, Known> {
        fleet
            .members()
            .map(|(name, m)| {
                let known = Known {
                    applied: m.fingerprint,
                    refused: m.rejected.as_ref().map(|(fp, _)| *fp),
                    retry: m.waits_on_others(),
                };
                (name.to_string(), known)
            })
            .collect()
    }
}

/// Config names by what the reload does with them, each sorted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Unchanged, but waiting on others, and others change: tried again.
    pub retried: Vec<String>,
}

impl Plan {
    /// From the fleet's configs to `desired` (each config's name and the
    /// fingerprint of its file now).
    pub fn new(known: &BTreeMap<String, Known>, desired: &[(String, Fingerprint)]) -> Plan {
        let mut plan = Plan::default();
        let mut waiting = Vec::new();
        for (name, fp) in desired {
            match known.get(name) {
                None => plan.added.push(name.clone()),
                Some(k) if k.applied == *fp || k.refused == Some(*fp) => {
                    if k.retry {
                        waiting.push(name.clone());
                    } else {
                        plan.unchanged.push(name.clone());
                    }
                }
                Some(_) => plan.changed.push(name.clone()),
            }
        }
        plan.removed = known
            .keys()
            .filter(|name| !desired.iter().any(|(d, _)| d == *name))
            .cloned()
            .collect();
        if plan.is_empty() {
            plan.unchanged.append(&mut waiting);
        } else {
            plan.retried = waiting;
        }
        for list in [
            &mut plan.added,
            &mut plan.changed,
            &mut plan.unchanged,
            &mut plan.retried,
        ] {
            list.sort();
            list.dedup();
        }
        plan
    }

    /// Nothing to add, change or remove.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(entries: &[(&str, Fingerprint, Option<Fingerprint>, bool)]) -> BTreeMap<String, Known> {
        entries
            .iter()
            .map(|&(name, applied, refused, retry)| {
                (
                    name.to_string(),
                    Known {
                        applied,
                        refused,
                        retry,
                    },
                )
            })
            .collect()
    }

    fn desired(entries: &[(&str, Fingerprint)]) -> Vec<(String, Fingerprint)> {
        entries.iter().map(|&(n, fp)| (n.to_string(), fp)).collect()
    }

    #[test]
    fn the_start_is_a_plan_from_nothing_that_adds_everything() {
        let plan = Plan::new(&BTreeMap::new(), &desired(&[("b", 2), ("a", 1)]));
        assert_eq!(plan.added, ["a", "b"]);
        assert!(plan.changed.is_empty() && plan.removed.is_empty() && plan.unchanged.is_empty());
    }

    #[test]
    fn configs_are_compared_by_fingerprint() {
        let running = known(&[
            ("same", 1, None, false),
            ("edited", 2, None, false),
            ("gone", 3, None, false),
        ]);
        let plan = Plan::new(&running, &desired(&[("same", 1), ("edited", 20), ("new", 4)]));
        assert_eq!(plan.unchanged, ["same"]);
        assert_eq!(plan.changed, ["edited"]);
        assert_eq!(plan.added, ["new"]);
        assert_eq!(plan.removed, ["gone"]);
        assert!(plan.retried.is_empty());
    }

    #[test]
    fn a_version_already_refused_is_not_tried_again() {
        let running = known(&[("a", 1, Some(2), false)]);
        let plan = Plan::new(&running, &desired(&[("a", 2)]));
        assert_eq!(plan.unchanged, ["a"]);
        assert!(plan.is_empty());
        // Going back to the running version is no change either.
        assert!(Plan::new(&running, &desired(&[("a", 1)])).is_empty());
        // A third version is.
        assert_eq!(Plan::new(&running, &desired(&[("a", 3)])).changed, ["a"]);
    }

    #[test]
    fn a_config_waiting_on_others_is_retried_only_when_others_change() {
        let running = known(&[("clash", 1, None, true), ("other", 2, None, false)]);
        let quiet = Plan::new(&running, &desired(&[("clash", 1), ("other", 2)]));
        assert!(quiet.is_empty() && quiet.retried.is_empty(), "{quiet:?}");
        assert_eq!(quiet.unchanged, ["clash", "other"]);
        let busy = Plan::new(&running, &desired(&[("clash", 1)]));
        assert_eq!(busy.removed, ["other"]);
        assert_eq!(busy.retried, ["clash"]);
        assert!(busy.unchanged.is_empty());
    }

    #[test]
    fn removing_every_config_removes_every_config() {
        let running = known(&[("a", 1, None, false), ("b", 2, None, false)]);
        let plan = Plan::new(&running, &[]);
        assert_eq!(plan.removed, ["a", "b"]);
        assert!(plan.added.is_empty() && plan.unchanged.is_empty());
    }
}
