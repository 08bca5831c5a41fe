//! Latency samples per request kind, errors by status, and percentile summaries.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

/// What a request was for; latencies and errors are reported per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `GET /Users?filter=userName eq "…"`.
    UserLookup,
    /// `POST /Users`.
    UserCreate,
    /// `GET /Groups?excludedAttributes=members&filter=displayName eq "…"`.
    GroupLookup,
    /// `POST /Groups`.
    GroupCreate,
    /// `PATCH /Groups/{id}` adding members.
    MemberAdd,
    /// `PATCH /Groups/{id}` removing members.
    MemberRemove,
    /// `PATCH /Users/{id}` changing attributes.
    UserPatch,
    /// `PATCH /Users/{id}` setting `active` to false.
    UserDeactivate,
    /// `PATCH /Users/{id}` setting `active` to true.
    UserReactivate,
    /// `PATCH /Groups/{id}` replacing `displayName`.
    GroupRename,
    /// `DELETE /Users/{id}`.
    UserDelete,
    /// Correctness check: a page of `GET /Users`.
    CheckUsers,
    /// Correctness check: a page of `GET /Groups`.
    CheckGroups,
    /// Correctness check: `GET /Groups/{id}` with members.
    CheckGroup,
    /// Relicense scenario: `GET /Users?count=0&filter=…licenseType eq "…"`, counting a license's holders.
    LicenseCount,
    /// Admin API calls (accounts, tokens).
    Admin,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 16] = [
        Kind::UserLookup,
        Kind::UserCreate,
        Kind::GroupLookup,
        Kind::GroupCreate,
        Kind::MemberAdd,
        Kind::MemberRemove,
        Kind::UserPatch,
        Kind::UserDeactivate,
        Kind::UserReactivate,
        Kind::GroupRename,
        Kind::UserDelete,
        Kind::CheckUsers,
        Kind::CheckGroups,
        Kind::CheckGroup,
        Kind::LicenseCount,
        Kind::Admin,
    ];

    /// The kind's name in reports (`user-lookup`, …).
    pub fn name(self) -> &'static str {
        match self {
            Kind::UserLookup => "user-lookup",
            Kind::UserCreate => "user-create",
            Kind::GroupLookup => "group-lookup",
            Kind::GroupCreate => "group-create",
            Kind::MemberAdd => "member-add",
            Kind::MemberRemove => "member-remove",
            Kind::UserPatch => "user-patch",
            Kind::UserDeactivate => "user-deactivate",
            Kind::UserReactivate => "user-reactivate",
            Kind::GroupRename => "group-rename",
            Kind::UserDelete => "user-delete",
            Kind::CheckUsers => "check-list-users",
            Kind::CheckGroups => "check-list-groups",
            Kind::CheckGroup => "check-get-group",
            Kind::LicenseCount => "license-count",
            Kind::Admin => "admin",
        }
    }

    /// Whether the request changes state (used for the time of the last write).
    pub fn is_write(self) -> bool {
        !matches!(
            self,
            Kind::UserLookup
                | Kind::GroupLookup
                | Kind::CheckUsers
                | Kind::CheckGroups
                | Kind::CheckGroup
                | Kind::LicenseCount
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Raw measurements of one worker or one phase: latency samples (microseconds) per kind and error counts.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    samples: Vec<Vec<u32>>,
    errors: Vec<u64>,
    /// Failed requests by status code (`"409"`, `"transport"`, `"unexpected-result"`).
    pub errors_by_status: BTreeMap<String, u64>,
    /// Failed requests by kind and status (`"user-create 409"`).
    pub errors_by_kind_status: BTreeMap<String, u64>,
    /// A few failed exchanges, for the report.
    pub error_examples: Vec<String>,
    /// When the response to the latest write arrived.
    pub last_write: Option<Instant>,
    /// Throttled attempts (429/503, retried after `Retry-After`) by kind and status (`"user-create 429"`).
    pub throttled_by_kind_status: BTreeMap<String, u64>,
}

/// How many failed exchanges a [`Stats`] keeps verbatim.
const MAX_ERROR_EXAMPLES: usize = 10;

impl Stats {
    /// Empty statistics.
    pub fn new() -> Self {
        Stats { samples: vec![Vec::new(); Kind::ALL.len()], errors: vec![0; Kind::ALL.len()], ..Default::default() }
    }

    fn ensure(&mut self) {
        if self.samples.len() < Kind::ALL.len() {
            self.samples.resize(Kind::ALL.len(), Vec::new());
            self.errors.resize(Kind::ALL.len(), 0);
        }
    }

    /// Records a successful request.
    pub fn ok(&mut self, kind: Kind, micros: u32) {
        self.ensure();
        self.samples[kind.index()].push(micros);
    }

    /// Records a failed request: its latency still counts, and the error is tallied under `status`.
    pub fn fail(&mut self, kind: Kind, micros: u32, status: &str, example: impl FnOnce() -> String) {
        self.ensure();
        self.samples[kind.index()].push(micros);
        self.count_error(kind, status, example);
    }

    /// Tallies an error of an already recorded request (e.g. a 200 lookup with the wrong result).
    pub fn count_error(&mut self, kind: Kind, status: &str, example: impl FnOnce() -> String) {
        self.ensure();
        self.errors[kind.index()] += 1;
        *self.errors_by_status.entry(status.to_owned()).or_default() += 1;
        *self.errors_by_kind_status.entry(format!("{} {status}", kind.name())).or_default() += 1;
        if self.error_examples.len() < MAX_ERROR_EXAMPLES {
            self.error_examples.push(example());
        }
    }

    /// Counts an attempt answered 429 or 503 that is retried (not a latency sample, not an error).
    pub fn throttled(&mut self, kind: Kind, status: u16) {
        *self.throttled_by_kind_status.entry(format!("{} {status}", kind.name())).or_default() += 1;
    }

    /// Throttled attempts of all kinds.
    pub fn total_throttled(&self) -> u64 {
        self.throttled_by_kind_status.values().sum()
    }

    /// Notes that a write's response arrived at `at`.
    pub fn note_write(&mut self, at: Instant) {
        if self.last_write.is_none_or(|w| w < at) {
            self.last_write = Some(at);
        }
    }

    /// Adds another set of measurements to this one.
    pub fn merge(&mut self, other: Stats) {
        self.ensure();
        if let Some(w) = other.last_write {
            self.note_write(w);
        }
        for (i, s) in other.samples.into_iter().enumerate() {
            self.samples[i].extend(s);
        }
        for (i, e) in other.errors.into_iter().enumerate() {
            self.errors[i] += e;
        }
        for (k, v) in other.errors_by_status {
            *self.errors_by_status.entry(k).or_default() += v;
        }
        for (k, v) in other.errors_by_kind_status {
            *self.errors_by_kind_status.entry(k).or_default() += v;
        }
        for (k, v) in other.throttled_by_kind_status {
            *self.throttled_by_kind_status.entry(k).or_default() += v;
        }
        for e in other.error_examples {
            if self.error_examples.len() < MAX_ERROR_EXAMPLES {
                self.error_examples.push(e);
            }
        }
    }

    /// Number of requests of one kind.
    pub fn count(&self, kind: Kind) -> usize {
        self.samples.get(kind.index()).map_or(0, Vec::len)
    }

    /// Number of requests of all kinds.
    pub fn total(&self) -> usize {
        self.samples.iter().map(Vec::len).sum()
    }

    /// Number of failed requests of all kinds.
    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// The latency samples of one kind (microseconds, in arrival order).
    pub fn samples(&self, kind: Kind) -> &[u32] {
        self.samples.get(kind.index()).map_or(&[], Vec::as_slice)
    }

    /// Summaries of every kind that has at least one request; `wall_secs` is used for the per-kind rate.
    pub fn summaries(&self, wall_secs: f64) -> BTreeMap<String, KindSummary> {
        let mut out = BTreeMap::new();
        for kind in Kind::ALL {
            let s = self.samples(kind);
            if s.is_empty() {
                continue;
            }
            let summary = LatencySummary::of(s);
            let errors = self.errors.get(kind.index()).copied().unwrap_or(0);
            let rps = if wall_secs > 0.0 { s.len() as f64 / wall_secs } else { 0.0 };
            out.insert(
                kind.name().to_owned(),
                KindSummary { count: s.len(), errors, rps: round1(rps), latency: summary },
            );
        }
        out
    }
}

/// Report entry for one request kind.
#[derive(Clone, Debug, Serialize)]
pub struct KindSummary {
    /// Requests sent.
    pub count: usize,
    /// Requests that failed (transport error, unexpected status or unexpected result).
    pub errors: u64,
    /// Requests per second over the phases where the kind occurred (wall time of the whole run).
    pub rps: f64,
    /// Latency percentiles.
    #[serde(flatten)]
    pub latency: LatencySummary,
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

impl LatencySummary {
    /// Computes the summary of a set of samples in microseconds (all zeros when empty).
    pub fn of(samples: &[u32]) -> Self {
        if samples.is_empty() {
            return LatencySummary::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let ms = |us: u32| round3(f64::from(us) / 1000.0);
        let sum: u64 = sorted.iter().map(|x| u64::from(*x)).sum();
        LatencySummary {
            mean_ms: round3(sum as f64 / sorted.len() as f64 / 1000.0),
            p50_ms: ms(percentile(&sorted, 50.0)),
            p90_ms: ms(percentile(&sorted, 90.0)),
            p99_ms: ms(percentile(&sorted, 99.0)),
            max_ms: ms(sorted[sorted.len() - 1]),
        }
    }
}

/// The `p`-th percentile (0..=100) of sorted samples by the nearest-rank method: the smallest sample such that at
/// least `p` percent of the samples are less than or equal to it. 0 for an empty slice.
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Rounds to three decimals (microsecond resolution for milliseconds).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Rounds to one decimal.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&s, 50.0), 50);
        assert_eq!(percentile(&s, 90.0), 90);
        assert_eq!(percentile(&s, 99.0), 99);
        assert_eq!(percentile(&s, 100.0), 100);
        assert_eq!(percentile(&s, 0.0), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        let s = [10, 20, 30, 40];
        assert_eq!(percentile(&s, 50.0), 20);
        assert_eq!(percentile(&s, 51.0), 30);
    }

    #[test]
    fn summary_of_unsorted_samples() {
        let s: Vec<u32> = (1..=1000).rev().map(|x| x * 1000).collect();
        let l = LatencySummary::of(&s);
        assert_eq!(l.p50_ms, 500.0);
        assert_eq!(l.p90_ms, 900.0);
        assert_eq!(l.p99_ms, 990.0);
        assert_eq!(l.max_ms, 1000.0);
        assert_eq!(l.mean_ms, 500.5);
        assert_eq!(LatencySummary::of(&[]), LatencySummary::default());
    }

    #[test]
    fn merge_and_errors() {
        let mut a = Stats::new();
        a.ok(Kind::UserCreate, 100);
        a.fail(Kind::UserCreate, 200, "409", || "dup".into());
        let mut b = Stats::new();
        b.ok(Kind::UserLookup, 50);
        b.fail(Kind::UserCreate, 300, "409", || "dup2".into());
        b.fail(Kind::UserLookup, 300, "transport", || "reset".into());
        b.throttled(Kind::UserCreate, 429);
        a.throttled(Kind::UserCreate, 429);
        a.merge(b);
        assert_eq!(a.throttled_by_kind_status.get("user-create 429"), Some(&2));
        assert_eq!(a.total_throttled(), 2);
        assert_eq!(a.count(Kind::UserCreate), 3);
        assert_eq!(a.count(Kind::UserLookup), 2);
        assert_eq!(a.total(), 5);
        assert_eq!(a.total_errors(), 3);
        assert_eq!(a.errors_by_status.get("409"), Some(&2));
        assert_eq!(a.errors_by_status.get("transport"), Some(&1));
        assert_eq!(a.errors_by_kind_status.get("user-create 409"), Some(&2));
        let sums = a.summaries(1.0);
        assert_eq!(sums["user-create"].count, 3);
        assert_eq!(sums["user-create"].errors, 2);
        assert!(!sums.contains_key("member-add"));
        assert_eq!(Stats::default().total(), 0);
        let mut d = Stats::default();
        d.ok(Kind::Admin, 1);
        assert_eq!(d.count(Kind::Admin), 1);
    }
}
