//! Waiting for new mail: IDLE in chunks up to the caller's deadline, on
//! our own reader (field-notes §1.4).
//!
//! The crate's IDLE timeout is an inactivity timeout that Dovecot's
//! `* OK Still here` (every 2 minutes) resets, and it leaves the socket
//! without a read timeout. Here the deadline is ours: each chunk
//! (80 s by default, below the 2-minute keep-alive and far below the
//! servers' 30-minute IDLE limit) ends with `DONE`, and the next starts
//! until the caller's deadline has passed. Keep-alive lines never extend
//! a chunk: the wait for the next byte is always bounded by the time left.
//! Cancelling shuts the socket down ([`crate::mailbox::net::Interrupt`]),
//! which ends the wait at once; the read timeout is restored to the
//! session's I/O timeout on every way out.
//!
//! The wait for the next byte uses the socket's read timeout and goes on
//! reading the same TLS stream after it fired (nothing is consumed before
//! data is there). Winsock documents the socket state after an
//! `SO_RCVTIMEO` timeout as indeterminate: not tested on Windows yet.

use std::io;
use std::time::{Duration, Instant};

use super::resp::{RespError, Response, Status};
use super::wire::Wire;
use super::{COMMAND_BUDGET, Session};
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;

/// How long one IDLE command lasts before `DONE` and a new one.
pub const IDLE_CHUNK: Duration = Duration::from_secs(80);
/// Without IDLE: how often a NOOP asks for news.
const NOOP_INTERVAL: Duration = Duration::from_secs(15);

impl Session {
    /// Sets the length of one IDLE command (clamped to 1 s … 25 min; the
    /// default [`IDLE_CHUNK`]).
    pub fn set_idle_chunk(&mut self, chunk: Duration) {
        self.idle_chunk = chunk.clamp(Duration::from_secs(1), Duration::from_secs(25 * 60));
    }

