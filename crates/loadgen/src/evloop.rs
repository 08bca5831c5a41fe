//! The throughput phases' HTTP engine: all of a phase's keep-alive connections on one thread, driven by one
//! event loop (a tokio current-thread runtime).
//!
//! The rest of the simulator runs a blocking ureq client on a thread per connection. For the phases whose
//! figures are the benchmark's targets (creates and `userName eq` lookups), that model cost the load generator
//! about 70 µs of CPU per request, over half of it in the kernel switching between its threads, and each
//! response woke a sleeping thread that preempted the server. On a 2-core machine shared with the server, those
//! were cores the server needed. Here one thread waits on all connections at once and handles every answer that
//! is ready when it wakes.

use std::cell::RefCell;
use std::io;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::net::TcpStream;

use crate::client::{Answer, CONNECT_TIMEOUT, MAX_BODY, REQUEST_TIMEOUT, Scim, micros_since, retry_wait};
use crate::stats::{Kind, Stats};
use crate::wire::{self, Framing, Head, WireError};

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// One request of a flow.
#[derive(Clone, Debug)]
pub struct Call {
    /// What the request is for, in the report.
    pub kind: Kind,
    /// HTTP method.
    pub method: &'static str,
    /// Path below the account's SCIM base URL, with its query.
    pub path: String,
    /// JSON body, sent as SCIM JSON.
    pub body: Option<String>,
    /// The status that counts as a success.
    pub expect: u16,
}

/// What a flow does once a request of it was answered with the expected status.
pub enum Step<R> {
    /// The flow is complete, with this result.
    Done(R),
    /// The flow goes on with another request (Entra's create after its lookup).
    Then(Call),
    /// The flow ends without a result (the judge recorded why).
    Stop,
}

/// Where the connections go: `host:port` and the base URL's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// `host:port`, for the connection and the `Host` header.
    pub authority: String,
    /// The base URL's path, put before every request's path.
    pub prefix: String,
}

impl Origin {
    /// The origin of an `http://` base URL; the engine speaks plain HTTP only (as does the blocking client).
    pub fn parse(base: &str) -> Result<Origin, String> {
        let rest = base.strip_prefix("http://").ok_or_else(|| format!("{base}: only http:// URLs are supported"))?;
        let (authority, prefix) = rest.find('/').map_or((rest, ""), |i| (&rest[..i], &rest[i..]));
        if authority.is_empty() {
            return Err(format!("{base}: no host"));
        }
        let authority = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
        Ok(Origin { authority, prefix: prefix.trim_end_matches('/').to_owned() })
    }
}

/// A failed exchange: the message, and whether no byte of a response had arrived (a reused connection that the
/// server closed while idle can then be retried on a new one).
struct Failure {
    message: String,
    before_response: bool,
}

impl Failure {
    fn io(what: &str, e: &io::Error, before_response: bool) -> Self {
        Failure { message: format!("{what}: {e}"), before_response }
    }
}

impl From<WireError> for Failure {
    fn from(e: WireError) -> Self {
        Failure { message: e.to_string(), before_response: false }
    }
}

/// One keep-alive connection and its read buffer.
struct Conn {
    stream: TcpStream,
    /// Bytes of the response read so far are `buf[..filled]`; the rest is zeroed space to read into, zeroed
    /// once as the buffer grows rather than on every read.
    buf: Vec<u8>,
    filled: usize,
    used: bool,
}

