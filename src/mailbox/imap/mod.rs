//! An IMAP session over the `imap` crate (pinned 3.0.0-alpha.15) and our
//! own rustls stream (reference crates.md §4, field-notes §1), with the
//! crate's gaps closed here:
//!
//! - STARTTLS by hand (bounded reads), then the crate on the TLS stream;
//! - `AUTHENTICATE XOAUTH2` (or OAUTHBEARER where only that is offered) in
//!   the continuation form, an error challenge answered empty (`\x01`);
//!   `[AUTHENTICATIONFAILED]` / `[UNAVAILABLE]` classified from the NO text
//!   (imap-proto leaves `code` empty); a connection dropped during
//!   authentication is a refused (perhaps oversized) token;
//! - the folder is selected right after login: Exchange's `BAD User is
//!   authenticated but not connected` becomes `MAILBOX_ACCESS_DENIED`;
//! - a read budget per command in the stream: the crate reads lines without
//!   a bound, so the stream itself fails once a response passes the budget
//!   (`TOO_LARGE`), whatever literal size the server announces;
//! - the read timeout is never removed (the crate's IDLE sets `None`);
//! - folder names quoted (and modified UTF-7 encoded) by us, also for
//!   `UID COPY`, which the crate does not quote.
//!
//! Like the POP3 session it is synchronous, runs on the caller's thread and
//! is cancelled through [`Interrupt`]; after a failure that leaves the
//! connection out of step it is *broken* and the owner reconnects.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Security;
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::log;
use crate::mailbox::net::{self, Endpoint, Interrupt, Stream};
use crate::mailbox::pop3::wire::{MAX_LINE, Reader, WireError};
use crate::mailbox::sasl::{self, Mechanism};
use crate::mailbox::summary::Summary;
use crate::secret::Secret;

mod bodies;
mod idle;
pub mod names;
pub mod resp;
mod select;
pub mod wire;

pub use bodies::IndexEntry;
use wire::{Budget, ImapStream, SharedWire};

/// The read budget of an ordinary command (SELECT, SEARCH, STORE …).
pub const COMMAND_BUDGET: u64 = 32 * 1024 * 1024;
/// Summaries are fetched in chunks of this many messages …
pub const SUMMARY_CHUNK: usize = 500;
/// … each with this read budget (headers of 128 KiB on average).
pub const SUMMARY_BUDGET: u64 = 64 * 1024 * 1024;

/// Session settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// `limits.max_message_bytes`.
    pub max_message_bytes: u64,
    /// Bodies fetched per command: at most this many bytes …
    pub window_bytes: u64,
    /// … and this many messages.
    pub window_messages: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_message_bytes: 50 * 1024 * 1024,
            window_bytes: 16 * 1024 * 1024,
            window_messages: 500,
        }
    }
}

/// The selected folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub name: String,
    pub uid_validity: u32,
    pub exists: u32,
    pub uid_next: Option<u32>,
}

/// An authenticated IMAP session.
pub struct Session {
    s: imap::Session<ImapStream>,
    host: String,
    user: String,
    caps: Vec<String>,
    budget: Arc<Budget>,
    opts: Options,
    interrupt: Interrupt,
    selected: Option<Selected>,
    broken: bool,
    /// The connection, shared with the crate's handle.
    wire: SharedWire,
    /// Tags of our own commands (`m1`, `m2` …; the crate uses `a…`).
    tag: u32,
    /// Our readers saw EXISTS / RECENT / EXPUNGE since the last wait.
    changed: bool,
    /// Read-ahead: the last poll's messages (UID, size) in order …
    plan: Vec<(u32, u64)>,
    /// … and the bodies fetched ahead of being asked for.
    ahead: HashMap<u32, Vec<u8>>,
    /// The length of one IDLE command.
    idle_chunk: Duration,
}

/// The SASL exchange for the crate: the payload on the first (empty)
/// challenge, the error answer on any later one.
struct Sasl {
    mech: Mechanism,
    payload: zeroize::Zeroizing<Vec<u8>>,
    sent: Cell<bool>,
}

