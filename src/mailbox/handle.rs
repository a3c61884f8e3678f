//! The mailbox of the ABI ("Mailboxes"): one folder of one mailbox, polled
//! over IMAP or POP3 with at-least-once delivery to the host.
//!
//! - `open` parses the request strictly, checks that a token may go to the
//!   server, takes the cross-process lock on the folder's poll state
//!   (`poll:<account>/<protocol>/<folder>`, held until the mailbox is
//!   closed; a second opener waits `lock_timeout_ms`, then `BUSY`), loads
//!   the state and connects. `start: new` on the first open records what is
//!   already there as acknowledged.
//! - `poll` returns the messages not acknowledged yet, oldest first. Ids
//!   are stable across connections: `UIDVALIDITY:UID` (IMAP), the UIDL
//!   (POP3).
//! - `fetch` returns a message's raw bytes (IMAP `BODY.PEEK[]`, so \Seen is
//!   not set); the bodies of the next messages of the last poll are read
//!   ahead in one batched command, bounded in bytes.
//! - `ack` records the acknowledgement durably *first*, then changes the
//!   server. An acknowledged message is never handed out again; a change
//!   the server did not confirm (a dropped connection, a killed process)
//!   stays pending in the state and is retried at the next poll (the
//!   changes are idempotent). POP3 deletions take effect at the QUIT that
//!   ends the session, which every poll does before it starts a new one.
//! - `wait` returns when new mail may be there (true) or when the timeout
//!   passed (false).
//! - `cancel` (any thread) makes the running call return `CANCELLED` at
//!   once: the connection is shut down and the next call reconnects.
//!
//! Calls on one mailbox are serialised (a mutex) and run on the caller's
//! thread. A dropped connection is re-established by the next call; a
//! token the server rejects gets one forced refresh and one retry.
//!
//! The exact delivery guarantees, also after a UIDVALIDITY change, are in
//! the [module documentation](crate::mailbox#delivery-guarantees).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cache::{GrantStore, LockGuard};
use crate::config::{Config, RawServer, Server};
use crate::context::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::log;
use crate::mailbox::file::MessageFile;
use crate::mailbox::net::{Endpoint, Interrupt};
use crate::mailbox::state::{self, Action, Fingerprint, Id, PollState};
use crate::mailbox::summary::Summary;
use crate::mailbox::{imap, pop3};
use crate::protocol::{Protocol, Protocols};
use crate::request::{Doc, shown};
use crate::secret::Secret;

/// The longest `lock_timeout_ms` / `timeout_ms` a request may ask for.
const MAX_TIMEOUT_MS: i64 = 3_600_000;
/// The longest address or folder name accepted.
const MAX_NAME_LEN: usize = 998;
/// Read-ahead: bodies fetched in one go after the one asked for.
const AHEAD_BYTES: u64 = 16 * 1024 * 1024;
const AHEAD_MESSAGES: usize = 100;
/// `fetch_to_file` streams messages larger than this (or of unknown size);
/// smaller ones take the ordinary fetch with its read-ahead.
pub const STREAM_ABOVE: u64 = 1024 * 1024;
/// The most messages one poll returns.
pub const MAX_POLL: usize = 10_000;
/// `wait` over IMAP: the least time between two looks after a change.
const IMAP_RECHECK: Duration = Duration::from_millis(200);
/// `wait` over POP3: how often it logs in again to look (a POP3 session
/// sees a fixed snapshot).
const POP3_RECHECK: Duration = Duration::from_secs(5);
/// How long a sleep slice of `wait` is (cancel is noticed within it).
const SLICE: Duration = Duration::from_millis(25);

/// Where the polling starts on the first open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Every message of the folder is delivered.
    All,
    /// What is there at the first open counts as acknowledged.
    New,
}

/// A parsed `mailoauth_mailbox_open` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    /// Whose grant is used.
    pub account: String,
    /// The mailbox logged in to (the XOAUTH2 `user=`); the account by default.
    pub mailbox: String,
    pub protocol: Protocol,
    pub folder: String,
    pub start: Start,
    pub lock_timeout: Duration,
    /// A server overriding the context's `servers.imap` / `servers.pop3`.
    pub server: Option<Server>,
    /// Each network step (connect, every read and write); None: default.
    pub timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
struct RawOpen {
    account: Option<String>,
    mailbox: Option<String>,
    protocol: Option<String>,
    folder: Option<String>,
    start: Option<String>,
    lock_timeout_ms: Option<i64>,
    server: Option<RawServer>,
    timeout_ms: Option<i64>,
}

/// What mailbox requests are called in messages.
const DOC: Doc = Doc {
    en: "mailbox request",
    de: "Postfach-Anfrage",
};

fn bad_key(key: &str, en: impl AsRef<str>, de: impl AsRef<str>) -> Error {
    DOC.bad_key(key, en, de)
}

fn line_break(key: &str) -> Error {
    DOC.line_break(key)
}

fn single_line(key: &str, v: &str) -> Result<()> {
    if v.contains(['\r', '\n', '\0']) {
        return Err(line_break(key));
    }
    Ok(())
}

fn name(key: &str, v: &str, what_en: &str, what_de: &str) -> Result<String> {
    single_line(key, v)?;
    let t = v.trim();
    if t.is_empty() || t.len() > MAX_NAME_LEN || t.chars().any(char::is_control) {
        return Err(bad_key(
            key,
            format!("expected {what_en}"),
            format!("erwartet wird {what_de}"),
        ));
    }
    Ok(t.to_string())
}

fn millis(key: &str, v: Option<i64>, default: Option<Duration>) -> Result<Option<Duration>> {
    match v {
        None => Ok(default),
        Some(ms) if ms < 0 => Ok(default),
        Some(ms) if ms <= MAX_TIMEOUT_MS => Ok(Some(Duration::from_millis(ms as u64))),
        Some(_) => Err(bad_key(
            key,
            "expected milliseconds between 0 and 3600000 (or negative for the default)",
            "erwartet werden Millisekunden zwischen 0 und 3600000 (oder negativ für den Standardwert)",
        )),
    }
}

impl OpenRequest {
    /// Parses the request strictly: size bounded, unknown and duplicate keys
    /// refused (`INVALID_CONFIG` naming the key), CR/LF/NUL in a name
    /// `INVALID_ARGUMENT`.
    pub fn parse(json: &str, config: &Config) -> Result<Self> {
        let raw: RawOpen = DOC.parse(json, config.max_json_bytes)?;
        let Some(account) = raw.account else {
            return Err(bad_key(
                "account",
                "required: the account whose grant is used (user@contoso.com)",
                "erforderlich: das Konto, dessen Berechtigung verwendet wird (user@contoso.com)",
            ));
        };
        let account = name(
            "account",
            &account,
            "a sign-in name such as user@contoso.com",
            "ein Anmeldename wie user@contoso.com",
        )?;
        let mailbox = match raw.mailbox {
            None => account.clone(),
            Some(m) => {
                let m = name(
                    "mailbox",
                    &m,
                    "a mailbox address such as shared@contoso.com",
                    "eine Postfachadresse wie shared@contoso.com",
                )?;
                if !m.contains('@') || m.contains(char::is_whitespace) {
                    return Err(bad_key(
                        "mailbox",
                        format!("'{}' is not an e-mail address", shown(&m)),
                        format!("'{}' ist keine E-Mail-Adresse", shown(&m)),
                    ));
                }
                m
            }
        };
        let protocol = match raw.protocol.as_deref() {
            None | Some("imap") => Protocol::Imap,
            Some("pop3") => Protocol::Pop3,
            Some(other) => {
                return Err(bad_key(
                    "protocol",
                    format!("'{}' is not one of imap, pop3", shown(other)),
                    format!("'{}' ist keiner von imap, pop3", shown(other)),
                ));
            }
        };
        let folder = match raw.folder {
            None => "INBOX".to_string(),
            Some(f) => {
                single_line("folder", &f)?;
                if f.is_empty() || f.len() > 1024 || f.chars().any(char::is_control) {
                    return Err(bad_key(
                        "folder",
                        "expected a folder name of 1 to 1024 bytes",
                        "erwartet wird ein Ordnername mit 1 bis 1024 Bytes",
                    ));
                }
                f
            }
        };
        if protocol == Protocol::Pop3 && !folder.eq_ignore_ascii_case("INBOX") {
            return Err(bad_key(
                "folder",
                "POP3 has only the INBOX",
                "POP3 kennt nur den Posteingang (INBOX)",
            ));
        }
        let folder = if folder.eq_ignore_ascii_case("INBOX") {
            "INBOX".to_string()
        } else {
            folder
        };
        let start = match raw.start.as_deref() {
            None | Some("all") => Start::All,
            Some("new") => Start::New,
            Some(other) => {
                return Err(bad_key(
                    "start",
                    format!("'{}' is not one of all, new", shown(other)),
                    format!("'{}' ist keiner von all, new", shown(other)),
                ));
            }
        };
        let lock_timeout = millis("lock_timeout_ms", raw.lock_timeout_ms, Some(Duration::ZERO))?
            .unwrap_or_default();
        let timeout = match millis("timeout_ms", raw.timeout_ms, None)? {
            Some(d) if d.is_zero() => {
                return Err(bad_key(
                    "timeout_ms",
                    "expected milliseconds between 1 and 3600000 (or negative for the default)",
                    "erwartet werden Millisekunden zwischen 1 und 3600000 (oder negativ für den Standardwert)",
                ));
            }
            t => t,
        };
        let server = raw
            .server
            .map(|s| server_override(config, protocol, s))
            .transpose()?;
        Ok(Self {
            account,
            mailbox,
            protocol,
            folder,
            start,
            lock_timeout,
            server,
            timeout,
        })
    }
}

