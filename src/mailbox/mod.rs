//! Mailboxes over IMAP and POP3: the sessions the polling service is built
//! on (ABI "Mailboxes"). Each protocol has a synchronous session type that
//! runs on the caller's thread with a timeout on every read and write and
//! an [`net::Interrupt`] for cancelling from another thread.
//!
//! - [`imap`]: a session over the `imap` crate and our own rustls stream.
//! - [`pop3`]: our own client (no usable crate exists).
//! - [`summary`]: poll summaries from header blocks (mail-parser).
//! - [`sasl`]: XOAUTH2 / OAUTHBEARER payloads and administrator hints.
//! - [`state`]: the poll state (acknowledged ids, pending changes,
//!   fingerprints) in the token cache's store.
//! - [`handle`]: the ABI's mailbox (poll, fetch, fetch_to_file, ack, wait).
//! - [`file`](mod@file): `fetch_to_file`'s streamed, atomically renamed target.
//!
//! # Delivery guarantees
//!
//! 1. **At least once.** `poll` returns every message of the folder that
//!    the host has not acknowledged, oldest first. A message stops being
//!    returned only once `ack` has recorded it durably in the poll state
//!    (written atomically before `ack` returns and before the server is
//!    changed). A crash, a killed process, a dropped connection or a
//!    cancelled call anywhere between `poll` and a successful `ack` means
//!    the message is delivered again; the library never loses one. Hosts
//!    must tolerate duplicates (for example by remembering ids or
//!    Message-IDs they have processed).
//! 2. **Acknowledged is final.** An acknowledged message is not returned
//!    again, across reconnects, processes and restarts, as long as its id
//!    stays valid: IMAP `UIDVALIDITY:UID` until the folder's UIDVALIDITY
//!    changes (see 5), POP3 the UIDL. The state persists beside the token
//!    cache (same protection, atomic writes) or in the host store under
//!    `poll:<account>/<protocol>/<folder>`, and one handle at a time holds
//!    it (a cross-process lock; others get `BUSY`). `start: new` on the
//!    first open acknowledges what is there at that moment.
//! 3. **Server changes follow the acknowledgement.** `seen`, `delete` and
//!    `move:<folder>` are applied after the acknowledgement is recorded. A
//!    change that fails for a transient reason (network, timeout, cancel,
//!    rejected token) stays pending in the state and is retried at the
//!    next poll until the server confirms it (the changes are idempotent;
//!    `ack` still succeeds). A change the server refuses outright (for
//!    example a target folder that does not exist) is returned as `ack`'s
//!    error while the message stays acknowledged; refused on a retry, it
//!    is dropped with a warning in the log. IMAP `delete` without UIDPLUS
//!    expunges only when no other message of the folder is marked
//!    \Deleted; otherwise the message stays marked (a log warning).
//! 4. **POP3 deletions happen at QUIT.** A POP3 server applies DELE only
//!    when the session ends with QUIT. Every poll ends the previous session
//!    with QUIT and starts a new one, and closing the mailbox quits too.
//!    A deletion whose QUIT did not complete (a dropped connection, a
//!    killed process) stays pending and is sent again in the next session;
//!    the message is not handed out meanwhile. POP3 `seen` means `keep`;
//!    POP3 has no `move`.
//! 5. **UIDVALIDITY changes (IMAP).** When a folder's UIDVALIDITY changes
//!    (it was re-created or rebuilt), the first connection that sees it,
//!    before anything else, reads UID, RFC822.SIZE and Message-ID of every
//!    message in the folder and matches them one to one (lowest UID first)
//!    against the (size, Message-ID) recorded for every acknowledged
//!    message still in the folder. A match counts as acknowledged under its
//!    new id, and a server change still pending for the old message is
//!    applied to the new one. Every other message is delivered again under
//!    its new id `<new UIDVALIDITY>:<UID>`, in particular messages without
//!    a Message-ID (or with one longer than 998 bytes), messages whose size
//!    changed, and messages acknowledged by a library version that did not
//!    record fingerprints yet. Ids handed out before the change are stale:
//!    `fetch` and `ack` with them return `NOT_FOUND`, and the message comes
//!    back under its new id.
//! 6. **`fetch_to_file`** writes to a temporary file in the target's
//!    directory as the bytes arrive, syncs it and renames it over the
//!    target: the target is either untouched or the whole message.
//!    Messages larger than `limits.max_message_bytes` are listed by `poll`
//!    but `fetch` returns `TOO_LARGE` before anything is read; they stay
//!    unacknowledged until the host acknowledges them.
//!
//! Not guaranteed: exactly-once delivery; that the server change of an
//! `ack` has happened when `ack` returns; that a message another client
//! deletes or moves before it is acknowledged is delivered (it is gone:
//! `fetch` returns `NOT_FOUND`, `poll` no longer lists it); telling apart,
//! after a UIDVALIDITY change, two different messages with the same
//! Message-ID and size (if only one was acknowledged, the one with the
//! lower new UID counts as acknowledged, and anyone who can send mail to
//! the mailbox and knows an acknowledged message's Message-ID and size can
//! make such a twin); POP3 servers that reuse a UIDL for another message
//! (RFC 1939 forbids it; the new message would count as acknowledged).

pub mod file;
pub mod handle;
pub mod imap;
pub mod net;
pub mod pop3;
pub mod sasl;
pub mod state;
pub mod summary;

pub use summary::Summary;
