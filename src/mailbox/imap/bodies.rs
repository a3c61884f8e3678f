//! Bodies and the re-synchronisation index through our own commands on
//! the session's connection ([`super::resp`]): the crate re-parses the
//! pending response after every line and reaches about 65 % of what the
//! server can send (field-notes §1.2); reading each literal in one piece
//! reaches the raw bound. The crate keeps every other command.
//!
//! Our commands run only between two of the crate's commands, when the
//! crate has nothing buffered (see [`super::wire`]), and use their own
//! tags (`m1`, `m2` …).

use std::collections::{HashMap, HashSet};
use std::io;

use super::resp::{self, Limits, RespError, Response, Status};
use super::wire::Wire;
use super::{COMMAND_BUDGET, Session, not_found, protocol, too_large, uid_set};
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::mailbox::net;
use crate::mailbox::summary::Summary;

/// One message of the selected folder for a re-synchronisation after a
/// UIDVALIDITY change: acknowledged messages are recognised by Message-ID
/// and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub uid: u32,
    /// RFC822.SIZE.
    pub size: u64,
    /// With angle brackets, as in [`Summary::message_id`]; empty when the
    /// message has none.
    pub message_id: String,
}

/// The largest header-field block accepted in the index.
const MAX_INDEX_HEADER: u64 = 1024 * 1024;

impl Session {
    /// Sends one of our own commands; returns the tag to wait for.
    pub(super) fn send_own(&mut self, w: &mut Wire, cmd: &str, what: &str) -> Result<String> {
        self.tag = self.tag.wrapping_add(1);
        let tag = format!("m{}", self.tag);
        if let Err(e) = w.send(format!("{tag} {cmd}\r\n").as_bytes()) {
            return Err(self.lost_io(e, what));
        }
        Ok(tag)
    }

    /// Reads the next response; notes mailbox changes and BYE. Any failure
    /// leaves the connection out of step: the session is broken.
    pub(super) fn next_response(
        &mut self,
        w: &mut Wire,
        left: &mut u64,
        max_literal: u64,
        what: &str,
    ) -> Result<Response> {
        self.next_response_into(w, left, max_literal, what, None)
            .map(|(r, _)| r)
    }

    /// [`Session::next_response`] with a `BODY[]` literal written to `sink`
    /// ([`resp::read_response_into`]); also the bytes written there.
    fn next_response_into(
        &mut self,
        w: &mut Wire,
        left: &mut u64,
        max_literal: u64,
        what: &str,
        sink: Option<&mut dyn io::Write>,
    ) -> Result<(Response, Option<u64>)> {
        match resp::read_response_into(&mut w.conn, Limits { max_literal }, left, sink) {
            Ok((Some(r), streamed)) => {
                match &r {
                    Response::Exists(n) => {
                        self.changed = true;
                        if let Some(s) = self.selected.as_mut() {
                            s.exists = *n;
                        }
                    }
                    Response::Recent(n) if *n > 0 => self.changed = true,
                    Response::Expunge(_) | Response::Vanished => self.changed = true,
                    Response::Bye(t) => self.budget.note_bye(t.clone()),
                    _ => {}
                }
                Ok((r, streamed))
            }
            Ok((None, _)) => Err(self.lost(RespError::Eof, what)),
            Err(e) => Err(self.lost(e, what)),
        }
    }

    pub(super) fn lost_io(&mut self, e: io::Error, what: &str) -> Error {
        self.lost(RespError::Io(e), what)
    }

