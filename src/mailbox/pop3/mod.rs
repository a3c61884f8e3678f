//! Our own POP3 client (RFC 1939, 2449, 2595, 5034): greeting, CAPA,
//! STLS or implicit TLS, AUTH XOAUTH2 / OAUTHBEARER in the two-step form,
//! UIDL, LIST, TOP n 0, RETR (pipelined when the server advertises
//! PIPELINING), DELE, QUIT.
//!
//! A session is synchronous and runs on the caller's thread; every read and
//! write has the socket's timeout, and [`Interrupt::fire`] ends a blocked
//! call from another thread. After a failure that leaves the connection out
//! of step the session is *broken*: every later call fails, and the owner
//! reconnects. Deletions take effect only at [`Session::quit`].
//!
//! Protocol lines and tokens are never logged.

pub mod wire;

use std::collections::VecDeque;
use std::io::{Read, Write};

use crate::config::Security;
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::log;
use crate::mailbox::net::{self, Endpoint, Interrupt, Stream};
use crate::mailbox::sasl::{self, Mechanism};
use crate::secret::Secret;
use wire::{BodyEnd, MAX_LINE, Reader, Reply, WireError};

/// The most messages a listing may hold (bounds memory on a hostile server).
pub const MAX_LISTING: usize = 2_000_000;
/// The most header bytes kept from `TOP n 0` (the rest is skipped).
pub const MAX_HEADER_BYTES: u64 = 1024 * 1024;
/// Outstanding commands when pipelining (10–100 gets the whole gain).
pub const DEFAULT_WINDOW: usize = 50;

/// Session settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// `limits.max_message_bytes`.
    pub max_message_bytes: u64,
    /// Commands in flight when the server pipelines; 1 turns pipelining off.
    pub pipeline_window: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_message_bytes: 50 * 1024 * 1024,
            pipeline_window: DEFAULT_WINDOW,
        }
    }
}

/// What `CAPA` listed (upper-cased keywords with their arguments).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub lines: Vec<String>,
}

impl Capabilities {
    pub fn has(&self, name: &str) -> bool {
        self.lines
            .iter()
            .any(|l| l.split_ascii_whitespace().next() == Some(name))
    }

    /// The `SASL` mechanisms, upper case; None when no SASL line is there.
    pub fn sasl(&self) -> Option<Vec<String>> {
        self.lines.iter().find_map(|l| {
            let mut words = l.split_ascii_whitespace();
            (words.next() == Some("SASL")).then(|| words.map(str::to_string).collect())
        })
    }
}

/// One message of the maildrop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The message number in this session.
    pub msg: u32,
    /// The UIDL id (stable across sessions).
    pub uid: String,
    /// The size `LIST` reports.
    pub size: u64,
}

/// A POP3 session.
pub struct Session<S: Read + Write = Stream> {
    r: Reader<S>,
    host: String,
    caps: Capabilities,
    opts: Options,
    interrupt: Interrupt,
    broken: bool,
    authenticated: bool,
}

impl Session<Stream> {
    /// Connects, reads the greeting and CAPA, and secures the connection
    /// (implicit TLS, or STLS followed by a second CAPA). Never
    /// authenticates over plaintext unless `security` is `none`, which the
    /// configuration allows on loopback only.
    pub fn connect(ep: &Endpoint, interrupt: &Interrupt, opts: Options) -> Result<Self> {
        let stream = net::connect(ep, interrupt)?;
        let mut s = Session::start(stream, &ep.host, interrupt.clone(), opts)?;
        if ep.security == Security::StartTls {
            s = s.stls(ep)?;
        }
        Ok(s)
    }

    fn stls(mut self, ep: &Endpoint) -> Result<Self> {
        if !self.caps.has("STLS") {
            return Err(Error::new(
                ErrorKind::Tls,
                Text::new(
                    format!(
                        "{} does not offer STLS; refusing to continue without TLS",
                        ep.host
                    ),
                    format!(
                        "{} bietet kein STLS an; ohne TLS geht es nicht weiter",
                        ep.host
                    ),
                ),
            ));
        }
        self.command("STLS", "STLS")?;
        let Session {
            r,
            host,
            opts,
            interrupt,
            ..
        } = self;
        let Ok(plain) = r.into_inner() else {
            return Err(protocol(
                &host,
                "STLS",
                "the server sent data before the TLS handshake",
                "der Server hat vor dem TLS-Handshake Daten gesendet",
            ));
        };
        let tls = plain.start_tls(ep)?;
        let mut s = Session {
            r: Reader::new(tls),
            host,
            caps: Capabilities::default(),
            opts,
            interrupt,
            broken: false,
            authenticated: false,
        };
        s.caps = s.capa()?;
        Ok(s)
    }

