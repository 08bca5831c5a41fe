//! The report of a run: JSON for machines, a summary table for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::Error;
use crate::config::Config;
use crate::model::Mismatch;
use crate::run::{AccountRun, CheckOutcome, Mark, MemberAddResult, PhaseRecord, RelicenseResult};
use crate::stats::{Kind, KindSummary, Stats, round1, round3};

/// Mismatches reported in detail.
pub const MISMATCH_DETAIL: usize = 20;

/// The full report of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `roster-loadgen`.
    pub tool: &'static str,
    /// The tool's version.
    pub version: &'static str,
    /// Scenario name.
    pub scenario: &'static str,
    /// The configuration (without the admin token).
    pub config: Config,
    /// The accounts created for the run.
    pub accounts: Vec<AccountInfo>,
    /// Start time, Unix milliseconds.
    pub started_unix_ms: u128,
    /// Wall time of the whole run, seconds.
    pub wall_secs: f64,
    /// Wall time of the load phases (setup and check excluded), seconds.
    pub load_secs: f64,
    /// Requests of the load phases.
    pub requests: usize,
    /// Failed requests of the load phases.
    pub errors: u64,
    /// Requests per second over the load phases.
    pub rps: f64,
    /// Every phase, aggregated over accounts (span from the earliest start to the latest end).
    pub phases: Vec<PhaseSummary>,
    /// Latency and counts per request kind over the load phases.
    pub kinds: BTreeMap<String, KindSummary>,
    /// Failed requests by status (`409`, `transport`, `unexpected-result`), all phases.
    pub errors_by_status: BTreeMap<String, u64>,
    /// Failed requests by kind and status, all phases.
    pub errors_by_kind_status: BTreeMap<String, u64>,
    /// A few failed exchanges.
    pub error_examples: Vec<String>,
    /// Attempts answered 429/503 and retried after `Retry-After`, all phases.
    pub throttled: u64,
    /// Throttled attempts by kind and status.
    pub throttled_by_kind_status: BTreeMap<String, u64>,
    /// Time to convergence.
    pub convergence: Convergence,
    /// The correctness check.
    pub correctness: Correctness,
    /// Single-member add latency against group size (member-add scenario).
    pub member_add: Vec<MemberAddResult>,
    /// Time to re-license a group's members after a policy change (relicense scenario).
    pub relicense: Vec<RelicenseResult>,
    /// CPU and memory use.
    pub resources: Resources,
}

/// An account of the run.
#[derive(Clone, Debug, Serialize)]
pub struct AccountInfo {
    /// Index.
    pub index: usize,
    /// Roster account id.
    pub id: String,
    /// Account name.
    pub name: String,
    /// SCIM base URL used.
    pub scim_base_url: String,
}

/// One phase, over all accounts.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseSummary {
    /// Name.
    pub name: String,
    /// Seconds from the earliest start to the latest end over accounts.
    pub wall_secs: f64,
    /// Requests.
    pub requests: usize,
    /// Failed requests.
    pub errors: u64,
    /// Requests per second.
    pub rps: f64,
    /// Average cores the load generator kept busy during the phase.
    pub loadgen_cores: Option<f64>,
    /// Average cores the server kept busy during the phase (needs `--server-pid`).
    pub server_cores: Option<f64>,
    /// Average server threads waiting for a CPU during the phase (needs `--server-pid`).
    pub server_runqueue_wait: Option<f64>,
    /// Average cores used by other processes on the machine during the phase.
    pub other_cores: Option<f64>,
    /// Per-kind latency within the phase.
    pub kinds: BTreeMap<String, KindSummary>,
}

/// Time from the last write's response to the check passing.
#[derive(Clone, Debug, Serialize)]
pub struct Convergence {
    /// Seconds from the response to the last write to the end of the passing check (`null` if it never
    /// passed or nothing was written).
    pub last_write_to_check_pass_secs: Option<f64>,
    /// Seconds from the response to the last write to the start of the check (read-only load such as the
    /// lookups phase, or waiting for other accounts, happens there).
    pub last_write_to_check_start_secs: Option<f64>,
    /// Duration of the whole check (all attempts), seconds.
    pub check_secs: f64,
    /// Check attempts.
    pub check_attempts: usize,
}

