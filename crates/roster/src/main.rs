//! `roster`: the one binary. Parses the command line, sets up logging and runs a subcommand.

mod admin_cli;
mod config;
mod licenses_cli;
mod replay;
mod serve;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::config::Common;

/// The projector's work is mostly short-lived strings and JSON maps; glibc's allocator took a third
/// of a replay's CPU (`malloc_consolidate`, `unlink_chunk`), mimalloc's per-thread free lists do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Roster: a SCIM 2.0 endpoint for Microsoft Entra ID, built on an event log.
#[derive(Parser, Debug)]
#[command(name = "roster", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Everything in one process (ingress + projector + licensing worker); embedded defaults.
    Serve(Common),
    /// The SCIM ingress only (a projector must run elsewhere against the same database and log).
    Ingress(Common),
    /// The projector only.
    Projector(Common),
    /// The licensing worker only (ops port with /readyz and the admin API).
    Licensing(Common),
    /// Applies database migrations and exits.
    Migrate(Common),
    /// Rebuilds the read model from the event log, with a progress bar.
    Replay(replay::ReplayArgs),
    /// Admin operations (accounts, SCIM tokens, history, licensing), printing JSON.
    Admin(admin_cli::AdminArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let traced =
        matches!(cli.command, Command::Serve(_) | Command::Ingress(_) | Command::Projector(_) | Command::Licensing(_));
    let telemetry = config::init_logging(cli.command.name(), traced);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(c) => serve::run(c, serve::Role::All).await,
            Command::Ingress(c) => serve::run(c, serve::Role::Ingress).await,
            Command::Projector(c) => serve::run(c, serve::Role::Projector).await,
            Command::Licensing(c) => serve::run(c, serve::Role::Licensing).await,
            Command::Migrate(c) => {
                let db = roster_db::connect(&c.database_url).await?;
                roster_db::migrate(&db).await?;
                println!("roster: migrations applied to {}", roster_db::redact(&c.database_url));
                if let Some(k) = c.kafka() {
                    roster_eventlog_kafka::ensure_topic(&k).await?;
                    println!("roster: Kafka topic {} is ready", k.topic);
                }
                Ok(())
            }
            Command::Replay(args) => replay::run(args).await,
            Command::Admin(args) => admin_cli::run(args).await,
        }
    });
    // Stop the runtime's tasks first, then export the spans still queued (blocking, so outside
    // the runtime), whatever the outcome. The long-running commands have already spent their
    // grace period on an orderly stop; anything still blocked (a Kafka client waiting on a slow
    // broker) gets one more second, so the process exits within the grace Kubernetes expects.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    telemetry.shutdown();
    result
}

impl Command {
    /// The subcommand's name: the default `service.name` is `roster-<name>`.
    fn name(&self) -> &'static str {
        match self {
            Command::Serve(_) => "serve",
            Command::Ingress(_) => "ingress",
            Command::Projector(_) => "projector",
            Command::Licensing(_) => "licensing",
            Command::Migrate(_) => "migrate",
            Command::Replay(_) => "replay",
            Command::Admin(_) => "admin",
        }
    }
}
