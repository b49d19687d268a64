//! The one owner of what runs: every selected config is a [`Member`],
//! either running (its validated config, its loaded and attached object,
//! the [`Target`] the reader reads, the meter of its CPU budget) or failed
//! (why, and what its programs said). Reloads change the fleet
//! ([`crate::reload`]), and so does the budget guard
//! ([`Fleet::enforce_budgets`]); the reader only ever sees the
//! [`ReadSet`] it hands over.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::metrics::self_metrics::ReloadStats;
use crate::metrics::{ConfigState, ConfigStatus, Failure, ProgramStatus, Reason};
use crate::programs::budget::{percent, Meter};
use crate::programs::loader::Loaded;
use crate::reader::{ReadSet, Target};

/// Identifies one version of a config's file: its origin and its text (or,
/// for a file that could not be read, why).
pub type Fingerprint = u64;

pub fn fingerprint(what: &impl Hash) -> Fingerprint {
    let mut hasher = DefaultHasher::new();
    what.hash(&mut hasher);
    hasher.finish()
}

pub struct Member {
    pub origin: String,
    /// The version this member was made from.
    pub fingerprint: Fingerprint,
    pub state: State,
    /// A newer version a reload refused while this one kept running; it is
    /// not tried again until the file changes.
    pub rejected: Option<(Fingerprint, Failure)>,
}

pub enum State {
    Running(Box<RunningConfig>),
    Failed(FailedConfig),
}

pub struct RunningConfig {
    pub config: Arc<Config>,
    /// Dropping it detaches the programs.
    pub loaded: Loaded,
    pub target: Arc<Target>,
    /// Measures the programs against the config's CPU budget, if any.
    pub meter: Option<Meter>,
}

pub struct FailedConfig {
    /// `invalid` (nothing was loaded) or `failed` (the program was).
    pub state: ConfigState,
    /// The program the config names, when it got that far.
    pub program: String,
    pub failure: Failure,
    pub programs: Vec<ProgramStatus>,
    /// The budget an `over_budget` config went over.
    pub cpu_budget: Option<f64>,
}

impl Member {
    pub fn running(&self) -> Option<&RunningConfig> {
        match &self.state {
            State::Running(r) => Some(r),
            State::Failed(_) => None,
        }
    }

    pub fn running_mut(&mut self) -> Option<&mut RunningConfig> {
        match &mut self.state {
            State::Running(r) => Some(r),
            State::Failed(_) => None,
        }
    }

    /// Why the member is not what its file asks for, when the reason can
    /// go away with another config (a metric name, an exclusive hook).
    pub fn waits_on_others(&self) -> bool {
        let own = match &self.state {
            State::Failed(f) => Some(f.failure.reason),
            State::Running(r) => r.loaded.hook_busy().then_some(Reason::HookBusy),
        };
        own.into_iter()
            .chain(self.rejected.iter().map(|(_, f)| f.reason))
            .any(Reason::depends_on_others)
    }

    fn status(&self, name: &str) -> ConfigStatus {
        let mut status = match &self.state {
            State::Running(r) => ConfigStatus {
                cpu_budget: r.meter.as_ref().map(|m| m.budget.share),
                ..r.loaded.status(&r.config)
            },
            State::Failed(f) => ConfigStatus {
                name: name.to_string(),
                source: self.origin.clone(),
                program: f.program.clone(),
                state: f.state,
                reason: Some(f.failure.reason),
                error: Some(f.failure.message.clone()),
                rejected: None,
                programs: f.programs.clone(),
                cpu_budget: f.cpu_budget,
            },
        };
        status.rejected = self.rejected.as_ref().map(|(_, f)| f.message.clone());
        status
    }
}

/// What the reader publishes beside the maps: the state of every config and
/// of reloads, and whether the exporter is ready.
#[derive(Debug, Clone)]
pub struct View {
    /// Sorted by name.
    pub configs: Vec<ConfigStatus>,
    pub reloads: ReloadStats,
    pub not_ready: Option<String>,
}

impl Default for View {
    fn default() -> Self {
        View {
            configs: Vec::new(),
            reloads: ReloadStats::default(),
            not_ready: Some("starting: loading the configs".to_string()),
        }
    }
}

#[derive(Default)]
pub struct Fleet {
    members: BTreeMap<String, Member>,
    next_id: u64,
    reloads: ReloadStats,
    /// `--config.strict`: ready only when every config runs.
    strict: bool,
    /// The configs of the start have been applied.
    started: bool,
}

impl Fleet {
    pub fn new(strict: bool) -> Self {
        Fleet {
            strict,
            ..Fleet::default()
        }
    }

