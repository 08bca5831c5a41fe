//! The filter parser (RFC 7644 §3.4.2.2), with the tolerance Entra needs (bare unquoted values).
//!
//! A hand-written recursive-descent parser over the input text: `or` < `and` < `not`/`( )` <
//! attribute expressions. Every error is 400 `invalidFilter` and names a 1-based character
//! position. The same machinery parses PATCH paths (see [`crate::patch::parse_path`]).

use serde_json::Number;

use super::ast::{AttrPath, CompValue, CompareOp, Filter};
use crate::ScimError;

/// Bounds on filter size, so a hostile query cannot make the parser or the SQL layer work hard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterLimits {
    /// Maximum filter length in bytes.
    pub max_len: usize,
    /// Maximum number of expression nodes (comparisons, `and`, `or`, `not`, value paths).
    pub max_nodes: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        Self { max_len: 4096, max_nodes: 200 }
    }
}

/// Deepest nesting of `( )`, `not ( )` and `[ ]` accepted, to keep recursion bounded.
pub const MAX_DEPTH: usize = 64;

/// Parses a filter expression such as `userName eq "bjensen" and not (emails co "x")`.
pub fn parse(input: &str, limits: &FilterLimits) -> Result<Filter, ScimError> {
    check_len(input, limits.max_len)?;
    if input.trim().is_empty() {
        return Err(ScimError::invalid_filter("The filter is empty."));
    }
    let mut p = Parser::new(input, limits.max_nodes);
    let filter = p.parse_or()?;
    p.expect_end()?;
    Ok(filter)
}

fn check_len(input: &str, max_len: usize) -> Result<(), ScimError> {
    if input.len() > max_len {
        return Err(ScimError::invalid_filter(format!(
            "The filter is {} bytes long; the maximum length (max_len) is {max_len} bytes.",
            input.len()
        )));
    }
    Ok(())
}

/// Parser state over one input string.
pub(crate) struct Parser<'a> {
    src: &'a str,
    pos: usize,
    nodes: usize,
    max_nodes: usize,
    depth: usize,
    in_brackets: bool,
}

/// Whether `c` may appear in an attribute path token (`urn:…:2.0:User:manager.value`, `$ref`).
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '$')
}

