//! The kernel-cost guard's measure: a config with a CPU budget
//! (`cpu_budget:` in its file, or `--bpf.cpu-budget` for every config)
//! has a [`Meter`] that samples its programs' run time from the kernel's
//! BPF statistics and tells when they used more than the budget over the
//! window (`--bpf.cpu-budget-window`). The fleet then detaches the config
//! ([`crate::fleet::Fleet::enforce_budgets`]).
//!
//! A budget is a share of one CPU: `0.01` lets a config's programs run
//! for 1 % of one CPU's time, summed over every CPU they run on. It holds
//! for a config's programs together, as they work together (an entry
//! probe without its exit probe measures nothing), and is judged on the
//! run time of the last window: a config is over budget once its programs
//! ran longer than `budget × window` within one window. A config that has
//! not run for a whole window yet is judged on what it used so far, so a
//! program gone wild is stopped within a sample or two, not a window.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use super::stats;

/// `--bpf.cpu-budget-window`'s default: long enough that a burst of
/// events (a backup, a deploy) is averaged out, short enough that a
/// program costing several times its budget is stopped within it.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);

/// A budget as given, checked: a finite share of one CPU above 0.
pub fn check(share: f64) -> Result<f64, String> {
    if share.is_finite() && share > 0.0 {
        Ok(share)
    } else {
        Err(format!(
            "{share} is not a share of one CPU: give a number above 0, such as 0.01 for 1 % of one CPU"
        ))
    }
}

/// How often meters are sampled: a tenth of the window, at most a second
/// (a program gone wild is caught within one) and at least 10 ms.
pub fn tick(window: Duration) -> Duration {
    (window / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// The budget a config runs under, and where it was set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub share: f64,
    /// Set by `--bpf.cpu-budget`, not by the config's `cpu_budget:`.
    pub from_flag: bool,
}

/// What a config used when it went over its budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Overrun {
    /// Share of one CPU its programs used over `over`.
    pub used: f64,
    pub over: Duration,
    /// Each program's share over the same time, by name.
    pub programs: Vec<(String, f64)>,
}

/// Samples one config's programs' run time against its budget.
pub struct Meter {
    pub budget: Budget,
    window: Duration,
    programs: Vec<(String, OwnedFd)>,
    history: History,
}

impl Meter {
    /// Starts measuring `programs` (each one's name and an fd) now.
    pub fn start(budget: Budget, window: Duration, programs: Vec<(String, OwnedFd)>) -> Meter {
        let mut meter = Meter {
            budget,
            window,
            programs,
            history: History::default(),
        };
        meter.sample(Instant::now());
        meter
    }

    /// Reads the programs' run time at `now`; `Some` once they used more
    /// than the budget. A program whose statistics cannot be read skips
    /// the sample (its fd is the meter's own: that does not happen).
    pub fn sample(&mut self, now: Instant) -> Option<Overrun> {
        let totals: Result<Vec<u64>, _> = self
            .programs
            .iter()
            .map(|(_, fd)| stats::read(fd.as_fd()).map(|s| s.run_time_ns))
            .collect();
        let totals = match totals {
            Ok(totals) => totals,
            Err(e) => {
                tracing::debug!("reading BPF run-time statistics for the CPU budget: {e}");
                return None;
            }
        };
        self.history.push(now, totals, self.window);
        let (over, used) = self.history.used()?;
        judge(self.budget.share, self.window, over, &used).map(|(used, shares)| Overrun {
            used,
            over,
            programs: self
                .programs
                .iter()
                .map(|(name, _)| name.clone())
                .zip(shares)
                .collect(),
        })
    }
}

impl Overrun {
    /// What the config's error says: the figure, the budget, and the fix.
    pub fn explain(&self, budget: Budget, origin: &str) -> String {
        let programs = self
            .programs
            .iter()
            .map(|(name, share)| format!("{name} {}", percent(*share)))
            .collect::<Vec<_>>()
            .join(", ");
        let fix = if budget.from_flag {
            format!(
                "give {origin} a cpu_budget of its own above it (the edit reloads it), or raise --bpf.cpu-budget"
            )
        } else {
            format!("raise cpu_budget in {origin} (the edit reloads it)")
        };
        format!(
            "over its CPU budget: its programs used {} of one CPU over the last {:.1} s ({programs}), and \
             its budget is {}{}; they were detached and its series removed. To run it, {fix}, or drive \
             fewer events through it",
            percent(self.used),
            self.over.as_secs_f64(),
            percent(budget.share),
            if budget.from_flag {
                " (--bpf.cpu-budget)"
            } else {
                ""
            },
        )
    }
}

/// A share of one CPU as a percentage with three significant digits,
/// trailing zeros dropped: `3.21%`, `0.01%`, `250%`.
pub fn percent(share: f64) -> String {
    let p = share * 100.0;
    let decimals = if p > 0.0 && p < 100.0 {
        (2 - p.log10().floor() as i32).clamp(0, 9) as usize
    } else {
        0
    };
    let text = format!("{p:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}%")
}

/// Over budget when the run time `used` (ns, per program) within `over`
/// exceeds `budget × window`, or, once `over` is longer than the window,
/// `budget × over`: the share used then, and each program's.
fn judge(budget: f64, window: Duration, over: Duration, used: &[u64]) -> Option<(f64, Vec<f64>)> {
    let total: u64 = used.iter().sum();
    let allowed = budget * over.max(window).as_secs_f64() * 1e9;
    if over.is_zero() || total as f64 <= allowed {
        return None;
    }
    let nanos = over.as_secs_f64() * 1e9;
    let shares = used.iter().map(|&ns| ns as f64 / nanos).collect();
    Some((total as f64 / nanos, shares))
}

