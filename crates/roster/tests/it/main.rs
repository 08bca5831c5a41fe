//! Black-box integration tests for Roster: each test talks HTTP to the real `roster` binary and
//! replays the request sequences Microsoft Entra ID sends (`/work/shared/docs/entra-behavior.md`).
//!
//! One test binary (style rule 9). Tests that share a server create their own account and token,
//! so they run in parallel; tests that kill or restart a server start their own.
//!
//! The same suite runs on three backends, chosen by `ROSTER_IT_BACKEND` (see `harness/backend.rs`):
//! `sqlite` (default), `postgres` (needs `ROSTER_TEST_DATABASE_URL`) and `kafka` (also needs
//! `ROSTER_TEST_KAFKA_BROKERS`; two `roster ingress`, two `roster projector` and one
//! `roster licensing` process per server, requests spread over both ingress replicas).
//! `make test` runs all three.

// Tests fail by panicking; unwrap/expect with context are the idiom here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod concurrency;
mod db_outage;
mod durability;
mod entra_flow;
mod failures;
mod groups;
mod hostile;
mod isolation;
mod licensing;
mod limits;
mod operability;
mod scim_protocol;
mod tenancy_tokens;
mod tls;
mod tracing;