impl imap::Authenticator for Sasl {
    type Response = Vec<u8>;
    fn process(&self, _challenge: &[u8]) -> Vec<u8> {
        if self.sent.replace(true) {
            self.mech.error_reply_raw().as_bytes().to_vec()
        } else {
            self.payload.to_vec()
        }
    }
}

impl Session {
    /// Connects (implicit TLS or STARTTLS; plaintext only for `none`, which
    /// the configuration allows on loopback), authenticates as `user` with
    /// the token and selects `folder`.
    pub fn login(
        ep: &Endpoint,
        interrupt: &Interrupt,
        opts: Options,
        user: &str,
        token: &Secret,
        folder: &str,
    ) -> Result<Session> {
        let budget = Arc::new(Budget::default());
        budget.set(COMMAND_BUDGET, true);
        let stream = net::connect(ep, interrupt)?;
        let (stream, greeting_read) = match ep.security {
            Security::StartTls => (starttls(stream, ep, interrupt)?, true),
            Security::Tls | Security::None => (stream, false),
        };
        let wire = SharedWire::new(stream, ep.io_timeout);
        let mut client = imap::Client::new(ImapStream {
            wire: wire.clone(),
            budget: budget.clone(),
        });
        let fail = |e: imap::Error, what: &str| -> Error {
            map_error(e, &ep.host, what, interrupt, &budget)
        };
        if greeting_read {
            client.greeting_read = true;
        } else {
            client.read_greeting().map_err(|e| fail(e, "greeting"))?;
        }
        let caps = client.capabilities().map_err(|e| fail(e, "CAPABILITY"))?;
        if caps.has_str("LOGINDISABLED") && ep.security == Security::None {
            return Err(Error::new(
                ErrorKind::Tls,
                Text::new(
                    format!("{} refuses logins without TLS", ep.host),
                    format!("{} verweigert Anmeldungen ohne TLS", ep.host),
                ),
            ));
        }
        let mech = if caps.has_str("AUTH=XOAUTH2") {
            Mechanism::XOAuth2
        } else if caps.has_str("AUTH=OAUTHBEARER") {
            Mechanism::OAuthBearer
        } else {
            return Err(Error::new(
                ErrorKind::Protocol,
                Text::new(
                    format!(
                        "{} offers no OAuth login over IMAP (no AUTH=XOAUTH2 or AUTH=OAUTHBEARER)",
                        ep.host
                    ),
                    format!(
                        "{} bietet keine OAuth-Anmeldung über IMAP an (weder AUTH=XOAUTH2 noch AUTH=OAUTHBEARER)",
                        ep.host
                    ),
                ),
            ));
        };
        drop(caps);
        log::debug!(
            "IMAP {}: AUTHENTICATE {} as {user} (token {} chars)",
            ep.host,
            mech.name(),
            token.expose().len()
        );
        let auth = Sasl {
            mech,
            payload: mech.payload(user, token, &ep.host, ep.port),
            sent: Cell::new(false),
        };
        let s = match client.authenticate(mech.name(), &auth) {
            Ok(s) => s,
            Err((e, _client)) => {
                return Err(auth_error(
                    e,
                    &ep.host,
                    token.expose().len(),
                    interrupt,
                    &budget,
                ));
            }
        };
        let mut session = Session {
            s,
            host: ep.host.clone(),
            user: user.to_string(),
            caps: Vec::new(),
            budget,
            opts,
            interrupt: interrupt.clone(),
            selected: None,
            broken: false,
            wire,
            tag: 0,
            changed: false,
            plan: Vec::new(),
            ahead: HashMap::new(),
            idle_chunk: idle::IDLE_CHUNK,
        };
        session.refresh_capabilities()?;
        session.select(folder)?;
        Ok(session)
    }

