//! Entry points for the fuzz targets (`fuzz/`) and the corpus replay test
//! (`tests/fuzz_corpus.rs`); compiled only with the `fuzzing` feature.
//!
//! Each function takes the raw bytes of one input, drives one parser of
//! hostile input over them and checks what must hold for every input; a
//! violated property panics (that is the finding). Nothing here is used by
//! the library itself.
//!
//! Session targets (`pop3_session`, `imap_session`, `smtp_session`) read a
//! *script*: the server's answers separated by lines of `~~` (the bytes
//! `~~\n`). The first piece is sent on connect, each further piece after
//! the client's next line (or after 20 ms of silence, when the client is
//! waiting for more), and `$T` in a piece becomes the tag of the client's
//! last tagged command (IMAP). After the last piece the server closes.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use crate::config::{Config, Security, Server};
use crate::error::Error;
use crate::mailbox::imap;
use crate::mailbox::imap::resp::{self, Limits, RespError, Response};
use crate::mailbox::imap::wire::Buffered;
use crate::mailbox::net::{Endpoint, Interrupt};
use crate::mailbox::pop3;
use crate::mailbox::pop3::wire::{self as pop3_wire, BodyEnd, Reader};
use crate::mailbox::summary::Summary;
use crate::secret::Secret;

/// A token for [`check_error`] (the session targets derive theirs from each
/// input): no error, hint or server reply may contain it.
pub const TOKEN: &str = "fzTOKEN-0c7e1d2b9a-must-never-show";

/// Separates the server's answers in a session script.
pub const SEPARATOR: &[u8] = b"~~\n";

// ---------------------------------------------------------------------------
// Helpers.

/// Reads at most `step` bytes per call (exercises every buffer boundary).
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.data.len().min(buf.len()).min(self.step.max(1));
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// A scripted in-memory server: reads come from the script, writes are
/// kept.
struct Scripted<'a> {
    input: Trickle<'a>,
    sent: Vec<u8>,
}

impl Read for Scripted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Scripted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A hostile server never makes us buffer without bound: the
        // commands we send are ours, but keep the record small.
        if self.sent.len() < 1 << 20 {
            self.sent.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Every text of an error, both languages.
fn error_texts(e: &Error) -> Vec<&str> {
    let mut out = vec![e.message.en.as_str(), e.message.de.as_str()];
    if let Some(h) = &e.hint {
        out.push(&h.en);
        out.push(&h.de);
    }
    for s in [
        &e.server_reply,
        &e.provider_error,
        &e.provider_code,
        &e.correlation_id,
    ]
    .into_iter()
    .flatten()
    {
        out.push(s);
    }
    out.extend(e.rejected.iter().map(String::as_str));
    out
}

/// The token never appears in an error, and a server reply kept in one is
/// sanitised (bounded, no control characters).
pub fn check_error(e: &Error) {
    Checks {
        token: Some(TOKEN.into()),
    }
    .error(e);
}

/// The checks for one input.
struct Checks {
    /// The token the session logs in with: derived from the input's bytes,
    /// so no input can contain it (libFuzzer learns every string the check
    /// compares against; a fixed token soon shows up in a scripted reply).
    /// None where no token is involved.
    token: Option<String>,
}

impl Checks {
    fn new(server: &[u8]) -> Self {
        // FNV-1a: a different token for every input.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in server {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self {
            token: Some(format!(
                "fzTok{h:016x}{:016x}",
                h.rotate_left(29) ^ 0x5bd1_e995
            )),
        }
    }

    /// Only the server-reply checks (no token in play).
    fn replies() -> Self {
        Self { token: None }
    }

    fn secret(&self) -> Secret {
        Secret::new(self.token.clone().unwrap_or_default())
    }

    fn error(&self, e: &Error) {
        if let Some(token) = &self.token {
            for t in error_texts(e) {
                assert!(
                    !t.contains(token.as_str()),
                    "the token is in an error: {e:?}"
                );
            }
        }
        if let Some(r) = &e.server_reply {
            assert!(
                r.len() <= crate::error::MAX_SERVER_REPLY_BYTES,
                "server reply not bounded: {} bytes",
                r.len()
            );
            assert!(
                !r.chars().any(char::is_control),
                "control character in a server reply: {r:?}"
            );
        }
    }

    fn result<T>(&self, r: &crate::error::Result<T>) {
        if let Err(e) = r {
            self.error(e);
        }
    }
}