impl Conn {
    async fn open(authority: &str) -> Result<Conn, String> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority))
            .await
            .map_err(|_| format!("connect to {authority}: timed out"))?
            .map_err(|e| format!("connect to {authority}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("set TCP_NODELAY: {e}"))?;
        Ok(Conn { stream, buf: vec![0; READ_CHUNK], filled: 0, used: false })
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let mut at = 0;
        while at < bytes.len() {
            match self.stream.try_write(&bytes[at..]) {
                Ok(0) => return Err(Failure { message: "send: connection closed".into(), before_response: true }),
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stream.writable().await.map_err(|e| Failure::io("send", &e, true))?;
                }
                Err(e) => return Err(Failure::io("send", &e, true)),
            }
        }
        Ok(())
    }

    /// Appends what the socket has to the buffer; 0 at the end of the stream.
    async fn read_more(&mut self) -> Result<usize, Failure> {
        if self.buf.len() - self.filled < READ_CHUNK {
            self.buf.resize(self.filled + READ_CHUNK.max(self.filled), 0);
        }
        loop {
            let nothing_yet = self.filled == 0;
            self.stream.readable().await.map_err(|e| Failure::io("receive", &e, nothing_yet))?;
            match self.stream.try_read(&mut self.buf[self.filled..]) {
                Ok(n) => {
                    self.filled += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Failure::io("receive", &e, nothing_yet)),
            }
        }
    }

    /// Sends a request and reads its response: the head and the body.
    async fn round_trip(&mut self, request: &[u8]) -> Result<(Head, Vec<u8>), Failure> {
        self.filled = 0;
        self.write_all(request).await?;
        let head = loop {
            if self.read_more().await? == 0 {
                let before_response = self.filled == 0;
                return Err(Failure { message: "connection closed before the response".into(), before_response });
            }
            if let Some(head) = wire::parse_head(&self.buf[..self.filled], MAX_BODY)? {
                break head;
            }
        };
        let cut_short = || Failure { message: "connection closed inside the body".into(), before_response: false };
        let body = match head.framing {
            Framing::Length(n) => {
                while self.filled < head.len + n {
                    if self.read_more().await? == 0 {
                        return Err(cut_short());
                    }
                }
                if self.filled > head.len + n {
                    return Err(Failure { message: "bytes after the response".into(), before_response: false });
                }
                self.buf[head.len..self.filled].to_vec()
            }
            Framing::Chunked => loop {
                if let Some(body) = wire::dechunk(&self.buf[head.len..self.filled], MAX_BODY)? {
                    break body;
                }
                if self.read_more().await? == 0 {
                    return Err(cut_short());
                }
            },
            Framing::UntilClose => {
                while self.read_more().await? > 0 {
                    if (self.filled - head.len) as u64 > MAX_BODY {
                        return Err(WireError::TooLarge(MAX_BODY).into());
                    }
                }
                self.buf[head.len..self.filled].to_vec()
            }
        };
        self.used = true;
        Ok((head, body))
    }
}

/// Sends `request` on the connection in `slot` (opening one when there is none) and reads the answer. A reused
/// connection that fails before any byte of the response is replaced and the request sent once more: the
/// server closed it while idle and never saw the request.
async fn exchange(slot: &mut Option<Conn>, authority: &str, request: &[u8]) -> Result<(Head, Vec<u8>), String> {
    loop {
        let conn = match slot {
            Some(c) => c,
            None => slot.insert(Conn::open(authority).await?),
        };
        let reused = conn.used;
        match conn.round_trip(request).await {
            Ok((head, body)) => {
                if head.close {
                    *slot = None;
                }
                return Ok((head, body));
            }
            Err(f) => {
                *slot = None;
                if !(reused && f.before_response) {
                    return Err(f.message);
                }
            }
        }
    }
}

/// The state every connection of a run shares; the event loop is one thread, so cells suffice.
struct Shared<'a, R, N, J> {
    scim: &'a Scim,
    origin: Result<Origin, String>,
    deadline: Option<Instant>,
    next: RefCell<N>,
    judge: RefCell<J>,
    stats: RefCell<Stats>,
    results: RefCell<Vec<(usize, R)>>,
}

impl<R, N, J> Shared<'_, R, N, J>
where
    N: FnMut() -> Option<(usize, Call)>,
    J: FnMut(usize, Answer, &mut Stats) -> Step<R>,
{
    /// One connection's life: take a flow, run its requests, repeat until there are none or the deadline passed.
    async fn connection(&self) {
        let mut slot: Option<Conn> = None;
        loop {
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return;
            }
            let Some((index, mut call)) = (self.next.borrow_mut())() else { return };
            loop {
                let Some(answer) = self.send(&mut slot, &call).await else { break };
                let step = (self.judge.borrow_mut())(index, answer, &mut self.stats.borrow_mut());
                match step {
                    Step::Done(r) => {
                        self.results.borrow_mut().push((index, r));
                        break;
                    }
                    Step::Then(c) => call = c,
                    Step::Stop => break,
                }
            }
        }
    }

    /// Sends one request, retrying 429 and 503 as [`Scim::call`] does, and records it; the answer when its status
    /// was the expected one.
    async fn send(&self, slot: &mut Option<Conn>, call: &Call) -> Option<Answer> {
        let origin = match &self.origin {
            Ok(o) => o,
            Err(e) => {
                self.stats
                    .borrow_mut()
                    .fail(call.kind, 0, "transport", || format!("{} {}: {e}", call.method, call.path));
                return None;
            }
        };
        let request = wire::request(
            call.method,
            &origin.authority,
            &origin.prefix,
            &call.path,
            self.scim.auth(),
            call.body.as_deref(),
        );
        let mut attempt = 0;
        let (result, micros) = loop {
            let t = Instant::now();
            let result = match tokio::time::timeout(REQUEST_TIMEOUT, exchange(slot, &origin.authority, &request)).await
            {
                Ok(r) => r,
                Err(_) => {
                    *slot = None;
                    Err(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))
                }
            };
            let micros = micros_since(t);
            self.scim.count_request();
            if let Ok((head, _)) = &result
                && let Some(wait) =
                    retry_wait(head.status, head.retry_after, &[call.expect], attempt, self.scim.max_retries())
            {
                attempt += 1;
                self.stats.borrow_mut().throttled(call.kind, head.status);
                tokio::time::sleep(wait).await;
                continue;
            }
            break (result, micros);
        };
        let mut stats = self.stats.borrow_mut();
        if call.kind.is_write() {
            stats.note_write(Instant::now());
        }
        match result {
            Ok((head, body)) => {
                let answer = Answer { status: head.status, body, micros };
                if answer.status == call.expect {
                    stats.ok(call.kind, micros);
                    Some(answer)
                } else {
                    stats.fail(call.kind, micros, &answer.status.to_string(), || {
                        format!("{} {} -> {}: {}", call.method, call.path, answer.status, answer.snippet())
                    });
                    None
                }
            }
            Err(e) => {
                stats.fail(call.kind, micros, "transport", || {
                    format!("{} {} -> transport error: {e}", call.method, call.path)
                });
                None
            }
        }
    }
}