    fn refresh_capabilities(&mut self) -> Result<()> {
        self.begin(COMMAND_BUDGET)?;
        let caps = self.s.capabilities();
        let caps = self.check(caps, "CAPABILITY")?;
        let known = [
            "UIDPLUS",
            "MOVE",
            "IDLE",
            "SPECIAL-USE",
            "CONDSTORE",
            "QRESYNC",
            "BINARY",
            "LITERAL+",
            "ENABLE",
            "ID",
            "NAMESPACE",
            "UNSELECT",
        ];
        self.caps = known
            .iter()
            .filter(|k| caps.has_str(**k))
            .map(|k| k.to_string())
            .collect();
        Ok(())
    }

    /// True when the server (after login) advertises `cap` (one of UIDPLUS,
    /// MOVE, IDLE, SPECIAL-USE, CONDSTORE, QRESYNC, BINARY, LITERAL+,
    /// ENABLE, ID, NAMESPACE, UNSELECT).
    pub fn has_capability(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
    }

    /// Stops using a capability the server advertises (a server that
    /// advertises MOVE or UIDPLUS but fails them; tests of the fallbacks).
    pub fn disable_capability(&mut self, cap: &str) {
        self.caps.retain(|c| !c.eq_ignore_ascii_case(cap));
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    pub fn selected(&self) -> Option<&Selected> {
        self.selected.as_ref()
    }

    /// Selects a folder. Exchange's "authenticated but not connected" is
    /// `MAILBOX_ACCESS_DENIED`; an unknown folder is `NOT_FOUND`.
    pub fn select(&mut self, folder: &str) -> Result<Selected> {
        let wire = names::encode(folder)?;
        // Our own reader: the crate panics on an untagged NO in the
        // response (select.rs).
        let sel = self.select_own(folder, &wire)?;
        self.selected = Some(sel.clone());
        self.plan.clear();
        self.ahead.clear();
        self.changed = false;
        Ok(sel)
    }

    /// The UIDs of the selected folder above `after` (0: all), ascending.
    pub fn uids_after(&mut self, after: u32) -> Result<Vec<u32>> {
        self.begin(COMMAND_BUDGET)?;
        let query = if after == 0 {
            "ALL".to_string()
        } else {
            format!("UID {}:*", after.saturating_add(1))
        };
        let r = self.s.uid_search(&query);
        let set = self.check(r, "UID SEARCH")?;
        let mut uids: Vec<u32> = set.into_iter().filter(|u| *u > after).collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The UIDVALIDITY of the selected folder (ids are `UIDVALIDITY:UID`;
    /// when it changes, the old UIDs mean nothing: see [`Session::index`]).
    pub fn uid_validity(&self) -> Option<u32> {
        self.selected.as_ref().map(|s| s.uid_validity)
    }

    fn validity(&self) -> Result<u32> {
        self.selected
            .as_ref()
            .map(|s| s.uid_validity)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidState,
                    Text::new("no folder is selected", "kein Ordner ist ausgewählt"),
                )
            })
    }

    /// Summaries of these messages (one `UID FETCH` per 500: UID,
    /// RFC822.SIZE, INTERNALDATE, BODY.PEEK[HEADER]), ids
    /// `UIDVALIDITY:UID`, in the order of `uids`; messages that are gone
    /// are left out.
    pub fn summaries(&mut self, uids: &[u32]) -> Result<Vec<Summary>> {
        let validity = self.validity()?;
        let mut out = Vec::with_capacity(uids.len());
        for chunk in uids.chunks(SUMMARY_CHUNK) {
            self.begin(SUMMARY_BUDGET)?;
            let set = uid_set(chunk);
            let r = self
                .s
                .uid_fetch(&set, "(UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER])");
            let fetches = self.check(r, "UID FETCH (summaries)")?;
            let mut got: Vec<(u32, Summary)> = Vec::with_capacity(chunk.len());
            for f in fetches.iter() {
                let Some(uid) = f.uid else { continue };
                let date = f.internal_date().map(|d| d.to_rfc3339());
                got.push((
                    uid,
                    Summary::parse(
                        format!("{validity}:{uid}"),
                        u64::from(f.size.unwrap_or(0)),
                        f.header().unwrap_or_default(),
                        date,
                    ),
                ));
            }
            got.sort_by_key(|(u, _)| *u);
            for uid in chunk {
                if let Ok(i) = got.binary_search_by_key(uid, |(u, _)| *u) {
                    out.push(got[i].1.clone());
                }
            }
        }
        Ok(out)
    }