    /// True when the connection is TLS-protected.
    pub fn is_tls(&self) -> bool {
        self.r.get_ref().is_tls()
    }
}

impl<S: Read + Write> Session<S> {
    /// Reads the greeting and asks for the capabilities (over any stream:
    /// the unit tests script the server).
    pub fn start(stream: S, host: &str, interrupt: Interrupt, opts: Options) -> Result<Self> {
        let mut s = Session {
            r: Reader::new(stream),
            host: host.to_string(),
            caps: Capabilities::default(),
            opts,
            interrupt,
            broken: false,
            authenticated: false,
        };
        match s.reply("greeting")? {
            Reply::Ok(_) => {}
            other => {
                s.broken = true;
                return Err(protocol(
                    host,
                    "greeting",
                    "the server did not greet with +OK",
                    "der Server hat nicht mit +OK begrüßt",
                )
                .with_server_reply(other.text())
                .transient());
            }
        }
        s.caps = s.capa()?;
        Ok(s)
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// `CAPA`; an empty set when the server does not know the command.
    fn capa(&mut self) -> Result<Capabilities> {
        self.send("CAPA")?;
        match self.reply("CAPA")? {
            Reply::Ok(_) => {}
            _ => return Ok(Capabilities::default()),
        }
        let mut caps = Capabilities::default();
        self.listing("CAPA", |line| {
            if caps.lines.len() >= 256 {
                return Err("more than 256 capability lines");
            }
            let text = String::from_utf8_lossy(line);
            let mut words = text.split_ascii_whitespace();
            let Some(first) = words.next() else {
                return Ok(());
            };
            let mut l = first.to_ascii_uppercase();
            for w in words {
                l.push(' ');
                l.push_str(&w.to_ascii_uppercase());
            }
            caps.lines.push(l);
            Ok(())
        })?;
        Ok(caps)
    }

    /// Authenticates as `user` (the mailbox address) with the token:
    /// XOAUTH2, or OAUTHBEARER where only that is offered, always in the
    /// two-step form (`AUTH <mech>`, `+`, the base64 line).
    pub fn authenticate(&mut self, user: &str, token: &Secret, port: u16) -> Result<()> {
        self.usable()?;
        let mech = match self.caps.sasl() {
            None => Mechanism::XOAuth2,
            Some(list) => Mechanism::choose(list.iter().map(String::as_str)).ok_or_else(|| {
                Error::new(
                    ErrorKind::Protocol,
                    Text::new(
                        format!(
                            "{} offers no OAuth login over POP3 (SASL: {})",
                            self.host,
                            list.join(" ")
                        ),
                        format!(
                            "{} bietet keine OAuth-Anmeldung über POP3 an (SASL: {})",
                            self.host,
                            list.join(" ")
                        ),
                    ),
                )
            })?,
        };
        log::debug!(
            "POP3 {}: AUTH {} as {user} (token {} chars)",
            self.host,
            mech.name(),
            token.expose().len()
        );
        self.send(&format!("AUTH {}", mech.name()))?;
        match self.reply("AUTH")? {
            Reply::Cont(_) => {}
            Reply::Err(t) => return Err(self.auth_error(&t)),
            Reply::Ok(t) => {
                self.broken = true;
                return Err(protocol(
                    &self.host,
                    "AUTH",
                    "the server accepted AUTH before the token was sent",
                    "der Server hat AUTH vor dem Token angenommen",
                )
                .with_server_reply(&t));
            }
        }
        let line = mech.payload_b64(user, token, &self.host, port);
        let token_len = token.expose().len();
        let sent = self.write_line_secret(line.as_bytes());
        let answer = sent.and_then(|_| self.reply("AUTH"));
        let answer = match answer {
            Ok(a) => a,
            Err(e) if e.kind == ErrorKind::Network => {
                self.broken = true;
                return Err(dropped_during_auth(&self.host, token_len));
            }
            Err(e) => return Err(e),
        };
        let answer = match answer {
            Reply::Cont(_) => {
                // An error challenge: answer it to get the final -ERR.
                self.send(mech.error_reply_b64())?;
                match self.reply("AUTH") {
                    Ok(a) => a,
                    Err(e) if e.kind == ErrorKind::Network => {
                        self.broken = true;
                        return Err(Error::new(
                            ErrorKind::AuthRejected,
                            Text::new(
                                format!("{} refused the token over POP3", self.host),
                                format!("{} hat das Token über POP3 abgelehnt", self.host),
                            ),
                        )
                        .with_hint(sasl::auth_rejected_hint("POP3")));
                    }
                    Err(e) => return Err(e),
                }
            }
            a => a,
        };
        match answer {
            Reply::Ok(_) => {
                self.authenticated = true;
                Ok(())
            }
            Reply::Err(t) => Err(self.auth_error(&t)),
            Reply::Cont(t) => {
                self.broken = true;
                Err(protocol(
                    &self.host,
                    "AUTH",
                    "the server sent a second challenge",
                    "der Server hat eine zweite Aufforderung gesendet",
                )
                .with_server_reply(&t))
            }
        }
    }

    fn auth_error(&self, text: &str) -> Error {
        let code = wire::response_code(text);
        let e = match code.as_deref() {
            Some("SYS/TEMP") => Error::new(
                ErrorKind::Network,
                Text::new(
                    format!(
                        "{} reports a temporary failure while checking the login; try again later",
                        self.host
                    ),
                    format!(
                        "{} meldet einen vorübergehenden Fehler bei der Anmeldeprüfung; später erneut versuchen",
                        self.host
                    ),
                ),
            )
            .transient(),
            Some("IN-USE") => Error::new(
                ErrorKind::Busy,
                Text::new(
                    format!("the mailbox on {} is in use by another POP3 session", self.host),
                    format!(
                        "das Postfach auf {} wird von einer anderen POP3-Sitzung benutzt",
                        self.host
                    ),
                ),
            )
            .transient(),
            Some("LOGIN-DELAY") => Error::new(
                ErrorKind::Throttled,
                Text::new(
                    format!("{} asks to wait before the next POP3 login", self.host),
                    format!("{} verlangt eine Pause vor der nächsten POP3-Anmeldung", self.host),
                ),
            )
            .transient(),
            Some("SYS/PERM") => Error::new(
                ErrorKind::Protocol,
                Text::new(
                    format!("{} reports a permanent failure at login", self.host),
                    format!("{} meldet einen dauerhaften Fehler bei der Anmeldung", self.host),
                ),
            ),
            _ => Error::new(
                ErrorKind::AuthRejected,
                Text::new(
                    format!("{} refused the token over POP3", self.host),
                    format!("{} hat das Token über POP3 abgelehnt", self.host),
                ),
            )
            .with_hint(sasl::auth_rejected_hint("POP3")),
        };
        e.with_server_reply(text)
    }

    /// `UIDL` and `LIST`, joined by message number (messages without a
    /// size or id are left out), in message order.
    pub fn entries(&mut self) -> Result<Vec<Entry>> {
        let uids = self.uidl()?;
        let sizes = self.list()?;
        let mut sizes = sizes.into_iter().peekable();
        let mut out = Vec::with_capacity(uids.len());
        for (msg, uid) in uids {
            while sizes.peek().is_some_and(|(m, _)| *m < msg) {
                sizes.next();
            }
            if let Some((m, size)) = sizes.peek()
                && *m == msg
            {
                out.push(Entry {
                    msg,
                    uid,
                    size: *size,
                });
            }
        }
        Ok(out)
    }

    /// `UIDL`: message numbers and unique ids, sorted by number.
    pub fn uidl(&mut self) -> Result<Vec<(u32, String)>> {
        self.multi_command("UIDL")?;
        let mut out = Vec::new();
        self.listing("UIDL", |line| {
            if out.len() >= MAX_LISTING {
                return Err("too many messages");
            }
            out.push(wire::parse_uidl_line(line).ok_or("a malformed UIDL line")?);
            Ok(())
        })?;
        out.sort_by_key(|(n, _)| *n);
        out.dedup_by_key(|(n, _)| *n);
        Ok(out)
    }

    /// `LIST`: message numbers and sizes, sorted by number.
    pub fn list(&mut self) -> Result<Vec<(u32, u64)>> {
        self.multi_command("LIST")?;
        let mut out = Vec::new();
        self.listing("LIST", |line| {
            if out.len() >= MAX_LISTING {
                return Err("too many messages");
            }
            out.push(wire::parse_list_line(line).ok_or("a malformed LIST line")?);
            Ok(())
        })?;
        out.sort_by_key(|(n, _)| *n);
        out.dedup_by_key(|(n, _)| *n);
        Ok(out)
    }

    /// The header blocks of messages (`TOP n 0`, pipelined), each handed to
    /// `each` in order; headers beyond 1 MiB are cut.
    pub fn headers(
        &mut self,
        msgs: &[u32],
        each: impl FnMut(u32, Result<Vec<u8>>) -> Result<()>,
    ) -> Result<()> {
        let jobs: Vec<Job> = msgs
            .iter()
            .map(|m| Job {
                msg: *m,
                size_hint: 8 * 1024,
                limit: MAX_HEADER_BYTES.min(self.opts.max_message_bytes),
                drain: self.opts.max_message_bytes.max(MAX_HEADER_BYTES),
                truncate_ok: true,
            })
            .collect();
        self.pipeline("TOP", " 0", &jobs, each)
    }

    /// One message (`RETR`), un-stuffed. `size` is what LIST reported (a
    /// message listed larger than `max_message_bytes` is refused before it
    /// is fetched).
    pub fn retr(&mut self, msg: u32, size: u64) -> Result<Vec<u8>> {
        let mut got = None;
        self.retr_many(&[(msg, size)], |_, r| {
            got = Some(r);
            Ok(())
        })?;
        got.unwrap_or_else(|| Err(Error::internal("RETR gave no result")))
    }

    /// Several messages (`RETR`, pipelined when the server advertises
    /// PIPELINING), each handed to `each` in order: `Ok(bytes)`, or the
    /// message's own error (`TooLarge`, `NotFound`). An error returned by
    /// `each` or a connection failure ends the call.
    pub fn retr_many(
        &mut self,
        msgs: &[(u32, u64)],
        mut each: impl FnMut(u32, Result<Vec<u8>>) -> Result<()>,
    ) -> Result<()> {
        let max = self.opts.max_message_bytes;
        let mut jobs = Vec::with_capacity(msgs.len());
        for &(msg, size) in msgs {
            if size > max {
                each(msg, Err(too_large(msg, size, max)))?;
            } else {
                jobs.push(Job {
                    msg,
                    size_hint: size,
                    limit: max,
                    drain: max,
                    truncate_ok: false,
                });
            }
        }
        self.pipeline("RETR", "", &jobs, each)
    }

    /// One message (`RETR`), un-stuffed and written to `out` as it
    /// arrives (buffered in 256 KiB pieces; never whole in memory). `size`
    /// is what LIST reported: a message listed larger than
    /// `max_message_bytes` is refused before it is fetched, one that turns
    /// out larger while it is read is `TOO_LARGE`. Returns the bytes
    /// written. A failed write leaves the session broken.
    pub fn retr_to(&mut self, msg: u32, size: u64, out: &mut dyn Write) -> Result<u64> {
        let max = self.opts.max_message_bytes;
        if size > max {
            return Err(too_large(msg, size, max));
        }
        self.usable()?;
        self.send(&format!("RETR {msg}"))?;
        match self.reply("RETR")? {
            Reply::Ok(_) => {}
            Reply::Err(t) => return Err(not_found(msg, &t)),
            Reply::Cont(t) => return Err(self.unexpected("RETR", &t)),
        }
        let mut counted = Counted { inner: out, n: 0 };
        let end = {
            let mut buffered = std::io::BufWriter::with_capacity(256 * 1024, &mut counted);
            let end = self.r.read_body_to(&mut buffered, max, max);
            match end {
                Ok(e) => buffered.flush().map(|_| e).map_err(WireError::Io),
                Err(e) => Err(e),
            }
        };
        match end {
            Ok(BodyEnd::Complete) => Ok(counted.n),
            Ok(BodyEnd::Truncated) => Err(too_large(msg, max + 1, max)),
            Err(e) => {
                self.broken = true;
                Err(self.io_failure(e, "RETR"))
            }
        }
    }

    /// Marks a message deleted (applied at QUIT).
    pub fn dele(&mut self, msg: u32) -> Result<()> {
        self.usable()?;
        self.send(&format!("DELE {msg}"))?;
        match self.reply("DELE")? {
            Reply::Ok(_) => Ok(()),
            Reply::Err(t) => Err(not_found(msg, &t)),
            Reply::Cont(t) => Err(self.unexpected("DELE", &t)),
        }
    }

    /// `NOOP` (keeps the session alive; checks it is still there).
    pub fn noop(&mut self) -> Result<()> {
        self.command("NOOP", "NOOP").map(|_| ())
    }

    /// `RSET`: unmarks deletions of this session.
    pub fn rset(&mut self) -> Result<()> {
        self.command("RSET", "RSET").map(|_| ())
    }

    /// `QUIT`: commits deletions and ends the session. Only an `+OK`
    /// means the deletions happened.
    pub fn quit(mut self) -> Result<()> {
        self.usable()?;
        self.command("QUIT", "QUIT")?;
        Ok(())
    }

    // ---- plumbing ----

    fn usable(&self) -> Result<()> {
        self.interrupt.check()?;
        if self.broken {
            return Err(Error::new(
                ErrorKind::Network,
                Text::new(
                    format!("the POP3 connection to {} was lost earlier", self.host),
                    format!(
                        "die POP3-Verbindung zu {} ist bereits abgebrochen",
                        self.host
                    ),
                ),
            )
            .transient());
        }
        Ok(())
    }

    /// Sends a command and expects `+OK`.
    pub fn command(&mut self, cmd: &str, what: &str) -> Result<String> {
        self.usable()?;
        self.send(cmd)?;
        match self.reply(what)? {
            Reply::Ok(t) => Ok(t),
            Reply::Err(t) => Err(Error::new(
                ErrorKind::Protocol,
                Text::new(
                    format!("{} refused {what}", self.host),
                    format!("{} hat {what} abgelehnt", self.host),
                ),
            )
            .with_server_reply(&t)),
            Reply::Cont(t) => Err(self.unexpected(what, &t)),
        }
    }

    /// Sends a command whose `+OK` starts a listing.
    fn multi_command(&mut self, cmd: &str) -> Result<()> {
        self.command(cmd, cmd).map(|_| ())
    }

    fn unexpected(&mut self, what: &str, text: &str) -> Error {
        self.broken = true;
        protocol(
            &self.host,
            what,
            "the server sent a continuation instead of a reply",
            "der Server hat eine Fortsetzung statt einer Antwort gesendet",
        )
        .with_server_reply(text)
    }

    /// Reads a listing up to its `.` line, handing each (un-stuffed) line
    /// to `each`; an `Err` from `each` is a protocol error.
    fn listing(
        &mut self,
        what: &str,
        mut each: impl FnMut(&[u8]) -> std::result::Result<(), &'static str>,
    ) -> Result<()> {
        loop {
            let line = self.line(what)?;
            if line == b"." {
                return Ok(());
            }
            let line = line.strip_prefix(b".").unwrap_or(&line);
            if let Err(why) = each(line) {
                self.broken = true;
                return Err(protocol(
                    &self.host,
                    what,
                    why,
                    &format!("Antwort nicht lesbar ({why})"),
                ));
            }
        }
    }

    fn send(&mut self, line: &str) -> Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 2);
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(b"\r\n");
        self.write_all(&buf, line.split(' ').next().unwrap_or(""))
    }

    /// Writes a line that holds a secret (copied into a buffer that is
    /// zeroed afterwards).
    fn write_line_secret(&mut self, line: &[u8]) -> Result<()> {
        let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(line.len() + 2));
        buf.extend_from_slice(line);
        buf.extend_from_slice(b"\r\n");
        self.write_all(&buf, "AUTH")
    }

    fn write_all(&mut self, bytes: &[u8], what: &str) -> Result<()> {
        let w = self.r.get_mut();
        let r = w.write_all(bytes).and_then(|_| w.flush());
        r.map_err(|e| {
            self.broken = true;
            self.io_failure(WireError::Io(e), what)
        })
    }

    fn line(&mut self, what: &str) -> Result<Vec<u8>> {
        self.r.read_line(MAX_LINE).map_err(|e| {
            self.broken = true;
            self.io_failure(e, what)
        })
    }

    fn reply(&mut self, what: &str) -> Result<Reply> {
        let line = self.line(what)?;
        wire::parse_reply(&line).ok_or_else(|| {
            self.broken = true;
            protocol(
                &self.host,
                what,
                "the server's reply is neither +OK nor -ERR",
                "die Antwort des Servers ist weder +OK noch -ERR",
            )
            .with_server_reply(&String::from_utf8_lossy(&line))
        })
    }

    fn io_failure(&self, e: WireError, what: &str) -> Error {
        if self.interrupt.is_fired() {
            return Error::cancelled();
        }
        match e {
            WireError::Io(e) => net::io_error(e, &self.host, what),
            WireError::Eof => net::connection_closed(&self.host, what),
            WireError::LineTooLong(n) => protocol(
                &self.host,
                what,
                &format!("the server sent a line longer than {n} bytes"),
                &format!("der Server hat eine Zeile über {n} Bytes gesendet"),
            ),
            WireError::TooLarge => Error::new(
                ErrorKind::TooLarge,
                Text::new(
                    format!(
                        "{} sent more than twice the size limit for one message ({what})",
                        self.host
                    ),
                    format!(
                        "{} hat für eine Nachricht mehr als das Doppelte der Größengrenze gesendet ({what})",
                        self.host
                    ),
                ),
            ),
        }
    }

    /// Runs `verb <msg><suffix>` for every job, keeping up to the window
    /// of commands in flight (one at a time without PIPELINING), and reads
    /// each multi-line answer in order.
    fn pipeline(
        &mut self,
        verb: &str,
        suffix: &str,
        jobs: &[Job],
        mut each: impl FnMut(u32, Result<Vec<u8>>) -> Result<()>,
    ) -> Result<()> {
        self.usable()?;
        let window = if self.caps.has("PIPELINING") {
            self.opts.pipeline_window.clamp(1, 1000)
        } else {
            1
        };
        let mut next = 0usize;
        let mut in_flight: VecDeque<usize> = VecDeque::new();
        while next < jobs.len() || !in_flight.is_empty() {
            if in_flight.len() <= window / 2 && next < jobs.len() {
                let mut batch = Vec::new();
                while in_flight.len() < window && next < jobs.len() {
                    batch.extend_from_slice(
                        format!("{verb} {}{suffix}\r\n", jobs[next].msg).as_bytes(),
                    );
                    in_flight.push_back(next);
                    next += 1;
                }
                self.write_all(&batch, verb)?;
            }
            let Some(i) = in_flight.pop_front() else {
                break;
            };
            let job = &jobs[i];
            let result = match self.reply(verb)? {
                Reply::Ok(_) => {
                    let cap = job.size_hint.min(job.limit).saturating_add(64);
                    let mut body = Vec::with_capacity(usize::try_from(cap).unwrap_or(0));
                    match self.r.read_body(&mut body, job.limit, job.drain) {
                        Ok(BodyEnd::Complete) => Ok(body),
                        Ok(BodyEnd::Truncated) if job.truncate_ok => Ok(body),
                        Ok(BodyEnd::Truncated) => Err(too_large(job.msg, job.limit + 1, job.limit)),
                        Err(e) => {
                            self.broken = true;
                            return Err(self.io_failure(e, verb));
                        }
                    }
                }
                Reply::Err(t) => Err(not_found(job.msg, &t)),
                Reply::Cont(t) => return Err(self.unexpected(verb, &t)),
            };
            if let Err(e) = each(job.msg, result) {
                // The answers still in flight would be out of step.
                if !in_flight.is_empty() {
                    self.broken = true;
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

/// A writer counting what passes through.
struct Counted<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct Job {
    msg: u32,
    size_hint: u64,
    limit: u64,
    /// How much past `limit` is read and dropped before giving up.
    drain: u64,
    truncate_ok: bool,
}

fn protocol(host: &str, what: &str, en: &str, de: &str) -> Error {
    Error::new(
        ErrorKind::Protocol,
        Text::new(
            format!("POP3 server {host} ({what}): {en}"),
            format!("POP3-Server {host} ({what}): {de}"),
        ),
    )
}

fn too_large(msg: u32, size: u64, max: u64) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        Text::new(
            format!("message {msg} has {size} bytes, more than limits.max_message_bytes ({max})"),
            format!("Nachricht {msg} hat {size} Bytes, mehr als limits.max_message_bytes ({max})"),
        ),
    )
}

fn not_found(msg: u32, reply: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        Text::new(
            format!("the server has no message {msg} in this session"),
            format!("der Server hat in dieser Sitzung keine Nachricht {msg}"),
        ),
    )
    .with_server_reply(reply)
}

fn dropped_during_auth(host: &str, token_len: usize) -> Error {
    Error::new(
        ErrorKind::AuthRejected,
        Text::new(
            format!("{host} closed the POP3 connection during authentication"),
            format!("{host} hat die POP3-Verbindung während der Anmeldung geschlossen"),
        ),
    )
    .with_hint(sasl::dropped_during_auth_hint(token_len))
}

#[cfg(test)]
mod tests;
