//! SMTP: send a message built from JSON, send host-built MIME bytes, forward
//! a polled message. Thin exports over `Context::smtp_send`,
//! `smtp_send_mime` and `smtp_forward`; the request keys are the ABI's
//! "SMTP" section.

use std::ffi::c_char;

use super::context::{context_of, mailoauth_context};
use super::result::MAILOAUTH_OK;
use super::{memory, strings};
use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::i18n::Text;

/// Sends a message built from a JSON request over SMTP with XOAUTH2.
///
/// The request: `{"account": "…", "mailbox": "…" (optional, a shared
/// mailbox), "server": {…} (optional), "timeout_ms": N (optional),
/// "message": {"from", "to", "cc", "bcc", "reply_to", "subject", "text",
/// "html", "attachments": [{"name", "content_type", "path" | "base64"}]}}`.
/// Bcc recipients go into the envelope only. A rejected token gets one forced
/// refresh and one retry.
/// @param ctx          the context; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param request_json the request, UTF-8 JSON; NULL or invalid UTF-8 →
///                     MAILOAUTH_INVALID_ARGUMENT.
/// @param out_json     receives `{"message_id", "accepted", "server_reply"}` on
///                     success only; NULL → MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT (CR/LF in an address or
///         header value, an unreadable attachment path; the last error names
///         it), MAILOAUTH_INVALID_CONFIG (malformed JSON, an unknown key, no
///         recipients), MAILOAUTH_TOO_LARGE, MAILOAUTH_UNTRUSTED_HOST,
///         MAILOAUTH_CONSENT_REQUIRED, MAILOAUTH_AUTH_REJECTED,
///         MAILOAUTH_MAILBOX_ACCESS_DENIED, MAILOAUTH_SEND_REJECTED (nothing
///         sent; the refused addresses in the last error's `rejected`),
///         MAILOAUTH_THROTTLED, MAILOAUTH_NETWORK, MAILOAUTH_TLS,
///         MAILOAUTH_PROTOCOL, MAILOAUTH_TIMEOUT, MAILOAUTH_CANCELLED,
///         MAILOAUTH_CACHE_IO, MAILOAUTH_INVALID_STATE (called from a library
///         callback). The server's reply is in the last error's `server_reply`.
/// The returned string must be released with mailoauth_string_free().
/// Blocks until the server accepted the message, up to the request's
/// `timeout_ms` (default 300 s); cancel with mailoauth_context_cancel().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_smtp_send(
    ctx: *mut mailoauth_context,
    request_json: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    ffi_boundary! {
        let ctx = try_ffi!(context_of(ctx));
        let lang = ctx.language();
        // SAFETY: a NUL-terminated string per the contract (NULL checked).
        let request = try_ffi!(unsafe { strings::required(request_json, "request_json") }, lang);
        try_ffi!(strings::require_out(out_json, "out_json"), lang);
        let result = try_ffi!(ctx.smtp_send(request), lang);
        // SAFETY: out_json was checked non-NULL above; written only on success.
        try_ffi!(unsafe { memory::put_string(out_json, result.to_string()) }, lang);
        MAILOAUTH_OK
    }
}

