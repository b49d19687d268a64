//! A [`Plan`] carried out on the [`Fleet`]: removed configs are detached,
//! changed and added ones are parsed, checked against the others, loaded
//! and attached, and replace what ran only once they are attached (make
//! before break). A change that fails leaves the running version as it
//! was: its programs attached, its maps and their values untouched.
//!
//! Two things make a new version wait for the old one: an exclusive hook
//! (one XDP program per interface and mode), and maps pinned with
//! `pin: true`, which the new version shares with the old one (both
//! attached would count each event twice). Then the old one is detached,
//! not unloaded, so if the new one still fails the old one attaches again
//! with its maps, and its counters carry on where they were.
//!
//! A config under a CPU budget (its `cpu_budget`, else `--bpf.cpu-budget`)
//! starts running with a meter of its programs' run time, which the
//! reloader samples ([`Fleet::enforce_budgets`]); it is refused if the BPF
//! statistics the meter reads cannot be turned on.
//!
//! Start-up is this same path from an empty fleet. Nothing here logs: the
//! caller reports the [`ReloadOutcome`].

use std::sync::Arc;
use std::time::Duration;

use super::plan::{Known, Plan};
use super::ReloadOutcome;
use crate::config::{self, Config, Listing, Source};
use crate::fleet::{fingerprint, FailedConfig, Fingerprint, Fleet, Member, RunningConfig, State};
use crate::metrics::self_metrics::PREFIX as SELF_PREFIX;
use crate::metrics::{ConfigState, Failure, ProgramStatus, Reason};
use crate::programs::budget::{self, Budget, Meter};
use crate::programs::loader::{self, Loaded};
use crate::programs::pin::PinDir;
use crate::programs::{stats, ProgramObject};
use crate::reader::maps::ReadMethod;
use crate::reader::Target;

/// How configs are turned into loaded programs and map reads; fixed for
/// the life of the exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSettings {
    /// `--metrics.prefix`.
    pub prefix: String,
    /// `--maps.read-method`.
    pub method: ReadMethod,
    /// `--btf.path`: kernel BTF for CO-RE relocations, for kernels without
    /// `/sys/kernel/btf/vmlinux`.
    pub btf: Option<std::path::PathBuf>,
    /// `--bpf.pin-dir`: where configs with `pin: true` pin their maps.
    pub pins: PinDir,
    /// `--bpf.cpu-budget`: the budget of configs without a `cpu_budget`.
    pub cpu_budget: Option<f64>,
    /// `--bpf.cpu-budget-window`: what budgets are measured over.
    pub cpu_budget_window: Duration,
}

impl Default for LoadSettings {
    fn default() -> Self {
        LoadSettings {
            prefix: "ebpf_".to_string(),
            method: ReadMethod::Batch,
            btf: None,
            pins: PinDir::default(),
            cpu_budget: None,
            cpu_budget_window: budget::DEFAULT_WINDOW,
        }
    }
}

impl LoadSettings {
    /// The budget `config` runs under: its own, else the flag's; none for
    /// a config of pinned maps, which runs no program.
    fn budget_of(&self, config: &Config) -> Option<Budget> {
        if matches!(config.object, ProgramObject::Pinned(_)) {
            return None;
        }
        match (config.cpu_budget, self.cpu_budget) {
            (Some(share), _) => Some(Budget {
                share,
                from_flag: false,
            }),
            (None, Some(share)) => Some(Budget {
                share,
                from_flag: true,
            }),
            (None, None) => None,
        }
    }
}

/// The start-up: `listing` applied to an empty fleet, after which
/// readiness follows the configs.
pub fn start(listing: &Listing, settings: &LoadSettings, strict: bool) -> (Fleet, ReloadOutcome) {
    let mut fleet = Fleet::new(strict);
    let outcome = apply(&mut fleet, listing, settings);
    fleet.mark_started();
    (fleet, outcome)
}