    /// Waits until the selected folder changes or `timeout` has passed:
    /// `Ok(true)` when new mail may be there (EXISTS, RECENT, EXPUNGE seen,
    /// now or since the last wait), `Ok(false)` when the deadline passed
    /// with no change, `Cancelled` as soon as the session's interrupt
    /// fires. Uses IDLE where offered, else a NOOP every 15 s.
    pub fn idle_wait(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        self.begin_with(COMMAND_BUDGET, true)?;
        // Watch this connection's socket even if the interrupt was reset.
        {
            let w = self.wire.lock();
            self.interrupt.arm(w.conn.inner.tcp())?;
        }
        // Changes seen by earlier commands count.
        let queued: Vec<_> = self.s.take_all_unsolicited().collect();
        let queued = queued.iter().any(|u| {
            matches!(
                u,
                imap::types::UnsolicitedResponse::Exists(_)
                    | imap::types::UnsolicitedResponse::Recent(1..)
            )
        });
        if std::mem::take(&mut self.changed) || queued {
            return Ok(true);
        }
        let idle = self.has_capability("IDLE");
        let wire = self.wire.clone();
        let mut w = wire.lock();
        let io_timeout = w.io_timeout;
        let r = (|| loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            if idle {
                let until = deadline.min(now + self.idle_chunk);
                if self.idle_once(&mut w, until)? {
                    return Ok(true);
                }
            } else {
                let until = deadline.min(now + NOOP_INTERVAL);
                self.quiet_until(&mut w, until)?;
                if self.own_noop(&mut w)? {
                    return Ok(true);
                }
            }
        })();
        if w.set_read_timeout(io_timeout).is_err() {
            self.broken = true;
        }
        self.changed = false;
        if self.interrupt.is_fired() && r.is_err() {
            return Err(Error::cancelled());
        }
        r
    }

    /// Waits for the first byte from the server until `until`: `Ok(true)`
    /// when data is there, `Ok(false)` when the time is up. Nothing is
    /// consumed, so a timeout loses nothing.
    fn wait_for_data(&mut self, w: &mut Wire, until: Instant, what: &str) -> Result<bool> {
        loop {
            if !w.conn.buffered().is_empty() {
                return Ok(true);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            if let Err(e) = w.set_read_timeout(left) {
                return Err(self.lost_io(e, what));
            }
            match w.conn.fill_now() {
                Ok(0) => return Err(self.lost(RespError::Eof, what)),
                Ok(_) => {
                    if let Err(e) = w.set_read_timeout(w.io_timeout) {
                        return Err(self.lost_io(e, what));
                    }
                    return Ok(true);
                }
                Err(e) if is_timeout(&e) => continue,
                Err(e) => return Err(self.lost_io(e, what)),
            }
        }
    }

    /// One IDLE command until `until` (or the first change): `Ok(true)`
    /// on a change.
    fn idle_once(&mut self, w: &mut Wire, until: Instant) -> Result<bool> {
        const WHAT: &str = "IDLE";
        let tag = self.send_own(w, "IDLE", WHAT)?;
        let mut left = COMMAND_BUDGET;
        let max = 64 * 1024;
        let mut changed = false;
        // Until the server confirms with "+".
        loop {
            match self.next_response(w, &mut left, max, WHAT)? {
                Response::Continue(_) => break,
                Response::Tagged {
                    tag: t,
                    status,
                    text,
                } if t == tag => {
                    return Err(self.refused(status, &text, WHAT));
                }
                r => changed |= is_change(&r),
            }
        }
        // Idling: keep-alives and flag updates are read and ignored.
        let mut ended = false;
        while !changed && !ended {
            if !self.wait_for_data(w, until, WHAT)? {
                break;
            }
            left = COMMAND_BUDGET;
            match self.next_response(w, &mut left, max, WHAT)? {
                Response::Tagged {
                    tag: t,
                    status,
                    text,
                } if t == tag => {
                    // The server ended the IDLE itself.
                    if status != Status::Ok {
                        return Err(self.refused(status, &text, WHAT));
                    }
                    ended = true;
                }
                r => changed |= is_change(&r),
            }
        }
        if ended {
            return Ok(changed);
        }
        if let Err(e) = w.send(b"DONE\r\n") {
            return Err(self.lost_io(e, WHAT));
        }
        loop {
            left = COMMAND_BUDGET;
            match self.next_response(w, &mut left, max, WHAT)? {
                Response::Tagged {
                    tag: t,
                    status,
                    text,
                } if t == tag => {
                    if status != Status::Ok {
                        return Err(self.refused(status, &text, WHAT));
                    }
                    return Ok(changed);
                }
                Response::Tagged { .. } | Response::Continue(_) => {
                    return Err(self.lost(RespError::Protocol("an unexpected reply to DONE"), WHAT));
                }
                r => changed |= is_change(&r),
            }
        }
    }

    /// Without IDLE: waits on the socket (so that cancelling ends the
    /// wait) until `until`; anything the server sends meanwhile is read.
    fn quiet_until(&mut self, w: &mut Wire, until: Instant) -> Result<()> {
        while self.wait_for_data(w, until, "waiting")? {
            let mut left = COMMAND_BUDGET;
            match self.next_response(w, &mut left, 64 * 1024, "waiting")? {
                Response::Tagged { .. } | Response::Continue(_) => {
                    return Err(self.lost(RespError::Protocol("a reply to no command"), "waiting"));
                }
                r => {
                    if is_change(&r) {
                        self.changed = true;
                    }
                }
            }
        }
        Ok(())
    }

    /// `NOOP` on our reader: `Ok(true)` when it (or anything before it)
    /// reported a change.
    fn own_noop(&mut self, w: &mut Wire) -> Result<bool> {
        let tag = self.send_own(w, "NOOP", "NOOP")?;
        let mut changed = std::mem::take(&mut self.changed);
        loop {
            let mut left = COMMAND_BUDGET;
            match self.next_response(w, &mut left, 64 * 1024, "NOOP")? {
                Response::Tagged {
                    tag: t,
                    status,
                    text,
                } if t == tag => {
                    if status != Status::Ok {
                        return Err(self.refused(status, &text, "NOOP"));
                    }
                    return Ok(changed);
                }
                r => changed |= is_change(&r),
            }
        }
    }

    fn refused(&mut self, status: Status, text: &str, what: &str) -> Error {
        let _ = status;
        Error::new(
            ErrorKind::Protocol,
            Text::new(
                format!("{} refused {what}", self.host),
                format!("{} hat {what} abgelehnt", self.host),
            ),
        )
        .with_server_reply(text)
    }
}

fn is_change(r: &Response) -> bool {
    matches!(
        r,
        Response::Exists(_) | Response::Recent(1..) | Response::Expunge(_) | Response::Vanished
    )
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
