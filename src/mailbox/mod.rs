//! Mailboxes over IMAP and POP3: the sessions the polling service is built
//! on (ABI "Mailboxes"). Each protocol has a synchronous session type that
//! runs on the caller's thread with a timeout on every read and write and
//! an [`net::Interrupt`] for cancelling from another thread.
//!
//! - [`imap`]: a session over the `imap` crate and our own rustls stream.
//! - [`pop3`]: our own client (no usable crate exists).
//! - [`summary`]: poll summaries from header blocks (mail-parser).
//! - [`sasl`]: XOAUTH2 / OAUTHBEARER payloads and administrator hints.
//! - [`state`]: the poll state (acknowledged ids, pending changes) in the
//!   token cache's store.

pub mod file;
pub mod handle;
pub mod imap;
pub mod net;
pub mod pop3;
pub mod sasl;
pub mod state;
pub mod summary;

pub use summary::Summary;