    pub fn members(&self) -> impl Iterator<Item = (&str, &Member)> {
        self.members.iter().map(|(n, m)| (n.as_str(), m))
    }

    pub fn get(&self, name: &str) -> Option<&Member> {
        self.members.get(name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Member> {
        self.members.get_mut(name)
    }

    /// Adds or replaces `name`; a replaced running config is detached now.
    pub fn insert(&mut self, name: &str, member: Member) {
        self.members.insert(name.to_string(), member);
    }

    /// Detaches and forgets `name`.
    pub fn remove(&mut self, name: &str) -> Option<Member> {
        self.members.remove(name)
    }

    /// A target id never used before.
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The running config, other than `except`, that exports metric family
    /// `metric`: its name and origin.
    pub fn metric_owner(&self, metric: &str, except: &str) -> Option<(&str, &str)> {
        self.members
            .iter()
            .filter(|(name, _)| name.as_str() != except)
            .find(|(_, m)| {
                m.running()
                    .is_some_and(|r| r.config.metrics.iter().any(|s| s.name == metric))
            })
            .map(|(name, m)| (name.as_str(), m.origin.as_str()))
    }

    /// Some running config has a CPU budget to enforce.
    pub fn metered(&self) -> bool {
        self.members
            .values()
            .any(|m| m.running().is_some_and(|r| r.meter.is_some()))
    }

    /// Samples every budget at `now`; a config over its budget is
    /// detached (its programs and maps unloaded, so its series go with
    /// the next read set) and stays `over_budget`, with the figure, until
    /// a changed file is loaded. Returns the configs stopped, with why.
    pub fn enforce_budgets(&mut self, now: Instant) -> Vec<(String, Failure)> {
        let mut stopped = Vec::new();
        for (name, member) in &mut self.members {
            let Some(running) = member.running_mut() else {
                continue;
            };
            let Some(meter) = running.meter.as_mut() else {
                continue;
            };
            let Some(overrun) = meter.sample(now) else {
                continue;
            };
            let budget = meter.budget;
            let failure = Failure::new(
                Reason::OverBudget,
                overrun.explain(budget, &running.config.origin),
            );
            let programs = running
                .loaded
                .programs()
                .iter()
                .map(|p| match overrun.programs.iter().find(|(n, _)| *n == p.name) {
                    Some((_, share)) if p.attached => ProgramStatus {
                        attached: false,
                        reason: Some(Reason::OverBudget),
                        error: Some(format!(
                            "detached: the config went over its CPU budget, this program using {} of one CPU",
                            percent(*share)
                        )),
                        ..p.clone()
                    },
                    _ => p.clone(),
                })
                .collect();
            let failed = FailedConfig {
                state: ConfigState::OverBudget,
                program: running.config.program.clone(),
                failure: failure.clone(),
                programs,
                cpu_budget: Some(budget.share),
            };
            // Dropping the running config detaches and unloads it.
            member.state = State::Failed(failed);
            stopped.push((name.clone(), failure));
        }
        stopped
    }

    pub fn record_reload(&mut self, successful: bool) {
        self.reloads.record(successful);
    }

    /// The configs of the start are in: readiness now follows them.
    pub fn mark_started(&mut self) {
        self.started = true;
    }

    pub fn statuses(&self) -> Vec<ConfigStatus> {
        self.members.iter().map(|(name, m)| m.status(name)).collect()
    }

    /// `None` when `/-/ready` should answer 200: the configs of the start
    /// are applied, and at least one config runs (under `--config.strict`,
    /// every one). Running nothing because nothing is selected (every
    /// config removed) is ready: that is what the operator asked for.
    pub fn readiness(&self) -> Option<String> {
        if !self.started {
            return Some("starting: loading the configs".into());
        }
        let total = self.members.len();
        let running = self
            .members
            .values()
            .filter(|m| m.running().is_some_and(|r| r.loaded.fully_attached()))
            .count();
        let serving = self.members.values().filter(|m| m.running().is_some()).count();
        if self.strict && running < total {
            return Some(format!(
                "--config.strict: {running} of {total} configs running with every program attached"
            ));
        }
        if total > 0 && serving == 0 {
            return Some(format!("0 of {total} configs running"));
        }
        None
    }

    pub fn view(&self) -> View {
        View {
            configs: self.statuses(),
            reloads: self.reloads,
            not_ready: self.readiness(),
        }
    }

    /// What the reader is to read now: the running configs, in name order.
    pub fn read_set(&self) -> ReadSet {
        ReadSet {
            targets: self
                .members
                .values()
                .filter_map(|m| m.running().map(|r| Arc::clone(&r.target)))
                .collect(),
            view: Arc::new(self.view()),
        }
    }
}