    /// The sizes (RFC822.SIZE) of these messages.
    pub fn sizes(&mut self, uids: &[u32]) -> Result<Vec<(u32, u64)>> {
        let mut out = Vec::with_capacity(uids.len());
        for chunk in uids.chunks(5000) {
            self.begin(COMMAND_BUDGET)?;
            let r = self.s.uid_fetch(uid_set(chunk), "(UID RFC822.SIZE)");
            let fetches = self.check(r, "UID FETCH (sizes)")?;
            out.extend(
                fetches
                    .iter()
                    .filter_map(|f| Some((f.uid?, u64::from(f.size?)))),
            );
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Sets \Seen (`UID STORE +FLAGS.SILENT`).
    pub fn mark_seen(&mut self, uids: &[u32]) -> Result<()> {
        self.store(uids, "+FLAGS.SILENT (\\Seen)")
    }

    /// The flags of one message (as the server spells them).
    pub fn flags(&mut self, uid: u32) -> Result<Vec<String>> {
        self.begin(COMMAND_BUDGET)?;
        let r = self.s.uid_fetch(uid.to_string(), "(UID FLAGS)");
        let fetches = self.check(r, "UID FETCH (flags)")?;
        let f = fetches
            .iter()
            .find(|f| f.uid == Some(uid))
            .ok_or_else(|| not_found(uid))?;
        Ok(f.flags().iter().map(|fl| fl.to_string()).collect())
    }

    fn store(&mut self, uids: &[u32], what: &str) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        self.begin(COMMAND_BUDGET)?;
        let r = self.s.uid_store(uid_set(uids), what);
        self.check(r, "UID STORE").map(|_| ())
    }

    /// Moves messages to `folder`: `UID MOVE` where offered, else `UID
    /// COPY` plus delete.
    pub fn move_to(&mut self, uids: &[u32], folder: &str) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let wire = names::encode(folder)?;
        self.forget(uids);
        self.begin(COMMAND_BUDGET)?;
        if self.has_capability("MOVE") {
            let r = self.s.uid_mv(uid_set(uids), &wire);
            return self.check_folder(r, "UID MOVE", folder);
        }
        // The crate does not quote COPY's folder name: we do.
        let r = self.s.uid_copy(uid_set(uids), names::quote(&wire));
        self.check_folder(r, "UID COPY", folder)?;
        self.delete(uids)
    }

    /// Deletes messages: \Deleted, then `UID EXPUNGE` (UIDPLUS). Without
    /// UIDPLUS an `EXPUNGE` runs only when no other message of the folder
    /// is marked \Deleted; otherwise ours stay marked (and the log says so).
    pub fn delete(&mut self, uids: &[u32]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        self.forget(uids);
        self.store(uids, "+FLAGS.SILENT (\\Deleted)")?;
        self.begin(COMMAND_BUDGET)?;
        if self.has_capability("UIDPLUS") {
            let r = self.s.uid_expunge(uid_set(uids));
            return self.check(r, "UID EXPUNGE").map(|_| ());
        }
        let r = self.s.uid_search("DELETED");
        let marked = self.check(r, "UID SEARCH DELETED")?;
        if marked.iter().all(|u| uids.contains(u)) {
            self.begin(COMMAND_BUDGET)?;
            let r = self.s.expunge();
            self.check(r, "EXPUNGE").map(|_| ())
        } else {
            log::warning!(
                "IMAP {}: other messages are marked deleted; {} message(s) stay marked \\Deleted until an expunge",
                self.host,
                uids.len()
            );
            Ok(())
        }
    }

