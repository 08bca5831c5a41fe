//! The pure heart of Roster's licensing (issue 4): the per-account license policy document, its validation,
//! the evaluation of one user, and seat allocation for a whole account. No I/O: the licensing worker, the
//! projector and the admin API call these functions with data they loaded.
//!
//! - [`parse_policy`] / [`Policy::validate`] turn an operator's JSON into a [`Policy`] or a [`PolicyError`]
//!   listing every problem.
//! - [`eligible`] says which licenses one user may hold (rules, default, override), best first.
//! - [`allocate`] assigns every user of an account a license without ever exceeding a seat limit; holders keep
//!   their seats, freed seats go to waiting users deterministically, and the result is a fixed point.
//! - [`diff`] gives the license changes (events) between two states; [`revocation_share`] and
//!   [`HoldThreshold`] implement the mass-revocation guard; [`preview`] is the dry run of a policy edit.
//!
//! ```
//! use std::collections::HashMap;
//! use roster_license_policy::{allocate, parse_policy, UserInput};
//!
//! let policy = parse_policy(&serde_json::json!({
//!     "license_types": [{"name": "developer", "rank": 40, "seats": 1},
//!                       {"name": "read_only", "rank": 10, "seats": null}],
//!     "rules": [{"group": "dbt-developers", "license": "developer"}],
//!     "default_license": "read_only"
//! }))?;
//! let user = |id: &str| UserInput {
//!     id: id.into(), groups: vec!["DBT-Developers".into()], active: true, deleted: false, override_license: None,
//! };
//! let result = allocate(&policy, &[user("b"), user("a")], &HashMap::new());
//! assert_eq!(result.license_of("a"), Some("developer"));
//! assert_eq!(result.license_of("b"), Some("read_only")); // seats_exhausted: the one developer seat is taken
//! # Ok::<(), roster_license_policy::PolicyError>(())
//! ```

mod allocate;
mod eval;
mod policy;

pub use allocate::{
    Allocation, Assignment, Change, HoldThreshold, Preview, RevocationImpact, SeatUse, UserId, UserInput, allocate,
    diff, preview, revocation_share, seat_use, seat_use_from_counts,
};
pub use eval::{Candidate, Eligibility, Reason, eligible};
pub use policy::{
    LicenseType, MAX_LICENSE_TYPES, MAX_NAME_CHARS, MAX_RULES, Policy, PolicyError, PolicyProblem, Rule, parse_policy,
};
