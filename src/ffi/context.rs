//! The context handle: configuration, runtime and cancellation.

use std::ffi::c_char;
use std::sync::Arc;

use super::handles::Registry;
use super::result::MAILOAUTH_OK;
use super::{MAILOAUTH_ABI_VERSION, error, memory, strings};
use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::i18n::{Language, Text};

/// A configured library instance. Opaque; create it with
/// mailoauth_context_new() and release it with mailoauth_context_free().
pub struct mailoauth_context {
    _private: [u8; 0],
}

pub(crate) static CONTEXTS: Registry<Context> = Registry::new();

/// Looks a context handle up (NULL or stale → INVALID_ARGUMENT).
pub(crate) fn context_of(ctx: *const mailoauth_context) -> Result<Arc<Context>, Error> {
    CONTEXTS.get(ctx, "ctx")
}

/// Creates a context from a configuration JSON document (see the
/// "Context" section of the ABI: every key optional except `client_id`).
/// @param config_json the configuration, UTF-8 JSON; NULL → MAILOAUTH_INVALID_ARGUMENT.
/// @param abi_version the host's MAILOAUTH_ABI_VERSION; newer than this
///        library's → MAILOAUTH_ABI_MISMATCH.
/// @param out         receives the new context on success only; NULL → MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT, MAILOAUTH_INVALID_CONFIG
///         (the last error names the key and what was expected),
///         MAILOAUTH_TOO_LARGE, MAILOAUTH_ABI_MISMATCH, MAILOAUTH_INTERNAL.
/// Returns immediately (reads tls.ca_file if configured). Each context owns
/// its own worker threads.
/// The context must be released with mailoauth_context_free().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_context_new(
    config_json: *const c_char,
    abi_version: u32,
    out: *mut *mut mailoauth_context,
) -> i32 {
    ffi_boundary! {
        if abi_version == 0 || abi_version > MAILOAUTH_ABI_VERSION {
            return error::set(
                &Error::new(
                    ErrorKind::AbiMismatch,
                    Text::new(
                        format!("the host was built for ABI version {abi_version}, this library (mailoauth {}) has ABI version {MAILOAUTH_ABI_VERSION}; install a matching or newer library", env!("CARGO_PKG_VERSION")),
                        format!("der Host wurde für ABI-Version {abi_version} gebaut, diese Bibliothek (mailoauth {}) hat ABI-Version {MAILOAUTH_ABI_VERSION}; passende oder neuere Bibliothek installieren", env!("CARGO_PKG_VERSION")),
                    ),
                ),
                Language::En,
            );
        }
        // SAFETY: a NUL-terminated string per the contract (checked for NULL).
        let json = try_ffi!(unsafe { strings::required(config_json, "config_json") });
        if out.is_null() {
            return error::set(&strings::null_argument("out"), crate::config::language_hint(json));
        }
        let lang = crate::config::language_hint(json);
        let parsed = try_ffi!(crate::config::parse(json), lang);
        for key in &parsed.ignored_keys {
            crate::log::warning!("unknown configuration key '{key}' ignored (ignore_unknown_keys is true)");
        }
        let ctx = try_ffi!(Context::new(parsed.config), lang);
        let handle = CONTEXTS.insert(Arc::new(ctx));
        // SAFETY: out was checked non-NULL; written only on success.
        unsafe { *out = handle };
        MAILOAUTH_OK
    }
}

/// Writes the resolved configuration as JSON: the preset applied, defaults
/// filled in, never a secret (a client secret shows as "set").
/// @param ctx      the context; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param out_json receives the JSON on success only; NULL → MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT.
/// Returns immediately.
/// The returned string must be released with mailoauth_string_free().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_context_describe(
    ctx: *mut mailoauth_context,
    out_json: *mut *mut c_char,
) -> i32 {
    ffi_boundary! {
        let ctx = try_ffi!(context_of(ctx));
        let lang = ctx.language();
        try_ffi!(strings::require_out(out_json, "out_json"), lang);
        let mut d = ctx.config().describe();
        if let Some(obj) = d.as_object_mut() {
            obj.insert("version".into(), env!("CARGO_PKG_VERSION").into());
            obj.insert("abi_version".into(), MAILOAUTH_ABI_VERSION.into());
        }
        // SAFETY: out_json was checked non-NULL above.
        try_ffi!(unsafe { memory::put_string(out_json, d.to_string()) }, lang);
        MAILOAUTH_OK
    }
}

/// Cancels every call running on this context at this moment (from any
/// thread); each returns MAILOAUTH_CANCELLED promptly. Later calls run
/// normally.
/// @param ctx the context; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT.
/// Returns immediately.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_context_cancel(ctx: *mut mailoauth_context) -> i32 {
    ffi_boundary! {
        let ctx = try_ffi!(context_of(ctx));
        ctx.cancel();
        MAILOAUTH_OK
    }
}

/// Releases a context: cancels the calls running on it and frees it once
/// its child handles (operations, mailboxes) are gone too. NULL, or a
/// context already freed, is a no-op. Any thread; never blocks.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_context_free(ctx: *mut mailoauth_context) {
    ffi_boundary_keep_error! {
        if let Some(context) = CONTEXTS.remove(ctx) {
            // Close first: open mailboxes release their poll-state locks
            // through the host store's callbacks, here on the host's thread.
            // After this returns the host's store callbacks are never called.
            context.close();
            super::store::revoke_for(ctx as usize);
            drop(context);
        }
    }
}

/// Sets the 32-byte key of cache protection `key` (XChaCha20-Poly1305). The
/// bytes are copied and the copy is zeroed when the context is freed. Call it
/// before the first token call; setting it again replaces the key.
/// @param ctx     the context; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param key     the key bytes; NULL → MAILOAUTH_INVALID_ARGUMENT.
/// @param key_len must be 32, else MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT.
/// Returns immediately.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_context_set_cache_key(
    ctx: *mut mailoauth_context,
    key: *const u8,
    key_len: i64,
) -> i32 {
    ffi_boundary! {
        let ctx = try_ffi!(context_of(ctx));
        let lang = ctx.language();
        if key.is_null() {
            return error::set(&strings::null_argument("key"), lang);
        }
        if key_len != 32 {
            return error::set(
                &Error::new(
                    ErrorKind::InvalidArgument,
                    Text::new(
                        format!("key_len must be 32 (bytes), not {key_len}"),
                        format!("key_len muss 32 (Bytes) sein, nicht {key_len}"),
                    ),
                ),
                lang,
            );
        }
        // SAFETY: the host promises 32 readable bytes at `key` (checked non-NULL).
        let bytes = zeroize::Zeroizing::new(unsafe { std::slice::from_raw_parts(key, 32) }.to_vec());
        try_ffi!(ctx.set_cache_key(&bytes), lang);
        MAILOAUTH_OK
    }
}

/// Moves unreadable cache entries (ones that cannot be decrypted or parsed,
/// or were written by a newer library) aside and starts them empty; readable
/// grants stay. Afterwards the affected accounts need a new consent.
/// @param ctx the context; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT, MAILOAUTH_BUSY, MAILOAUTH_CACHE_IO.
/// Blocks while another process holds an entry's lock.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_cache_reset(ctx: *mut mailoauth_context) -> i32 {
    ffi_boundary! {
        let ctx = try_ffi!(context_of(ctx));
        let lang = ctx.language();
        try_ffi!(ctx.reset_cache(), lang);
        MAILOAUTH_OK
    }
}
