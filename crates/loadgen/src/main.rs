//! `roster-loadgen`: simulates Microsoft Entra ID provisioning into Roster, measures it, and checks the result.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use roster_loadgen::Config;

/// Entra provisioning simulator and load generator for Roster.
#[derive(Parser)]
#[command(name = "roster-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Subcommands.
#[derive(Subcommand)]
enum Command {
    /// Create accounts, drive them like Entra, check correctness, report.
    Run(Config),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(cfg) => match run(&cfg) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("roster-loadgen: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

/// Runs and reports; `Ok(false)` when the correctness check failed.
fn run(cfg: &Config) -> anyhow::Result<bool> {
    let report = roster_loadgen::run(cfg).context("run failed")?;
    print!("{}", report.summary());
    if let Some(path) = &cfg.report {
        report.write_json(path).with_context(|| format!("writing the report to {}", path.display()))?;
        println!("report: {}", path.display());
    }
    Ok(report.correctness.passed)
}