/// `server`: the rules of `servers.imap` / `servers.pop3` in the
/// configuration (one implementation: `config::server_override`). Whether a
/// token may go there is checked before anything connects (`UNTRUSTED_HOST`).
fn server_override(config: &Config, protocol: Protocol, raw: RawServer) -> Result<Server> {
    if let Some(host) = &raw.host {
        single_line("server.host", host)?;
    }
    crate::config::server_override(config, protocol.as_str(), raw)
}

/// The endpoint of a request: its `server`, else the configured one for
/// the protocol; refused before any connection when a token may not go
/// there.
pub fn endpoint(config: &Config, req: &OpenRequest) -> Result<Endpoint> {
    let configured = match req.protocol {
        Protocol::Pop3 => &config.servers.pop3,
        _ => &config.servers.imap,
    };
    let Some(server) = req.server.clone().or_else(|| configured.clone()) else {
        let p = req.protocol.as_str();
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            Text::new(
                format!(
                    "no {p} server is configured (servers.{p}) and the request names none (server)"
                ),
                format!(
                    "kein {p}-Server konfiguriert (servers.{p}) und die Anfrage nennt keinen (server)"
                ),
            ),
        ));
    };
    config.check_token_destination(&server.host, server.security)?;
    let mut ep = Endpoint::new(config, &server.host, server.port, server.security)?;
    if let Some(t) = req.timeout {
        ep.io_timeout = t;
        ep.connect_timeout = ep.connect_timeout.min(t);
    }
    Ok(ep)
}

/// A folder as `list_folders` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folder {
    pub name: String,
    pub delimiter: Option<String>,
    /// `inbox`, `sent`, `drafts`, `trash`, `junk`, `archive`, `all`,
    /// `flagged`, or null.
    pub special: Option<String>,
}

/// A POP3 session with its listing.
struct Pop3Conn {
    s: pop3::Session,
    /// UIDL → (message number, size) of this session.
    entries: HashMap<String, (u32, u64)>,
    /// UIDLs in message order.
    order: Vec<String>,
    /// Ids marked with DELE in this session (committed by its QUIT).
    deleted: Vec<String>,
}

enum Conn {
    Imap(Box<imap::Session>),
    Pop3(Box<Pop3Conn>),
}

impl Conn {
    fn is_broken(&self) -> bool {
        match self {
            Conn::Imap(s) => s.is_broken(),
            Conn::Pop3(p) => p.s.is_broken(),
        }
    }
}

/// Everything a call works on (behind the mailbox's mutex).
struct Inner {
    req: OpenRequest,
    ep: Endpoint,
    store: Arc<GrantStore>,
    key: String,
    guard: Option<Box<dyn LockGuard>>,
    state: PollState,
    conn: Option<Conn>,
    /// The ids and sizes the last poll returned, in order (read-ahead).
    last_poll: Vec<(String, u64)>,
    /// Bodies read ahead, by id.
    ahead: HashMap<String, Vec<u8>>,
    /// IMAP: the fingerprints (size, Message-ID) of the last poll's
    /// messages, by id, recorded with their acknowledgement.
    fps: HashMap<String, Fingerprint>,
    /// IMAP: what the polls of this session know of the folder, so that
    /// the next poll asks only for UIDs above `upto`.
    known: Option<Known>,
}

/// The folder as the last IMAP poll of a session saw it.
#[derive(Debug, Clone)]
struct Known {
    uid_validity: u32,
    /// The highest UID seen.
    upto: u32,
    /// UIDs up to `upto` that were not acknowledged then (some may be gone
    /// since: the summaries leave them out).
    unacked: std::collections::BTreeSet<u32>,
}

/// An open mailbox folder (ABI `mailoauth_mailbox`).
pub struct Mailbox {
    ctx: Arc<Context>,
    protocol: Protocol,
    interrupt: Interrupt,
    running: AtomicBool,
    closed: AtomicBool,
    inner: Mutex<Option<Inner>>,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

fn closed_error() -> Error {
    Error::new(
        ErrorKind::InvalidState,
        Text::new(
            "the mailbox has been closed (or its context freed)",
            "das Postfach wurde geschlossen (oder sein Kontext freigegeben)",
        ),
    )
}

fn unknown_id(id: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        Text::new(
            format!("the mailbox has no message with the id '{}'", shown(id)),
            format!(
                "das Postfach hat keine Nachricht mit der ID '{}'",
                shown(id)
            ),
        ),
    )
}

impl Mailbox {
    /// Opens a mailbox folder (request JSON as in the ABI).
    pub fn open(ctx: &Arc<Context>, request_json: &str) -> Result<Arc<Mailbox>> {
        let config = ctx.config();
        let req = OpenRequest::parse(request_json, config)?;
        let ep = endpoint(config, &req)?;
        let store = ctx.grant_store()?;
        let key = state::key(&req.account, req.protocol, &req.folder);
        let guard = store.blobs().lock(&key, req.lock_timeout)?;
        let state = PollState::load(&store, &key, req.protocol, &req.folder)?;
        let mb = Arc::new(Mailbox {
            ctx: ctx.clone(),
            protocol: req.protocol,
            interrupt: Interrupt::new(),
            running: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            inner: Mutex::new(None),
        });
        let mut inner = Inner {
            req,
            ep,
            store,
            key,
            guard: Some(guard),
            state,
            conn: None,
            last_poll: Vec::new(),
            ahead: HashMap::new(),
            fps: HashMap::new(),
            known: None,
        };
        mb.running.store(true, Ordering::SeqCst);
        let first = mb.first_open(&mut inner);
        mb.running.store(false, Ordering::SeqCst);
        first?;
        log::info!(
            "mailbox opened: {} {} folder {}",
            mb.protocol.as_str(),
            shown(&inner.req.mailbox),
            shown(&inner.req.folder)
        );
        *mb.lock_inner()? = Some(inner);
        ctx.track_mailbox(&mb);
        Ok(mb)
    }

    /// Connects; on the first open records `start` in the state.
    fn first_open(&self, inner: &mut Inner) -> Result<()> {
        self.connect(inner, false)?;
        if !inner.state.started {
            if inner.req.start == Start::New {
                if self.protocol == Protocol::Imap {
                    // With fingerprints: recognised after a UIDVALIDITY
                    // change like every other acknowledged message.
                    let (validity, index) = self.with_imap(inner, |s| {
                        let v = s
                            .selected()
                            .map(|sel| sel.uid_validity)
                            .ok_or_else(|| Error::internal("no folder selected"))?;
                        Ok((v, s.index()?))
                    })?;
                    for e in index {
                        let id = Id::Imap {
                            uid_validity: validity,
                            uid: e.uid,
                        };
                        let fp = Fingerprint::new(e.size, &e.message_id);
                        inner.state.ack_with(&id, Action::Keep, fp)?;
                    }
                } else {
                    for (id, _) in self.list_ids(inner)? {
                        inner.state.ack(&id, Action::Keep)?;
                    }
                }
                if self.protocol == Protocol::Imap
                    && let Some(Conn::Imap(s)) = &inner.conn
                    && let Some(sel) = s.selected()
                    && inner.state.uid_validity.is_none()
                {
                    inner.state.uid_validity = Some(sel.uid_validity);
                }
            }
            inner.state.started = true;
            inner.state.save(&inner.store, &inner.key)?;
        }
        Ok(())
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    fn lock_inner(&self) -> Result<std::sync::MutexGuard<'_, Option<Inner>>> {
        self.inner.lock().map_err(|_| {
            Error::internal(
                "an earlier call on this mailbox failed with a bug; free it and open it again",
            )
        })
    }

