//! Mailboxes: open a folder over IMAP or POP3, poll it, fetch and
//! acknowledge messages, wait for new mail. Thin exports over
//! `mailbox::handle::Mailbox`; the request keys are the ABI's "Mailboxes"
//! section.

use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

use super::context::{context_of, mailoauth_context};
use super::handles::Registry;
use super::result::MAILOAUTH_OK;
use super::{error, memory, strings};
use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::i18n::{Language, Text};
use crate::mailbox::handle::Mailbox;

/// An open mailbox folder. Opaque; create it with mailoauth_mailbox_open()
/// and release it with mailoauth_mailbox_free().
pub struct mailoauth_mailbox {
    _private: [u8; 0],
}

pub(crate) struct MailboxHandle {
    /// Keeps the context alive: handles may be freed in any order.
    ctx: Arc<Context>,
    mb: Arc<Mailbox>,
}

static MAILBOXES: Registry<MailboxHandle> = Registry::new();

/// The longest `wait` (one day); longer or negative timeouts wait this long.
const MAX_WAIT: Duration = Duration::from_secs(86_400);

fn handle_of(mb: *const mailoauth_mailbox) -> Result<Arc<MailboxHandle>, Error> {
    MAILBOXES.get(mb, "mb")
}

/// An id or action argument: required, UTF-8, one line, not empty.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn line_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, Error> {
    // SAFETY: forwarded contract.
    let v = unsafe { strings::required(p, name) }?;
    strings::single_line(v, name)?;
    if v.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            Text::new(
                format!("argument '{name}' is empty"),
                format!("Argument '{name}' ist leer"),
            ),
        ));
    }
    Ok(v)
}

fn lang_of(h: &MailboxHandle) -> Language {
    h.ctx.language()
}

/// Opens a mailbox folder for polling.
///
/// The request: `{"account": "…", "mailbox": "…" (optional: the address
/// logged in to, a shared mailbox; defaults to the account), "protocol":
/// "imap" | "pop3" (default imap), "folder": "INBOX" (IMAP only), "start":
/// "all" | "new", "lock_timeout_ms": 0, "server": {"host", "port",
/// "security": "tls" | "starttls"} (optional), "timeout_ms": N (optional:
/// each network step)}`. `start: new` applies on the first open only: what
/// is there then counts as acknowledged. The folder's poll state is held by
/// one handle at a time across processes; a second open waits up to
/// `lock_timeout_ms`, then fails with MAILOAUTH_BUSY.
/// @param ctx          the context; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param request_json the request, UTF-8 JSON; NULL or invalid UTF-8 →
///                     MAILOAUTH_INVALID_ARGUMENT; malformed or an unknown
///                     key → MAILOAUTH_INVALID_CONFIG.
/// @param out          receives the mailbox on success only; NULL →
///                     MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT (CR/LF in a name),
///         MAILOAUTH_INVALID_CONFIG, MAILOAUTH_TOO_LARGE, MAILOAUTH_BUSY,
///         MAILOAUTH_UNTRUSTED_HOST, MAILOAUTH_CONSENT_REQUIRED,
///         MAILOAUTH_AUTH_REJECTED, MAILOAUTH_MAILBOX_ACCESS_DENIED,
///         MAILOAUTH_NOT_FOUND (no such folder), MAILOAUTH_NETWORK,
///         MAILOAUTH_TLS, MAILOAUTH_PROTOCOL, MAILOAUTH_TIMEOUT,
///         MAILOAUTH_CANCELLED, MAILOAUTH_CACHE_IO, MAILOAUTH_CACHE_CORRUPT,
///         MAILOAUTH_CACHE_VERSION.
/// Blocks while it waits for the lock (up to `lock_timeout_ms`) and
/// connects (each network step up to the configured timeout).
/// The mailbox must be released with mailoauth_mailbox_free().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_mailbox_open(
    ctx: *mut mailoauth_context,
    request_json: *const c_char,
    out: *mut *mut mailoauth_mailbox,
) -> i32 {
    ffi_boundary! {
        let ctx = try_ffi!(context_of(ctx));
        let lang = ctx.language();
        // SAFETY: a NUL-terminated string per the contract (NULL checked).
        let json = try_ffi!(unsafe { strings::required(request_json, "request_json") }, lang);
        try_ffi!(strings::require_out(out, "out"), lang);
        let mb = try_ffi!(Mailbox::open(&ctx, json), lang);
        let handle = MAILBOXES.insert(Arc::new(MailboxHandle { ctx, mb }));
        // SAFETY: out was checked non-NULL; written only on success.
        unsafe { *out = handle };
        MAILOAUTH_OK
    }
}

