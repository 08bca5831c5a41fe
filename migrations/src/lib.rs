//! Database migrations for Roster: the embedded event log, the read model, accounts and tokens, licensing.
//!
//! Written with SeaQuery's schema DSL so the same migrations run on SQLite and Postgres.

pub use sea_orm_migration::prelude::*;

mod m20261129_000001_initial;
mod m20261129_000002_licensing;
mod m20261129_000003_license_dirty;
mod m20261130_000004_member_groups_index;
mod m20261130_000005_account_statistics;

/// The migrator `roster migrate` and every process start run.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_initial::Migration),
            Box::new(m20261129_000002_licensing::Migration),
            Box::new(m20261129_000003_license_dirty::Migration),
            Box::new(m20261130_000004_member_groups_index::Migration),
            Box::new(m20261130_000005_account_statistics::Migration),
        ]
    }
}