/// `ATTRNAME = ALPHA *(nameChar)`, plus the special `$ref`.
pub(crate) fn is_attr_name(s: &str) -> bool {
    if s.eq_ignore_ascii_case("$ref") {
        return true;
    }
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl<'a> Parser<'a> {
    pub(crate) fn new(src: &'a str, max_nodes: usize) -> Self {
        Self { src, pos: 0, nodes: 0, max_nodes, depth: 0, in_brackets: false }
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    /// The current byte offset.
    pub(crate) fn cursor(&self) -> usize {
        self.pos
    }

    pub(crate) fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub(crate) fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
    }

    /// Skips whitespace; returns whether any was skipped.
    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        self.pos > start
    }

    /// The 1-based character position of byte offset `at`.
    fn position(&self, at: usize) -> usize {
        self.src.get(..at).map_or(0, |s| s.chars().count()) + 1
    }

    pub(crate) fn err_at(&self, at: usize, msg: impl std::fmt::Display) -> ScimError {
        ScimError::invalid_filter(format!("{msg} at position {}.", self.position(at)))
    }

    /// A short quote of the text at the current position, for error messages.
    fn snippet(&self) -> String {
        let rest = self.rest();
        let token: String = rest.chars().take_while(|c| !c.is_whitespace()).take(20).collect();
        if token.is_empty() { rest.chars().take(1).collect() } else { token }
    }

    fn node(&mut self) -> Result<(), ScimError> {
        self.nodes += 1;
        if self.nodes > self.max_nodes {
            return Err(ScimError::invalid_filter(format!(
                "The filter has more than {} expressions (max_nodes); simplify it.",
                self.max_nodes
            )));
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), ScimError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_at(self.pos, format!("Filter nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// Consumes keyword `kw` (case-insensitive) if it is next and not the start of a longer name.
    fn keyword(&mut self, kw: &str) -> bool {
        let rest = self.rest();
        let Some(head) = rest.get(..kw.len()) else {
            return false;
        };
        if !head.eq_ignore_ascii_case(kw) {
            return false;
        }
        let next = rest.get(kw.len()..).and_then(|r| r.chars().next());
        if next.is_some_and(is_path_char) {
            return false;
        }
        self.pos += kw.len();
        true
    }

    /// After a complete expression: only whitespace may remain.
    pub(crate) fn expect_end(&mut self) -> Result<(), ScimError> {
        self.skip_ws();
        match self.peek() {
            None => Ok(()),
            Some(')') => Err(self.err_at(self.pos, "Unbalanced ')' (no matching '(')")),
            Some(']') => Err(self.err_at(self.pos, "Unbalanced ']' (no matching '[')")),
            Some(_) => Err(self.err_at(
                self.pos,
                format!("Unexpected '{}'; expected 'and', 'or' or the end of the filter", self.snippet()),
            )),
        }
    }

    /// `FILTER = and-expr *("or" and-expr)`
    pub(crate) fn parse_or(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.parse_and()?;
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.keyword("or") {
                let right = self.parse_and()?;
                self.node()?;
                left = Filter::Or(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                return Ok(left);
            }
        }
    }

    fn parse_and(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.parse_unary()?;
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.keyword("and") {
                let right = self.parse_unary()?;
                self.node()?;
                left = Filter::And(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                return Ok(left);
            }
        }
    }

    fn parse_unary(&mut self) -> Result<Filter, ScimError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => Err(self.err_at(start, "Expected an expression but the filter ended")),
            Some('(') => {
                self.bump();
                self.enter()?;
                let inner = self.parse_or()?;
                self.close(')', start)?;
                self.depth -= 1;
                Ok(inner)
            }
            Some(_) if self.keyword("not") => {
                self.skip_ws();
                if self.peek() != Some('(') {
                    return Err(self.err_at(self.pos, "Expected '(' after 'not'"));
                }
                let open = self.pos;
                self.bump();
                self.enter()?;
                let inner = self.parse_or()?;
                self.close(')', open)?;
                self.depth -= 1;
                self.node()?;
                Ok(Filter::Not(Box::new(inner)))
            }
            Some(_) => {
                if self.keyword("and") || self.keyword("or") {
                    self.pos = start;
                    return Err(self.err_at(start, format!("Expected an expression before '{}'", self.snippet())));
                }
                self.parse_attr_expr()
            }
        }
    }

    /// Expects the closing `delim` of a group opened at byte `open`.
    fn close(&mut self, delim: char, open: usize) -> Result<(), ScimError> {
        self.skip_ws();
        match self.peek() {
            Some(c) if c == delim => {
                self.bump();
                Ok(())
            }
            None => Err(self.err_at(
                self.pos,
                format!(
                    "Missing '{delim}' to close the one opened at position {}; the filter ended",
                    self.position(open)
                ),
            )),
            Some(_) => {
                Err(self
                    .err_at(self.pos, format!("Unexpected '{}'; expected 'and', 'or' or '{delim}'", self.snippet())))
            }
        }
    }

    /// `attrPath "[" valFilter "]"` or `attrPath SP "pr"` or `attrPath SP compareOp SP compValue`.
    fn parse_attr_expr(&mut self) -> Result<Filter, ScimError> {
        let start = self.pos;
        let path = self.parse_attr_path()?;
        self.skip_ws();
        if self.peek() == Some('[') {
            let filter = self.parse_bracket(&path, start)?;
            if self.peek() == Some('.') {
                return Err(
                    self.err_at(self.pos, "A sub-attribute after ']' is only allowed in PATCH paths, not in filters")
                );
            }
            self.node()?;
            return Ok(Filter::ValuePath { path, filter: Box::new(filter) });
        }
        let op_start = self.pos;
        let word: String = self.rest().chars().take_while(char::is_ascii_alphabetic).collect();
        if word.is_empty() {
            return Err(match self.peek() {
                None => self.err_at(op_start, format!("Expected an operator after '{path}' but the filter ended")),
                Some(_) => {
                    self.err_at(op_start, format!("Expected an operator after '{path}', found '{}'", self.snippet()))
                }
            });
        }
        self.pos += word.len();
        let op = match word.to_ascii_lowercase().as_str() {
            "pr" => {
                self.check_pr_has_no_value()?;
                self.node()?;
                return Ok(Filter::Present(path));
            }
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => {
                return Err(self.err_at(
                    op_start,
                    format!("Unknown operator '{word}'; expected one of eq, ne, co, sw, ew, gt, ge, lt, le, pr"),
                ));
            }
        };
        let value = self.parse_value(&word)?;
        self.node()?;
        Ok(Filter::Compare { path, op, value })
    }

    /// Parses `[valFilter]` after `path`; the cursor is on `[`.
    pub(crate) fn parse_bracket(&mut self, path: &AttrPath, start: usize) -> Result<Filter, ScimError> {
        let open = self.pos;
        if self.in_brackets {
            return Err(self.err_at(open, "Nested value filters ('[' inside '[ ]') are not allowed"));
        }
        if path.sub_attr.is_some() {
            return Err(self.err_at(
                start,
                format!("A value filter '[ ]' must follow a multi-valued attribute, not the sub-attribute '{path}'"),
            ));
        }
        self.bump();
        self.enter()?;
        self.in_brackets = true;
        self.skip_ws();
        if self.peek() == Some(']') {
            return Err(self.err_at(self.pos, "Empty value filter '[]'"));
        }
        let inner = self.parse_or()?;
        self.close(']', open)?;
        self.in_brackets = false;
        self.depth -= 1;
        Ok(inner)
    }

    fn check_pr_has_no_value(&mut self) -> Result<(), ScimError> {
        let save = self.pos;
        self.skip_ws();
        let ok = match self.peek() {
            None | Some(')') | Some(']') => true,
            Some(_) => {
                let p = self.pos;
                let is_logic = self.keyword("and") || self.keyword("or");
                self.pos = p;
                is_logic
            }
        };
        if !ok {
            return Err(self.err_at(self.pos, "The operator 'pr' takes no value"));
        }
        self.pos = save;
        Ok(())
    }

    /// `attrPath = [URI ":"] ATTRNAME *1subAttr`; inside `[ ]` only a bare sub-attribute name.
    pub(crate) fn parse_attr_path(&mut self) -> Result<AttrPath, ScimError> {
        let start = self.pos;
        let token: &str = {
            let rest = self.rest();
            let end = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
            rest.get(..end).unwrap_or("")
        };
        if token.is_empty() {
            return Err(match self.peek() {
                None => self.err_at(start, "Expected an attribute path but the filter ended"),
                Some(_) => self.err_at(start, format!("Expected an attribute path, found '{}'", self.snippet())),
            });
        }
        self.pos += token.len();
        let (urn, rest) = match token.rsplit_once(':') {
            Some((urn, rest)) => {
                if !urn.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) || urn.len() <= 4 {
                    return Err(self.err_at(start, format!("'{token}' is not a valid attribute path: the prefix before the attribute name must be a schema URN")));
                }
                (Some(urn.to_string()), rest)
            }
            None => (None, token),
        };
        let mut parts = rest.split('.');
        let attr = parts.next().unwrap_or("");
        let sub = parts.next();
        if parts.next().is_some() {
            return Err(self.err_at(
                start,
                format!("'{token}' is not a valid attribute path: at most one '.subAttribute' is allowed"),
            ));
        }
        for name in std::iter::once(attr).chain(sub) {
            if !is_attr_name(name) {
                return Err(self.err_at(
                    start,
                    format!("'{token}' is not a valid attribute path: '{name}' is not an attribute name"),
                ));
            }
        }
        if self.in_brackets && (urn.is_some() || sub.is_some()) {
            return Err(self.err_at(
                start,
                format!(
                    "Inside '[ ]' name a sub-attribute of the enclosing attribute (e.g. 'type'), not the path '{token}'"
                ),
            ));
        }
        Ok(AttrPath { urn, attr: attr.to_string(), sub_attr: sub.map(str::to_string) })
    }

    /// Reads an `ATTRNAME` (used after `].` in PATCH paths); `None` when none is next.
    pub(crate) fn parse_name(&mut self) -> Option<String> {
        let rest = self.rest();
        let end =
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '$'))).unwrap_or(rest.len());
        let name = rest.get(..end).filter(|n| is_attr_name(n))?.to_string();
        self.pos += end;
        Some(name)
    }

    /// `compValue = false / null / true / number / string`, plus Entra's bare unquoted tokens.
    fn parse_value(&mut self, op: &str) -> Result<CompValue, ScimError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None | Some(')') | Some(']') => Err(self.err_at(start, format!("Missing value after the operator '{op}'"))),
            Some('"') => self.parse_string().map(CompValue::String),
            Some('(') | Some('[') => {
                Err(self
                    .err_at(start, format!("Expected a value after the operator '{op}', found '{}'", self.snippet())))
            }
            Some(_) => {
                let rest = self.rest();
                let end = rest
                    .find(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"'))
                    .unwrap_or(rest.len());
                let token = rest.get(..end).unwrap_or("");
                let lower = token.to_ascii_lowercase();
                let value = match lower.as_str() {
                    "true" => CompValue::Bool(true),
                    "false" => CompValue::Bool(false),
                    "null" => CompValue::Null,
                    "and" | "or" => {
                        return Err(self.err_at(start, format!("Missing value after the operator '{op}'")));
                    }
                    _ if is_json_number(token) => match serde_json::from_str::<Number>(token) {
                        Ok(n) => CompValue::Number(n),
                        Err(_) => CompValue::String(token.to_string()),
                    },
                    _ => CompValue::String(token.to_string()),
                };
                self.pos += token.len();
                Ok(value)
            }
        }
    }

    /// A JSON string literal; the cursor is on the opening quote.
    fn parse_string(&mut self) -> Result<String, ScimError> {
        let open = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err_at(open, "Unterminated string (missing closing '\"') starting"));
            };
            let at = self.pos;
            self.bump();
            match c {
                '"' => return Ok(out),
                // No stored value can hold U+0000 (Postgres text and jsonb refuse it), and sending
                // it to the database fails the query instead of matching nothing.
                '\0' => return Err(self.err_at(at, "A NUL character (U+0000) is not allowed in a string")),
                '\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.err_at(at, "Unterminated escape sequence"));
                    };
                    self.bump();
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        '/' => out.push('/'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'u' => match self.parse_unicode_escape(at)? {
                            '\0' => {
                                return Err(self.err_at(at, "A NUL character (U+0000) is not allowed in a string"));
                            }
                            ch => out.push(ch),
                        },
                        other => {
                            return Err(self.err_at(at, format!("Invalid escape sequence '\\{other}' in string")));
                        }
                    }
                }
                other => out.push(other),
            }
        }
    }

    /// After `\u`: four hex digits, combining a surrogate pair when needed.
    fn parse_unicode_escape(&mut self, at: usize) -> Result<char, ScimError> {
        let high = self.hex4(at)?;
        let code = if (0xD800..0xDC00).contains(&high) {
            if !self.rest().starts_with("\\u") {
                return Err(self.err_at(at, "Unpaired UTF-16 surrogate in '\\u' escape"));
            }
            self.pos += 2;
            let low = self.hex4(at)?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(self.err_at(at, "Invalid UTF-16 surrogate pair in '\\u' escape"));
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00..0xE000).contains(&high) {
            return Err(self.err_at(at, "Unpaired UTF-16 surrogate in '\\u' escape"));
        } else {
            high
        };
        char::from_u32(code).ok_or_else(|| self.err_at(at, "Invalid '\\u' escape"))
    }

    fn hex4(&mut self, at: usize) -> Result<u32, ScimError> {
        let digits = self.rest().get(..4).filter(|d| d.chars().all(|c| c.is_ascii_hexdigit()));
        let Some(digits) = digits else {
            return Err(self.err_at(at, "A '\\u' escape needs four hexadecimal digits"));
        };
        self.pos += 4;
        u32::from_str_radix(digits, 16).map_err(|_| self.err_at(at, "Invalid '\\u' escape"))
    }
}

/// JSON number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(c) if c.is_ascii_digit() => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e') | Some(b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+') | Some(b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
