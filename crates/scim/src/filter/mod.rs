//! SCIM filters (RFC 7644 §3.4.2.2): the AST, the parser, schema validation and in-memory
//! evaluation.
//!
//! The usual sequence is [`parse`] (syntax, with [`FilterLimits`]), then [`validate`] against the
//! resource kind, then either [`matches()`] in memory or a translation to SQL that uses
//! [`resolve_path`] so both agree on what each path means.

mod ast;
mod eval;
mod parser;
mod validate;

pub use ast::{AttrPath, CompValue, CompareOp, Filter};
pub use eval::{matches, matches_element};
pub use parser::{FilterLimits, MAX_DEPTH, parse};
pub use validate::{resolve_path, resolve_sub_path, validate, validate_relative};

pub(crate) use parser::Parser;

#[cfg(test)]
mod validate_tests;

#[cfg(test)]
mod eval_tests;