/// Returns the messages not acknowledged yet, oldest first:
/// `[{"id": "…", "size": 1234, "from": "…", "to": ["…"], "subject": "…",
/// "date": "RFC 3339", "message_id": "<…>"}]`. Ids are stable across
/// connections (IMAP: `UIDVALIDITY:UID`; POP3: the UIDL). Over POP3 each
/// poll ends the previous session with QUIT, which commits acknowledged
/// deletions, and starts a new one.
/// @param mb           the mailbox; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param max_messages at most this many (0: none; negative or above
///                     10000: 10000).
/// @param out_json     receives the JSON array on success only; NULL →
///                     MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT, MAILOAUTH_CANCELLED,
///         MAILOAUTH_NETWORK, MAILOAUTH_TLS, MAILOAUTH_TIMEOUT,
///         MAILOAUTH_PROTOCOL, MAILOAUTH_AUTH_REJECTED,
///         MAILOAUTH_MAILBOX_ACCESS_DENIED, MAILOAUTH_CONSENT_REQUIRED,
///         MAILOAUTH_TOO_LARGE, MAILOAUTH_CACHE_IO, MAILOAUTH_INVALID_STATE
///         (the context was freed).
/// Blocks for the network round trips; cancel with mailoauth_mailbox_cancel().
/// The returned string must be released with mailoauth_string_free().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_mailbox_poll(
    mb: *mut mailoauth_mailbox,
    max_messages: i32,
    out_json: *mut *mut c_char,
) -> i32 {
    ffi_boundary! {
        let h = try_ffi!(handle_of(mb));
        let lang = lang_of(&h);
        try_ffi!(strings::require_out(out_json, "out_json"), lang);
        let max = usize::try_from(max_messages).unwrap_or(crate::mailbox::handle::MAX_POLL);
        let json = try_ffi!(h.mb.poll_json(max), lang);
        // SAFETY: out_json was checked non-NULL above; written only on success.
        try_ffi!(unsafe { memory::put_string(out_json, json) }, lang);
        MAILOAUTH_OK
    }
}

/// Returns the raw RFC 5322 bytes of one message (IMAP: without setting
/// \Seen). The next messages of the last poll are read ahead in one batch.
/// @param mb      the mailbox; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param id      an id from mailoauth_mailbox_poll(); NULL, invalid UTF-8,
///                CR/LF or empty → MAILOAUTH_INVALID_ARGUMENT; unknown →
///                MAILOAUTH_NOT_FOUND.
/// @param out     receives the bytes on success only; NULL → MAILOAUTH_INVALID_ARGUMENT.
/// @param out_len receives the number of bytes on success only; NULL →
///                MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT, MAILOAUTH_NOT_FOUND,
///         MAILOAUTH_TOO_LARGE (beyond limits.max_message_bytes), and the
///         network and state codes of mailoauth_mailbox_poll().
/// Blocks for the network round trips; cancel with mailoauth_mailbox_cancel().
/// The returned bytes must be released with mailoauth_bytes_free(p, len).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_mailbox_fetch(
    mb: *mut mailoauth_mailbox,
    id: *const c_char,
    out: *mut *mut u8,
    out_len: *mut i64,
) -> i32 {
    ffi_boundary! {
        let h = try_ffi!(handle_of(mb));
        let lang = lang_of(&h);
        // SAFETY: a NUL-terminated string per the contract (NULL checked).
        let id = try_ffi!(unsafe { line_arg(id, "id") }, lang);
        try_ffi!(strings::require_out(out, "out"), lang);
        try_ffi!(strings::require_out(out_len, "out_len"), lang);
        let bytes = try_ffi!(h.mb.fetch(id), lang);
        let (p, len) = try_ffi!(memory::bytes_into_raw(bytes), lang);
        // SAFETY: both outputs were checked non-NULL; written only on success.
        unsafe {
            *out = p;
            *out_len = len;
        }
        MAILOAUTH_OK
    }
}

