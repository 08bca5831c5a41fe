//! Accounts (tenants) and their SCIM bearer tokens.
//!
//! Token secrets are shown once at creation and stored only as SHA-256 hashes; a lookup hashes the
//! presented token and finds it by its (unique, indexed) hash, so the secret is never compared
//! byte by byte and never stored.

use std::collections::HashMap;
use std::sync::Mutex;

use roster_db::{Db, IndexedRow, Reads, StoreError, stmt};
use sea_orm::{ConnectionTrait, Value};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// An account (one customer tenant with its own SCIM endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// Stable id used in the SCIM base URL.
    pub id: String,
    /// Unique, human-chosen name.
    pub name: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// A SCIM token without its secret, as listed by the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Token id (for revocation).
    pub id: String,
    /// The account it grants access to.
    pub account_id: String,
    /// Operator-chosen label, e.g. `entra`.
    pub name: String,
    /// Creation time.
    pub created_at: String,
    /// When it was last used (recorded in batches, so up to a few seconds late).
    pub last_used_at: Option<String>,
    /// When it stops working (canonical RFC 3339); `None` = never.
    pub expires_at: Option<String>,
    /// When it was revoked, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// Errors specific to account operations.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An account with that name exists.
    #[error("an account named {0:?} already exists")]
    NameTaken(String),
    /// No such account.
    #[error("account {0:?} not found")]
    NotFound(String),
    /// The name is empty or too long.
    #[error("invalid account name: {0}")]
    InvalidName(String),
    /// Randomness was unavailable.
    #[error("cannot generate a secret: {0}")]
    Random(String),
    /// The requested expiry is not a future RFC 3339 time.
    #[error("invalid token expiry: {0}")]
    InvalidExpiry(String),
}

impl From<sea_orm::DbErr> for AccountError {
    fn from(e: sea_orm::DbErr) -> Self {
        AccountError::Store(StoreError::Db(e))
    }
}

fn random_hex(bytes: usize) -> Result<String, AccountError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| AccountError::Random(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// SHA-256 of a token secret, hex-encoded: the only form in which tokens are stored.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Generates a token secret: 256 bits of OS randomness with a recognisable prefix (for secret scanners).
pub fn generate_secret() -> Result<String, AccountError> {
    Ok(format!("roster_{}", random_hex(32)?))
}

fn row_account(row: &sea_orm::QueryResult) -> Result<Account, StoreError> {
    Ok(Account { id: row.try_get_by_index(0)?, name: row.try_get_by_index(1)?, created_at: row.try_get_by_index(2)? })
}

/// Creates an account with a new random id.
pub async fn create_account(db: &Db, name: &str) -> Result<Account, AccountError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(AccountError::InvalidName("must be 1 to 200 characters".into()));
    }
    if find_account_by_name(db, name).await?.is_some() {
        return Err(AccountError::NameTaken(name.to_string()));
    }
    let account = Account { id: random_hex(8)?, name: name.to_string(), created_at: roster_scim::time::now() };
    let b = db.get_database_backend();
    let res = db
        .execute_raw(stmt(
            b,
            "INSERT INTO accounts (id, name, created_at) VALUES (?, ?, ?)",
            [account.id.clone().into(), account.name.clone().into(), account.created_at.clone().into()],
        ))
        .await;
    match res {
        Ok(_) => Ok(account),
        Err(e) if e.to_string().to_lowercase().contains("unique") => Err(AccountError::NameTaken(name.into())),
        Err(e) => Err(e.into()),
    }
}

/// All accounts, by name.
pub async fn list_accounts(db: &Db) -> Result<Vec<Account>, StoreError> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(b, "SELECT id, name, created_at FROM accounts ORDER BY name", Vec::<Value>::new()))
        .await?;
    rows.iter().map(row_account).collect()
}

/// One account by id.
pub async fn get_account(db: &Db, id: &str) -> Result<Option<Account>, StoreError> {
    let b = db.get_database_backend();
    let row = db.query_one_raw(stmt(b, "SELECT id, name, created_at FROM accounts WHERE id = ?", [id.into()])).await?;
    row.as_ref().map(row_account).transpose()
}

