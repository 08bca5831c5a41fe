//! Postgres keeps no statistics on `account_id`, so a new or grown account is never planned as
//! a one-row account.
//!
//! Postgres samples each column's most common values. With few accounts the sample lists all of
//! them, and an account missing from it (a new tenant's first sync, a replay, any account that grew
//! since the last `ANALYZE`) is estimated at one row. Every index starts with `account_id`, so the
//! planner then sees no difference between looking a user up by its unique key and walking the
//! whole account, and may walk: `userName` and id lookups read all 4,000 users of such an account
//! (`crates/store/tests/plan_stability.rs`). Without statistics, Postgres assumes an account holds
//! a two-hundredth of the table: a lookup by key then always wins over the walk, and the other
//! columns' statistics still choose between indexes. Changing the column to its own type drops the
//! statistics an earlier `ANALYZE` left, which `SET STATISTICS 0` alone keeps; it neither rewrites
//! the table nor rebuilds its indexes (4 ms on a table of a million rows, the files unchanged), but
//! takes each table's exclusive lock for that moment. SQLite plans from its indexes, not from
//! samples: nothing changes there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// The tables that hold many rows per account.
const TABLES: [&str; 8] = [
    "scim_users",
    "scim_groups",
    "scim_members",
    "scim_tokens",
    "event_outcomes",
    "license_dirty",
    "license_overrides",
    "license_holds",
];

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let c = m.get_connection();
        for table in TABLES {
            c.execute_unprepared(&format!(
                "ALTER TABLE {table} ALTER COLUMN account_id SET STATISTICS 0, ALTER COLUMN account_id TYPE varchar"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let c = m.get_connection();
        for table in TABLES {
            c.execute_unprepared(&format!("ALTER TABLE {table} ALTER COLUMN account_id SET STATISTICS -1")).await?;
        }
        Ok(())
    }
}