impl Scim {
    /// Runs flows of requests on `concurrency` keep-alive connections, all on this thread, until `next` has no
    /// more or `deadline` has passed (a flow under way is finished). `next` gives a flow's index and first
    /// request; `judge` sees each expected answer and says how the flow goes on. Returns the completed flows'
    /// results (in completion order) and the statistics of every request.
    pub fn flows<R, N, J>(
        &self,
        concurrency: usize,
        deadline: Option<Instant>,
        next: N,
        judge: J,
    ) -> (Vec<(usize, R)>, Stats)
    where
        N: FnMut() -> Option<(usize, Call)>,
        J: FnMut(usize, Answer, &mut Stats) -> Step<R>,
    {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build() {
            Ok(rt) => rt,
            Err(e) => {
                let mut stats = Stats::new();
                stats.count_error(Kind::Admin, "transport", || format!("could not start the event loop: {e}"));
                return (Vec::new(), stats);
            }
        };
        let shared = Shared {
            scim: self,
            origin: Origin::parse(self.base()),
            deadline,
            next: RefCell::new(next),
            judge: RefCell::new(judge),
            stats: RefCell::new(Stats::new()),
            results: RefCell::new(Vec::new()),
        };
        // Polls only the connections whose sockets woke the loop, not all of them.
        let mut connections: FuturesUnordered<_> = (0..concurrency.max(1)).map(|_| shared.connection()).collect();
        runtime.block_on(async { while connections.next().await.is_some() {} });
        drop(connections);
        (shared.results.into_inner(), shared.stats.into_inner())
    }
}

