//! HTTP/1.1 on the wire for the event-loop engine ([`crate::evloop`]): request bytes, and the framing of a
//! response read into a buffer. Pure functions, so the parsing is tested without a socket.

use std::fmt::Write as _;
use std::time::Duration;

use crate::client::parse_retry_after;

/// Response headers beyond this many are a protocol error (Roster sends about ten).
const MAX_HEADERS: usize = 64;

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The status line or headers are not HTTP/1.x.
    #[error("malformed response head: {0}")]
    Head(String),
    /// `Content-Length` is not a number, or is given twice with different values.
    #[error("bad Content-Length: {0}")]
    Length(String),
    /// A chunk size line of a chunked body is malformed.
    #[error("malformed chunked body")]
    Chunk,
    /// The body is larger than the client accepts.
    #[error("response body over {0} bytes")]
    TooLarge(u64),
}

/// How the end of a response body is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` bytes follow the head.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body ends when the server closes the connection.
    UntilClose,
}

/// The parts of a response head the engine acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// HTTP status.
    pub status: u16,
    /// Bytes of the status line and headers, including the blank line.
    pub len: usize,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection cannot be reused after this response.
    pub close: bool,
    /// `Retry-After`, in seconds, when present and numeric.
    pub retry_after: Option<Duration>,
}

/// The request bytes for `method prefix+path` on `host` with the `Authorization` value `auth`, shaped as Entra's
/// (`Accept: */*`, no `User-Agent`); a body is sent as SCIM JSON, the content type Entra uses.
pub fn request(method: &str, host: &str, prefix: &str, path: &str, auth: &str, body: Option<&str>) -> Vec<u8> {
    let mut head = String::with_capacity(160 + prefix.len() + path.len() + auth.len());
    // Writing to a String cannot fail.
    let _ =
        write!(head, "{method} {prefix}{path} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\nAuthorization: {auth}\r\n");
    if let Some(b) = body {
        let _ = write!(head, "Content-Type: {}\r\nContent-Length: {}\r\n", crate::client::SCIM_JSON, b.len());
    } else if method != "GET" && method != "DELETE" {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if let Some(b) = body {
        bytes.extend_from_slice(b.as_bytes());
    }
    bytes
}

/// Parses the response head at the start of `buf`: `Ok(None)` until it is complete. The engine sends no `HEAD`
/// requests, so a head's headers alone say where its body ends.
pub fn parse_head(buf: &[u8], max_body: u64) -> Result<Option<Head>, WireError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(WireError::Head(e.to_string())),
    };
    let status = resp.code.ok_or_else(|| WireError::Head("no status".into()))?;
    let http10 = resp.version == Some(0);
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut close = http10;
    let mut keep_alive = false;
    let mut retry_after = None;
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value.parse().map_err(|_| WireError::Length(value.to_owned()))?;
            if n > max_body {
                return Err(WireError::TooLarge(max_body));
            }
            let n = usize::try_from(n).map_err(|_| WireError::Length(value.to_owned()))?;
            if length.is_some_and(|l| l != n) {
                return Err(WireError::Length(value.to_owned()));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.rsplit(',').next().is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',') {
                close |= token.trim().eq_ignore_ascii_case("close");
                keep_alive |= token.trim().eq_ignore_ascii_case("keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = parse_retry_after(value);
        }
    }
    if http10 && keep_alive {
        close = false;
    }
    // RFC 9112 §6.3: no body for 1xx, 204 and 304; chunked wins over a length.
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        close = true;
        Framing::UntilClose
    };
    Ok(Some(Head { status, len, framing, close, retry_after }))
}