/// Sends host-built RFC 5322 bytes as they are (line endings normalised to
/// CRLF) over SMTP with XOAUTH2.
///
/// The request: `{"account", "mailbox", "server", "timeout_ms"` as for
/// mailoauth_smtp_send(), and `"envelope": {"from": "…", "to": ["…"]}` or
/// `"envelope": "from_headers"` (taken from From/To/Cc/Bcc; Bcc is then
/// removed from the bytes sent)`}`.
/// @param ctx          the context; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param request_json the request, UTF-8 JSON; NULL or invalid UTF-8 →
///                     MAILOAUTH_INVALID_ARGUMENT.
/// @param mime         the message bytes; NULL is allowed only with
///                     `mime_len` 0 (an empty message), else
///                     MAILOAUTH_INVALID_ARGUMENT.
/// @param mime_len     the number of bytes at `mime`; negative →
///                     MAILOAUTH_INVALID_ARGUMENT; above
///                     limits.max_message_bytes → MAILOAUTH_TOO_LARGE
///                     (before anything is read).
/// @param out_json     receives `{"message_id", "accepted", "server_reply"}` on
///                     success only; NULL → MAILOAUTH_INVALID_ARGUMENT.
/// @return as mailoauth_smtp_send(); MAILOAUTH_INVALID_CONFIG also for a
///         missing or malformed envelope.
/// The returned string must be released with mailoauth_string_free().
/// Blocks until the server accepted the message, up to the request's
/// `timeout_ms` (default 300 s); cancel with mailoauth_context_cancel().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_smtp_send_mime(
    ctx: *mut mailoauth_context,
    request_json: *const c_char,
    mime: *const u8,
    mime_len: i64,
    out_json: *mut *mut c_char,
) -> i32 {
    ffi_boundary! {
        let ctx = try_ffi!(context_of(ctx));
        let lang = ctx.language();
        // SAFETY: a NUL-terminated string per the contract (NULL checked).
        let request = try_ffi!(unsafe { strings::required(request_json, "request_json") }, lang);
        // SAFETY: the host promises mime_len readable bytes at mime.
        let mime = try_ffi!(unsafe { message_bytes(mime, mime_len, "mime", ctx.config()) }, lang);
        try_ffi!(strings::require_out(out_json, "out_json"), lang);
        let result = try_ffi!(ctx.smtp_send_mime(request, mime), lang);
        // SAFETY: out_json was checked non-NULL above; written only on success.
        try_ffi!(unsafe { memory::put_string(out_json, result.to_string()) }, lang);
        MAILOAUTH_OK
    }
}

/// Forwards a message the host polled (its RFC 5322 bytes) from the mailbox.
///
/// The request: `{"account", "mailbox", "server", "timeout_ms"` as for
/// mailoauth_smtp_send(), `"to": ["…"], "mode": "attachment" | "inline" |
/// "redirect", "comment": "…"}`. `attachment` (the default) sends a new
/// message from the mailbox with the original as a message/rfc822 part;
/// `inline` quotes it; `redirect` prepends Resent-* headers (Exchange refuses
/// it unless the mailbox may send as the original sender).
/// @param ctx          the context; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param request_json the request, UTF-8 JSON; NULL or invalid UTF-8 →
///                     MAILOAUTH_INVALID_ARGUMENT.
/// @param original     the original message's bytes; NULL is allowed only
///                     with `original_len` 0, else MAILOAUTH_INVALID_ARGUMENT.
/// @param original_len the number of bytes at `original`; negative →
///                     MAILOAUTH_INVALID_ARGUMENT; above
///                     limits.max_message_bytes → MAILOAUTH_TOO_LARGE
///                     (before anything is read).
/// @param out_json     receives `{"message_id", "accepted", "server_reply"}` on
///                     success only; NULL → MAILOAUTH_INVALID_ARGUMENT.
/// @return as mailoauth_smtp_send().
/// The returned string must be released with mailoauth_string_free().
/// Blocks until the server accepted the message, up to the request's
/// `timeout_ms` (default 300 s); cancel with mailoauth_context_cancel().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_smtp_forward(
    ctx: *mut mailoauth_context,
    request_json: *const c_char,
    original: *const u8,
    original_len: i64,
    out_json: *mut *mut c_char,
) -> i32 {
    ffi_boundary! {
        let ctx = try_ffi!(context_of(ctx));
        let lang = ctx.language();
        // SAFETY: a NUL-terminated string per the contract (NULL checked).
        let request = try_ffi!(unsafe { strings::required(request_json, "request_json") }, lang);
        // SAFETY: the host promises original_len readable bytes at original.
        let original = try_ffi!(
            unsafe { message_bytes(original, original_len, "original", ctx.config()) },
            lang
        );
        try_ffi!(strings::require_out(out_json, "out_json"), lang);
        let result = try_ffi!(ctx.smtp_forward(request, original), lang);
        // SAFETY: out_json was checked non-NULL above; written only on success.
        try_ffi!(unsafe { memory::put_string(out_json, result.to_string()) }, lang);
        MAILOAUTH_OK
    }
}