    /// `NOOP`.
    pub fn noop(&mut self) -> Result<()> {
        self.begin(COMMAND_BUDGET)?;
        let r = self.s.noop();
        self.check(r, "NOOP")
    }

    /// `LOGOUT`.
    pub fn logout(mut self) -> Result<()> {
        self.begin(COMMAND_BUDGET)?;
        let r = self.s.logout();
        self.check(r, "LOGOUT")
    }

    // ---- plumbing ----

    fn begin(&mut self, budget: u64) -> Result<()> {
        self.begin_with(budget, true)
    }

    fn begin_with(&mut self, budget: u64, sniff: bool) -> Result<()> {
        self.interrupt.check()?;
        if self.broken {
            return Err(Error::new(
                ErrorKind::Network,
                Text::new(
                    format!("the IMAP connection to {} was lost earlier", self.host),
                    format!(
                        "die IMAP-Verbindung zu {} ist bereits abgebrochen",
                        self.host
                    ),
                ),
            )
            .transient());
        }
        self.budget.set(budget, sniff);
        Ok(())
    }

    fn check<T>(&mut self, r: imap::Result<T>, what: &str) -> Result<T> {
        r.map_err(|e| self.fail(e, what))
    }

    fn check_folder<T>(&mut self, r: imap::Result<T>, what: &str, folder: &str) -> Result<T> {
        match r {
            Err(imap::Error::No(n)) => Err(Error::new(
                ErrorKind::NotFound,
                Text::new(
                    format!("{} refused {what} to '{folder}'", self.host),
                    format!("{} hat {what} nach '{folder}' abgelehnt", self.host),
                ),
            )
            .with_server_reply(&n.information)),
            r => self.check(r, what),
        }
    }

    fn fail(&mut self, e: imap::Error, what: &str) -> Error {
        if let imap::Error::Bad(b) = &e
            && is_not_connected(&b.information)
        {
            self.broken = true;
            return self.access_denied(&b.information);
        }
        if !matches!(
            e,
            imap::Error::No(_) | imap::Error::Bad(_) | imap::Error::Validate(_)
        ) {
            self.broken = true;
            // A BYE before the connection closed is kept as unsolicited.
            let bye = self
                .s
                .take_all_unsolicited()
                .find_map(|u| match u {
                    imap::types::UnsolicitedResponse::Bye { information, .. } => {
                        Some(information.unwrap_or_default())
                    }
                    _ => None,
                })
                .or_else(|| self.budget.take_bye());
            if let Some(info) = bye
                && !self.interrupt.is_fired()
            {
                return bye_error(&self.host, what, &info);
            }
        }
        map_error(e, &self.host, what, &self.interrupt, &self.budget)
    }

    fn access_denied(&self, reply: &str) -> Error {
        Error::new(
            ErrorKind::MailboxAccessDenied,
            Text::new(
                format!(
                    "{} accepted the login but refuses the mailbox {}",
                    self.host, self.user
                ),
                format!(
                    "{} hat die Anmeldung angenommen, verweigert aber das Postfach {}",
                    self.host, self.user
                ),
            ),
        )
        .with_hint(sasl::mailbox_access_hint(&self.user))
        .with_server_reply(reply)
    }
}