/// Writes the raw RFC 5322 bytes of one message to a file (created or
/// replaced, with the calling process's rights).
/// @param mb   the mailbox; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param id   an id from mailoauth_mailbox_poll(); NULL, invalid UTF-8,
///             CR/LF or empty → MAILOAUTH_INVALID_ARGUMENT; unknown →
///             MAILOAUTH_NOT_FOUND.
/// @param path the file, UTF-8; NULL, invalid UTF-8, empty or not
///             writable → MAILOAUTH_INVALID_ARGUMENT.
/// @return as mailoauth_mailbox_fetch().
/// Blocks for the network round trips and the write; cancel with
/// mailoauth_mailbox_cancel().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_mailbox_fetch_to_file(
    mb: *mut mailoauth_mailbox,
    id: *const c_char,
    path: *const c_char,
) -> i32 {
    ffi_boundary! {
        let h = try_ffi!(handle_of(mb));
        let lang = lang_of(&h);
        // SAFETY: NUL-terminated strings per the contract (NULL checked).
        let id = try_ffi!(unsafe { line_arg(id, "id") }, lang);
        // SAFETY: as above.
        let path = try_ffi!(unsafe { line_arg(path, "path") }, lang);
        try_ffi!(h.mb.fetch_to_file(id, std::path::Path::new(path)), lang);
        MAILOAUTH_OK
    }
}

/// Acknowledges a message: it is recorded durably first, then the server is
/// changed. `action`: `seen` (\Seen; on POP3 the same as keep), `delete`
/// (IMAP: \Deleted and expunge; POP3: DELE, committed by the QUIT of the
/// next poll or of mailoauth_mailbox_free()), `move:<folder>` (IMAP only)
/// or `keep` (nothing changes on the server). An acknowledged message is
/// never returned by a poll again; a server change lost with a dropped
/// connection or a killed process is retried at the next poll.
/// @param mb     the mailbox; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param id     an id from mailoauth_mailbox_poll(); NULL, invalid UTF-8,
///               CR/LF or empty → MAILOAUTH_INVALID_ARGUMENT; unknown →
///               MAILOAUTH_NOT_FOUND.
/// @param action as above; NULL, CR/LF, unknown, or `move:` on POP3 →
///               MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK (acknowledged; a server change that failed for a
///         network reason is retried at the next poll),
///         MAILOAUTH_INVALID_ARGUMENT, MAILOAUTH_NOT_FOUND (unknown id, or
///         the target folder of a move; the message is acknowledged all the
///         same), MAILOAUTH_CANCELLED (acknowledged; the change is retried),
///         MAILOAUTH_CACHE_IO (nothing recorded), and the codes of
///         mailoauth_mailbox_poll().
/// Blocks for the state write and the network round trip; cancel with
/// mailoauth_mailbox_cancel().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_mailbox_ack(
    mb: *mut mailoauth_mailbox,
    id: *const c_char,
    action: *const c_char,
) -> i32 {
    ffi_boundary! {
        let h = try_ffi!(handle_of(mb));
        let lang = lang_of(&h);
        // SAFETY: NUL-terminated strings per the contract (NULL checked).
        let id = try_ffi!(unsafe { line_arg(id, "id") }, lang);
        // SAFETY: as above.
        let action = try_ffi!(unsafe { line_arg(action, "action") }, lang);
        try_ffi!(h.mb.ack(id, action), lang);
        MAILOAUTH_OK
    }
}