/// The pieces of a session script.
pub fn script_pieces(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(i) => {
                out.push(rest[..i].to_vec());
                rest = &rest[i + SEPARATOR.len()..];
            }
            None => {
                out.push(rest.to_vec());
                return out;
            }
        }
    }
}

/// A one-connection scripted TCP server on loopback (see the module
/// docs). `smtp`: the lines of a DATA transfer up to the lone `.` count
/// as one line.
struct TcpScript {
    port: u16,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpScript {
    fn start(data: &[u8], smtp: bool) -> io::Result<Self> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        let pieces = script_pieces(data);
        let thread = std::thread::spawn(move || {
            let Ok((sock, _)) = l.accept() else { return };
            drop(l);
            let _ = serve(sock, pieces, smtp);
        });
        Ok(Self {
            port,
            thread: Some(thread),
        })
    }
}

impl Drop for TcpScript {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            if !t.is_finished() {
                // A client that never connected (it failed first) must not
                // leave the server waiting in accept.
                let _ = TcpStream::connect_timeout(
                    &std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
                    Duration::from_secs(1),
                );
            }
            let _ = t.join();
        }
    }
}

fn serve(sock: TcpStream, pieces: Vec<Vec<u8>>, smtp: bool) -> io::Result<()> {
    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut w = sock.try_clone()?;
    let mut r = BufReader::new(sock);
    let mut pieces = pieces.into_iter();
    let mut tag = b"*".to_vec();
    let mut in_data = false;
    let mut data_next = false;
    let mut line = Vec::new();
    let send = |w: &mut TcpStream, piece: Vec<u8>, tag: &[u8]| -> io::Result<()> {
        let mut out = Vec::with_capacity(piece.len());
        let mut i = 0;
        while i < piece.len() {
            if piece[i..].starts_with(b"$T") {
                out.extend_from_slice(tag);
                i += 2;
            } else {
                out.push(piece[i]);
                i += 1;
            }
        }
        w.write_all(&out)
    };
    if let Some(p) = pieces.next() {
        send(&mut w, p, &tag)?;
    }
    let mut silent = 0;
    loop {
        match r.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) if !line.ends_with(b"\n") => continue,
            Ok(_) => {
                silent = 0;
                let l = std::mem::take(&mut line);
                let trimmed = l.strip_suffix(b"\n").unwrap_or(&l);
                let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
                if trace() && !in_data {
                    eprintln!("client: {}", String::from_utf8_lossy(trimmed));
                }
                if in_data {
                    if trimmed != b"." {
                        continue;
                    }
                    in_data = false;
                } else if smtp && trimmed.eq_ignore_ascii_case(b"DATA") {
                    data_next = true;
                }
                // A tagged command: "<tag> <verb> …" (a SASL line has no
                // space and keeps the last tag).
                let mut words = trimmed.splitn(2, |b| *b == b' ');
                if let (Some(t), Some(_)) = (words.next(), words.next())
                    && !t.is_empty()
                    && t.iter().all(u8::is_ascii_alphanumeric)
                {
                    tag = t.to_vec();
                }
                match pieces.next() {
                    Some(p) => {
                        let positive = p.starts_with(b"354");
                        send(&mut w, p, &tag)?;
                        if data_next && positive {
                            in_data = true;
                        }
                        data_next = false;
                    }
                    None => break,
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // The client waits for more: the next piece, or the end.
                silent += 1;
                match pieces.next() {
                    Some(p) => send(&mut w, p, &tag)?,
                    None => break,
                }
                if silent > 1000 {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = w.shutdown(Shutdown::Write);
    // Let the client read to the end before the socket goes.
    let mut sink = [0u8; 4096];
    let mut idle = 0;
    loop {
        match r.get_mut().read(&mut sink) {
            Ok(0) => break,
            Ok(_) => idle = 0,
            Err(_) => {
                idle += 1;
                if idle > 50 {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// `MAILOAUTH_FUZZ_TRACE=1`: the scripted servers print what the client
/// sent (for writing seeds).
fn trace() -> bool {
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(|| std::env::var_os("MAILOAUTH_FUZZ_TRACE").is_some())
}

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        match crate::config::parse(
            r#"{"client_id":"00000000-0000-0000-0000-00000000f022",
                "allow_plaintext_loopback": true,
                "trusted_hosts": ["127.0.0.1"],
                "servers": {"smtp": {"host": "127.0.0.1", "port": 2525, "security": "none"},
                            "imap": {"host": "127.0.0.1", "port": 1143, "security": "none"},
                            "pop3": {"host": "127.0.0.1", "port": 1110, "security": "none"}},
                "limits": {"max_message_bytes": 1048576}}"#,
        ) {
            Ok(p) => p.config,
            Err(e) => panic!("the fuzzing configuration does not parse: {e:?}"),
        }
    })
}

/// The IMAP endpoint (its TLS configuration is built once; the port is
/// each script's).
fn imap_endpoint() -> &'static Endpoint {
    static EP: OnceLock<Endpoint> = OnceLock::new();
    EP.get_or_init(
        || match Endpoint::new(config(), "127.0.0.1", 0, Security::None) {
            Ok(mut ep) => {
                ep.io_timeout = Duration::from_secs(5);
                ep.connect_timeout = Duration::from_secs(5);
                ep
            }
            Err(e) => panic!("the fuzzing endpoint: {e:?}"),
        },
    )
}

fn byte(data: &[u8], i: usize) -> u8 {
    data.get(i).copied().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// POP3.

/// The POP3 line reader, multi-line bodies (dot-unstuffing, limits) and
/// status/listing line parsers. Bytes 0–2 choose the read size, the body
/// limit and the order of line and body reads; the rest is the server.
pub fn pop3_wire(data: &[u8]) {
    let step = 1 + usize::from(byte(data, 0)) * 64;
    let limit = match byte(data, 1) % 4 {
        0 => u64::from(byte(data, 1)),
        1 => 4096,
        2 => 0,
        _ => u64::MAX,
    };
    let mut ops = byte(data, 2);
    let wire = data.get(3..).unwrap_or_default();
    let mut r = Reader::with_capacity(Trickle { data: wire, step }, 0);
    for _ in 0..4096 {
        let body = ops & 1 == 1;
        ops = ops.rotate_right(1);
        if body {
            let mut out = Vec::new();
            match r.read_body(&mut out, limit, limit) {
                Ok(_) => assert!(out.len() as u64 <= limit, "body past its limit"),
                Err(_) => break,
            }
        } else {
            match r.read_line(pop3_wire::MAX_LINE) {
                Ok(line) => {
                    assert!(line.len() <= pop3_wire::MAX_LINE);
                    assert!(!line.contains(&b'\n'), "a line with a line feed");
                    pop3_line(&line);
                }
                Err(_) => break,
            }
        }
    }
    // A body read into a writer piece by piece is the body read at once.
    let mut r1 = Reader::with_capacity(Trickle { data: wire, step }, 0);
    let mut r2 = Reader::with_capacity(
        Trickle {
            data: wire,
            step: 7,
        },
        0,
    );
    let mut whole = Vec::new();
    let mut pieces: Vec<u8> = Vec::new();
    let a = r1.read_body(&mut whole, limit, limit);
    let b = r2.read_body_to(&mut pieces, limit, limit);
    assert!(
        format!("{a:?}") == format!("{b:?}") && whole == pieces,
        "read_body and read_body_to differ: {a:?} vs {b:?}"
    );
    // Dot-stuffing round trip of the same bytes as a message.
    let stuffed = pop3_wire::stuff(wire);
    let mut r = Reader::with_capacity(
        Trickle {
            data: &stuffed,
            step,
        },
        0,
    );
    let mut out = Vec::new();
    match r.read_body(&mut out, u64::MAX, u64::MAX) {
        Ok(BodyEnd::Complete) => {
            let mut expected = wire.to_vec();
            if !wire.is_empty() && !wire.ends_with(b"\n") {
                expected.extend_from_slice(b"\r\n");
            }
            assert!(out == expected, "dot-stuffing does not round-trip");
        }
        other => panic!("a stuffed message did not read back: {other:?}"),
    }
}

fn pop3_line(line: &[u8]) {
    if let Some(reply) = pop3_wire::parse_reply(line) {
        let _ = pop3_wire::response_code(reply.text());
    }
    if let Some((n, uid)) = pop3_wire::parse_uidl_line(line) {
        assert!(n > 0);
        assert!((1..=70).contains(&uid.len()));
        assert!(uid.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }
    if let Some((n, _)) = pop3_wire::parse_list_line(line) {
        assert!(n > 0);
    }
    if let Some(code) = std::str::from_utf8(line)
        .ok()
        .and_then(pop3_wire::response_code)
    {
        assert!(!code.is_empty() && code.len() <= 64);
    }
}

/// A whole POP3 session against a scripted server (in memory): greeting,
/// CAPA, AUTH XOAUTH2, UIDL+LIST, TOP (summaries), RETR (pipelined when
/// offered), DELE, NOOP, RSET, QUIT. Byte 0 chooses the read size, byte 1
/// the message limit and pipeline window; the rest is the server's bytes
/// (no script separators: a POP3 client reads in order).
pub fn pop3_session(data: &[u8]) {
    let step = 1 + usize::from(byte(data, 0)) * 256;
    let b = byte(data, 1);
    let opts = pop3::Options {
        max_message_bytes: [64, 4096, 1 << 20, 50 << 20][usize::from(b % 4)],
        pipeline_window: [1, 2, 10, 50][usize::from((b >> 2) % 4)],
    };
    let max = opts.max_message_bytes;
    let c = Checks::new(data);
    let input = Scripted {
        input: Trickle {
            data: data.get(2..).unwrap_or_default(),
            step,
        },
        sent: Vec::new(),
    };
    let token = c.secret();
    let mut s = match pop3::Session::start(input, "pop.fuzz.test", Interrupt::new(), opts) {
        Ok(s) => s,
        Err(e) => return c.error(&e),
    };
    let r = s.authenticate("user@contoso.test", &token, 995);
    c.result(&r);
    let entries = s.entries();
    c.result(&entries);
    let entries = entries.unwrap_or_default();
    let msgs: Vec<u32> = entries.iter().take(20).map(|e| e.msg).collect();
    let r = s.headers(&msgs, |_, h| {
        c.result(&h);
        if let Ok(h) = h {
            assert!(h.len() as u64 <= pop3::MAX_HEADER_BYTES.min(max));
            summary_of(&h);
        }
        Ok(())
    });
    c.result(&r);
    let sized: Vec<(u32, u64)> = entries.iter().take(20).map(|e| (e.msg, e.size)).collect();
    let r = s.retr_many(&sized, |_, body| {
        c.result(&body);
        if let Ok(b) = body {
            assert!(b.len() as u64 <= max, "a body past max_message_bytes");
        }
        Ok(())
    });
    c.result(&r);
    if let Some(e) = entries.first() {
        c.result(&s.retr(e.msg, e.size));
        let mut file = Vec::new();
        let r = s.retr_to(e.msg, e.size, &mut file);
        c.result(&r);
        if let Ok(n) = r {
            assert!(
                n == file.len() as u64 && n <= max,
                "retr_to wrote {n} bytes"
            );
        }
        c.result(&s.dele(e.msg));
    }
    c.result(&s.noop());
    c.result(&s.rset());
    c.result(&s.quit());
}

fn summary_of(header: &[u8]) -> Summary {
    let s = Summary::parse("1".into(), header.len() as u64, header, None);
    for f in [&s.from, &s.subject, &s.date, &s.message_id]
        .into_iter()
        .chain(s.to.iter())
    {
        assert!(f.chars().count() <= 4096, "a summary field is not bounded");
        assert!(
            !f.chars().any(char::is_control),
            "a control character in a summary field: {f:?}"
        );
    }
    assert!(s.to.len() <= 100);
    s
}

// ---------------------------------------------------------------------------
// IMAP.

/// Our literal-aware IMAP response reader (`imap::resp`) over the
/// project's buffered connection (`imap::wire::Buffered`). Byte 0 chooses
/// the read size, byte 1 the buffer size, byte 2 the literal limit; the
/// rest is the server. The same bytes read with one-byte reads must give
/// the same responses, and literals never pass the limit or the budget.
pub fn imap_resp(data: &[u8]) {
    let step = 1 + usize::from(byte(data, 0)) * 32;
    let cap = 16 + usize::from(byte(data, 1)) * 64;
    let max_literal = match byte(data, 2) % 4 {
        0 => u64::from(byte(data, 2)),
        1 => 64 * 1024,
        2 => 0,
        _ => 50 << 20,
    };
    let wire = data.get(3..).unwrap_or_default();
    let budget = wire.len() as u64 / 2 + 64;
    let a = imap_responses(wire, step, cap, max_literal, budget);
    let b = imap_responses(wire, 1, 16, max_literal, budget);
    assert!(
        a == b,
        "responses depend on how the bytes arrive: {a:?} vs {b:?}"
    );
    let mut body_bytes = 0u64;
    for r in &a.0 {
        if let Response::Fetch(f) = r {
            for (_, d) in &f.sections {
                body_bytes += d.len() as u64;
            }
        }
    }
    assert!(body_bytes <= budget, "more body bytes than the read budget");
    imap_streamed(wire, step, cap, max_literal, budget);
}

/// The same bytes read with the `BODY[]` literal of each response streamed
/// to a writer: the responses are those read in memory with that data
/// moved to the writer, which gets exactly the body.
fn imap_streamed(wire: &[u8], step: usize, cap: usize, max_literal: u64, budget: u64) {
    let mut plain = Buffered::with_capacity(Trickle { data: wire, step }, cap);
    let mut streaming = Buffered::with_capacity(Trickle { data: wire, step }, cap);
    let (mut left_a, mut left_b) = (budget, budget);
    for _ in 0..10_000 {
        let a = resp::read_response(&mut plain, Limits { max_literal }, &mut left_a);
        let mut sink: Vec<u8> = Vec::new();
        let b = resp::read_response_into(
            &mut streaming,
            Limits { max_literal },
            &mut left_b,
            Some(&mut sink),
        );
        match (a, b) {
            (Ok(None), Ok((None, None))) => return,
            (Ok(Some(a)), Ok((Some(b), streamed))) => {
                assert!(left_a == left_b, "streaming changes the budget");
                match streamed {
                    None => {
                        assert!(sink.is_empty());
                        assert!(a == b, "streaming changes a response: {a:?} vs {b:?}");
                    }
                    Some(n) => {
                        assert!(n == sink.len() as u64, "streamed {n}, wrote {}", sink.len());
                        assert!(n <= max_literal);
                        // The streaming decision looks at the text only
                        // (`* … FETCH … BODY[] {n}`): a response the parser
                        // then does not take for a FETCH may have had its
                        // literal streamed; the caller ignores it (noted in
                        // fuzz/README.md).
                        let (Response::Fetch(mut fa), Response::Fetch(mut fb)) = (a, b) else {
                            continue;
                        };
                        // With several BODY[] items (or one given as a
                        // string first) the streamed literal may be another
                        // one than the first BODY[] the in-memory reader
                        // keeps: the server decides the content either way.
                        let _ = fa.take_section("");
                        let _ = fb.take_section("");
                        assert!(fa.seq == fb.seq && fa.uid == fb.uid && fa.size == fb.size);
                    }
                }
            }
            (Err(_), Err(_)) => return,
            (a, b) => panic!("streaming changes the outcome: {a:?} vs {b:?}"),
        }
    }
}

type Outcome = (Vec<Response>, Option<String>);

fn imap_responses(wire: &[u8], step: usize, cap: usize, max_literal: u64, budget: u64) -> Outcome {
    let mut conn = Buffered::with_capacity(Trickle { data: wire, step }, cap);
    let mut left = budget;
    let mut out = Vec::new();
    for _ in 0..10_000 {
        match resp::read_response(&mut conn, Limits { max_literal }, &mut left) {
            Ok(Some(r)) => {
                if let Response::Fetch(f) = &r {
                    assert!(f.sections.len() <= 64);
                }
                out.push(r);
            }
            Ok(None) => return (out, None),
            Err(e) => {
                if let RespError::LiteralTooLarge(n) = &e {
                    assert!(*n > max_literal || *n > left);
                }
                return (out, Some(format!("{e:?}")));
            }
        }
        assert!(left <= budget);
    }
    (out, Some("too many responses".into()))
}

/// A whole IMAP session against a scripted loopback server (see the module
/// docs): greeting, CAPABILITY, AUTHENTICATE XOAUTH2, SELECT, UID SEARCH,
/// summaries, read-ahead bodies, the index, flags, ack actions, LOGOUT.
/// Byte 0 chooses the message limit; the rest is the script.
pub fn imap_session(data: &[u8]) {
    let opts = imap::Options {
        max_message_bytes: [64, 4096, 1 << 20, 50 << 20][usize::from(byte(data, 0) % 4)],
        window_bytes: 16 << 20,
        window_messages: [1, 3, 500, 500][usize::from((byte(data, 0) >> 2) % 4)],
    };
    let max = opts.max_message_bytes;
    let c = Checks::new(data);
    let Ok(server) = TcpScript::start(data.get(1..).unwrap_or_default(), false) else {
        return;
    };
    let mut ep = imap_endpoint().clone();
    ep.port = server.port;
    let token = c.secret();
    let s = imap::Session::login(
        &ep,
        &Interrupt::new(),
        opts,
        "user@contoso.test",
        &token,
        "INBOX",
    );
    c.result(&s);
    let Ok(mut s) = s else { return };
    let uids = s.uids_after(0);
    c.result(&uids);
    let uids: Vec<u32> = uids.unwrap_or_default().into_iter().take(20).collect();
    if !s.is_broken() {
        let r = s.summaries(&uids);
        c.result(&r);
        for sum in r.unwrap_or_default() {
            assert!(sum.to.len() <= 100);
        }
    }
    if !s.is_broken() {
        let sizes = s.sizes(&uids);
        c.result(&sizes);
        let sizes = sizes.unwrap_or_default();
        s.set_read_ahead(&sizes);
        if let Some(&(uid, _)) = sizes.first() {
            // Streamed to a "file" (nothing read ahead yet).
            let mut file = Vec::new();
            let r = s.fetch_to(uid, &mut file);
            c.result(&r);
            if let Ok(n) = r {
                assert!(
                    n == file.len() as u64 && n <= max,
                    "fetch_to wrote {n} bytes"
                );
            }
        }
        if let Some(&(uid, _)) = sizes.first() {
            let r = s.fetch(uid);
            c.result(&r);
            if let Ok(b) = r {
                assert!(b.len() as u64 <= max);
            }
        }
        if !s.is_broken() {
            let r = s.fetch_many(&sizes, |_, b| {
                c.result(&b);
                if let Ok(b) = b {
                    assert!(b.len() as u64 <= max);
                }
                Ok(())
            });
            c.result(&r);
        }
    }
    if !s.is_broken() {
        c.result(&s.index());
    }
    if let Some(&uid) = uids.first() {
        if !s.is_broken() {
            c.result(&s.flags(uid));
        }
        if !s.is_broken() {
            c.result(&s.mark_seen(&uids));
        }
        if !s.is_broken() {
            c.result(&s.move_to(&uids, "Archive/2026 \"Q1\""));
        }
        if !s.is_broken() {
            c.result(&s.delete(&uids));
        }
    }
    if !s.is_broken() {
        c.result(&s.noop());
    }
    c.result(&s.logout());
    drop(server);
}

// ---------------------------------------------------------------------------
// SMTP.

/// Our SMTP connection (lettre's reply reader underneath) against a
/// scripted loopback server: greeting, EHLO, AUTH XOAUTH2 (with the error
/// challenge answered), MAIL, RCPT, DATA, QUIT; every refusal mapped to an
/// error with Exchange's hints. Byte 0 chooses the message; the rest is
/// the script.
pub fn smtp_session(data: &[u8]) {
    let Ok(server) = TcpScript::start(data.get(1..).unwrap_or_default(), true) else {
        return;
    };
    let port = server.port;
    let c = Checks::new(data);
    let cfg = config();
    let eight_bit = byte(data, 0) & 1 == 1;
    let session = async move {
        let ep = crate::smtp::connection::Endpoint::new(
            cfg,
            Server {
                host: "127.0.0.1".into(),
                port,
                security: Security::None,
            },
        );
        c.result(&ep);
        let Ok(mut ep) = ep else { return };
        ep.io_timeout = Duration::from_secs(5);
        ep.connect_timeout = Duration::from_secs(5);
        let conn = crate::smtp::connection::Connection::open(&ep).await;
        c.result(&conn);
        let Ok(mut conn) = conn else { return };
        let token = c.secret();
        let r = conn.authenticate("user@contoso.test", &token).await;
        c.result(&r);
        if r.is_ok() {
            let subject = if eight_bit { "Grüße" } else { "Hello" };
            let json = format!(
                r#"{{"account":"user@contoso.test","message":{{"to":["bob@contoso.test","carol@contoso.test"],
                    "subject":"{subject}","text":"Hallo {subject}\n.\n..\nbye"}}}}"#
            );
            match crate::smtp::prepare_send(&json, cfg) {
                Ok((_, msg)) => {
                    let r = conn.send(&msg, "user@contoso.test").await;
                    c.result(&r);
                    if let Ok(sent) = r {
                        assert!(!sent.reply.chars().any(char::is_control));
                    }
                }
                Err(e) => panic!("the fuzzing message does not compose: {e:?}"),
            }
        }
        conn.close().await;
    };
    thread_local! {
        static RT: Option<tokio::runtime::Runtime> = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok();
    }
    RT.with(|rt| {
        if let Some(rt) = rt {
            rt.block_on(session);
        }
    });
    drop(server);
}

/// lettre's SMTP reply parser and our mapping of refusals, on one reply:
/// every phase, the reply text bounded and clean in the error.
pub fn smtp_reply(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    use crate::smtp::connection::{Phase, map_reply};
    let parsed: Result<lettre::transport::smtp::response::Response, _> = text.parse();
    let (code, reply) = match &parsed {
        Ok(r) => {
            let code: u16 = r.code().into();
            let lines: Vec<&str> = r.message().collect();
            (code, format!("{code} {}", lines.join(" ")))
        }
        Err(_) => (
            text.get(..3).and_then(|c| c.parse().ok()).unwrap_or(554u16),
            text.to_string(),
        ),
    };
    for phase in [
        Phase::Connect,
        Phase::Auth,
        Phase::MailFrom,
        Phase::RcptTo,
        Phase::Data,
    ] {
        let e = map_reply(
            code,
            &reply,
            phase,
            "user@contoso.test",
            "user@contoso.test",
        );
        Checks::replies().error(&e);
    }
}

// ---------------------------------------------------------------------------
// Identity provider.

/// Marks text that must never reach a message: the error description,
/// trace ids and unsafe `error` values of the provider's answer.
const CANARY: &str = "CanaryQ7Zx";

/// The identity provider's error answer (`MsError`, as the token and
/// device endpoints' bodies are read), its mapping for every operation
/// and the redirect's `error`, and the id_token claims reader: the
/// description, trace ids and odd `error` values never reach a message.
pub fn idp_error(data: &[u8]) {
    use crate::auth::errors::{MsError, Op, from_provider, from_redirect};
    let ms: MsError = serde_json::from_slice(data).unwrap_or_else(|_| MsError {
        error: "http_error".into(),
        http_status: Some(400),
        ..MsError::default()
    });
    let mut marked = ms.clone();
    marked.error_description = Some(format!(
        "{} {CANARY}",
        ms.error_description.as_deref().unwrap_or_default()
    ));
    marked.trace_id = Some(CANARY.into());
    marked.suberror = Some(CANARY.into());
    let mut odd = marked.clone();
    odd.error = format!("{}{CANARY}", ms.error);
    for op in [
        Op::Authorize,
        Op::Code,
        Op::Refresh,
        Op::DeviceStart,
        Op::DevicePoll,
        Op::ClientCredentials,
    ] {
        for m in [&ms, &marked, &odd] {
            let e = from_provider(op, m);
            Checks::replies().error(&e);
            no_canary(&e);
            if let Some(c) = &e.correlation_id {
                assert!(c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            }
        }
        let _ = format!("{ms}");
    }
    let e = from_redirect(&odd.error, marked.error_description.as_deref());
    no_canary(&e);
    let text = String::from_utf8_lossy(data);
    let _ = crate::auth::errors::aadsts_in(&text);
    if let Some(c) = crate::auth::id_token::parse_claims(&text) {
        for f in [&c.preferred_username, &c.oid, &c.tid, &c.name]
            .into_iter()
            .flatten()
        {
            assert!(!f.is_empty() && f.len() <= 1024 && !f.contains(['\r', '\n', '\0']));
        }
    }
}

/// The message, hint and provider fields (the correlation id is shown on
/// purpose) hold nothing marked.
fn no_canary(e: &Error) {
    let mut texts = vec![&e.message.en, &e.message.de];
    if let Some(h) = &e.hint {
        texts.push(&h.en);
        texts.push(&h.de);
    }
    texts.extend(e.provider_error.iter());
    texts.extend(e.provider_code.iter());
    for t in texts {
        assert!(!t.contains(CANARY), "provider text in an error: {t:?}");
    }
}

// ---------------------------------------------------------------------------
// Configuration and request documents.

/// The strict JSON reader (duplicate keys refused, otherwise what
/// serde_json reads), the configuration parser, and the request parsers of
/// the C ABI (SMTP send / MIME / forward, mailbox open) on one document:
/// no panic, errors on one line, the client secret never shown.
pub fn config_json(data: &[u8]) {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let strict = crate::config::strict_json::parse(json);
    let plain = serde_json::from_str::<serde_json::Value>(json);
    match (&strict, &plain) {
        (Ok(a), Ok(b)) => assert!(a == b, "strict and plain JSON disagree"),
        (Ok(_), Err(e)) => panic!("strict JSON accepted what serde_json refuses: {e}"),
        (Err(e), Ok(_)) => assert!(
            e.to_string().contains("duplicate key"),
            "strict JSON refused valid JSON: {e}"
        ),
        (Err(_), Err(_)) => {}
    }
    let secret = plain
        .as_ref()
        .ok()
        .and_then(|v| v.get("client_secret"))
        .and_then(|s| s.as_str())
        .filter(|s| s.len() >= 12 && json.matches(*s).count() == 1)
        .map(str::to_string);
    match crate::config::parse_with_limit(json, 1 << 20) {
        Ok(p) => {
            let d = p.config.describe().to_string();
            if let Some(s) = &secret {
                assert!(
                    !d.contains(s.as_str()),
                    "describe() shows the client secret"
                );
            }
        }
        Err(e) => {
            one_line(&e);
            if let Some(s) = &secret {
                for t in error_texts(&e) {
                    assert!(!t.contains(s.as_str()), "an error shows the client secret");
                }
            }
        }
    }
    let _ = crate::config::language_hint(json);
    let cfg = config();
    let original = b"From: a@contoso.test\r\nTo: b@contoso.test\r\nSubject: x\r\n\r\nbody\r\n";
    for r in [
        crate::smtp::prepare_send(json, cfg).map(|_| ()),
        crate::smtp::prepare_mime(json, original, cfg).map(|_| ()),
        crate::smtp::prepare_forward(json, original, cfg).map(|_| ()),
        crate::mailbox::handle::OpenRequest::parse(json, cfg).map(|_| ()),
    ] {
        if let Err(e) = r {
            one_line(&e);
        }
    }
}

/// An error message stays on one line (it goes into single-line logs).
fn one_line(e: &Error) {
    for t in [&e.message.en, &e.message.de] {
        assert!(
            !t.contains(['\r', '\n', '\0']),
            "a line break in an error message: {t:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Mail from the server.

/// A message as a hostile server may deliver it: the poll summary
/// (mail-parser) and the three ways of forwarding it over SMTP.
pub fn mail_message(data: &[u8]) {
    summary_of(data);
    let cfg = config();
    for mode in ["attachment", "inline", "redirect"] {
        let json = format!(
            r#"{{"account":"user@contoso.test","to":["bob@contoso.test"],"mode":"{mode}","comment":"FYI"}}"#
        );
        match crate::smtp::prepare_forward(&json, data, cfg) {
            Ok((_, msg)) => {
                assert!(msg.bytes.len() as u64 <= cfg.max_message_bytes);
            }
            Err(e) => one_line(&e),
        }
    }
}

/// Runs the entry point named `target` (the fuzz targets' and corpus
/// directories' names) on `data`; false for an unknown name.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "pop3_wire" => pop3_wire(data),
        "pop3_session" => pop3_session(data),
        "imap_resp" => imap_resp(data),
        "imap_session" => imap_session(data),
        "smtp_session" => smtp_session(data),
        "smtp_reply" => smtp_reply(data),
        "idp_error" => idp_error(data),
        "config_json" => config_json(data),
        "mail_message" => mail_message(data),
        _ => return false,
    }
    true
}

/// The names [`run`] knows.
pub const TARGETS: [&str; 9] = [
    "pop3_wire",
    "pop3_session",
    "imap_resp",
    "imap_session",
    "smtp_session",
    "smtp_reply",
    "idp_error",
    "config_json",
    "mail_message",
];