/// One account by name.
pub async fn find_account_by_name(db: &Db, name: &str) -> Result<Option<Account>, StoreError> {
    let b = db.get_database_backend();
    let row =
        db.query_one_raw(stmt(b, "SELECT id, name, created_at FROM accounts WHERE name = ?", [name.into()])).await?;
    row.as_ref().map(row_account).transpose()
}

/// Whether the database has no account yet (first start: bootstrap).
pub async fn is_empty(db: &Db) -> Result<bool, StoreError> {
    Ok(list_accounts(db).await?.is_empty())
}

/// When a new token stops working: an absolute time, a number of days from now, or never.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Expiry {
    /// The token works until revoked.
    #[default]
    Never,
    /// The token stops working at this RFC 3339 time (any offset), which must be in the future.
    At(String),
    /// The token stops working this many days (1 to 3650) from now.
    InDays(u32),
}

impl Expiry {
    /// The canonical expiry time relative to `now`, or why it is unacceptable: a past time would
    /// create a token that never works, which is always an operator's mistake.
    pub fn resolve(&self, now: chrono::DateTime<chrono::Utc>) -> Result<Option<String>, AccountError> {
        match self {
            Expiry::Never => Ok(None),
            Expiry::At(text) => {
                let at = roster_scim::time::parse_datetime(text).map_err(|_| {
                    AccountError::InvalidExpiry(format!(
                        "{text:?} is not an RFC 3339 time such as 2027-01-31T00:00:00Z"
                    ))
                })?;
                if at <= now {
                    return Err(AccountError::InvalidExpiry(format!("{text:?} is not in the future")));
                }
                Ok(Some(roster_scim::time::format_datetime(at)))
            }
            Expiry::InDays(days) => {
                if !(1..=3650).contains(days) {
                    return Err(AccountError::InvalidExpiry(format!("expires_in_days must be 1 to 3650, got {days}")));
                }
                Ok(Some(roster_scim::time::format_datetime(now + chrono::Duration::days(i64::from(*days)))))
            }
        }
    }
}

/// Creates a token for an account; returns its info and the secret (shown only now).
pub async fn create_token(
    db: &Db,
    account_id: &str,
    name: &str,
    expiry: &Expiry,
) -> Result<(TokenInfo, String), AccountError> {
    let expires_at = expiry.resolve(chrono::Utc::now())?;
    if get_account(db, account_id).await?.is_none() {
        return Err(AccountError::NotFound(account_id.into()));
    }
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(AccountError::InvalidName("token name must be 1 to 200 characters".into()));
    }
    let secret = generate_secret()?;
    let info = TokenInfo {
        id: random_hex(8)?,
        account_id: account_id.into(),
        name: name.into(),
        created_at: roster_scim::time::now(),
        last_used_at: None,
        expires_at,
        revoked_at: None,
    };
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "INSERT INTO scim_tokens (id, account_id, name, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        [
            info.id.clone().into(),
            info.account_id.clone().into(),
            info.name.clone().into(),
            hash_token(&secret).into(),
            info.created_at.clone().into(),
            info.expires_at.clone().into(),
        ],
    ))
    .await?;
    Ok((info, secret))
}

/// The tokens of an account, without secrets.
pub async fn list_tokens(db: &Db, account_id: &str) -> Result<Vec<TokenInfo>, StoreError> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            "SELECT id, account_id, name, created_at, last_used_at, expires_at, revoked_at FROM scim_tokens WHERE account_id = ? ORDER BY created_at, id",
            [account_id.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(TokenInfo {
                id: r.try_get_by_index(0)?,
                account_id: r.try_get_by_index(1)?,
                name: r.try_get_by_index(2)?,
                created_at: r.try_get_by_index(3)?,
                last_used_at: r.try_get_by_index(4)?,
                expires_at: r.try_get_by_index(5)?,
                revoked_at: r.try_get_by_index(6)?,
            })
        })
        .collect()
}

/// Revokes a token; returns whether an active token was revoked.
pub async fn revoke_token(db: &Db, account_id: &str, token_id: &str) -> Result<bool, StoreError> {
    let b = db.get_database_backend();
    let res = db
        .execute_raw(stmt(
            b,
            "UPDATE scim_tokens SET revoked_at = ? WHERE account_id = ? AND id = ? AND revoked_at IS NULL",
            [roster_scim::time::now().into(), account_id.into(), token_id.into()],
        ))
        .await?;
    Ok(res.rows_affected() > 0)
}

