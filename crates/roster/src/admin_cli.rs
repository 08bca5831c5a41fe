//! `roster admin …`: the admin API's operations from the command line, printing JSON.

use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};
use roster_store::accounts;
use serde_json::json;

/// Arguments of `roster admin`.
#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Database URL.
    #[arg(long, env = "ROSTER_DATABASE_URL", default_value = "sqlite://roster-data/roster.db?mode=rwc", global = true)]
    pub database_url: String,
    /// Base URL used to print SCIM base URLs.
    #[arg(long, env = "ROSTER_PUBLIC_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub public_url: String,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// SCIM tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Licensing: policy, licenses, seats, overrides and holds, through the admin HTTP API of a running
    /// Roster (`--admin-url`/`ROSTER_ADMIN_URL`, `ROSTER_ADMIN_TOKEN`), because changes are events that a
    /// projector must decide.
    Licenses(crate::licenses_cli::LicensesArgs),
    /// A resource's change history.
    Events {
        /// Account id.
        #[arg(long)]
        account: String,
        /// Resource id.
        #[arg(long)]
        resource_id: String,
    },
}

#[derive(Subcommand, Debug)]
enum AccountsCommand {
    /// Creates an account.
    Create {
        /// Unique name.
        #[arg(long)]
        name: String,
    },
    /// Lists accounts.
    List,
}

#[derive(Subcommand, Debug)]
enum TokensCommand {
    /// Creates a SCIM token (the secret is printed only now).
    Create {
        /// Account id.
        #[arg(long)]
        account: String,
        /// Label, e.g. `entra`.
        #[arg(long)]
        name: String,
        /// The token stops working this many days from now (default: never; revoke to end it).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650), conflicts_with = "expires_at")]
        expires_in_days: Option<u32>,
        /// The token stops working at this RFC 3339 time, e.g. `2027-06-30T00:00:00Z`.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Lists an account's tokens without secrets.
    List {
        /// Account id.
        #[arg(long)]
        account: String,
    },
    /// Revokes a token.
    Revoke {
        /// Account id.
        #[arg(long)]
        account: String,
        /// Token id.
        #[arg(long)]
        token: String,
    },
}

/// Runs an admin command against the database directly.
pub async fn run(args: AdminArgs) -> Result<()> {
    if let AdminCommand::Licenses(l) = args.command {
        return crate::licenses_cli::run(l).await;
    }
    let db = roster_db::connect(&args.database_url).await?;
    roster_db::migrate(&db).await?;
    let base = |id: &str| format!("{}/scim/v2/accounts/{id}", args.public_url.trim_end_matches('/'));
    let out = match args.command {
        AdminCommand::Accounts(AccountsCommand::Create { name }) => {
            let a = accounts::create_account(&db, &name).await?;
            json!({"id": a.id, "name": a.name, "created_at": a.created_at, "scim_base_url": base(&a.id)})
        }
        AdminCommand::Accounts(AccountsCommand::List) => {
            let list = accounts::list_accounts(&db).await?;
            json!({"accounts": list.iter().map(|a| json!({"id": a.id, "name": a.name, "created_at": a.created_at, "scim_base_url": base(&a.id)})).collect::<Vec<_>>()})
        }
        AdminCommand::Tokens(TokensCommand::Create { account, name, expires_in_days, expires_at }) => {
            let expiry = match (expires_at, expires_in_days) {
                (Some(at), _) => accounts::Expiry::At(at),
                (None, Some(days)) => accounts::Expiry::InDays(days),
                (None, None) => accounts::Expiry::Never,
            };
            let (info, secret) = accounts::create_token(&db, &account, &name, &expiry).await?;
            json!({"id": info.id, "name": info.name, "token": secret, "created_at": info.created_at, "expires_at": info.expires_at})
        }
        AdminCommand::Tokens(TokensCommand::List { account }) => {
            json!({"tokens": accounts::list_tokens(&db, &account).await?})
        }
        AdminCommand::Tokens(TokensCommand::Revoke { account, token }) => {
            if !accounts::revoke_token(&db, &account, &token).await? {
                return Err(anyhow!("no active token {token:?} in account {account:?}"));
            }
            json!({"revoked": token})
        }
        AdminCommand::Events { account, resource_id } => {
            json!({"events": roster_store::outcomes::history(&db, &account, &resource_id, 10_000).await?})
        }
        AdminCommand::Licenses(_) => return Err(anyhow!("handled above")),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
