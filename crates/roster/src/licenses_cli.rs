//! `roster admin licenses …`: licensing operations through the admin HTTP API of a running Roster.
//!
//! Unlike accounts and tokens, licensing changes are events that the projector decides (policy validation,
//! the seat guard), so the command line goes through the same API as operators' tools instead of writing
//! to the database: `--admin-url` (`ROSTER_ADMIN_URL`, default `http://127.0.0.1:8081`) with the bearer
//! token in `ROSTER_ADMIN_TOKEN`. It prints the API's JSON answer and fails on a non-2xx status.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Arguments of `roster admin licenses`.
#[derive(Args, Debug)]
pub struct LicensesArgs {
    /// Base URL of the ops port of a running Roster.
    #[arg(long, env = "ROSTER_ADMIN_URL", default_value = "http://127.0.0.1:8081")]
    admin_url: String,
    /// Account id.
    #[arg(long)]
    account: String,
    #[command(subcommand)]
    command: LicensesCommand,
}

#[derive(Subcommand, Debug)]
enum LicensesCommand {
    /// The license policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Every user's license and the reason for it.
    List,
    /// Seat use per license type.
    Seats,
    /// Per-user overrides (pins).
    #[command(subcommand)]
    Override(OverrideCommand),
    /// Mass-revocation holds.
    #[command(subcommand)]
    Holds(HoldsCommand),
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Prints the policy in force.
    Get,
    /// Replaces the policy with the JSON document in FILE (`-` = stdin).
    Set {
        /// The policy document.
        #[arg(long)]
        file: PathBuf,
    },
    /// Dry run: who would change under the policy in FILE, and seat use.
    Preview {
        /// The proposed policy document.
        #[arg(long)]
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum OverrideCommand {
    /// Pins a user's license.
    Set {
        /// User id.
        #[arg(long)]
        user: String,
        /// License name.
        #[arg(long)]
        license: String,
    },
    /// Unpins a user's license.
    Remove {
        /// User id.
        #[arg(long)]
        user: String,
    },
}

#[derive(Subcommand, Debug)]
enum HoldsCommand {
    /// Lists holds, newest first.
    List,
    /// Applies a held mass revocation.
    Confirm {
        /// Hold id.
        #[arg(long)]
        hold: String,
    },
    /// Keeps everyone's current license (pins the held users).
    Discard {
        /// Hold id.
        #[arg(long)]
        hold: String,
    },
}

fn read_document(path: &PathBuf) -> Result<Value> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the policy from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// Runs a licensing command against the admin API.
pub async fn run(args: LicensesArgs) -> Result<()> {
    let token = std::env::var("ROSTER_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| anyhow!("ROSTER_ADMIN_TOKEN must be set to call the admin API"))?;
    let base = format!("{}/admin/v1/accounts/{}", args.admin_url.trim_end_matches('/'), args.account);
    let (method, path, body): (&str, String, Option<Value>) = match args.command {
        LicensesCommand::Policy(PolicyCommand::Get) => ("GET", "/license-policy".into(), None),
        LicensesCommand::Policy(PolicyCommand::Set { file }) => {
            ("PUT", "/license-policy".into(), Some(read_document(&file)?))
        }
        LicensesCommand::Policy(PolicyCommand::Preview { file }) => {
            ("POST", "/license-policy/preview".into(), Some(read_document(&file)?))
        }
        LicensesCommand::List => ("GET", "/licenses".into(), None),
        LicensesCommand::Seats => ("GET", "/seats".into(), None),
        LicensesCommand::Override(OverrideCommand::Set { user, license }) => {
            ("PUT", format!("/users/{user}/license-override"), Some(json!({ "license": license })))
        }
        LicensesCommand::Override(OverrideCommand::Remove { user }) => {
            ("DELETE", format!("/users/{user}/license-override"), None)
        }
        LicensesCommand::Holds(HoldsCommand::List) => ("GET", "/license-holds".into(), None),
        LicensesCommand::Holds(HoldsCommand::Confirm { hold }) => {
            ("POST", format!("/license-holds/{hold}/confirm"), Some(json!({})))
        }
        LicensesCommand::Holds(HoldsCommand::Discard { hold }) => {
            ("POST", format!("/license-holds/{hold}/discard"), Some(json!({})))
        }
    };
    let url = format!("{base}{path}");
    let (status, text) = tokio::task::spawn_blocking(move || call(method, &url, &token, body)).await??;
    let out: Value = if text.trim().is_empty() { json!({"status": status}) } else { serde_json::from_str(&text)? };
    println!("{}", serde_json::to_string_pretty(&out)?);
    if !(200..300).contains(&status) {
        bail!("the admin API answered {status}");
    }
    Ok(())
}

fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> Result<(u16, String)> {
    let config =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build();
    let agent = ureq::Agent::new_with_config(config);
    let auth = format!("Bearer {token}");
    let result = match (method, body) {
        ("GET", _) => agent.get(url).header("Authorization", &auth).call(),
        ("DELETE", _) => agent.delete(url).header("Authorization", &auth).call(),
        (m, body) => {
            let rb = if m == "PUT" { agent.put(url) } else { agent.post(url) };
            rb.header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(Value::Null).to_string())
        }
    };
    let mut resp = result.with_context(|| format!("calling {method} {url}"))?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string()?;
    Ok((status, text))
}