    /// Maps a failure of our reader; the session is broken afterwards.
    pub(super) fn lost(&mut self, e: RespError, what: &str) -> Error {
        self.broken = true;
        if self.interrupt.is_fired() {
            return Error::cancelled();
        }
        let host = self.host.clone();
        match e {
            RespError::Io(e) => net::io_error(e, &host, what),
            RespError::Eof => match self.budget.take_bye() {
                Some(info) => super::bye_error(&host, what, &info),
                None => net::connection_closed(&host, what),
            },
            RespError::LiteralTooLarge(n) => Error::new(
                ErrorKind::TooLarge,
                Text::new(
                    format!(
                        "{host} announced {n} bytes, more than limits.max_message_bytes ({}) ({what})",
                        self.opts.max_message_bytes
                    ),
                    format!(
                        "{host} hat {n} Bytes angekündigt, mehr als limits.max_message_bytes ({}) ({what})",
                        self.opts.max_message_bytes
                    ),
                ),
            ),
            RespError::BudgetExceeded => Error::new(
                ErrorKind::TooLarge,
                Text::new(
                    format!("{host} sent a larger response than allowed ({what})"),
                    format!("{host} hat eine größere Antwort als erlaubt gesendet ({what})"),
                ),
            ),
            RespError::Protocol(m) => protocol(
                &host,
                what,
                m,
                &format!("eine Antwort war nicht lesbar ({m})"),
            ),
        }
    }

    /// Runs one of our own commands to its tagged reply, handing each FETCH
    /// to `on` (with the bytes of its `BODY[]` written to `sink`, for the
    /// first response that has one). A tagged NO is returned (the caller
    /// decides); BAD is a protocol error.
    fn own_command(
        &mut self,
        cmd: &str,
        budget: u64,
        max_literal: u64,
        what: &str,
        mut sink: Option<&mut dyn io::Write>,
        mut on: impl FnMut(resp::Fetch, Option<u64>),
    ) -> Result<Status> {
        self.begin_with(COMMAND_BUDGET, false)?;
        let wire = self.wire.clone();
        let mut w = wire.lock();
        let tag = self.send_own(&mut w, cmd, what)?;
        let mut left = budget;
        loop {
            let out = sink.as_mut().map(|s| &mut **s as &mut dyn io::Write);
            let (r, streamed) =
                self.next_response_into(&mut w, &mut left, max_literal, what, out)?;
            if streamed.is_some() {
                sink = None;
            }
            match r {
                Response::Fetch(f) => on(f, streamed),
                Response::Tagged {
                    tag: t,
                    status,
                    text,
                } => {
                    if t != tag {
                        return Err(
                            self.lost(RespError::Protocol("a reply with a foreign tag"), what)
                        );
                    }
                    if status == Status::Bad {
                        return Err(Error::new(
                            ErrorKind::Protocol,
                            Text::new(
                                format!("{} did not understand {what}", self.host),
                                format!("{} hat {what} nicht verstanden", self.host),
                            ),
                        )
                        .with_server_reply(&text));
                    }
                    return Ok(status);
                }
                Response::Continue(_) => {
                    return Err(self.lost(RespError::Protocol("an unexpected continuation"), what));
                }
                _ => {}
            }
        }
    }

    /// One `UID FETCH <set> (UID BODY.PEEK[])`: the bodies that came back,
    /// by UID (messages gone are missing; the caller says `NotFound`).
    fn fetch_window(&mut self, window: &[(u32, u64)]) -> Result<HashMap<u32, Vec<u8>>> {
        let wanted: HashSet<u32> = window.iter().map(|(u, _)| *u).collect();
        let bytes: u64 = window.iter().map(|(_, s)| *s).sum();
        // The announced sizes bound what may come back (twice, for servers
        // whose RFC822.SIZE is only an estimate), with room for the lines.
        let budget = bytes
            .saturating_mul(2)
            .saturating_add(window.len() as u64 * 1024)
            .saturating_add(1024 * 1024);
        let max = self.opts.max_message_bytes;
        let uids: Vec<u32> = window.iter().map(|(u, _)| *u).collect();
        let mut got = HashMap::with_capacity(window.len());
        let cmd = format!("UID FETCH {} (UID BODY.PEEK[])", uid_set(&uids));
        self.own_command(&cmd, budget, max, "UID FETCH (bodies)", None, |mut f, _| {
            if let Some(uid) = f.uid
                && wanted.contains(&uid)
                && let Some(body) = f.take_section("")
            {
                got.insert(uid, body);
            }
        })?;
        Ok(got)
    }