/// Brings `fleet` to `listing` (the whole selected set).
pub fn apply(fleet: &mut Fleet, listing: &Listing, settings: &LoadSettings) -> ReloadOutcome {
    if !listing.ignored_objects.is_empty() {
        let ignored: Vec<String> = listing
            .ignored_objects
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        tracing::warn!(
            objects = %ignored.join(","),
            "BPF objects no config runs: an object runs beside a config of the same name \
             (x.bpf.o beside x.yaml, without `program:`) or named in a config's `object:`"
        );
    }
    let desired: Vec<(String, Fingerprint)> = listing
        .sources
        .iter()
        .map(|s| (s.name.clone(), fingerprint(s)))
        .chain(
            listing
                .unreadable
                .iter()
                .map(|u| (u.name.clone(), fingerprint(u))),
        )
        .collect();
    let plan = Plan::new(&Known::of(fleet), &desired);
    let mut outcome = ReloadOutcome {
        unchanged: plan.unchanged.clone(),
        removed: plan.removed.clone(),
        ..ReloadOutcome::default()
    };
    for name in &plan.removed {
        fleet.remove(name);
    }
    for name in plan.changed.iter().chain(&plan.added).chain(&plan.retried) {
        let fp = desired.iter().find(|(n, _)| n == name).map_or(0, |(_, fp)| *fp);
        let was_running = fleet.get(name).is_some_and(|m| m.running().is_some());
        let (origin, prepared) = match listing.sources.iter().find(|s| &s.name == name) {
            Some(source) => (source.origin.clone(), prepare(fleet, source, settings)),
            None => {
                let bad = listing.unreadable.iter().find(|u| &u.name == name);
                let origin = bad.map(|u| u.origin.clone()).unwrap_or_default();
                let error = bad.map(|u| u.error.clone()).unwrap_or_default();
                (
                    origin,
                    Err(Refusal::invalid(Failure::new(Reason::Unreadable, error))),
                )
            }
        };
        let result = settle(fleet, name, fp, origin, prepared, settings);
        let retried = plan.retried.contains(name);
        match result {
            Ok(()) if was_running => outcome.changed.push(name.clone()),
            Ok(()) => outcome.added.push(name.clone()),
            // Still waiting on the same others: nothing new was refused.
            Err(_) if retried => outcome.unchanged.push(name.clone()),
            Err(failure) => {
                if was_running {
                    outcome.kept.push(name.clone());
                }
                outcome.rejected.push((name.clone(), failure.message));
            }
        }
    }
    outcome.unchanged.sort();
    outcome
}

/// A config that did not get as far as running.
struct Refusal {
    state: ConfigState,
    program: String,
    failure: Failure,
    programs: Vec<ProgramStatus>,
}

impl Refusal {
    fn invalid(failure: Failure) -> Self {
        Refusal {
            state: ConfigState::Invalid,
            program: String::new(),
            failure,
            programs: Vec::new(),
        }
    }
}

/// A new version, loaded; [`settle`] attaches it.
struct Prepared {
    config: Arc<Config>,
    loaded: Loaded,
    budget: Option<Budget>,
}

/// Parses `source`, checks that its metrics are its own, loads it.
fn prepare(fleet: &Fleet, source: &Source, settings: &LoadSettings) -> Result<Prepared, Refusal> {
    let config = config::parse(source, &settings.prefix)
        .map_err(|errors| Refusal::invalid(Failure::new(Reason::Invalid, errors.to_string())))?;
    if matches!(config.object, ProgramObject::File { .. }) && crate::programs::find(&config.name).is_some() {
        tracing::info!(
            config = %config.name,
            object = %config.program,
            "the object beside the config runs, not the embedded program of the same name \
             (`program: {}` runs the embedded one)",
            config.name
        );
    }
    let refused = |state, failure| Refusal {
        state,
        program: config.program.clone(),
        failure,
        programs: Vec::new(),
    };
    if let Some(failure) = conflict(fleet, &config) {
        return Err(refused(ConfigState::Invalid, failure));
    }
    let budget = settings.budget_of(&config);
    if let Some(budget) = budget {
        stats::keep_enabled()
            .map_err(|e| refused(ConfigState::Failed, statistics_off(&config, budget, &e)))?;
    }
    let loaded = loader::load(&config, settings.btf.as_deref(), &settings.pins)
        .map_err(|failure| refused(ConfigState::Failed, failure))?;
    Ok(Prepared {
        config: Arc::new(config),
        loaded,
        budget,
    })
}

/// A budget is measured with the kernel's BPF statistics, which need
/// CAP_SYS_ADMIN to turn on: the start does it before dropping that, for
/// the budgets it knows of, so only a budget added later meets this.
fn statistics_off(config: &Config, budget: Budget, e: &std::io::Error) -> Failure {
    let what = if budget.from_flag {
        "--bpf.cpu-budget"
    } else {
        "cpu_budget"
    };
    let reason = if e.raw_os_error() == Some(libc::EPERM) {
        Reason::Permission
    } else {
        Reason::Failed
    };
    Failure::new(
        reason,
        format!(
            "{}: {what} is measured with the kernel's BPF run-time statistics, and turning them on \
             failed: {e}. The exporter turns them on at start, before it drops CAP_SYS_ADMIN, when \
             --bpf.stats, --bpf.cpu-budget or a config with cpu_budget is selected: restart it, or \
             start it with --bpf.stats",
            config.origin
        ),
    )
}

