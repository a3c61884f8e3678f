//! Tokens and accounts: silent access tokens, the account list, sign-out.

use std::ffi::c_char;

use super::context::{context_of, mailoauth_context};
use super::result::MAILOAUTH_OK;
use super::{error, memory, strings};
use crate::cache::{Grant, GrantState};
use crate::error::{Error, ErrorKind};
use crate::i18n::{Language, Text};
use crate::protocol::Protocols;

/// Flag for mailoauth_token_get(): skip the cached access token and refresh
/// (after a server rejected the token).
pub const MAILOAUTH_TOKEN_FORCE_REFRESH: i32 = 1;

/// Returns a valid access token for `account`, from the cache or by a silent
/// refresh. Never interacts with a user: without a usable grant it fails
/// with MAILOAUTH_CONSENT_REQUIRED. The token stays valid for at least
/// min(5 minutes, half its lifetime). One refresh at a time per account,
/// across threads and processes.
/// @param ctx       the context; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param account   the account name the grant is stored under; NULL, empty
///                  or with a line break → MAILOAUTH_INVALID_ARGUMENT.
/// @param protocols a space-separated subset of "smtp imap pop3"; NULL = all.
/// @param flags     0 or MAILOAUTH_TOKEN_FORCE_REFRESH.
/// @param out_token receives the token on success only; NULL → MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT, MAILOAUTH_CONSENT_REQUIRED,
///         MAILOAUTH_THROTTLED, MAILOAUTH_NETWORK, MAILOAUTH_TLS,
///         MAILOAUTH_PROVIDER_ERROR, MAILOAUTH_CANCELLED, MAILOAUTH_BUSY,
///         MAILOAUTH_CACHE_IO, MAILOAUTH_CACHE_CORRUPT, MAILOAUTH_CACHE_VERSION.
/// Returns at once from the cache; a refresh blocks up to the HTTP timeout
/// (with bounded retries). Cancel with mailoauth_context_cancel().
/// The returned string must be released with mailoauth_secret_free().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_token_get(
    ctx: *mut mailoauth_context,
    account: *const c_char,
    protocols: *const c_char,
    flags: i32,
    out_token: *mut *mut c_char,
) -> i32 {
    ffi_boundary! {
        let ctx = try_ffi!(context_of(ctx));
        let lang = ctx.language();
        // SAFETY: NUL-terminated strings per the contract (NULL checked).
        let account = try_ffi!(unsafe { strings::required(account, "account") }.and_then(|a| account_name(a, "account")), lang);
        // SAFETY: as above.
        let protocols = try_ffi!(unsafe { strings::optional(protocols, "protocols") }, lang);
        let wanted = match protocols {
            None => Protocols::ALL,
            Some(p) => try_ffi!(Protocols::parse_list(p), lang),
        };
        if flags & !MAILOAUTH_TOKEN_FORCE_REFRESH != 0 {
            return error::set(&bad_flags(flags), lang);
        }
        if out_token.is_null() {
            return error::set(&strings::null_argument("out_token"), lang);
        }
        let force = flags & MAILOAUTH_TOKEN_FORCE_REFRESH != 0;
        let token = try_ffi!(ctx.token_get(account, wanted, force), lang);
        let raw = try_ffi!(memory::secret_into_raw(token), lang);
        // SAFETY: out_token was checked non-NULL; written only on success.
        unsafe { *out_token = raw };
        MAILOAUTH_OK
    }
}

/// Lists the accounts in the token cache as JSON:
/// `[{"account", "username", "tenant_id", "protocols", "state" ("ok" |
/// "consent_required" | "throttled"), "since", "access_token_expires_at",
/// "last_error": {…}}]` — never a secret.
/// @param ctx      the context; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param out_json receives the JSON on success only; NULL → MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT, MAILOAUTH_CACHE_IO,
///         MAILOAUTH_CACHE_CORRUPT, MAILOAUTH_CACHE_VERSION.
/// Reads the store; does not contact the identity provider.
/// The returned string must be released with mailoauth_string_free().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_account_list(
    ctx: *mut mailoauth_context,
    out_json: *mut *mut c_char,
) -> i32 {
    ffi_boundary! {
        let ctx = try_ffi!(context_of(ctx));
        let lang = ctx.language();
        try_ffi!(strings::require_out(out_json, "out_json"), lang);
        let grants = try_ffi!(ctx.accounts(), lang);
        let list: Vec<serde_json::Value> = grants.iter().map(|g| describe_grant(g, lang)).collect();
        // SAFETY: out_json was checked non-NULL above.
        try_ffi!(unsafe { memory::put_string(out_json, serde_json::Value::Array(list).to_string()) }, lang);
        MAILOAUTH_OK
    }
}

/// Signs an account out: its grant (refresh and access tokens) is removed
/// from the store.
/// @param ctx     the context; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param account the account; NULL, empty or with a line break → MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT, MAILOAUTH_NOT_FOUND,
///         MAILOAUTH_BUSY, MAILOAUTH_CACHE_IO.
/// Blocks while another thread or process refreshes this account.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_account_remove(
    ctx: *mut mailoauth_context,
    account: *const c_char,
) -> i32 {
    ffi_boundary! {
        let ctx = try_ffi!(context_of(ctx));
        let lang = ctx.language();
        // SAFETY: NUL-terminated string per the contract (NULL checked).
        let account = try_ffi!(unsafe { strings::required(account, "account") }.and_then(|a| account_name(a, "account")), lang);
        try_ffi!(ctx.account_remove(account), lang);
        MAILOAUTH_OK
    }
}

/// An account name: non-empty, one line, no surrounding spaces.
pub(crate) fn account_name<'a>(a: &'a str, name: &str) -> Result<&'a str, Error> {
    let a = strings::single_line(a, name)?;
    if a.trim().is_empty() || a.trim() != a {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            Text::new(
                format!(
                    "argument '{name}' must be a non-empty account name without surrounding spaces"
                ),
                format!(
                    "Argument '{name}' muss ein nicht leerer Kontoname ohne umgebende Leerzeichen sein"
                ),
            ),
        ));
    }
    Ok(a)
}

fn bad_flags(flags: i32) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        Text::new(
            format!(
                "flags {flags} has unknown bits (only MAILOAUTH_TOKEN_FORCE_REFRESH = 1 exists)"
            ),
            format!(
                "flags {flags} enthält unbekannte Bits (nur MAILOAUTH_TOKEN_FORCE_REFRESH = 1 gibt es)"
            ),
        ),
    )
}

/// One entry of the account list.
pub(crate) fn describe_grant(g: &Grant, lang: Language) -> serde_json::Value {
    let state = match g.state {
        GrantState::Ok => "ok",
        GrantState::ConsentRequired => "consent_required",
        GrantState::Throttled => "throttled",
    };
    let mut v = serde_json::json!({
        "account": g.account,
        "username": g.username,
        "tenant_id": g.tenant_id,
        "protocols": g.protocols.names(),
        "state": state,
        "since": g.since,
        "access_token_expires_at": g.access_token.as_ref().map(|a| a.expires_at),
        "app": g.app,
    });
    if let Some((e, at)) = g.last_error.as_ref().and_then(Error::from_stored) {
        let mut record: serde_json::Value =
            serde_json::from_str(&error::render(&e, lang).json).unwrap_or(serde_json::Value::Null);
        if let Some(obj) = record.as_object_mut() {
            obj.insert("at".into(), at.into());
        }
        if let Some(obj) = v.as_object_mut() {
            obj.insert("last_error".into(), record);
        }
    }
    v
}
