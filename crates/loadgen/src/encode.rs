//! URL encoding of SCIM filters exactly as Entra sends them: `application/x-www-form-urlencoded` style, spaces
//! as `+`, quotes as `%22`, `@` as `%40`.

/// Percent-encodes a query-string component the way Entra does: unreserved characters (`A-Z a-z 0-9 - . _ ~`)
/// stay, a space becomes `+`, every other byte becomes `%XX` (upper-case hex).
pub fn form_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() + 16);
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0x0f) as usize] as char);
            }
        }
    }
    out
}

/// The SCIM filter `<attr> eq "<value>"`, with `"` and `\` in the value escaped as in JSON strings.
pub fn eq_filter(attr: &str, value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    format!("{attr} eq \"{quoted}\"")
}

/// The query string Entra sends to find a user by its matching attribute: `filter=userName+eq+%22…%22`.
pub fn user_lookup_query(user_name: &str) -> String {
    format!("filter={}", form_encode(&eq_filter("userName", user_name)))
}

/// The query string Entra sends to find a group: `excludedAttributes=members&filter=displayName+eq+%22…%22`.
pub fn group_lookup_query(display_name: &str) -> String {
    format!("excludedAttributes=members&filter={}", form_encode(&eq_filter("displayName", display_name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_lookup_matches_entra_capture() {
        // The shape of the captured Test Connection request and of the matching query ([S20]).
        assert_eq!(
            user_lookup_query("7d420df3-9995-4831-a406-ecf8166f5f6a"),
            "filter=userName+eq+%227d420df3-9995-4831-a406-ecf8166f5f6a%22"
        );
        assert_eq!(user_lookup_query("jdoe@contoso.com"), "filter=userName+eq+%22jdoe%40contoso.com%22");
    }

    #[test]
    fn group_lookup_encodes_spaces_as_plus() {
        assert_eq!(
            group_lookup_query("Sales Team 1"),
            "excludedAttributes=members&filter=displayName+eq+%22Sales+Team+1%22"
        );
    }

    #[test]
    fn reserved_and_non_ascii_bytes_are_percent_encoded() {
        assert_eq!(form_encode("a+b&c=d/e?f#g%"), "a%2Bb%26c%3Dd%2Fe%3Ff%23g%25");
        assert_eq!(form_encode("é"), "%C3%A9");
        assert_eq!(form_encode("A-z_0.9~"), "A-z_0.9~");
    }

    #[test]
    fn quotes_and_backslashes_in_values_are_escaped() {
        assert_eq!(eq_filter("displayName", r#"a "b" \c"#), r#"displayName eq "a \"b\" \\c""#);
        assert_eq!(form_encode(&eq_filter("displayName", "x\"y")), "displayName+eq+%22x%5C%22y%22");
    }
}