/// Two configs exporting one family make a page that promtool and strict
/// OpenMetrics parsers reject, and that Prometheus reads as one of them.
fn conflict(fleet: &Fleet, config: &Config) -> Option<Failure> {
    for spec in &config.metrics {
        if spec.name.starts_with(SELF_PREFIX) {
            return Some(Failure::new(
                Reason::Conflict,
                format!(
                    "{}: metric {:?} starts with {SELF_PREFIX}, which the exporter's own metrics use: \
                     choose another name or --metrics.prefix",
                    config.origin, spec.name
                ),
            ));
        }
        if let Some((other, origin)) = fleet.metric_owner(&spec.name, &config.name) {
            return Some(Failure::new(
                Reason::Conflict,
                format!(
                    "{}: metric {:?} is already exported by config {other} ({origin}); two configs \
                     cannot export one metric: give it another `name:` in one of the two files",
                    config.origin, spec.name
                ),
            ));
        }
    }
    None
}

/// Puts the outcome of `prepared` into the fleet under `name`: the new
/// version is attached and replaces the old one, or is refused and the old
/// one stays.
///
/// The old version makes way first (break before make: detached, not
/// unloaded) where both cannot be attached at once: when the new one pins
/// its maps, it has the old one's from their pins, and both attached would
/// count each event twice (between the two, events are missed instead);
/// and when a hook takes one program and the old version's is there.
fn settle(
    fleet: &mut Fleet,
    name: &str,
    fp: Fingerprint,
    origin: String,
    prepared: Result<Prepared, Refusal>,
    settings: &LoadSettings,
) -> Result<(), Failure> {
    let mut new = match prepared {
        Ok(new) => new,
        Err(refusal) => return refuse(fleet, name, fp, origin, refusal),
    };
    let old_complete = fleet
        .get(name)
        .and_then(Member::running)
        .is_some_and(|r| r.loaded.fully_attached());
    let mut made_way = !new.config.pin_maps.is_empty() && make_way(fleet, name);
    new.loaded.attach(&new.config);
    if !made_way && !new.loaded.fully_attached() && new.loaded.hook_busy() && make_way(fleet, name) {
        made_way = true;
        new.loaded.attach(&new.config);
    }
    let serves = new.loaded.programs().iter().any(|p| p.attached);
    let program = new.config.program.clone();
    let target = if new.loaded.fully_attached() || (serves && !old_complete) {
        Target::new(
            fleet.next_id(),
            Arc::clone(&new.config),
            &new.loaded,
            settings.method,
        )
        .map_err(|failure| failed(program, failure, Vec::new()))
    } else {
        // Nothing attached, or less than what runs now.
        let programs = new.loaded.programs().to_vec();
        Err(failed(program, new.loaded.failures(), programs))
    };
    let target = match target {
        Ok(target) => Arc::new(target),
        Err(refusal) => {
            // Its programs go before the old version's come back.
            drop(new);
            if made_way {
                if let Some(old) = fleet.get_mut(name).and_then(Member::running_mut) {
                    old.loaded.attach(&old.config);
                }
            }
            return refuse(fleet, name, fp, origin, refusal);
        }
    };
    fleet.insert(
        name,
        Member {
            origin,
            fingerprint: fp,
            state: State::Running(Box::new(RunningConfig {
                meter: new
                    .budget
                    .map(|b| Meter::start(b, settings.cpu_budget_window, new.loaded.program_fds())),
                config: new.config,
                loaded: new.loaded,
                target,
            })),
            rejected: None,
        },
    );
    Ok(())
}

/// Detaches the running version of `name`, keeping its programs, maps and
/// values to attach again; false when none runs.
fn make_way(fleet: &mut Fleet, name: &str) -> bool {
    fleet
        .get_mut(name)
        .and_then(Member::running_mut)
        .map(|old| old.loaded.detach())
        .is_some()
}

fn failed(program: String, failure: Failure, programs: Vec<ProgramStatus>) -> Refusal {
    Refusal {
        state: ConfigState::Failed,
        program,
        failure,
        programs,
    }
}

/// A running config keeps running and remembers what was refused; any
/// other becomes (or stays) failed, with the new reason.
fn refuse(
    fleet: &mut Fleet,
    name: &str,
    fp: Fingerprint,
    origin: String,
    refusal: Refusal,
) -> Result<(), Failure> {
    let failure = refusal.failure.clone();
    match fleet.get_mut(name) {
        Some(member) if member.running().is_some() => member.rejected = Some((fp, refusal.failure)),
        _ => fleet.insert(
            name,
            Member {
                origin,
                fingerprint: fp,
                state: State::Failed(FailedConfig {
                    state: refusal.state,
                    program: refusal.program,
                    failure: refusal.failure,
                    programs: refusal.programs,
                    cpu_budget: None,
                }),
                rejected: None,
            },
        ),
    }
    Err(failure)
}