/// Run-time totals over time, as far back as the window needs: the
/// newest sample at least a window old is the base the usage is taken
/// from.
#[derive(Debug, Default)]
struct History {
    /// When, and each program's run time then (ns); oldest first.
    samples: VecDeque<(Instant, Vec<u64>)>,
}

impl History {
    fn push(&mut self, at: Instant, totals: Vec<u64>, window: Duration) {
        self.samples.push_back((at, totals));
        while self
            .samples
            .get(1)
            .is_some_and(|(t, _)| at.saturating_duration_since(*t) >= window)
        {
            self.samples.pop_front();
        }
    }

    /// The time from the base to the newest sample, and each program's
    /// run time in it; `None` before two samples.
    fn used(&self) -> Option<(Duration, Vec<u64>)> {
        let ((from, base), (to, now)) = (self.samples.front()?, self.samples.back()?);
        let used = now.iter().zip(base).map(|(n, b)| n.saturating_sub(*b)).collect();
        Some((to.saturating_duration_since(*from), used))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn budgets_are_shares_above_zero() {
        assert_eq!(check(0.01), Ok(0.01));
        assert_eq!(check(4.0), Ok(4.0));
        for bad in [0.0, -0.5, f64::NAN, f64::INFINITY] {
            assert!(check(bad).unwrap_err().contains("above 0"), "{bad}");
        }
    }

    #[test]
    fn meters_are_sampled_a_tenth_of_the_window_apart_within_bounds() {
        assert_eq!(tick(30 * S), S);
        assert_eq!(tick(5 * S), Duration::from_millis(500));
        assert_eq!(tick(Duration::from_millis(50)), Duration::from_millis(10));
    }

    #[test]
    fn a_config_is_over_budget_once_it_ran_longer_than_the_window_allows() {
        // 1 % of 30 s is 0.3 s of run time.
        let used = |ms: u64| [ms * 1_000_000];
        assert_eq!(judge(0.01, 30 * S, 30 * S, &used(299)), None);
        let (share, programs) = judge(0.01, 30 * S, 30 * S, &used(301)).unwrap();
        assert!((share - 0.301 / 30.0).abs() < 1e-12, "{share}");
        assert_eq!(programs.len(), 1);
        // Within its first 10 s: judged against the whole window's
        // allowance, and the share is that of the time it ran.
        assert_eq!(judge(0.01, 30 * S, 10 * S, &used(299)), None);
        let (share, _) = judge(0.01, 30 * S, 10 * S, &used(400)).unwrap();
        assert!((share - 0.04).abs() < 1e-12, "{share}");
        // A base a little older than the window: judged over that time.
        assert_eq!(judge(0.01, 30 * S, 31 * S, &used(309)), None);
        assert!(judge(0.01, 30 * S, 31 * S, &used(312)).is_some());
        assert_eq!(judge(0.01, 30 * S, Duration::ZERO, &used(1)), None);
    }

    #[test]
    fn the_share_is_the_programs_together_and_each_is_named() {
        let (share, programs) = judge(0.01, S, S, &[6_000_000, 4_000_000, 1_000_000]).unwrap();
        assert!((share - 0.011).abs() < 1e-12, "{share}");
        assert_eq!(programs, [0.006, 0.004, 0.001]);
        // Each under the budget alone, together over it.
        assert!(judge(0.007, S, S, &[6_000_000, 4_000_000]).is_some());
    }

    #[test]
    fn the_history_keeps_one_sample_a_window_old_as_its_base() {
        let t0 = Instant::now();
        let mut h = History::default();
        assert_eq!(h.used(), None);
        h.push(t0, vec![0, 0], 3 * S);
        assert_eq!(h.used(), Some((Duration::ZERO, vec![0, 0])));
        for i in 1..=5u64 {
            h.push(t0 + S * i as u32, vec![10 * i, i], 3 * S);
        }
        // At 5 s the base is the sample of 2 s: the newest 3 s old.
        assert_eq!(h.samples.len(), 4);
        assert_eq!(h.used(), Some((3 * S, vec![30, 3])));
        // Counters never go back; if they did, nothing is negative.
        h.push(t0 + 6 * S, vec![0, 0], 3 * S);
        assert_eq!(h.used(), Some((3 * S, vec![0, 0])));
    }

    #[test]
    fn overruns_say_what_was_used_what_is_allowed_and_the_fix() {
        let overrun = Overrun {
            used: 0.0321,
            over: 30 * S,
            programs: vec![("sys_enter".into(), 0.03), ("sys_exit".into(), 0.0021)],
        };
        let own = Budget {
            share: 0.01,
            from_flag: false,
        };
        assert_eq!(
            overrun.explain(own, "/etc/bpf-exporter/x.yaml"),
            "over its CPU budget: its programs used 3.21% of one CPU over the last 30.0 s (sys_enter 3%, \
             sys_exit 0.21%), and its budget is 1%; they were detached and its series removed. To run it, \
             raise cpu_budget in /etc/bpf-exporter/x.yaml (the edit reloads it), or drive fewer events \
             through it"
        );
        let flag = Budget {
            share: 0.0001,
            from_flag: true,
        };
        let text = overrun.explain(flag, "x.yaml");
        assert!(
            text.contains("its budget is 0.01% (--bpf.cpu-budget)")
                && text.contains("give x.yaml a cpu_budget of its own above it"),
            "{text}"
        );
    }

    #[test]
    fn percentages_keep_three_significant_digits() {
        assert_eq!(percent(0.0321), "3.21%");
        assert_eq!(percent(0.0001), "0.01%");
        assert_eq!(percent(0.000123456), "0.0123%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(2.5), "250%");
        assert_eq!(percent(0.0), "0%");
    }
}