/// Borrows a host's message buffer: a negative length or NULL with a
/// length is refused, a length above `limits.max_message_bytes` is
/// `TooLarge` before a byte is read; NULL with length 0 is an empty slice.
///
/// # Safety
/// Unless NULL, `p` points to `len` readable bytes that stay valid for `'a`.
unsafe fn message_bytes<'a>(
    p: *const u8,
    len: i64,
    name: &str,
    config: &Config,
) -> Result<&'a [u8], Error> {
    let len_name = format!("{name}_len");
    if len < 0 {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            Text::new(
                format!("argument '{len_name}' is negative ({len})"),
                format!("Argument '{len_name}' ist negativ ({len})"),
            ),
        ));
    }
    let limit = config.max_message_bytes;
    let too_large = || {
        Error::new(
            ErrorKind::TooLarge,
            Text::new(
                format!(
                    "argument '{name}' ({len} bytes) is larger than limits.max_message_bytes ({limit} bytes)"
                ),
                format!(
                    "Argument '{name}' ({len} Bytes) ist größer als limits.max_message_bytes ({limit} Bytes)"
                ),
            ),
        )
    };
    if len as u64 > limit {
        return Err(too_large());
    }
    let n = usize::try_from(len).map_err(|_| too_large())?;
    if p.is_null() {
        if n == 0 {
            return Ok(&[]);
        }
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            Text::new(
                format!("argument '{name}' is NULL but '{len_name}' is {len}"),
                format!("Argument '{name}' ist NULL, aber '{len_name}' ist {len}"),
            ),
        ));
    }
    // SAFETY: non-NULL and `n` readable bytes per the caller's contract; the
    // slice lives only for the call.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::result::{
        MAILOAUTH_INVALID_ARGUMENT, MAILOAUTH_INVALID_CONFIG, MAILOAUTH_TOO_LARGE,
    };

    fn config(max: u64) -> Config {
        let json = format!(
            r#"{{"client_id":"00000000-0000-0000-0000-000000000000","limits":{{"max_message_bytes":{max}}}}}"#
        );
        crate::config::parse(&json).unwrap().config
    }

    #[test]
    fn message_bytes_checks_length_and_null() {
        let c = config(1024);
        let buf = [1u8, 2, 3];
        let e = unsafe { message_bytes(buf.as_ptr(), -1, "mime", &c) }.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.en.contains("mime_len"));
        let e = unsafe { message_bytes(std::ptr::null(), 3, "mime", &c) }.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.en.contains("'mime'"));
        let e = unsafe { message_bytes(buf.as_ptr(), 1025, "original", &c) }.unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge);
        assert!(e.message.en.contains("max_message_bytes"));
        let e = unsafe { message_bytes(buf.as_ptr(), i64::MAX, "original", &c) }.unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge);
        assert!(
            unsafe { message_bytes(std::ptr::null(), 0, "mime", &c) }
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            unsafe { message_bytes(buf.as_ptr(), 3, "mime", &c) }.unwrap(),
            &buf
        );
    }

    #[test]
    fn bad_requests_fail_before_any_output() {
        let cfg = std::ffi::CString::new(
            r#"{"client_id":"00000000-0000-0000-0000-000000000000","limits":{"max_message_bytes":1024}}"#,
        )
        .unwrap();
        let mut ctx: *mut mailoauth_context = std::ptr::null_mut();
        let rc = unsafe {
            crate::ffi::context::mailoauth_context_new(
                cfg.as_ptr(),
                crate::ffi::MAILOAUTH_ABI_VERSION,
                &mut ctx,
            )
        };
        assert_eq!(rc, MAILOAUTH_OK);
        let sentinel = 0x5e5e_5e5e_usize as *mut c_char;
        let mut out = sentinel;
        let req =
            std::ffi::CString::new(r#"{"account":"a@b.test","envelope":"from_headers"}"#).unwrap();
        let big = [b'x'; 1025];
        let rc =
            unsafe { mailoauth_smtp_send_mime(ctx, req.as_ptr(), big.as_ptr(), 1025, &mut out) };
        assert_eq!(rc, MAILOAUTH_TOO_LARGE);
        let rc = unsafe { mailoauth_smtp_forward(ctx, req.as_ptr(), big.as_ptr(), -5, &mut out) };
        assert_eq!(rc, MAILOAUTH_INVALID_ARGUMENT);
        let bad = std::ffi::CString::new("{").unwrap();
        let rc = unsafe { mailoauth_smtp_send(ctx, bad.as_ptr(), &mut out) };
        assert_eq!(rc, MAILOAUTH_INVALID_CONFIG);
        let rc = unsafe { mailoauth_smtp_send(ctx, req.as_ptr(), std::ptr::null_mut()) };
        assert_eq!(rc, MAILOAUTH_INVALID_ARGUMENT);
        assert!(crate::ffi::error::last_json().contains("out_json"));
        assert_eq!(out, sentinel);
        crate::ffi::context::mailoauth_context_free(ctx);
    }
}
