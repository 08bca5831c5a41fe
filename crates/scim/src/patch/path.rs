//! PATCH paths (RFC 7644 §3.5.2): `PATH = attrPath / valuePath [subAttr]`.

use crate::filter::{AttrPath, Filter, FilterLimits, Parser};
use crate::{ScimError, ScimType};

/// A parsed PATCH `path`.
///
/// `emails[type eq "work"].value` is `attr = emails`, `filter = Some(type eq "work")`,
/// `sub_attr = Some("value")`; `name.familyName` is `attr = name.familyName` with no filter.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// URN and attribute; carries the sub-attribute only when there is no filter.
    pub attr: AttrPath,
    /// The value filter between `[ ]`, with paths relative to the attribute's elements.
    pub filter: Option<Filter>,
    /// The sub-attribute after `]`, e.g. `value` in `emails[type eq "work"].value`.
    pub sub_attr: Option<String>,
}

impl PatchPath {
    /// The sub-attribute the path finally targets, with or without a filter.
    pub fn target_sub(&self) -> Option<&str> {
        self.sub_attr.as_deref().or(self.attr.sub_attr.as_deref())
    }
}

impl std::fmt::Display for PatchPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.attr)?;
        if self.filter.is_some() {
            write!(f, "[…]")?;
        }
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// Parses a PATCH path; malformed paths are 400 `invalidPath` with the position.
pub fn parse_path(s: &str) -> Result<PatchPath, ScimError> {
    let limits = FilterLimits::default();
    if s.len() > limits.max_len {
        return Err(ScimError::invalid_path(format!(
            "The path is {} bytes long; the maximum is {} bytes.",
            s.len(),
            limits.max_len
        )));
    }
    let text = s.trim();
    if text.is_empty() {
        return Err(ScimError::invalid_path("The path is empty."));
    }
    parse_inner(text, &limits).map_err(|e| {
        let detail = e.detail.trim_end_matches('.').to_string();
        let mut e = e;
        e.scim_type = Some(ScimType::InvalidPath);
        e.detail = format!("Invalid path '{text}': {detail}.");
        e
    })
}

fn parse_inner(text: &str, limits: &FilterLimits) -> Result<PatchPath, ScimError> {
    let mut p = Parser::new(text, limits.max_nodes);
    let attr = p.parse_attr_path()?;
    let mut filter = None;
    let mut sub_attr = None;
    if p.peek() == Some('[') {
        filter = Some(p.parse_bracket(&attr, 0)?);
        if p.peek() == Some('.') {
            let dot = p.cursor();
            p.bump();
            match p.parse_name() {
                Some(name) => sub_attr = Some(name),
                None => return Err(p.err_at(dot, "Expected a sub-attribute name after '].'")),
            }
        }
    }
    if p.peek().is_some() {
        let at = p.cursor();
        return Err(p.err_at(at, "Unexpected text after the path"));
    }
    Ok(PatchPath { attr, filter, sub_attr })
}
