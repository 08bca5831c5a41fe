//! SCIM 2.0 protocol logic for Roster: resource schemas, validation, filters, PATCH and errors.
//!
//! Everything here is pure (no I/O), so it can be tested exhaustively and reused by the ingress
//! (syntax checks), the projector (deciding writes) and the SQL translation (filters).

pub mod body;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod patch;
pub mod resource;
pub mod schema;
pub mod time;

mod json;

pub use error::{Result, ScimError, ScimType};