    /// Runs one call: serialised, reconnecting after a cancel, cancellable.
    fn call<T>(&self, f: impl FnOnce(&Self, &mut Inner) -> Result<T>) -> Result<T> {
        let mut guard = self.lock_inner()?;
        if self.closed.load(Ordering::SeqCst) {
            return Err(closed_error());
        }
        let Some(inner) = guard.as_mut() else {
            return Err(closed_error());
        };
        if self.interrupt.is_fired() {
            // The last call was cancelled: its connection is shut down.
            inner.conn = None;
            self.interrupt.reset();
        }
        self.running.store(true, Ordering::SeqCst);
        let r = f(self, inner);
        self.running.store(false, Ordering::SeqCst);
        if self.interrupt.is_fired() {
            inner.conn = None;
            self.interrupt.reset();
            if r.is_ok() {
                // Finished before the cancel could stop it: keep the result.
                return r;
            }
            return Err(Error::cancelled());
        }
        if r.is_err() && inner.conn.as_ref().is_some_and(Conn::is_broken) {
            inner.conn = None;
        }
        r
    }

    /// Cancels the running call (any thread); it returns `CANCELLED`
    /// promptly. Without a running call nothing happens.
    pub fn cancel(&self) {
        if self.running.load(Ordering::SeqCst) {
            self.interrupt.fire();
        }
    }

    fn token(&self, inner: &Inner, force: bool) -> Result<Secret> {
        self.ctx
            .token_get(&inner.req.account, Protocols::of(self.protocol), force)
    }

    /// A fresh session (the old one is dropped): logs in with the cached
    /// token, and once more with a forced refresh when the server rejects
    /// it.
    fn connect(&self, inner: &mut Inner, force_first: bool) -> Result<()> {
        inner.conn = None;
        inner.ahead.clear();
        // A new session looks at the whole folder once.
        inner.known = None;
        let token = self.token(inner, force_first)?;
        match self.login(inner, &token) {
            Err(e) if e.kind == ErrorKind::AuthRejected && !force_first => {
                log::info!("the server rejected the token; refreshing it once and retrying");
                let token = self.token(inner, true)?;
                self.login(inner, &token)
            }
            r => r,
        }
    }

