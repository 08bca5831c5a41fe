//! Roster's Entra provisioning simulator and load generator.
//!
//! It drives a running Roster the way Microsoft Entra ID's provisioning service does (matching lookups, creates,
//! member adds in batches, incremental cycles in both PATCH dialects), for many accounts at once, keeps its own
//! model of what it sent, checks Roster against that model at the end, and reports throughput, latency
//! percentiles per request kind, errors and time to convergence.

pub mod bodies;
pub mod client;
pub mod config;
pub mod encode;
pub mod evloop;
pub mod model;
pub mod pool;
pub mod prng;
pub mod report;
pub mod run;
pub mod stats;
pub mod wire;

pub use config::{Config, Scenario};
pub use report::Report;
pub use run::run;

/// An error that stops a run (bad configuration, admin API failure).
#[derive(Debug, Clone)]
pub struct Error(String);

impl Error {
    /// An error with a message.
    pub fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}
