//! The projector: the single, deterministic decider of every change.
//!
//! It reads the event log in order, and for each event decides (uniqueness, `If-Match`, member
//! references, PATCH application) and applies it to the read model. The decision uses only the
//! event and the state built from earlier events (ids and times come from the event), so
//! replaying the log from the start rebuilds exactly the same state. Each batch's state changes,
//! outcomes and the consumer position commit in one transaction: a crash repeats nothing and
//! loses nothing.

mod cache;
mod decide;
mod hub;
mod runner;

pub use decide::{ApplyContext, apply_event};
pub use hub::OutcomeHub;
pub use runner::{Projector, ProjectorConfig, ProjectorError};
