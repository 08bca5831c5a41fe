//! Command-line configuration of a run.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;

/// What the run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Entra's initial cycle (lookup + create users and groups, member adds in batches), incremental cycles,
    /// then the correctness check.
    Full,
    /// Only `POST /Users` at the given concurrency (no lookups), then the check.
    Creates,
    /// Pre-create the users, then `userName eq` lookups for `--duration-secs`, then the check.
    Lookups,
    /// One group filled to `--users` members in batches; single-member adds measured against the group's size.
    MemberAdd,
    /// One group of `--users` members; a license policy is set, then changed so that every member's license
    /// changes, each timed until `GET …/seats` shows every member decided.
    Relicense,
}

impl Scenario {
    /// The scenario's name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Full => "full",
            Scenario::Creates => "creates",
            Scenario::Lookups => "lookups",
            Scenario::MemberAdd => "member-add",
            Scenario::Relicense => "relicense",
        }
    }
}

/// Parameters of `roster-loadgen run`.
#[derive(Clone, Debug, Args, Serialize)]
pub struct Config {
    /// Origin of Roster's ops port (admin API), e.g. `http://127.0.0.1:8081`.
    #[arg(long, env = "ROSTER_LOADGEN_ADMIN_URL")]
    pub admin_url: String,
    /// Admin API bearer token.
    #[arg(long, env = "ROSTER_ADMIN_TOKEN", hide_env_values = true)]
    #[serde(skip)]
    pub admin_token: String,
    /// Origin of Roster's public port; replaces the origin of the SCIM base URLs the admin API returns.
    #[arg(long)]
    pub public_url: Option<String>,
    /// What to run.
    #[arg(long, value_enum, default_value_t = Scenario::Full)]
    pub scenario: Scenario,
    /// Accounts (tenants) provisioned at the same time, each by its own worker pool.
    #[arg(long, default_value_t = 10)]
    pub accounts: usize,
    /// Users per account.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Groups per account.
    #[arg(long, default_value_t = 10)]
    pub groups: usize,
    /// Groups each user belongs to.
    #[arg(long, default_value_t = 2)]
    pub memberships_per_user: usize,
    /// Concurrent requests per account.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Members per member-add PATCH in the initial cycle.
    #[arg(long, default_value_t = 50)]
    pub member_batch: usize,
    /// Incremental cycles after the initial one.
    #[arg(long, default_value_t = 1)]
    pub incremental_cycles: usize,
    /// Cap on the load phases in seconds (workers stop taking new work); the length of the `lookups` phase
    /// (default 10 s there).
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Seed of the deterministic generator (names, choices of changes).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Single-member adds measured at each group size in the member-add scenario.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// How long the relicense scenario waits for each policy to be applied to every member.
    #[arg(long, default_value_t = 300)]
    pub relicense_timeout_secs: u64,
    /// Retries of a request answered 429 or 503, each after the server's `Retry-After` (0: no retries, the
    /// answer counts as an error).
    #[arg(long, default_value_t = 5)]
    pub max_retries: u32,
    /// Keep re-running the correctness check for up to this many seconds until it passes (0: check once).
    #[arg(long, default_value_t = 0)]
    pub converge_timeout_secs: u64,
    /// Write the full report as JSON to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Pid of the Roster process, to report its CPU time and peak RSS (Linux).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Do not draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

impl Config {
    /// A configuration with the defaults of the command line, for the given endpoints.
    pub fn new(admin_url: &str, admin_token: &str, public_url: Option<&str>) -> Self {
        Config {
            admin_url: admin_url.to_owned(),
            admin_token: admin_token.to_owned(),
            public_url: public_url.map(str::to_owned),
            scenario: Scenario::Full,
            accounts: 10,
            users: 1000,
            groups: 10,
            memberships_per_user: 2,
            concurrency: 8,
            member_batch: 50,
            incremental_cycles: 1,
            duration_secs: None,
            seed: 1,
            samples: 200,
            relicense_timeout_secs: 300,
            max_retries: 5,
            converge_timeout_secs: 0,
            report: None,
            server_pid: None,
            no_progress: false,
        }
    }
}