/// Waits for new mail: returns MAILOAUTH_OK when new mail may be there (at
/// once when unacknowledged messages are already there), MAILOAUTH_TIMEOUT
/// when none came within `timeout_ms`. IMAP waits in IDLE (a NOOP every
/// 15 s where the server has no IDLE), interrupted by a cancel at once;
/// POP3 logs in again every few seconds.
/// @param mb         the mailbox; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param timeout_ms how long to wait; 0 only looks; negative waits up to a day.
/// @return MAILOAUTH_OK, MAILOAUTH_TIMEOUT (no new mail), MAILOAUTH_CANCELLED
///         (mailoauth_mailbox_cancel() or mailoauth_context_cancel()),
///         MAILOAUTH_INVALID_ARGUMENT, and the network codes of
///         mailoauth_mailbox_poll() when the connection failed.
/// Blocks up to `timeout_ms`.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_mailbox_wait(mb: *mut mailoauth_mailbox, timeout_ms: i32) -> i32 {
    ffi_boundary! {
        let h = try_ffi!(handle_of(mb));
        let lang = lang_of(&h);
        let timeout = if timeout_ms < 0 {
            MAX_WAIT
        } else {
            Duration::from_millis(timeout_ms as u64)
        };
        if try_ffi!(h.mb.wait(timeout), lang) {
            MAILOAUTH_OK
        } else {
            error::set(
                &Error::new(
                    ErrorKind::Timeout,
                    Text::new(
                        format!("no new mail came within {} ms", timeout.as_millis()),
                        format!("innerhalb von {} ms kam keine neue Nachricht", timeout.as_millis()),
                    ),
                ),
                lang,
            )
        }
    }
}

/// Lists the folders of an IMAP mailbox with their special use:
/// `[{"name": "INBOX", "delimiter": "/", "special": "inbox"}]` (`special`
/// is one of inbox, sent, drafts, trash, junk, archive, all, flagged, or
/// null). Names are UTF-8 as hosts pass them to `folder` and `move:`.
/// @param mb       the mailbox; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param out_json receives the JSON array on success only; NULL →
///                 MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT, MAILOAUTH_INVALID_STATE
///         (a POP3 mailbox), and the network codes of mailoauth_mailbox_poll().
/// Blocks for a short login and LIST; cancel with mailoauth_mailbox_cancel().
/// The returned string must be released with mailoauth_string_free().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_mailbox_list_folders(
    mb: *mut mailoauth_mailbox,
    out_json: *mut *mut c_char,
) -> i32 {
    ffi_boundary! {
        let h = try_ffi!(handle_of(mb));
        let lang = lang_of(&h);
        try_ffi!(strings::require_out(out_json, "out_json"), lang);
        let folders = try_ffi!(h.mb.list_folders(), lang);
        let json = try_ffi!(
            serde_json::to_string(&folders).map_err(|e| Error::internal(format!("folders JSON: {e}"))),
            lang
        );
        // SAFETY: out_json was checked non-NULL above; written only on success.
        try_ffi!(unsafe { memory::put_string(out_json, json) }, lang);
        MAILOAUTH_OK
    }
}

/// Cancels the call running on the mailbox from any thread: it returns
/// MAILOAUTH_CANCELLED promptly (its connection is closed; the next call
/// reconnects). Without a running call nothing happens.
/// @param mb the mailbox; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT.
/// Returns immediately.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_mailbox_cancel(mb: *mut mailoauth_mailbox) -> i32 {
    ffi_boundary! {
        let h = try_ffi!(handle_of(mb));
        h.mb.cancel();
        MAILOAUTH_OK
    }
}

/// Releases a mailbox: the poll state's lock is released at once, the
/// session is ended in the background (POP3 QUIT, which commits
/// acknowledged deletions; IMAP LOGOUT), best effort and bounded by the
/// network timeout. NULL, or a mailbox already freed, is a no-op. Any
/// thread; does not wait for the server. Cancel a running call first.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_mailbox_free(mb: *mut mailoauth_mailbox) {
    ffi_boundary_keep_error! {
        if let Some(h) = MAILBOXES.remove(mb) {
            h.mb.close_in_background();
        }
    }
}
