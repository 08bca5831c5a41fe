//! The SCIM 2.0 ingress: a thin HTTP layer over the event log and the read model.
//!
//! Writes are authenticated, parsed and validated here, stamped with ids and times, appended to
//! the event log, and answered once the projector has decided them (read-your-writes). Reads are
//! answered from the read model.

mod auth;
mod handlers;
mod response;
mod state;
mod wait;

use actix_web::web;

pub use state::{IngressConfig, IngressState};
pub use wait::OutcomeWaiter;

/// Registers the SCIM routes (`/scim/v2/accounts/{account}/…`) and `/healthz`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    handlers::configure(cfg);
}