    /// The next window of `msgs` from `*i`: at most `window_messages`
    /// messages and `window_bytes` bytes (at least one message); messages
    /// over the limit are left for the caller.
    fn next_window(&self, msgs: &[(u32, u64)], i: &mut usize) -> Vec<(u32, u64)> {
        let max = self.opts.max_message_bytes;
        let mut window = Vec::new();
        let mut bytes = 0u64;
        while *i < msgs.len() && window.len() < self.opts.window_messages.max(1) {
            let (uid, size) = msgs[*i];
            if size > max {
                break;
            }
            if !window.is_empty() && bytes.saturating_add(size) > self.opts.window_bytes {
                break;
            }
            bytes = bytes.saturating_add(size);
            window.push((uid, size));
            *i += 1;
        }
        window
    }

    /// Bodies of several messages (BODY.PEEK[]: \Seen is not set), in
    /// windows bounded in bytes and count (one `UID FETCH` per window),
    /// each handed to `each` in the order given: `Ok(bytes)` or the
    /// message's own error (`TooLarge` when its size passes the limit,
    /// `NotFound` when it is gone).
    pub fn fetch_many(
        &mut self,
        msgs: &[(u32, u64)],
        mut each: impl FnMut(u32, Result<Vec<u8>>) -> Result<()>,
    ) -> Result<()> {
        let max = self.opts.max_message_bytes;
        let mut i = 0;
        while i < msgs.len() {
            let (uid, size) = msgs[i];
            if size > max {
                i += 1;
                each(uid, Err(too_large(uid, size, max)))?;
                continue;
            }
            let window = self.next_window(msgs, &mut i);
            let mut got = self.fetch_window(&window)?;
            for &(uid, _) in &window {
                let r = got.remove(&uid).ok_or_else(|| not_found(uid));
                each(uid, r)?;
            }
        }
        Ok(())
    }

    /// Read-ahead: the messages (UID, size) of the last poll, in the order
    /// the host is likely to fetch them. [`Session::fetch`] of one of them
    /// also fetches the next ones in the same command (one window, bounded
    /// by `window_bytes` and `window_messages`), so fetching a whole poll
    /// costs about one round trip per window. Cleared by a new SELECT.
    pub fn set_read_ahead(&mut self, msgs: &[(u32, u64)]) {
        self.plan = msgs.to_vec();
        let keep: HashSet<u32> = msgs.iter().map(|(u, _)| *u).collect();
        self.ahead.retain(|u, _| keep.contains(u));
    }

    /// How many bodies were read ahead and not yet asked for.
    pub fn prefetched(&self) -> usize {
        self.ahead.len()
    }

    /// Drops read-ahead bodies of these messages (acknowledged, moved,
    /// deleted).
    pub fn forget(&mut self, uids: &[u32]) {
        for u in uids {
            self.ahead.remove(u);
        }
    }

    /// One message's raw bytes (BODY.PEEK[]: \Seen is not set): from the
    /// read-ahead when it is there; else with the next messages of the
    /// read-ahead list in one command; else alone (its size checked
    /// against `max_message_bytes` first).
    pub fn fetch(&mut self, uid: u32) -> Result<Vec<u8>> {
        if let Some(b) = self.ahead.remove(&uid) {
            return Ok(b);
        }
        let max = self.opts.max_message_bytes;
        let window = if let Some(pos) = self.plan.iter().position(|(u, _)| *u == uid) {
            let size = self.plan[pos].1;
            if size > max {
                return Err(too_large(uid, size, max));
            }
            let plan = std::mem::take(&mut self.plan);
            let mut i = pos;
            let window = self.next_window(&plan, &mut i);
            self.plan = plan;
            window
        } else {
            let sizes = self.sizes(&[uid])?;
            let Some(&(_, size)) = sizes.first() else {
                return Err(not_found(uid));
            };
            if size > max {
                return Err(too_large(uid, size, max));
            }
            vec![(uid, size)]
        };
        let mut got = self.fetch_window(&window)?;
        let body = got.remove(&uid);
        // At most one window is kept ahead.
        self.ahead = got;
        body.ok_or_else(|| not_found(uid))
    }