/// Decodes the chunked body at the start of `buf`: `Ok(None)` until its last chunk and trailers have arrived,
/// then the body.
pub fn dechunk(buf: &[u8], max_body: u64) -> Result<Option<Vec<u8>>, WireError> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find_crlf(&buf[at..]) else { return Ok(None) };
        let line = std::str::from_utf8(&buf[at..at + eol]).map_err(|_| WireError::Chunk)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| WireError::Chunk)?;
        at += eol + 2;
        if size == 0 {
            // Trailers, then a blank line.
            loop {
                let Some(eol) = find_crlf(&buf[at..]) else { return Ok(None) };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some(body));
                }
            }
        }
        if (body.len() + size) as u64 > max_body {
            return Err(WireError::TooLarge(max_body));
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err(WireError::Chunk);
        }
        at += size + 2;
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    // A test fails by panicking; the scripted server's sockets and parses are the test's own.
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MAX: u64 = 1 << 20;

    #[test]
    fn a_get_has_no_body_headers_and_a_post_carries_scim_json() {
        let get = request("GET", "h:1", "/scim/v2/accounts/a", "/Users?x=1", "Bearer t", None);
        assert_eq!(get, b"GET /scim/v2/accounts/a/Users?x=1 HTTP/1.1\r\nHost: h:1\r\nAccept: */*\r\nAuthorization: Bearer t\r\n\r\n");
        let post = String::from_utf8(request("POST", "h:1", "", "/Users", "Bearer t", Some("{}"))).unwrap();
        assert!(post.starts_with("POST /Users HTTP/1.1\r\n"));
        assert!(post.contains("Content-Type: application/scim+json; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}"));
        let delete = String::from_utf8(request("PATCH", "h", "", "/x", "a", None)).unwrap();
        assert!(delete.contains("Content-Length: 0\r\n"));
    }

    #[test]
    fn an_incomplete_head_asks_for_more_bytes() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le", MAX), Ok(None));
    }

    #[test]
    fn a_sized_response_keeps_the_connection() {
        let h =
            parse_head(b"HTTP/1.1 201 Created\r\ncontent-length: 12\r\n\r\n{\"id\":\"abc\"}", MAX).unwrap().unwrap();
        assert_eq!(h.status, 201);
        assert_eq!(h.framing, Framing::Length(12));
        assert_eq!(h.len, 44);
        assert!(!h.close);
        assert_eq!(h.retry_after, None);
    }

    #[test]
    fn connection_close_and_retry_after_are_read() {
        let h = parse_head(
            b"HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n",
            MAX,
        )
        .unwrap()
        .unwrap();
        assert!(h.close);
        assert_eq!(h.retry_after, Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_body_without_length_runs_until_close() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\n\r\n", MAX).unwrap().unwrap();
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(h.close);
        let h = parse_head(b"HTTP/1.1 204 No Content\r\n\r\n", MAX).unwrap().unwrap();
        assert_eq!(h.framing, Framing::Length(0));
        assert!(!h.close);
    }

    #[test]
    fn http_1_0_closes_unless_kept_alive() {
        let h = parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", MAX).unwrap().unwrap();
        assert!(h.close);
        let h = parse_head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", MAX)
            .unwrap()
            .unwrap();
        assert!(!h.close);
    }

    #[test]
    fn chunked_wins_over_a_length_and_bad_lengths_are_errors() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", MAX)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert!(matches!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", MAX), Err(WireError::Length(_))));
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", MAX),
            Err(WireError::Length(_))
        ));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", 10), Err(WireError::TooLarge(10)));
        assert!(matches!(parse_head(b"SMTP ready\r\n\r\n", MAX), Err(WireError::Head(_))));
    }

    #[test]
    fn a_chunked_body_is_decoded_once_its_last_chunk_and_trailers_arrive() {
        let full = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(dechunk(&full[..cut], MAX), Ok(None), "cut at {cut}");
        }
        assert_eq!(dechunk(full, MAX), Ok(Some(b"Wikipedia".to_vec())));
        assert_eq!(dechunk(b"0\r\n\r\n", MAX), Ok(Some(Vec::new())));
    }

    #[test]
    fn a_malformed_or_oversized_chunked_body_is_an_error() {
        assert_eq!(dechunk(b"zz\r\n", MAX), Err(WireError::Chunk));
        assert_eq!(dechunk(b"2\r\nabXY", MAX), Err(WireError::Chunk));
        assert_eq!(dechunk(b"10\r\n", 4), Err(WireError::TooLarge(4)));
    }
}
