//! Roster's database layer: connections and migrations, accounts and SCIM tokens, the read model
//! (users, groups, memberships) with its SQL queries and SCIM rendering, and the outcome/history
//! records the projector writes.
//!
//! The projector is the only writer of the read model; it uses [`write`](mod@write) inside its transaction.
//! The ingress and admin API only read through [`read`] and [`accounts`].

pub mod accounts;
pub mod licensing;
pub mod outcomes;
pub mod read;
mod sql;
pub mod write;

pub use roster_db::{Db, StoreError, connect, migrate, stmt};