/// STARTTLS by hand, with bounded reads: greeting, `a0 STARTTLS`, the
/// tagged OK, nothing buffered, then the handshake.
fn starttls(stream: Stream, ep: &Endpoint, interrupt: &Interrupt) -> Result<Stream> {
    let mut r = Reader::new(stream);
    let host = &ep.host;
    let read = |r: &mut Reader<Stream>| -> Result<Vec<u8>> {
        r.read_line(MAX_LINE).map_err(|e| {
            if interrupt.is_fired() {
                return Error::cancelled();
            }
            match e {
                WireError::Io(e) => net::io_error(e, host, "STARTTLS"),
                WireError::Eof => net::connection_closed(host, "STARTTLS"),
                _ => protocol(
                    host,
                    "STARTTLS",
                    "a line is too long",
                    "eine Zeile ist zu lang",
                ),
            }
        })
    };
    let greeting = read(&mut r)?;
    if !greeting.starts_with(b"* OK") && !greeting.starts_with(b"* PREAUTH") {
        return Err(protocol(
            host,
            "greeting",
            "the server did not greet with * OK",
            "der Server hat nicht mit * OK begrüßt",
        )
        .with_server_reply(&String::from_utf8_lossy(&greeting))
        .transient());
    }
    r.get_mut()
        .write_all(b"a0 STARTTLS\r\n")
        .and_then(|_| r.get_mut().flush())
        .map_err(|e| net::io_error(e, host, "STARTTLS"))?;
    let mut lines = 0;
    loop {
        let line = read(&mut r)?;
        lines += 1;
        if line.starts_with(b"a0 ") {
            if line
                .get(3..5)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"OK"))
            {
                break;
            }
            return Err(Error::new(
                ErrorKind::Tls,
                Text::new(
                    format!("{host} refused STARTTLS; refusing to continue without TLS"),
                    format!("{host} hat STARTTLS abgelehnt; ohne TLS geht es nicht weiter"),
                ),
            )
            .with_server_reply(&String::from_utf8_lossy(&line)));
        }
        if lines > 100 {
            return Err(protocol(
                host,
                "STARTTLS",
                "no answer to STARTTLS",
                "keine Antwort auf STARTTLS",
            ));
        }
    }
    let Ok(plain) = r.into_inner() else {
        return Err(protocol(
            host,
            "STARTTLS",
            "the server sent data before the TLS handshake",
            "der Server hat vor dem TLS-Handshake Daten gesendet",
        ));
    };
    plain.start_tls(ep)
}

fn is_not_connected(text: &str) -> bool {
    text.to_ascii_lowercase()
        .contains("user is authenticated but not connected")
}

/// Classifies a failed AUTHENTICATE.
fn auth_error(
    e: imap::Error,
    host: &str,
    token_len: usize,
    interrupt: &Interrupt,
    budget: &Budget,
) -> Error {
    match e {
        imap::Error::No(n) => {
            let upper = n.information.to_ascii_uppercase();
            if upper.contains("[UNAVAILABLE]") {
                Error::new(
                    ErrorKind::Network,
                    Text::new(
                        format!("{host} reports a temporary failure while checking the login; try again later"),
                        format!("{host} meldet einen vorübergehenden Fehler bei der Anmeldeprüfung; später erneut versuchen"),
                    ),
                )
                .transient()
                .with_server_reply(&n.information)
            } else {
                rejected(host).with_server_reply(&n.information)
            }
        }
        imap::Error::Bad(b) => rejected(host).with_server_reply(&b.information),
        imap::Error::ConnectionLost | imap::Error::Bye(_) if !interrupt.is_fired() => Error::new(
            ErrorKind::AuthRejected,
            Text::new(
                format!("{host} closed the IMAP connection during authentication"),
                format!("{host} hat die IMAP-Verbindung während der Anmeldung geschlossen"),
            ),
        )
        .with_hint(sasl::dropped_during_auth_hint(token_len)),
        imap::Error::Io(io)
            if io.kind() == io::ErrorKind::UnexpectedEof && !interrupt.is_fired() =>
        {
            Error::new(
                ErrorKind::AuthRejected,
                Text::new(
                    format!("{host} closed the IMAP connection during authentication"),
                    format!("{host} hat die IMAP-Verbindung während der Anmeldung geschlossen"),
                ),
            )
            .with_hint(sasl::dropped_during_auth_hint(token_len))
        }
        e => map_error(e, host, "AUTHENTICATE", interrupt, budget),
    }
}

fn rejected(host: &str) -> Error {
    Error::new(
        ErrorKind::AuthRejected,
        Text::new(
            format!("{host} refused the token over IMAP"),
            format!("{host} hat das Token über IMAP abgelehnt"),
        ),
    )
    .with_hint(sasl::auth_rejected_hint("IMAP"))
}