/// The result of the correctness check.
#[derive(Clone, Debug, Serialize)]
pub struct Correctness {
    /// Whether the server matched the model exactly.
    pub passed: bool,
    /// Users in the model.
    pub users_expected: usize,
    /// Users listed by the server.
    pub users_found: usize,
    /// Groups in the model.
    pub groups_expected: usize,
    /// Groups listed by the server.
    pub groups_found: usize,
    /// Memberships in the model.
    pub memberships_expected: usize,
    /// Memberships read from the server.
    pub memberships_found: usize,
    /// Number of mismatches.
    pub mismatch_count: usize,
    /// The first mismatches in detail.
    pub mismatches: Vec<Mismatch>,
}

/// CPU and memory of the load generator (and of the server when its pid is known).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Resources {
    /// CPU seconds used by the load generator (user + system).
    pub loadgen_cpu_secs: Option<f64>,
    /// Average cores the load generator kept busy.
    pub loadgen_cores: Option<f64>,
    /// CPU seconds used by the server during the run.
    pub server_cpu_secs: Option<f64>,
    /// Average cores the server kept busy.
    pub server_cores: Option<f64>,
    /// Peak resident set size of the server (VmHWM), MB.
    pub server_peak_rss_mb: Option<f64>,
    /// Peak resident set size of the load generator, MB.
    pub loadgen_peak_rss_mb: Option<f64>,
    /// Average number of server threads that were runnable but waiting for a CPU (run-queue wait seconds over
    /// wall seconds); well above 0 means the machine was oversubscribed and the server was starved of CPU.
    pub server_runqueue_wait: Option<f64>,
    /// Average cores used by everything else on the machine (busy cores minus the load generator and the
    /// server); other work competing for the CPUs makes the figures pessimistic.
    pub other_cores: Option<f64>,
}

/// CPU seconds (user + system) of a process from `/proc/<pid>/stat` (`pid` may be `self`); `None` elsewhere.
pub fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command: state(0) ppid(1) … utime(11) stime(12), in clock ticks (100 Hz on Linux).
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU seconds all processes of the machine have used so far (busy time summed over CPUs, from `/proc/stat`).
pub fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = cpu.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user.
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7).copied().unwrap_or(0);
    Some(busy as f64 / 100.0)
}

/// Seconds the live threads of a process have spent waiting on a run queue for a CPU (sum of the second field of
/// `/proc/<pid>/task/*/schedstat`); a large value relative to the wall time means the machine was oversubscribed.
pub fn runqueue_wait_secs(pid: &str) -> Option<f64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat"))
            && let Some(w) = s.split_whitespace().nth(1).and_then(|w| w.parse::<u64>().ok())
        {
            total += w;
        }
    }
    Some(total as f64 / 1e9)
}

/// Peak resident set size (VmHWM) of a process in MB.
pub fn peak_rss_mb(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(round1(kb / 1024.0))
}

/// CPU seconds between two readings.
fn delta(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    a.zip(b).map(|(a, b)| round3(b - a))
}

/// Average cores busy: CPU seconds over wall seconds.
fn cores(cpu: Option<f64>, wall: f64) -> Option<f64> {
    cpu.map(|c| if wall > 0.0 { round3(c / wall) } else { 0.0 })
}

/// Average cores used by other processes between two marks.
fn other(from: &Mark, to: &Mark, wall: f64) -> Option<f64> {
    let busy = delta(from.machine_busy, to.machine_busy)?;
    let mine =
        delta(from.loadgen_cpu, to.loadgen_cpu).unwrap_or(0.0) + delta(from.server_cpu, to.server_cpu).unwrap_or(0.0);
    cores(Some((busy - mine).max(0.0)), wall)
}

impl Resources {
    /// Measures CPU use between two marks, and peak memory.
    pub fn measure(from: &Mark, to: &Mark, server_pid: Option<u32>) -> Self {
        let wall = to.at.duration_since(from.at).as_secs_f64();
        let lg = delta(from.loadgen_cpu, to.loadgen_cpu);
        let srv = delta(from.server_cpu, to.server_cpu);
        let pid = server_pid.map(|p| p.to_string());
        Resources {
            loadgen_cpu_secs: lg,
            loadgen_cores: cores(lg, wall),
            server_cpu_secs: srv,
            server_cores: cores(srv, wall),
            server_peak_rss_mb: pid.as_deref().and_then(peak_rss_mb),
            loadgen_peak_rss_mb: peak_rss_mb("self"),
            server_runqueue_wait: cores(delta(from.server_wait, to.server_wait), wall),
            other_cores: other(from, to, wall),
        }
    }
}

