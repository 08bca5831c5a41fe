//! The filter abstract syntax tree (RFC 7644 §3.4.2.2), shared by the parser, the PATCH engine
//! and the SQL translation.

/// An attribute path: `[urn:...:]attr[.subAttr]`.
///
/// Names are kept as written; lookups against the schema are case-insensitive (RFC 7643 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// Schema URN prefix, e.g. `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`.
    pub urn: Option<String>,
    /// Top-level attribute name, e.g. `emails` or `userName`.
    pub attr: String,
    /// Sub-attribute name, e.g. `value` in `emails.value`.
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// A path without URN or sub-attribute.
    pub fn simple(attr: impl Into<String>) -> Self {
        Self { urn: None, attr: attr.into(), sub_attr: None }
    }
    /// A path `attr.sub` without URN.
    pub fn sub(attr: impl Into<String>, sub: impl Into<String>) -> Self {
        Self { urn: None, attr: attr.into(), sub_attr: Some(sub.into()) }
    }
}

impl std::fmt::Display for AttrPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        write!(f, "{}", self.attr)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// Comparison operators (RFC 7644 Table 3), `pr` excluded (it has no value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// equal
    Eq,
    /// not equal
    Ne,
    /// contains
    Co,
    /// starts with
    Sw,
    /// ends with
    Ew,
    /// greater than
    Gt,
    /// greater than or equal to
    Ge,
    /// less than
    Lt,
    /// less than or equal to
    Le,
}

impl CompareOp {
    /// The wire spelling (`eq`, `ne`, ...), for error details and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }
}

/// A literal on the right-hand side of a comparison (RFC 7644 §3.4.2.2 `compValue`).
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    /// A JSON string (also used for dateTime and reference values; the schema decides).
    String(String),
    /// `true` or `false`.
    Bool(bool),
    /// A JSON number.
    Number(serde_json::Number),
    /// `null`.
    Null,
}

impl CompValue {
    /// The literal as text, for comparing against string attributes (`externalId eq 12345`
    /// arrives as a number when unquoted); `None` for `null`.
    pub fn as_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match self {
            CompValue::String(s) => Some(Cow::Borrowed(s)),
            CompValue::Bool(b) => Some(Cow::Owned(b.to_string())),
            CompValue::Number(n) => Some(Cow::Owned(n.to_string())),
            CompValue::Null => None,
        }
    }

    /// The literal as a boolean: `true`/`false`, or the strings `"true"`/`"false"` in any case.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            CompValue::Bool(b) => Some(*b),
            CompValue::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            CompValue::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attrPath op value`
    Compare {
        /// The attribute compared.
        path: AttrPath,
        /// The operator.
        op: CompareOp,
        /// The literal.
        value: CompValue,
    },
    /// `attrPath pr`
    Present(AttrPath),
    /// `a and b`
    And(Box<Filter>, Box<Filter>),
    /// `a or b`
    Or(Box<Filter>, Box<Filter>),
    /// `not (a)`
    Not(Box<Filter>),
    /// `attrPath[valFilter]`, e.g. `emails[type eq "work" and value co "@x"]`.
    ///
    /// Paths inside `filter` are relative to the elements of `path` (their `attr` is the
    /// sub-attribute name, `urn` and `sub_attr` are `None`).
    ValuePath {
        /// The multi-valued attribute whose elements are tested.
        path: AttrPath,
        /// The condition one element must satisfy.
        filter: Box<Filter>,
    },
}