/// Finds the active token with this secret for this account; returns its id.
///
/// A token of another account, a revoked or an expired token all answer `None`: the caller
/// answers 401 in every case, so nothing about other accounts can be inferred.
pub async fn authenticate<R: Reads>(db: &R, account_id: &str, secret: &str) -> Result<Option<String>, StoreError> {
    let row = db
        .key_row(stmt(
            db.backend(),
            "SELECT id, account_id, expires_at FROM scim_tokens WHERE token_hash = ? AND revoked_at IS NULL",
            [hash_token(secret).into()],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let id: String = row.get(0)?;
    let owner: String = row.get(1)?;
    let expires: Option<String> = row.get(2)?;
    if owner != account_id {
        return Ok(None);
    }
    if let Some(exp) = expires
        && exp <= roster_scim::time::now()
    {
        return Ok(None);
    }
    Ok(Some(id))
}

/// Records `last_used_at` in memory and writes it in batches, so authentication costs no write.
#[derive(Debug, Default)]
pub struct UsageRecorder {
    // The instant, formatted only when written: every request touches, a flush comes every few seconds.
    pending: Mutex<HashMap<String, chrono::DateTime<chrono::Utc>>>,
}

impl UsageRecorder {
    /// Notes that a token was used now.
    pub fn touch(&self, token_id: &str) {
        let now = chrono::Utc::now();
        if let Ok(mut p) = self.pending.lock() {
            match p.get_mut(token_id) {
                Some(at) => *at = now,
                None => {
                    p.insert(token_id.to_string(), now);
                }
            }
        }
    }

    /// Writes the pending timestamps (called periodically and on shutdown).
    pub async fn flush(&self, db: &Db) -> Result<(), StoreError> {
        let pending: Vec<(String, chrono::DateTime<chrono::Utc>)> = match self.pending.lock() {
            Ok(mut p) => p.drain().collect(),
            Err(_) => return Ok(()),
        };
        let b = db.get_database_backend();
        for (id, at) in pending {
            let at = roster_scim::time::format_datetime(at);
            db.execute_raw(stmt(b, "UPDATE scim_tokens SET last_used_at = ? WHERE id = ?", [at.into(), id.into()]))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).single().unwrap_or_default()
    }

    #[test]
    fn no_expiry_means_the_token_works_until_revoked() {
        assert_eq!(Expiry::Never.resolve(now()).ok(), Some(None));
    }

    #[test]
    fn expiry_in_days_counts_from_now() {
        let at = Expiry::InDays(30).resolve(now()).ok().flatten();
        assert_eq!(at.as_deref(), Some("2026-12-29T12:00:00.000Z"));
    }

    #[test]
    fn absolute_expiry_is_normalized_to_utc() {
        let at = Expiry::At("2027-01-01T01:00:00+01:00".into()).resolve(now()).ok().flatten();
        assert_eq!(at.as_deref(), Some("2027-01-01T00:00:00.000Z"));
    }

    #[test]
    fn past_or_present_expiry_is_rejected() {
        for past in ["2026-11-29T12:00:00Z", "2020-01-01T00:00:00Z"] {
            assert!(matches!(Expiry::At(past.into()).resolve(now()), Err(AccountError::InvalidExpiry(_))), "{past}");
        }
    }

    #[test]
    fn malformed_expiry_is_rejected() {
        for bad in ["tomorrow", "2027-01-01", ""] {
            assert!(matches!(Expiry::At(bad.into()).resolve(now()), Err(AccountError::InvalidExpiry(_))), "{bad}");
        }
    }

    #[test]
    fn expiry_in_days_must_be_between_one_day_and_ten_years() {
        assert!(matches!(Expiry::InDays(0).resolve(now()), Err(AccountError::InvalidExpiry(_))));
        assert!(matches!(Expiry::InDays(3651).resolve(now()), Err(AccountError::InvalidExpiry(_))));
        assert!(Expiry::InDays(3650).resolve(now()).is_ok());
    }
}