    /// One message's raw bytes written to `out` as they arrive (never held
    /// in memory; a body already read ahead is written from there), with
    /// its size checked against `max_message_bytes` first. Returns the
    /// bytes written. A failed write leaves the session broken (the
    /// response was not read to its end): the owner reconnects.
    pub fn fetch_to(&mut self, uid: u32, out: &mut dyn io::Write) -> Result<u64> {
        if let Some(b) = self.ahead.remove(&uid) {
            out.write_all(&b).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    Text::new(
                        format!("the message could not be written: {e}"),
                        format!("die Nachricht konnte nicht geschrieben werden: {e}"),
                    ),
                )
            })?;
            return Ok(b.len() as u64);
        }
        let max = self.opts.max_message_bytes;
        let size = match self.plan.iter().find(|(u, _)| *u == uid) {
            Some(&(_, size)) => size,
            None => match self.sizes(&[uid])?.first() {
                Some(&(_, size)) => size,
                None => return Err(not_found(uid)),
            },
        };
        if size > max {
            return Err(too_large(uid, size, max));
        }
        // Twice the announced size (servers whose RFC822.SIZE is an
        // estimate), with room for the lines.
        let budget = size.saturating_mul(2).saturating_add(1024 * 1024);
        let cmd = format!("UID FETCH {uid} (UID BODY.PEEK[])");
        let mut written = None;
        let mut foreign = false;
        self.own_command(
            &cmd,
            budget,
            max,
            "UID FETCH (body)",
            Some(out),
            |f, streamed| {
                if let Some(n) = streamed {
                    if f.uid == Some(uid) {
                        written = Some(n);
                    } else {
                        foreign = true;
                    }
                }
            },
        )?;
        if foreign {
            self.broken = true;
            return Err(protocol(
                &self.host,
                "UID FETCH (body)",
                "the body came back for another message",
                "der Inhalt kam für eine andere Nachricht zurück",
            ));
        }
        written.ok_or_else(|| not_found(uid))
    }

    /// Every message of the selected folder as (UID, size, Message-ID), in
    /// UID order, from one `UID FETCH 1:* (UID RFC822.SIZE
    /// BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])`: what a re-synchronisation
    /// after a UIDVALIDITY change matches acknowledged messages against.
    pub fn index(&mut self) -> Result<Vec<IndexEntry>> {
        let exists = self.selected.as_ref().map(|s| s.exists).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidState,
                Text::new("no folder is selected", "kein Ordner ist ausgewählt"),
            )
        })?;
        if exists == 0 {
            return Ok(Vec::new());
        }
        self.index_set("1:*", exists)
    }

    /// [`Session::index`] of some messages (those gone are left out).
    pub fn index_of(&mut self, uids: &[u32]) -> Result<Vec<IndexEntry>> {
        let mut out = Vec::with_capacity(uids.len());
        for chunk in uids.chunks(5000) {
            let n = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
            out.extend(self.index_set(&uid_set(chunk), n)?);
        }
        out.sort_by_key(|e| e.uid);
        out.dedup_by_key(|e| e.uid);
        Ok(out)
    }

    fn index_set(&mut self, set: &str, count: u32) -> Result<Vec<IndexEntry>> {
        if set.is_empty() {
            return Ok(Vec::new());
        }
        let budget = 32u64 * 1024 * 1024 + u64::from(count) * 4096;
        let mut out = Vec::with_capacity(count.min(100_000) as usize);
        let cmd =
            format!("UID FETCH {set} (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])");
        let status = self.own_command(
            &cmd,
            budget,
            MAX_INDEX_HEADER,
            "UID FETCH (index)",
            None,
            |f, _| {
                let Some(uid) = f.uid else { return };
                let header = f
                    .sections
                    .iter()
                    .find(|(n, _)| n.starts_with("HEADER"))
                    .map(|(_, d)| d.as_slice())
                    .unwrap_or_default();
                let size = f.size.unwrap_or(0);
                let message_id = if header.is_empty() {
                    String::new()
                } else {
                    Summary::parse(String::new(), size, header, None).message_id
                };
                out.push(IndexEntry {
                    uid,
                    size,
                    message_id,
                });
            },
        )?;
        if status == Status::No && out.is_empty() {
            // Dovecot: "UID FETCH 5 …" of a message just expunged is NO.
            return Ok(Vec::new());
        }
        out.sort_by_key(|e| e.uid);
        out.dedup_by_key(|e| e.uid);
        Ok(out)
    }
}