/// Maps the crate's errors to the contract's kinds.
fn map_error(
    e: imap::Error,
    host: &str,
    what: &str,
    interrupt: &Interrupt,
    budget: &Budget,
) -> Error {
    if interrupt.is_fired() {
        return Error::cancelled();
    }
    if budget.is_exceeded() {
        return Error::new(
            ErrorKind::TooLarge,
            Text::new(
                format!("{host} sent a larger response than allowed ({what})"),
                format!("{host} hat eine größere Antwort als erlaubt gesendet ({what})"),
            ),
        );
    }
    match e {
        imap::Error::Io(io) => net::io_error(io, host, what),
        imap::Error::ConnectionLost => net::connection_closed(host, what),
        imap::Error::No(n) => Error::new(
            ErrorKind::Protocol,
            Text::new(
                format!("{host} refused {what}"),
                format!("{host} hat {what} abgelehnt"),
            ),
        )
        .with_server_reply(&n.information),
        imap::Error::Bad(b) => Error::new(
            ErrorKind::Protocol,
            Text::new(
                format!("{host} did not understand {what}"),
                format!("{host} hat {what} nicht verstanden"),
            ),
        )
        .with_server_reply(&b.information),
        imap::Error::Bye(b) => bye_error(host, what, &b.information),
        imap::Error::Validate(v) => Error::new(
            ErrorKind::InvalidArgument,
            Text::new(
                format!("not valid in an IMAP command: {v}"),
                format!("in einem IMAP-Befehl nicht zulässig: {v}"),
            ),
        ),
        other => protocol(
            host,
            what,
            &format!("unexpected response ({})", short(&other)),
            &format!("unerwartete Antwort ({})", short(&other)),
        ),
    }
}

/// A `BYE` from the server: Exchange's expired-token BYE is a refused
/// token (transient: reconnect with a fresh one); imap-proto's "no
/// explanation given" is its reading of an unparsable response.
fn bye_error(host: &str, what: &str, information: &str) -> Error {
    if information.contains("AccessTokenExpired") {
        // Exchange: "* BYE Session invalidated - AccessTokenExpired".
        Error::new(
            ErrorKind::AuthRejected,
            Text::new(
                format!("{host} ended the session: the access token expired"),
                format!("{host} hat die Sitzung beendet: das Zugriffstoken ist abgelaufen"),
            ),
        )
        .transient()
        .with_server_reply(information)
    } else if information == "no explanation given" {
        protocol(
            host,
            what,
            "a response could not be parsed",
            "eine Antwort war nicht lesbar",
        )
    } else {
        net::connection_closed(host, what).with_server_reply(information)
    }
}

/// A short description of a crate error, without response data.
fn short(e: &imap::Error) -> &'static str {
    match e {
        imap::Error::Parse(_) => "parse error",
        imap::Error::Unexpected(_) => "unexpected response",
        imap::Error::TagMismatch(_) => "tag mismatch",
        imap::Error::MissingStatusResponse => "missing status",
        _ => "other",
    }
}

fn protocol(host: &str, what: &str, en: &str, de: &str) -> Error {
    Error::new(
        ErrorKind::Protocol,
        Text::new(
            format!("IMAP server {host} ({what}): {en}"),
            format!("IMAP-Server {host} ({what}): {de}"),
        ),
    )
}

fn too_large(uid: u32, size: u64, max: u64) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        Text::new(
            format!(
                "message UID {uid} has {size} bytes, more than limits.max_message_bytes ({max})"
            ),
            format!(
                "Nachricht UID {uid} hat {size} Bytes, mehr als limits.max_message_bytes ({max})"
            ),
        ),
    )
}

fn not_found(uid: u32) -> Error {
    Error::new(
        ErrorKind::NotFound,
        Text::new(
            format!("the folder has no message with UID {uid}"),
            format!("der Ordner hat keine Nachricht mit UID {uid}"),
        ),
    )
}

/// A compact UID set: `1:5,7,9:12` (input in any order).
pub fn uid_set(uids: &[u32]) -> String {
    let mut v = uids.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = v[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests;