/// What [`build`] needs.
pub struct Inputs<'a> {
    /// Configuration.
    pub cfg: &'a Config,
    /// Accounts (models, member-add results).
    pub accounts: &'a [AccountRun],
    /// Start, Unix ms.
    pub started_unix_ms: u128,
    /// Start of the run.
    pub t0: Mark,
    /// Start and end of the load phases.
    pub load: (Mark, Mark),
    /// Every phase record of every account, plus setup and check.
    pub phases: Vec<PhaseRecord>,
    /// The correctness check.
    pub outcome: CheckOutcome,
    /// CPU and memory.
    pub resources: Resources,
}

/// Phase records with the same name merged: span of time, merged stats.
fn aggregate(phases: Vec<PhaseRecord>) -> Vec<PhaseRecord> {
    let mut out: Vec<PhaseRecord> = Vec::new();
    for p in phases {
        match out.iter_mut().find(|o| o.name == p.name) {
            Some(o) => {
                if p.start.at < o.start.at {
                    o.start = p.start;
                }
                if p.end.at > o.end.at {
                    o.end = p.end;
                }
                o.stats.merge(p.stats);
            }
            None => out.push(p),
        }
    }
    out
}

/// Assembles the report.
pub fn build(i: Inputs) -> Report {
    let phases = aggregate(i.phases);
    let is_load = |n: &str| n != "setup" && n != "check";
    let mut load_stats = Stats::new();
    let mut all_stats = Stats::new();
    let mut last_write = None;
    let mut kind_secs: BTreeMap<&'static str, f64> = BTreeMap::new();
    let mut summaries = Vec::new();
    let mut check_secs = 0.0;
    let mut check_end = None;
    for p in &phases {
        let secs = p.end.at.duration_since(p.start.at).as_secs_f64();
        for k in Kind::ALL {
            if p.stats.count(k) > 0 {
                *kind_secs.entry(k.name()).or_default() += secs;
            }
        }
        summaries.push(PhaseSummary {
            name: p.name.clone(),
            wall_secs: round3(secs),
            requests: p.stats.total(),
            errors: p.stats.total_errors(),
            rps: if secs > 0.0 { round1(p.stats.total() as f64 / secs) } else { 0.0 },
            loadgen_cores: cores(delta(p.start.loadgen_cpu, p.end.loadgen_cpu), secs),
            server_cores: cores(delta(p.start.server_cpu, p.end.server_cpu), secs),
            server_runqueue_wait: cores(delta(p.start.server_wait, p.end.server_wait), secs),
            other_cores: other(&p.start, &p.end, secs),
            kinds: p.stats.summaries(secs),
        });
        if is_load(&p.name) {
            if let Some(w) = p.stats.last_write
                && last_write.is_none_or(|l| l < w)
            {
                last_write = Some(w);
            }
            load_stats.merge(p.stats.clone());
        }
        if p.name == "check" {
            check_secs = secs;
            check_end = Some((p.start.at, p.end.at));
        }
        all_stats.merge(p.stats.clone());
    }
    let load_secs = i.load.1.at.duration_since(i.load.0.at).as_secs_f64();
    let mut kinds = load_stats.summaries(load_secs);
    for (name, k) in &mut kinds {
        if let Some(secs) = kind_secs.get(name.as_str()).filter(|s| **s > 0.0) {
            k.rps = round1(k.count as f64 / secs);
        }
    }
    let convergence = Convergence {
        last_write_to_check_pass_secs: match (i.outcome.passed, last_write, check_end) {
            (true, Some(w), Some((_, e))) => Some(round3(e.duration_since(w).as_secs_f64())),
            _ => None,
        },
        last_write_to_check_start_secs: match (last_write, check_end) {
            (Some(w), Some((s, _))) => Some(round3(s.saturating_duration_since(w).as_secs_f64())),
            _ => None,
        },
        check_secs: round3(check_secs),
        check_attempts: i.outcome.attempts,
    };
    let models = i.accounts.iter().map(|a| &a.model);
    let correctness = Correctness {
        passed: i.outcome.passed,
        users_expected: models.clone().map(|m| m.users.len()).sum(),
        users_found: i.outcome.found.0,
        groups_expected: models.clone().map(|m| m.groups.len()).sum(),
        groups_found: i.outcome.found.1,
        memberships_expected: models.map(|m| m.memberships()).sum(),
        memberships_found: i.outcome.found.2,
        mismatch_count: i.outcome.mismatches.len(),
        mismatches: i.outcome.mismatches.iter().take(MISMATCH_DETAIL).cloned().collect(),
    };
    Report {
        tool: "roster-loadgen",
        version: env!("CARGO_PKG_VERSION"),
        scenario: i.cfg.scenario.name(),
        config: i.cfg.clone(),
        accounts: i
            .accounts
            .iter()
            .map(|a| AccountInfo {
                index: a.index,
                id: a.access.id.clone(),
                name: a.access.name.clone(),
                scim_base_url: a.access.scim_base_url.clone(),
            })
            .collect(),
        started_unix_ms: i.started_unix_ms,
        wall_secs: round3(i.t0.at.elapsed().as_secs_f64()),
        load_secs: round3(load_secs),
        requests: load_stats.total(),
        errors: load_stats.total_errors(),
        rps: if load_secs > 0.0 { round1(load_stats.total() as f64 / load_secs) } else { 0.0 },
        phases: summaries,
        kinds,
        errors_by_status: all_stats.errors_by_status.clone(),
        errors_by_kind_status: all_stats.errors_by_kind_status.clone(),
        error_examples: all_stats.error_examples.clone(),
        throttled: all_stats.total_throttled(),
        throttled_by_kind_status: all_stats.throttled_by_kind_status.clone(),
        convergence,
        correctness,
        member_add: i.accounts.iter().filter_map(|a| a.member_add.clone()).collect(),
        relicense: i.accounts.iter().filter_map(|a| a.relicense.clone()).collect(),
        resources: i.resources,
    }
}