    fn login(&self, inner: &mut Inner, token: &Secret) -> Result<()> {
        let max = self.ctx.config().max_message_bytes;
        match self.protocol {
            Protocol::Pop3 => {
                let opts = pop3::Options {
                    max_message_bytes: max,
                    ..pop3::Options::default()
                };
                let mut s = pop3::Session::connect(&inner.ep, &self.interrupt, opts)?;
                s.authenticate(&inner.req.mailbox, token, inner.ep.port)?;
                let listing = s.entries()?;
                let mut conn = Pop3Conn {
                    s,
                    entries: HashMap::with_capacity(listing.len()),
                    order: Vec::with_capacity(listing.len()),
                    deleted: Vec::new(),
                };
                for e in listing {
                    if conn
                        .entries
                        .insert(e.uid.clone(), (e.msg, e.size))
                        .is_none()
                    {
                        conn.order.push(e.uid);
                    }
                }
                // Deletions acknowledged earlier and not confirmed: again.
                let before = inner.state.clone();
                inner
                    .state
                    .prune_uidls(conn.order.iter().map(String::as_str));
                if inner.state != before {
                    inner.state.save(&inner.store, &inner.key)?;
                }
                let pending: Vec<String> = inner
                    .state
                    .pending
                    .iter()
                    .filter(|(_, a)| **a == Action::Delete)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in pending {
                    if let Some(&(msg, _)) = conn.entries.get(&id) {
                        conn.s.dele(msg)?;
                        conn.deleted.push(id);
                    }
                }
                inner.conn = Some(Conn::Pop3(Box::new(conn)));
            }
            _ => {
                let opts = imap::Options {
                    max_message_bytes: max,
                    ..imap::Options::default()
                };
                let s = imap::Session::login(
                    &inner.ep,
                    &self.interrupt,
                    opts,
                    &inner.req.mailbox,
                    token,
                    &inner.req.folder,
                )?;
                let validity = s.selected().map(|sel| sel.uid_validity);
                inner.conn = Some(Conn::Imap(Box::new(s)));
                if let Some(v) = validity
                    && inner.state.uid_validity.is_some_and(|old| old != v)
                    && let Err(e) = self.resync(inner, v)
                {
                    // Not re-synchronised: no session may work with the
                    // old record (the next call connects and tries again).
                    inner.conn = None;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The folder has a new UIDVALIDITY: its messages are matched against
    /// the fingerprints of the acknowledged ones (state.rs), the result
    /// recorded before anything else happens.
    fn resync(&self, inner: &mut Inner, uid_validity: u32) -> Result<()> {
        let index = match &mut inner.conn {
            Some(Conn::Imap(s)) => s.index()?,
            _ => return Err(Error::internal("not an IMAP session")),
        };
        let present: Vec<(u32, Option<Fingerprint>)> = index
            .iter()
            .map(|e| (e.uid, Fingerprint::new(e.size, &e.message_id)))
            .collect();
        let r = inner.state.resync(uid_validity, &present);
        inner.state.save(&inner.store, &inner.key)?;
        inner.last_poll.clear();
        inner.ahead.clear();
        inner.fps.clear();
        log::warning!(
            "the folder's UIDVALIDITY changed: {} of {} message(s) recognised as acknowledged by Message-ID and size ({} pending change(s) carried over); {} acknowledged message(s) not found again; the others are delivered again",
            r.matched,
            present.len(),
            r.pending_moved,
            r.unmatched
        );
        Ok(())
    }

    /// A usable session: the current one, or a new one.
    fn ensure(&self, inner: &mut Inner) -> Result<()> {
        if inner.conn.as_ref().is_some_and(|c| !c.is_broken()) {
            return Ok(());
        }
        self.connect(inner, false)
    }

    /// Runs `op` on the IMAP session; when the server ended the session
    /// because the token expired (or the connection was lost before `op`
    /// could start), reconnects once with a fresh token and retries.
    fn with_imap<T>(
        &self,
        inner: &mut Inner,
        mut op: impl FnMut(&mut imap::Session) -> Result<T>,
    ) -> Result<T> {
        self.ensure(inner)?;
        let first = match &mut inner.conn {
            Some(Conn::Imap(s)) => op(s),
            _ => return Err(Error::internal("not an IMAP session")),
        };
        match first {
            Err(e)
                if e.kind == ErrorKind::AuthRejected
                    && inner.conn.as_ref().is_some_and(Conn::is_broken) =>
            {
                self.connect(inner, true)?;
                match &mut inner.conn {
                    Some(Conn::Imap(s)) => op(s),
                    _ => Err(Error::internal("not an IMAP session")),
                }
            }
            r => r,
        }
    }

    /// Every message of the folder now: ids and sizes, oldest first.
    fn list_ids(&self, inner: &mut Inner) -> Result<Vec<(Id, u64)>> {
        match self.protocol {
            Protocol::Pop3 => {
                self.ensure(inner)?;
                let Some(Conn::Pop3(p)) = &inner.conn else {
                    return Err(Error::internal("not a POP3 session"));
                };
                Ok(p.order
                    .iter()
                    .filter_map(|u| {
                        p.entries
                            .get(u)
                            .map(|&(_, size)| (Id::Pop3(u.clone()), size))
                    })
                    .collect())
            }
            _ => {
                let (validity, uids) = self.with_imap(inner, |s| {
                    let uids = s.uids_after(0)?;
                    let v = s
                        .selected()
                        .map(|sel| sel.uid_validity)
                        .ok_or_else(|| Error::internal("no folder selected"))?;
                    Ok((v, uids))
                })?;
                Ok(uids
                    .into_iter()
                    .map(|uid| {
                        (
                            Id::Imap {
                                uid_validity: validity,
                                uid,
                            },
                            0,
                        )
                    })
                    .collect())
            }
        }
    }

    // ---- poll ----

    /// The messages not acknowledged yet, oldest first, at most `max`.
    pub fn poll(&self, max: usize) -> Result<Vec<Summary>> {
        self.call(|mb, inner| mb.poll_in(inner, max.min(MAX_POLL)))
    }

    /// `poll` as the ABI's JSON array.
    pub fn poll_json(&self, max: usize) -> Result<String> {
        let list = self.poll(max)?;
        serde_json::to_string(&list).map_err(|e| Error::internal(format!("poll JSON: {e}")))
    }

    fn poll_in(&self, inner: &mut Inner, max: usize) -> Result<Vec<Summary>> {
        inner.ahead.clear();
        inner.last_poll.clear();
        match self.protocol {
            Protocol::Pop3 => self.poll_pop3(inner, max),
            _ => self.poll_imap(inner, max),
        }
    }

    fn poll_pop3(&self, inner: &mut Inner, max: usize) -> Result<Vec<Summary>> {
        // A POP3 session is a snapshot: end it (committing its deletions)
        // and look again.
        self.end_pop3_session(inner);
        self.connect(inner, false)?;
        let Some(Conn::Pop3(p)) = &mut inner.conn else {
            return Err(Error::internal("not a POP3 session"));
        };
        let wanted: Vec<(String, u32, u64)> = p
            .order
            .iter()
            .filter(|u| !inner.state.is_acked(&Id::Pop3((*u).clone())))
            .filter_map(|u| p.entries.get(u).map(|&(m, s)| (u.clone(), m, s)))
            .take(max)
            .collect();
        if max == 0 || wanted.is_empty() {
            return Ok(Vec::new());
        }
        let nums: Vec<u32> = wanted.iter().map(|(_, m, _)| *m).collect();
        let mut headers: HashMap<u32, Vec<u8>> = HashMap::with_capacity(nums.len());
        p.s.headers(&nums, |msg, r| {
            match r {
                Ok(h) => {
                    headers.insert(msg, h);
                }
                // Gone meanwhile (another session deleted it): left out.
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            Ok(())
        })?;
        let mut out = Vec::with_capacity(wanted.len());
        for (uid, msg, size) in wanted {
            if let Some(h) = headers.remove(&msg) {
                inner.last_poll.push((uid.clone(), size));
                out.push(Summary::parse(uid, size, &h, None));
            }
        }
        Ok(out)
    }

    /// QUIT the POP3 session (best effort); an `+OK` confirms its DELEs.
    fn end_pop3_session(&self, inner: &mut Inner) {
        let Some(Conn::Pop3(p)) = inner.conn.take() else {
            return;
        };
        let Pop3Conn { s, deleted, .. } = *p;
        if s.is_broken() {
            return;
        }
        match s.quit() {
            Ok(()) => {
                if !deleted.is_empty() {
                    for id in &deleted {
                        inner.state.confirm(&Id::Pop3(id.clone()));
                    }
                    if let Err(e) = inner.state.save(&inner.store, &inner.key) {
                        // Still pending in the stored state: retried (the
                        // messages are gone, so the retry finds nothing).
                        log::warning!("could not record confirmed deletions: {}", e.message.en);
                    }
                }
            }
            Err(e) => log::info!(
                "POP3 QUIT failed ({}); unconfirmed deletions are retried",
                e.message.en
            ),
        }
    }

    fn poll_imap(&self, inner: &mut Inner, max: usize) -> Result<Vec<Summary>> {
        let fresh = inner.conn.as_ref().is_none_or(Conn::is_broken);
        self.ensure(inner)?;
        if !fresh {
            // The server looks at the folder again (new mail) on NOOP.
            self.with_imap(inner, |s| s.noop())?;
        }
        self.retry_pending_imap(inner)?;
        let state = inner.state.clone();
        let known = inner.known.take();
        let (list, all, seen) = self.with_imap(inner, |s| {
            let validity = s
                .selected()
                .map(|sel| sel.uid_validity)
                .ok_or_else(|| Error::internal("no folder selected"))?;
            let acked = |uid: u32| {
                state.is_acked(&Id::Imap {
                    uid_validity: validity,
                    uid,
                })
            };
            // The first poll of a session lists every UID (`UID SEARCH
            // ALL`); later ones only those above the highest seen (`UID
            // SEARCH UID n:*`), plus what was unacknowledged below it.
            let (mut unacked, upto, all) =
                match known.as_ref().filter(|k| k.uid_validity == validity) {
                    Some(k) => {
                        let newer = s.uids_after(k.upto)?;
                        let upto = newer.last().copied().unwrap_or(k.upto).max(k.upto);
                        let mut unacked = k.unacked.clone();
                        unacked.extend(newer);
                        (unacked, upto, None)
                    }
                    None => {
                        let all = s.uids_after(0)?;
                        let upto = all.last().copied().unwrap_or(0);
                        (all.iter().copied().collect(), upto, Some(all))
                    }
                };
            unacked.retain(|uid| !acked(*uid));
            let order: Vec<u32> = unacked.iter().copied().collect();
            let mut rest = order.into_iter();
            let mut list = Vec::new();
            // Messages gone meanwhile (expunged by another client) are
            // left out and the next ones asked for instead.
            while list.len() < max {
                let uids: Vec<u32> = rest.by_ref().take(max - list.len()).collect();
                if uids.is_empty() {
                    break;
                }
                let got = s.summaries(&uids)?;
                let ids: HashSet<&str> = got.iter().map(|x| x.id.as_str()).collect();
                for uid in &uids {
                    if !ids.contains(format!("{validity}:{uid}").as_str()) {
                        unacked.remove(uid);
                    }
                }
                list.extend(got);
            }
            let seen = Known {
                uid_validity: validity,
                upto,
                unacked,
            };
            Ok((list, all, seen))
        })?;
        if let Some(all) = all {
            // Fingerprints of messages no longer in the folder are not
            // needed (recorded with the next save).
            inner.state.prune_fingerprints(&all);
        }
        inner.known = Some(seen);
        inner.last_poll = list.iter().map(|s| (s.id.clone(), s.size)).collect();
        inner.fps = list
            .iter()
            .filter_map(|s| Some((s.id.clone(), Fingerprint::new(s.size, &s.message_id)?)))
            .collect();
        Ok(list)
    }

    /// Applies acknowledged changes the server has not confirmed yet.
    fn retry_pending_imap(&self, inner: &mut Inner) -> Result<()> {
        if inner.state.pending.is_empty() {
            return Ok(());
        }
        let pending: Vec<(String, Action)> = inner
            .state
            .pending
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (id_text, action) in pending {
            let Ok(id) = Id::parse(&id_text, Protocol::Imap) else {
                inner.state.pending.remove(&id_text);
                continue;
            };
            match self.apply_imap(inner, &id, &action) {
                Ok(()) => inner.state.confirm(&id),
                Err(e) if is_retryable(&e) => return Err(e),
                Err(e) => {
                    log::warning!(
                        "an acknowledged change was refused by the server and is dropped: {}",
                        e.message.en
                    );
                    inner.state.confirm(&id);
                }
            }
            inner.state.save(&inner.store, &inner.key)?;
        }
        Ok(())
    }

    fn apply_imap(&self, inner: &mut Inner, id: &Id, action: &Action) -> Result<()> {
        let Id::Imap { uid_validity, uid } = *id else {
            return Ok(());
        };
        let folder = inner.req.folder.clone();
        self.with_imap(inner, |s| {
            if s.selected().map(|sel| sel.uid_validity) != Some(uid_validity) {
                // The folder was re-created: the old UID means nothing.
                return Ok(());
            }
            match action {
                Action::Keep => Ok(()),
                Action::Seen => s.mark_seen(&[uid]),
                Action::Delete => s.delete(&[uid]),
                Action::Move(to) if to == &folder => Ok(()),
                Action::Move(to) => s.move_to(&[uid], to),
            }
        })
    }

    // ---- fetch ----

    /// The raw RFC 5322 bytes of one message.
    pub fn fetch(&self, id: &str) -> Result<Vec<u8>> {
        self.call(|mb, inner| mb.fetch_in(inner, id))
    }

    /// Writes one message's bytes to `path` (created or replaced). The
    /// bytes go to a temporary file in the same directory as they arrive
    /// (a message larger than [`STREAM_ABOVE`] is never whole in memory),
    /// which is synced and renamed over `path` once complete: `path` is
    /// either untouched or the whole message.
    pub fn fetch_to_file(&self, id: &str, path: &std::path::Path) -> Result<()> {
        self.call(|mb, inner| mb.fetch_to_file_in(inner, id, path))
    }

    fn fetch_to_file_in(&self, inner: &mut Inner, id_text: &str, path: &Path) -> Result<()> {
        let id = Id::parse(id_text, self.protocol).map_err(|_| unknown_id(id_text))?;
        let mut file = MessageFile::create(path)?;
        if let Some(b) = inner.ahead.remove(id_text) {
            file.put(&b)?;
            return file.commit();
        }
        let known = inner
            .last_poll
            .iter()
            .find(|(i, _)| i == id_text)
            .map(|(_, size)| *size);
        if known.is_some_and(|size| size <= STREAM_ABOVE) {
            // Small: the ordinary fetch with its read-ahead of the next
            // messages (one round trip per window).
            let b = self.fetch_in(inner, id_text)?;
            file.put(&b)?;
            return file.commit();
        }
        let r = match id {
            Id::Pop3(uidl) => self.stream_pop3(inner, &uidl, &mut file),
            Id::Imap { uid_validity, uid } => self.with_imap(inner, |s| {
                if s.selected().map(|sel| sel.uid_validity) != Some(uid_validity) {
                    return Err(unknown_id(id_text));
                }
                file.reset()?;
                s.fetch_to(uid, &mut file)
            }),
        };
        match r {
            // A failed write is the file's fault, not the server's.
            Err(e) => Err(file.failure().unwrap_or(match e.kind {
                ErrorKind::NotFound => unknown_id(id_text),
                _ => e,
            })),
            Ok(_) => file.commit(),
        }
    }

    fn stream_pop3(&self, inner: &mut Inner, uidl: &str, file: &mut MessageFile) -> Result<u64> {
        self.ensure(inner)?;
        let Some(Conn::Pop3(p)) = &mut inner.conn else {
            return Err(Error::internal("not a POP3 session"));
        };
        let Some(&(msg, size)) = p.entries.get(uidl) else {
            return Err(unknown_id(uidl));
        };
        p.s.retr_to(msg, size, file)
    }

    fn fetch_in(&self, inner: &mut Inner, id_text: &str) -> Result<Vec<u8>> {
        let id = Id::parse(id_text, self.protocol).map_err(|_| unknown_id(id_text))?;
        if let Some(b) = inner.ahead.remove(id_text) {
            return Ok(b);
        }
        // This message and the next ones of the last poll, in one go.
        let pos = inner.last_poll.iter().position(|(i, _)| i == id_text);
        let window: Vec<(String, u64)> = match pos {
            Some(p) => {
                let mut bytes = 0u64;
                let mut w = Vec::new();
                for (i, size) in inner.last_poll.iter().skip(p) {
                    if !w.is_empty()
                        && (w.len() >= AHEAD_MESSAGES || bytes.saturating_add(*size) > AHEAD_BYTES)
                    {
                        break;
                    }
                    bytes = bytes.saturating_add(*size);
                    w.push((i.clone(), *size));
                }
                w
            }
            None => Vec::new(),
        };
        match (self.protocol, id) {
            (Protocol::Pop3, Id::Pop3(uidl)) => self.fetch_pop3(inner, &uidl, window),
            (_, Id::Imap { uid_validity, uid }) => {
                self.fetch_imap(inner, id_text, uid_validity, uid, window)
            }
            _ => Err(unknown_id(id_text)),
        }
    }

    fn fetch_pop3(
        &self,
        inner: &mut Inner,
        uidl: &str,
        window: Vec<(String, u64)>,
    ) -> Result<Vec<u8>> {
        self.ensure(inner)?;
        let Some(Conn::Pop3(p)) = &mut inner.conn else {
            return Err(Error::internal("not a POP3 session"));
        };
        let Some(&(msg, size)) = p.entries.get(uidl) else {
            return Err(unknown_id(uidl));
        };
        let mut jobs: Vec<(u32, u64)> = vec![(msg, size)];
        let mut names: HashMap<u32, String> = HashMap::new();
        names.insert(msg, uidl.to_string());
        for (other, _) in window.iter().skip(1) {
            if let Some(&(m, s)) = p.entries.get(other) {
                jobs.push((m, s));
                names.insert(m, other.clone());
            }
        }
        let mut mine: Option<Result<Vec<u8>>> = None;
        let ahead = &mut inner.ahead;
        p.s.retr_many(&jobs, |m, r| {
            if m == msg {
                mine = Some(r);
            } else if let (Ok(b), Some(n)) = (r, names.get(&m)) {
                ahead.insert(n.clone(), b);
            }
            Ok(())
        })?;
        mine.unwrap_or_else(|| Err(unknown_id(uidl)))
    }

    fn fetch_imap(
        &self,
        inner: &mut Inner,
        id_text: &str,
        uid_validity: u32,
        uid: u32,
        window: Vec<(String, u64)>,
    ) -> Result<Vec<u8>> {
        let mut jobs: Vec<(u32, u64)> = Vec::new();
        for (other, size) in &window {
            if let Ok(Id::Imap {
                uid_validity: v,
                uid: u,
            }) = Id::parse(other, Protocol::Imap)
                && v == uid_validity
            {
                jobs.push((u, *size));
            }
        }
        let mut got: HashMap<u32, Result<Vec<u8>>> = HashMap::new();
        self.with_imap(inner, |s| {
            if s.selected().map(|sel| sel.uid_validity) != Some(uid_validity) {
                return Err(unknown_id(id_text));
            }
            got.clear();
            if jobs.first().map(|(u, _)| *u) == Some(uid) {
                s.fetch_many(&jobs, |u, r| {
                    got.insert(u, r);
                    Ok(())
                })
            } else {
                got.insert(uid, s.fetch(uid));
                Ok(())
            }
        })?;
        let mine = got.remove(&uid);
        for (u, r) in got {
            if let Ok(b) = r {
                inner.ahead.insert(format!("{uid_validity}:{u}"), b);
            }
        }
        match mine {
            Some(Err(e)) if e.kind == ErrorKind::NotFound => Err(unknown_id(id_text)),
            Some(r) => r,
            None => Err(unknown_id(id_text)),
        }
    }

    // ---- ack ----

    /// Acknowledges a message: recorded durably first, then the server is
    /// changed (`seen`, `delete`, `move:<folder>`; `keep` changes nothing).
    /// A change that fails for a network reason stays pending and is
    /// retried at the next poll; the call still succeeds, since the
    /// message is acknowledged.
    pub fn ack(&self, id: &str, action: &str) -> Result<()> {
        self.call(|mb, inner| mb.ack_in(inner, id, action))
    }

    fn ack_in(&self, inner: &mut Inner, id_text: &str, action: &str) -> Result<()> {
        let action = Action::parse(action, self.protocol)?;
        let id = Id::parse(id_text, self.protocol).map_err(|_| unknown_id(id_text))?;
        let mut fp = inner.fps.get(id_text).cloned();
        if !inner.state.is_acked(&id) && !inner.last_poll.iter().any(|(i, _)| i == id_text) {
            fp = self.check_exists(inner, &id, id_text)?;
        }
        inner.state.ack_with(&id, action.clone(), fp)?;
        inner.state.save(&inner.store, &inner.key)?;
        inner.ahead.remove(id_text);
        if !action.changes_server() {
            return Ok(());
        }
        let applied = match self.protocol {
            Protocol::Pop3 => self.dele_pop3(inner, id_text),
            _ => self.apply_imap(inner, &id, &action).map(|()| true),
        };
        match applied {
            Ok(true) => {
                if self.protocol == Protocol::Imap {
                    inner.state.confirm(&id);
                    inner.state.save(&inner.store, &inner.key)?;
                }
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) if e.kind == ErrorKind::Cancelled => Err(e),
            Err(e) if is_retryable(&e) => {
                log::info!(
                    "acknowledged; the server change failed ({}) and is retried at the next poll",
                    e.message.en
                );
                Ok(())
            }
            Err(e) => {
                inner.state.confirm(&id);
                inner.state.save(&inner.store, &inner.key)?;
                Err(e)
            }
        }
    }

    /// NOT_FOUND unless the message is in the folder; for IMAP its
    /// fingerprint (None without a Message-ID).
    fn check_exists(
        &self,
        inner: &mut Inner,
        id: &Id,
        id_text: &str,
    ) -> Result<Option<Fingerprint>> {
        match id {
            Id::Pop3(u) => {
                self.ensure(inner)?;
                match &inner.conn {
                    Some(Conn::Pop3(p)) if p.entries.contains_key(u) => Ok(None),
                    _ => Err(unknown_id(id_text)),
                }
            }
            Id::Imap { uid_validity, uid } => {
                let (v, u) = (*uid_validity, *uid);
                let found = self.with_imap(inner, |s| {
                    if s.selected().map(|sel| sel.uid_validity) != Some(v) {
                        return Ok(None);
                    }
                    Ok(s.index_of(&[u])?.into_iter().find(|e| e.uid == u))
                })?;
                match found {
                    Some(e) => Ok(Fingerprint::new(e.size, &e.message_id)),
                    None => Err(unknown_id(id_text)),
                }
            }
        }
    }

    /// POP3 DELE in the current session (committed at its QUIT); Ok(false)
    /// when there is no session to mark it in (done at the next poll).
    fn dele_pop3(&self, inner: &mut Inner, uidl: &str) -> Result<bool> {
        self.ensure(inner)?;
        let Some(Conn::Pop3(p)) = &mut inner.conn else {
            return Ok(false);
        };
        if p.deleted.iter().any(|d| d == uidl) {
            return Ok(false);
        }
        let Some(&(msg, _)) = p.entries.get(uidl) else {
            return Ok(false);
        };
        p.s.dele(msg)?;
        p.deleted.push(uidl.to_string());
        Ok(false)
    }

    // ---- wait ----

    /// Waits until new mail may be there (true) or `timeout` passed
    /// (false). Returns at once when unacknowledged messages are there.
    pub fn wait(&self, timeout: Duration) -> Result<bool> {
        self.call(|mb, inner| mb.wait_in(inner, timeout))
    }

    fn sleep(&self, d: Duration) -> Result<()> {
        let end = Instant::now() + d;
        loop {
            self.interrupt.check()?;
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep(SLICE.min(end - now));
        }
    }

    fn unacked_present(&self, inner: &mut Inner) -> Result<Option<u32>> {
        // Some(highest UID seen) when nothing new; None when mail is there.
        if self.protocol == Protocol::Imap
            && let Some(k) = inner.known.clone()
        {
            // What this session's polls saw: only UIDs above it are asked
            // for (no `UID SEARCH ALL`).
            let v = k.uid_validity;
            let acked = |state: &PollState, uid: u32| {
                state.is_acked(&Id::Imap {
                    uid_validity: v,
                    uid,
                })
            };
            if k.unacked.iter().any(|u| !acked(&inner.state, *u)) {
                return Ok(None);
            }
            let newer = self.with_imap(inner, |s| {
                if s.selected().map(|sel| sel.uid_validity) != Some(v) {
                    return Ok(None);
                }
                s.uids_after(k.upto).map(Some)
            })?;
            if let Some(newer) = newer {
                if newer.iter().any(|u| !acked(&inner.state, *u)) {
                    return Ok(None);
                }
                return Ok(Some(newer.last().copied().unwrap_or(k.upto).max(k.upto)));
            }
        }
        let ids = self.list_ids(inner)?;
        let mut highest = 0;
        for (id, _) in &ids {
            if !inner.state.is_acked(id) {
                return Ok(None);
            }
            if let Id::Imap { uid, .. } = id {
                highest = highest.max(*uid);
            }
        }
        Ok(Some(highest))
    }

    fn wait_in(&self, inner: &mut Inner, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        match self.protocol {
            Protocol::Pop3 => loop {
                self.end_pop3_session(inner);
                self.connect(inner, false)?;
                if self.unacked_present(inner)?.is_none() {
                    return Ok(true);
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(false);
                }
                self.sleep(POP3_RECHECK.min(deadline - now))?;
            },
            _ => {
                self.ensure(inner)?;
                let Some(highest) = self.unacked_present(inner)? else {
                    return Ok(true);
                };
                loop {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(false);
                    }
                    // IDLE (or NOOPs) until the folder changes; a change
                    // that brought no new UID (an expunge, flags, what our
                    // own commands caused) waits on.
                    let left = deadline - now;
                    let changed = self.with_imap(inner, |s| s.idle_wait(left))?;
                    if !changed {
                        return Ok(false);
                    }
                    let newer = self.with_imap(inner, |s| s.uids_after(highest))?;
                    if !newer.is_empty() {
                        return Ok(true);
                    }
                    // Never spin: a server reporting changes in a loop is
                    // looked at once per recheck interval.
                    let now = Instant::now();
                    if now < deadline {
                        self.sleep(IMAP_RECHECK.min(deadline - now))?;
                    }
                }
            }
        }
    }

    // ---- folders ----

    /// The folders of the mailbox (IMAP LIST with special-use flags).
    pub fn list_folders(&self) -> Result<Vec<Folder>> {
        if self.protocol == Protocol::Pop3 {
            return Err(Error::new(
                ErrorKind::InvalidState,
                Text::new(
                    "POP3 has no folders: list_folders needs an IMAP mailbox",
                    "POP3 kennt keine Ordner: list_folders braucht ein IMAP-Postfach",
                ),
            ));
        }
        self.call(|mb, inner| {
            let token = mb.token(inner, false)?;
            match folders::list(&inner.ep, &mb.interrupt, &inner.req.mailbox, &token) {
                Err(e) if e.kind == ErrorKind::AuthRejected => {
                    let token = mb.token(inner, true)?;
                    folders::list(&inner.ep, &mb.interrupt, &inner.req.mailbox, &token)
                }
                r => r,
            }
        })
    }

    // ---- closing ----

    /// Closes the mailbox now: POP3 QUIT (committing deletions) or IMAP
    /// LOGOUT, then the state lock is released. Later calls fail with
    /// `INVALID_STATE`.
    pub fn close(&self) {
        self.cancel();
        let taken = match self.inner.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        self.closed.store(true, Ordering::SeqCst);
        if let Some(mut inner) = taken {
            if self.interrupt.is_fired() {
                inner.conn = None;
                self.interrupt.reset();
            }
            self.end_pop3_session(&mut inner);
            if let Some(Conn::Imap(s)) = inner.conn.take() {
                let _ = s.logout();
            }
            drop(inner.guard.take());
        }
    }

    /// Closes without blocking the caller for long: the state lock is
    /// released at once, the session is ended (QUIT / LOGOUT, bounded by
    /// the network timeout) on a short-lived thread. Deletions that QUIT
    /// commits there stay pending in the stored state; the next poll finds
    /// them gone and forgets them.
    pub fn close_in_background(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.cancel();
        let taken = match self.inner.try_lock() {
            Ok(mut g) => g.take(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().take(),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        let Some(mut inner) = taken else {
            // A call is still running (the host should have cancelled it
            // first): it ends promptly; the next lock holder cleans up.
            return;
        };
        drop(inner.guard.take());
        let conn = if self.interrupt.is_fired() {
            None
        } else {
            inner.conn.take()
        };
        drop(inner);
        if let Some(conn) = conn {
            let spawned = std::thread::Builder::new()
                .name("mailoauth-mailbox-close".into())
                .spawn(move || match conn {
                    Conn::Imap(s) => {
                        let _ = s.logout();
                    }
                    Conn::Pop3(p) => {
                        let _ = p.s.quit();
                    }
                });
            if spawned.is_err() {
                log::debug!("could not start a thread to end a mailbox session");
            }
        }
    }

    /// The context was freed: stop everything (no store access after).
    pub fn context_closed(&self) {
        self.close_in_background();
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        if let Ok(mut g) = self.inner.lock()
            && let Some(mut inner) = g.take()
        {
            drop(inner.guard.take());
        }
    }
}

/// Failures that may go away by themselves: the change is retried.
fn is_retryable(e: &Error) -> bool {
    e.transient
        || matches!(
            e.kind,
            ErrorKind::Network
                | ErrorKind::Timeout
                | ErrorKind::Cancelled
                | ErrorKind::Throttled
                | ErrorKind::AuthRejected
                | ErrorKind::ConsentRequired
                | ErrorKind::Tls
        )
}

/// Ids as a set (tests, diagnostics).
pub fn id_set(list: &[Summary]) -> HashSet<String> {
    list.iter().map(|s| s.id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::parse(
            r#"{"client_id":"00000000-0000-0000-0000-0000000000a1","provider":"custom",
                "authority":"http://127.0.0.1:1","allow_plaintext_loopback":true,
                "servers":{"imap":{"host":"127.0.0.9","port":1993,"security":"tls"}}}"#,
        )
        .unwrap()
        .config
    }

    #[test]
    fn requests_are_strict() {
        let c = config();
        let r = OpenRequest::parse(r#"{"account":"a@contoso.test"}"#, &c).unwrap();
        assert_eq!(r.mailbox, "a@contoso.test");
        assert_eq!(r.protocol, Protocol::Imap);
        assert_eq!(r.folder, "INBOX");
        assert_eq!(r.start, Start::All);
        assert_eq!(r.lock_timeout, Duration::ZERO);
        let r = OpenRequest::parse(
            r#"{"account":"a@x","mailbox":"s@x","protocol":"pop3","folder":"inbox","start":"new","lock_timeout_ms":250}"#,
            &c,
        )
        .unwrap();
        assert_eq!((r.protocol, r.start), (Protocol::Pop3, Start::New));
        assert_eq!(r.folder, "INBOX");
        assert_eq!(r.lock_timeout, Duration::from_millis(250));
        let kind = |j: &str| OpenRequest::parse(j, &c).unwrap_err().kind;
        assert_eq!(
            kind(r#"{"account":"a@x","colour":1}"#),
            ErrorKind::InvalidConfig
        );
        assert_eq!(
            kind(r#"{"account":"a@x","account":"b@x"}"#),
            ErrorKind::InvalidConfig
        );
        assert_eq!(kind(r#"{}"#), ErrorKind::InvalidConfig);
        assert_eq!(kind(r#"[1]"#), ErrorKind::InvalidConfig);
        assert_eq!(
            kind(r#"{"account":"a@x","protocol":"smtp"}"#),
            ErrorKind::InvalidConfig
        );
        assert_eq!(
            kind(r#"{"account":"a@x","start":"old"}"#),
            ErrorKind::InvalidConfig
        );
        assert_eq!(
            kind(r#"{"account":"a@x","protocol":"pop3","folder":"Archive"}"#),
            ErrorKind::InvalidConfig
        );
        assert_eq!(
            kind(r#"{"account":"a@x","folder":"a\r\nb"}"#),
            ErrorKind::InvalidArgument
        );
        assert_eq!(kind(r#"{"account":"a\n@x"}"#), ErrorKind::InvalidArgument);
        assert_eq!(
            kind(r#"{"account":"a@x","lock_timeout_ms":99999999999}"#),
            ErrorKind::InvalidConfig
        );
        assert_eq!(
            kind(r#"{"account":"a@x","server":{"host":"10.0.0.1","security":"none"}}"#),
            ErrorKind::InvalidConfig
        );
    }

    #[test]
    fn tokens_go_only_to_trusted_hosts() {
        let c = config();
        let req = OpenRequest::parse(
            r#"{"account":"a@x","server":{"host":"evil.example","port":993}}"#,
            &c,
        )
        .unwrap();
        assert_eq!(
            endpoint(&c, &req).unwrap_err().kind,
            ErrorKind::UntrustedHost
        );
        let req = OpenRequest::parse(r#"{"account":"a@x"}"#, &c).unwrap();
        let ep = endpoint(&c, &req).unwrap();
        assert_eq!((ep.host.as_str(), ep.port), ("127.0.0.9", 1993));
        let req = OpenRequest::parse(r#"{"account":"a@x","protocol":"pop3"}"#, &c).unwrap();
        assert_eq!(
            endpoint(&c, &req).unwrap_err().kind,
            ErrorKind::InvalidConfig
        );
    }
}

/// `list_folders`: a short IMAP exchange of its own (login, `LIST "" "*"`
/// with `RETURN (SPECIAL-USE)` where offered, LOGOUT), every line bounded.
/// Protocol lines and tokens are never logged.
mod folders {
    use base64::Engine as _;

    use super::{Folder, shown};
    use crate::config::Security;
    use crate::error::{Error, ErrorKind, Result};
    use crate::i18n::Text;
    use crate::mailbox::net::{self, Endpoint, Interrupt, Stream};
    use crate::mailbox::pop3::wire::{Reader, WireError};
    use crate::mailbox::sasl::{self, Mechanism};
    use crate::secret::Secret;

    const MAX_LINE: usize = 64 * 1024;
    const MAX_FOLDERS: usize = 100_000;

    struct Conn<'a> {
        r: Reader<Stream>,
        ep: &'a Endpoint,
        interrupt: &'a Interrupt,
        tag: u32,
    }

    fn protocol(host: &str, en: &str, de: &str) -> Error {
        Error::new(
            ErrorKind::Protocol,
            Text::new(
                format!("IMAP server {host} (LIST): {en}"),
                format!("IMAP-Server {host} (LIST): {de}"),
            ),
        )
    }

    impl Conn<'_> {
        fn wire(&self, e: WireError, what: &str) -> Error {
            if self.interrupt.is_fired() {
                return Error::cancelled();
            }
            match e {
                WireError::Io(io) => net::io_error(io, &self.ep.host, what),
                WireError::Eof => net::connection_closed(&self.ep.host, what),
                _ => protocol(
                    &self.ep.host,
                    "a response line is too long",
                    "eine Antwortzeile ist zu lang",
                ),
            }
        }

        fn line(&mut self, what: &str) -> Result<Vec<u8>> {
            self.interrupt.check()?;
            self.r.read_line(MAX_LINE).map_err(|e| self.wire(e, what))
        }

        fn send(&mut self, line: &str, what: &str) -> Result<()> {
            use std::io::Write as _;
            self.interrupt.check()?;
            let s = self.r.get_mut();
            s.write_all(line.as_bytes())
                .and_then(|()| s.write_all(b"\r\n"))
                .and_then(|()| s.flush())
                .map_err(|e| {
                    if self.interrupt.is_fired() {
                        Error::cancelled()
                    } else {
                        net::io_error(e, &self.ep.host, what)
                    }
                })
        }

        fn next_tag(&mut self) -> String {
            self.tag += 1;
            format!("f{}", self.tag)
        }

        /// Sends a command; returns its untagged lines and the tagged
        /// status text (`OK …`, `NO …`, `BAD …`).
        fn command(&mut self, cmd: &str, what: &str) -> Result<(Vec<Vec<u8>>, String)> {
            let tag = self.next_tag();
            self.send(&format!("{tag} {cmd}"), what)?;
            self.collect(&tag, what)
        }

        fn collect(&mut self, tag: &str, what: &str) -> Result<(Vec<Vec<u8>>, String)> {
            let mut untagged = Vec::new();
            let prefix = format!("{tag} ");
            loop {
                let line = self.line(what)?;
                if let Some(rest) = line.strip_prefix(prefix.as_bytes()) {
                    return Ok((untagged, String::from_utf8_lossy(rest).into_owned()));
                }
                if untagged.len() >= MAX_FOLDERS {
                    return Err(Error::new(
                        ErrorKind::TooLarge,
                        Text::new(
                            format!("{} listed more than {MAX_FOLDERS} folders", self.ep.host),
                            format!(
                                "{} hat mehr als {MAX_FOLDERS} Ordner gemeldet",
                                self.ep.host
                            ),
                        ),
                    ));
                }
                untagged.push(line);
            }
        }
    }

    fn is_ok(status: &str) -> bool {
        status
            .get(..2)
            .is_some_and(|s| s.eq_ignore_ascii_case("OK"))
    }

    /// Logs in and lists the folders.
    pub(super) fn list(
        ep: &Endpoint,
        interrupt: &Interrupt,
        user: &str,
        token: &Secret,
    ) -> Result<Vec<Folder>> {
        let stream = net::connect(ep, interrupt)?;
        let mut c = Conn {
            r: Reader::new(stream),
            ep,
            interrupt,
            tag: 0,
        };
        let greeting = c.line("greeting")?;
        if !greeting.starts_with(b"* OK") {
            return Err(protocol(
                &ep.host,
                "the server did not greet with * OK",
                "der Server hat nicht mit * OK begrüßt",
            ));
        }
        if ep.security == Security::StartTls {
            let (_, st) = c.command("STARTTLS", "STARTTLS")?;
            if !is_ok(&st) {
                return Err(Error::new(
                    ErrorKind::Tls,
                    Text::new(
                        format!("{} refused STARTTLS", ep.host),
                        format!("{} hat STARTTLS abgelehnt", ep.host),
                    ),
                ));
            }
            let Ok(plain) = c.r.into_inner() else {
                return Err(protocol(
                    &ep.host,
                    "the server sent data before the TLS handshake",
                    "der Server hat vor dem TLS-Handshake Daten gesendet",
                ));
            };
            c = Conn {
                r: Reader::new(plain.start_tls(ep)?),
                ep,
                interrupt,
                tag: c.tag,
            };
        }
        let caps = capabilities(&mut c)?;
        let mech = if caps.iter().any(|x| x == "AUTH=XOAUTH2") {
            Mechanism::XOAuth2
        } else if caps.iter().any(|x| x == "AUTH=OAUTHBEARER") {
            Mechanism::OAuthBearer
        } else {
            return Err(protocol(
                &ep.host,
                "no OAuth login offered (AUTH=XOAUTH2 or AUTH=OAUTHBEARER)",
                "keine OAuth-Anmeldung angeboten (AUTH=XOAUTH2 oder AUTH=OAUTHBEARER)",
            ));
        };
        let tag = c.next_tag();
        c.send(
            &format!("{tag} AUTHENTICATE {}", mech.name()),
            "AUTHENTICATE",
        )?;
        let mut sent = false;
        let status = loop {
            let line = c.line("AUTHENTICATE")?;
            if line.starts_with(b"+") {
                if sent {
                    c.send(mech.error_reply_b64(), "AUTHENTICATE")?;
                } else {
                    let payload = mech.payload_b64(user, token, &ep.host, ep.port);
                    c.send(payload.as_str(), "AUTHENTICATE")?;
                    sent = true;
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix(format!("{tag} ").as_bytes()) {
                break String::from_utf8_lossy(rest).into_owned();
            }
        };
        if !is_ok(&status) {
            return Err(Error::new(
                ErrorKind::AuthRejected,
                Text::new(
                    format!("{} rejected the access token (IMAP)", ep.host),
                    format!("{} hat das Zugriffstoken abgelehnt (IMAP)", ep.host),
                ),
            )
            .with_hint(sasl::auth_rejected_hint("IMAP"))
            .with_server_reply(&status));
        }
        // Capabilities may change after login.
        let caps = capabilities(&mut c)?;
        let cmd = if caps.iter().any(|x| x == "SPECIAL-USE") {
            r#"LIST "" "*" RETURN (SPECIAL-USE)"#
        } else {
            r#"LIST "" "*""#
        };
        let (lines, st) = c.command(cmd, "LIST")?;
        if !is_ok(&st) {
            return Err(
                protocol(&ep.host, "LIST was refused", "LIST wurde abgelehnt")
                    .with_server_reply(&st),
            );
        }
        let mut out: Vec<Folder> = lines.iter().filter_map(|l| parse_list(l)).collect();
        out.sort_by(|a, b| {
            (a.name != "INBOX")
                .cmp(&(b.name != "INBOX"))
                .then_with(|| a.name.cmp(&b.name))
        });
        let _ = c.command("LOGOUT", "LOGOUT");
        Ok(out)
    }

    fn capabilities(c: &mut Conn<'_>) -> Result<Vec<String>> {
        let (lines, st) = c.command("CAPABILITY", "CAPABILITY")?;
        if !is_ok(&st) {
            return Err(protocol(
                &c.ep.host,
                "CAPABILITY was refused",
                "CAPABILITY wurde abgelehnt",
            ));
        }
        let mut caps = Vec::new();
        for l in lines {
            let t = String::from_utf8_lossy(&l).to_ascii_uppercase();
            if let Some(rest) = t.strip_prefix("* CAPABILITY ") {
                caps.extend(rest.split_ascii_whitespace().map(str::to_string));
            }
        }
        Ok(caps)
    }

    /// One `* LIST (attrs) delim name` line; None for anything else
    /// (literal names included: they are not listed).
    pub(super) fn parse_list(line: &[u8]) -> Option<Folder> {
        let text = std::str::from_utf8(line).ok()?;
        let rest = text.strip_prefix("* LIST ")?;
        let rest = rest.strip_prefix('(')?;
        let close = rest.find(')')?;
        let attrs: Vec<String> = rest
            .get(..close)?
            .split_ascii_whitespace()
            .map(|a| a.to_ascii_lowercase())
            .collect();
        let rest = rest.get(close + 1..)?.trim_start();
        let (delimiter, rest) = if let Some(r) = rest.strip_prefix("NIL") {
            (None, r)
        } else {
            let (d, r) = quoted(rest)?;
            (Some(d), r)
        };
        let rest = rest.trim();
        let wire = if rest.starts_with('"') {
            quoted(rest)?.0
        } else if rest.is_empty() || rest.starts_with('{') {
            return None;
        } else {
            rest.to_string()
        };
        let name = decode_mutf7(&wire).unwrap_or(wire);
        let special = if name.eq_ignore_ascii_case("INBOX") {
            Some("inbox")
        } else {
            attrs.iter().find_map(|a| match a.as_str() {
                "\\sent" => Some("sent"),
                "\\drafts" => Some("drafts"),
                "\\trash" => Some("trash"),
                "\\junk" => Some("junk"),
                "\\archive" => Some("archive"),
                "\\all" => Some("all"),
                "\\flagged" => Some("flagged"),
                _ => None,
            })
        };
        let name = if name.eq_ignore_ascii_case("INBOX") {
            "INBOX".to_string()
        } else {
            name
        };
        if name.chars().any(|c| c.is_control()) {
            return None;
        }
        let _ = shown;
        Some(Folder {
            name,
            delimiter,
            special: special.map(str::to_string),
        })
    }

    /// A quoted string at the start of `s` and the rest after it.
    fn quoted(s: &str) -> Option<(String, &str)> {
        let mut chars = s.strip_prefix('"')?.char_indices();
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?.1),
                '"' => return Some((out, s.get(i + 2..)?)),
                c => out.push(c),
            }
        }
        None
    }

    /// Modified UTF-7 (RFC 3501 §5.1.3) to UTF-8; None when malformed.
    pub(super) fn decode_mutf7(s: &str) -> Option<String> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find('&') {
            out.push_str(rest.get(..i)?);
            let after = rest.get(i + 1..)?;
            let end = after.find('-')?;
            let b64 = after.get(..end)?;
            if b64.is_empty() {
                out.push('&');
            } else {
                let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(b64.replace(',', "/"))
                    .ok()?;
                if bytes.len() % 2 != 0 {
                    return None;
                }
                let units: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect();
                out.push_str(&String::from_utf16(&units).ok()?);
            }
            rest = after.get(end + 1..)?;
        }
        out.push_str(rest);
        Some(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn list_lines() {
            let f = parse_list(br#"* LIST (\HasNoChildren \Sent) "." "Sent Items""#).unwrap();
            assert_eq!(f.name, "Sent Items");
            assert_eq!(f.delimiter.as_deref(), Some("."));
            assert_eq!(f.special.as_deref(), Some("sent"));
            let f = parse_list(br#"* LIST (\HasNoChildren) "/" INBOX"#).unwrap();
            assert_eq!(f.special.as_deref(), Some("inbox"));
            let f = parse_list(br#"* LIST () "/" "Entw&APw-rfe""#).unwrap();
            assert_eq!(f.name, "Entwürfe");
            assert_eq!(f.special, None);
            assert!(parse_list(br#"* LIST () "/" {5}"#).is_none());
            assert!(parse_list(b"* OK nothing").is_none());
            assert_eq!(decode_mutf7("a&-b").unwrap(), "a&b");
        }
    }
}
