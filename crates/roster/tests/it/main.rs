//! Black-box integration tests for Roster: each test talks HTTP to the real `roster` binary and
//! replays the request sequences Microsoft Entra ID sends (`/work/shared/docs/entra-behavior.md`).
//!
//! One test binary (style rule 9). Tests that share a server create their own account and token,
//! so they run in parallel; tests that kill or restart a server start their own.

// Tests fail by panicking; unwrap/expect with context are the idiom here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod concurrency;
mod durability;
mod entra_flow;
mod failures;
mod groups;
mod licensing;
mod scim_protocol;
mod tenancy_tokens;