impl Report {
    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::new(format!("report: {e}")))?;
        std::fs::write(path, text + "\n").map_err(|e| Error::new(format!("writing {}: {e}", path.display())))
    }

    /// A human-readable summary.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let mut s = String::new();
        let shape = match self.scenario {
            "full" => format!(
                "{} users x {} groups, {} memberships/user, {} incremental cycle(s)",
                c.users, c.groups, c.memberships_per_user, c.incremental_cycles
            ),
            "member-add" => format!("one group grown to {} members, {} samples per size", c.users, c.samples),
            "relicense" => format!("one group of {} members, a license policy set then changed", c.users),
            _ => format!("{} users", c.users),
        };
        let _ = writeln!(
            s,
            "roster-loadgen: scenario {}, {} account(s) x {shape}, concurrency {}/account, seed {}",
            self.scenario, c.accounts, c.concurrency, c.seed
        );
        let _ = writeln!(
            s,
            "load: {} requests in {:.2} s = {:.0} req/s, {} errors (whole run {:.2} s)\n",
            self.requests, self.load_secs, self.rps, self.errors, self.wall_secs
        );
        let _ = writeln!(
            s,
            "{:<14} {:>9} {:>10} {:>10} {:>8} {:>13} {:>12} {:>11} {:>11}",
            "phase",
            "wall s",
            "requests",
            "req/s",
            "errors",
            "loadgen cores",
            "server cores",
            "server runq",
            "other cores"
        );
        let c2 = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.2}"));
        for p in &self.phases {
            let _ = writeln!(
                s,
                "{:<14} {:>9.3} {:>10} {:>10.0} {:>8} {:>13} {:>12} {:>11} {:>11}",
                p.name,
                p.wall_secs,
                p.requests,
                p.rps,
                p.errors,
                c2(p.loadgen_cores),
                c2(p.server_cores),
                c2(p.server_runqueue_wait),
                c2(p.other_cores)
            );
        }
        let _ = writeln!(
            s,
            "\n{:<18} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7}",
            "kind (ms)", "count", "req/s", "mean", "p50", "p90", "p99", "max", "errors"
        );
        for (name, k) in &self.kinds {
            let l = &k.latency;
            let _ = writeln!(
                s,
                "{:<18} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>7}",
                name, k.count, k.rps, l.mean_ms, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, k.errors
            );
        }
        if !self.errors_by_status.is_empty() {
            let list: Vec<String> = self.errors_by_kind_status.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(s, "\nerrors: {}", list.join(", "));
            for e in self.error_examples.iter().take(5) {
                let _ = writeln!(s, "  e.g. {e}");
            }
        }
        if self.throttled > 0 {
            let list: Vec<String> = self.throttled_by_kind_status.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(
                s,
                "\nthrottled (retried after Retry-After, not counted as requests or errors): {}",
                list.join(", ")
            );
        }
        for r in &self.relicense {
            let _ = writeln!(s, "\nrelicense (account {}, {} members):", r.account, r.members);
            for step in &r.steps {
                let decided = step.decided_secs.map_or("not within the timeout".to_owned(), |d| format!("{d:.2} s"));
                let _ = writeln!(
                    s,
                    "{:<14} PUT {:.2} s, every member decided after {decided} ({} polls), seats {:?}",
                    step.name, step.put_secs, step.polls, step.seats
                );
            }
        }
        for m in &self.member_add {
            let _ = writeln!(s, "\nmember-add (account {}, single-member PATCH, sequential):", m.account);
            let _ = writeln!(
                s,
                "{:>12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>12} {:>12}",
                "group size", "samples", "mean", "p50", "p90", "p99", "max (ms)", "p50 x empty", "p99 x empty"
            );
            for p in &m.points {
                let l = &p.latency;
                let _ = writeln!(
                    s,
                    "{:>12} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>12.2} {:>12.2}",
                    p.group_size,
                    p.samples,
                    l.mean_ms,
                    l.p50_ms,
                    l.p90_ms,
                    l.p99_ms,
                    l.max_ms,
                    p.p50_vs_empty,
                    p.p99_vs_empty
                );
            }
        }
        let k = &self.correctness;
        let _ = writeln!(
            s,
            "\ncorrectness: {} — users {}/{}, groups {}/{}, memberships {}/{} (found/expected), {} mismatch(es)",
            if k.passed { "PASSED" } else { "FAILED" },
            k.users_found,
            k.users_expected,
            k.groups_found,
            k.groups_expected,
            k.memberships_found,
            k.memberships_expected,
            k.mismatch_count
        );
        for m in &k.mismatches {
            let _ = writeln!(s, "  {m}");
        }
        let cv = &self.convergence;
        let _ = writeln!(
            s,
            "convergence: last write -> check passed {} (check {:.3} s, {} attempt(s); {} s between the last write and the check)",
            cv.last_write_to_check_pass_secs.map_or("never".to_owned(), |x| format!("{x:.3} s")),
            cv.check_secs,
            cv.check_attempts,
            cv.last_write_to_check_start_secs.map_or("-".to_owned(), |x| format!("{x:.3}")),
        );
        let r = &self.resources;
        let opt = |x: Option<f64>, unit: &str| x.map_or("n/a".to_owned(), |v| format!("{v:.2}{unit}"));
        let _ = writeln!(
            s,
            "resources: loadgen {} CPU ({} cores avg, peak RSS {}), server {} CPU ({} cores avg, peak RSS {}, {} threads waiting for a CPU on average), other processes {} cores",
            opt(r.loadgen_cpu_secs, " s"),
            opt(r.loadgen_cores, ""),
            opt(r.loadgen_peak_rss_mb, " MB"),
            opt(r.server_cpu_secs, " s"),
            opt(r.server_cores, ""),
            opt(r.server_peak_rss_mb, " MB"),
            opt(r.server_runqueue_wait, ""),
            opt(r.other_cores, ""),
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn proc_readers_work_for_self() {
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(cpu_secs("self").is_some_and(|c| c >= 0.0));
            assert!(peak_rss_mb("self").is_some_and(|m| m > 0.0));
            assert!(runqueue_wait_secs("self").is_some_and(|w| w >= 0.0));
            assert!(machine_busy_secs().is_some_and(|b| b > 0.0));
        }
        assert_eq!(cpu_secs("no-such-pid"), None);
    }

    #[test]
    fn phases_with_the_same_name_are_merged() {
        let t = Instant::now();
        let m = |at| Mark { at, loadgen_cpu: None, server_cpu: None, server_wait: None, machine_busy: None };
        let mut a = Stats::new();
        a.ok(Kind::UserCreate, 10);
        let mut b = Stats::new();
        b.ok(Kind::UserCreate, 20);
        let later = t + std::time::Duration::from_millis(5);
        let merged = aggregate(vec![
            PhaseRecord { name: "users".into(), start: m(later), end: m(later), stats: a },
            PhaseRecord { name: "groups".into(), start: m(t), end: m(t), stats: Stats::new() },
            PhaseRecord { name: "users".into(), start: m(t), end: m(later), stats: b },
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].name, "users");
        assert_eq!(merged[0].start.at, t);
        assert_eq!(merged[0].end.at, later);
        assert_eq!(merged[0].stats.count(Kind::UserCreate), 2);
    }
}