#[cfg(test)]
mod tests {
    // A test fails by panicking; the scripted server's sockets and parses are the test's own.
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_origin_splits_authority_and_path() {
        assert_eq!(
            Origin::parse("http://127.0.0.1:8080/scim/v2/accounts/a1/"),
            Ok(Origin { authority: "127.0.0.1:8080".into(), prefix: "/scim/v2/accounts/a1".into() })
        );
        assert_eq!(Origin::parse("http://h"), Ok(Origin { authority: "h:80".into(), prefix: String::new() }));
        assert!(Origin::parse("https://h/x").is_err());
        assert!(Origin::parse("http:///x").is_err());
    }

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream as StdStream};
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// What the scripted server does with the n-th request (counted over all connections).
    enum Reply {
        /// Answers with this raw response and keeps the connection.
        Send(&'static str),
        /// Answers, then closes the connection without saying so (an idle keep-alive timeout).
        SendThenDrop(&'static str),
    }

    /// A scripted HTTP/1.1 server on a free port: `script(n, request line)` decides each answer. Returns its
    /// base URL, the request lines it saw and how many connections it accepted.
    fn server(script: fn(usize, &str) -> Reply) -> (String, Arc<Mutex<Vec<String>>>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/scim/v2/accounts/a1", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (seen2, connections2) = (seen.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                connections2.fetch_add(1, Ordering::SeqCst);
                let seen = seen2.clone();
                std::thread::spawn(move || serve(stream, script, &seen));
            }
        });
        (base, seen, connections)
    }

    fn serve(stream: StdStream, script: fn(usize, &str) -> Reply, seen: &Mutex<Vec<String>>) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut out = stream;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut length = 0;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push(line.trim_end().to_owned());
                seen.len() - 1
            };
            match script(n, line.trim_end()) {
                Reply::Send(r) => out.write_all(r.as_bytes()).unwrap(),
                Reply::SendThenDrop(r) => {
                    out.write_all(r.as_bytes()).unwrap();
                    return;
                }
            }
        }
    }

    const CREATED: &str = "HTTP/1.1 201 Created\r\nContent-Length: 12\r\n\r\n{\"id\":\"u-1\"}";
    const NOT_FOUND: &str =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"totalResults\":\r\n2\r\n0}\r\n0\r\n\r\n";

    fn scim(base: &str, retries: u32) -> Scim {
        Scim::new(base, "t", Arc::new(AtomicU64::new(0)), retries)
    }

    fn post(path: &str) -> Call {
        Call { kind: Kind::UserCreate, method: "POST", path: path.into(), body: Some("{}".into()), expect: 201 }
    }

    #[test]
    fn flows_share_one_keep_alive_connection() {
        let (base, seen, connections) = server(|_, _| Reply::Send(CREATED));
        let mut tasks = 0..3;
        let (done, stats) = scim(&base, 0).flows(
            1,
            None,
            || tasks.next().map(|i| (i, post("/Users"))),
            |i, a, _| Step::Done((i, a.id())),
        );
        assert_eq!(
            done,
            vec![(0, (0, Some("u-1".into()))), (1, (1, Some("u-1".into()))), (2, (2, Some("u-1".into())))]
        );
        assert_eq!(stats.count(Kind::UserCreate), 3);
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        assert_eq!(seen.lock().unwrap()[0], "POST /scim/v2/accounts/a1/Users HTTP/1.1");
    }

    #[test]
    fn a_flow_goes_on_from_a_lookup_to_a_create() {
        let (base, seen, _) = server(|_, line| Reply::Send(if line.starts_with("GET") { NOT_FOUND } else { CREATED }));
        let mut tasks = 0..1;
        let lookup =
            || Call { kind: Kind::UserLookup, method: "GET", path: "/Users?x".into(), body: None, expect: 200 };
        let (done, stats) = scim(&base, 0).flows(
            2,
            None,
            || tasks.next().map(|i| (i, lookup())),
            |_, a, _| match a.status {
                200 if crate::client::total_results(&a.body) == Some(0) => Step::Then(post("/Users")),
                201 => Step::Done(a.id()),
                _ => Step::Stop,
            },
        );
        assert_eq!(done, vec![(0, Some("u-1".into()))]);
        assert_eq!((stats.count(Kind::UserLookup), stats.count(Kind::UserCreate)), (1, 1));
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_throttled_request_is_retried_after_retry_after() {
        let (base, seen, _) = server(|n, _| {
            Reply::Send(if n == 0 {
                "HTTP/1.1 429 Too Many\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n"
            } else {
                CREATED
            })
        });
        let mut tasks = 0..1;
        let (done, stats) =
            scim(&base, 2).flows(1, None, || tasks.next().map(|i| (i, post("/Users"))), |_, a, _| Step::Done(a.status));
        assert_eq!(done, vec![(0, 201)]);
        assert_eq!(stats.total_throttled(), 1);
        assert_eq!(stats.total_errors(), 0);
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_keep_alive_connection_closed_while_idle_is_replaced_and_the_request_sent_again() {
        let (base, seen, connections) = server(|_, _| Reply::SendThenDrop(CREATED));
        let mut tasks = 0..3;
        let (done, stats) =
            scim(&base, 0).flows(1, None, || tasks.next().map(|i| (i, post("/Users"))), |i, _, _| Step::Done(i));
        assert_eq!(done.len(), 3);
        assert_eq!(stats.total_errors(), 0);
        assert_eq!(connections.load(Ordering::SeqCst), 3);
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[test]
    fn an_unexpected_status_and_a_refused_connection_are_errors() {
        let (base, _, _) = server(|_, _| Reply::Send("HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\n\r\n{}"));
        let mut tasks = 0..2;
        let (done, stats) =
            scim(&base, 0).flows(1, None, || tasks.next().map(|i| (i, post("/Users"))), |i, _, _| Step::Done(i));
        assert!(done.is_empty());
        assert_eq!(stats.errors_by_status.get("409"), Some(&2));

        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut tasks = 0..1;
        let (done, stats) = scim(&format!("http://{closed}"), 0).flows(
            1,
            None,
            || tasks.next().map(|i| (i, post("/Users"))),
            |i, _, _| Step::Done(i),
        );
        assert!(done.is_empty());
        assert_eq!(stats.errors_by_status.get("transport"), Some(&1));
    }

    #[test]
    fn no_flow_starts_after_the_deadline() {
        let (base, seen, _) = server(|_, _| Reply::Send(CREATED));
        let mut tasks = 0..5;
        let past = Instant::now();
        let (done, _) =
            scim(&base, 0).flows(2, Some(past), || tasks.next().map(|i| (i, post("/Users"))), |i, _, _| Step::Done(i));
        assert!(done.is_empty());
        assert!(seen.lock().unwrap().is_empty());
    }
}
