//! Result codes: fixed numbers that are never renumbered or reused.

use crate::error::ErrorKind;

/// Done.
pub const MAILOAUTH_OK: i32 = 0;
/// An operation is still running (mailoauth_op_wait).
pub const MAILOAUTH_PENDING: i32 = 1;
/// NULL where a value is required, bad UTF-8, CR/LF/NUL in a field, unknown enum text.
pub const MAILOAUTH_INVALID_ARGUMENT: i32 = 100;
/// Configuration or request JSON is malformed, has an unknown key, or is inconsistent.
pub const MAILOAUTH_INVALID_CONFIG: i32 = 101;
/// The host was built against a newer ABI than this library has.
pub const MAILOAUTH_ABI_MISMATCH: i32 = 102;
/// Call not allowed now (e.g. result of an unfinished op).
pub const MAILOAUTH_INVALID_STATE: i32 = 103;
/// The mailbox or store is held by another process or thread past the wait allowed.
pub const MAILOAUTH_BUSY: i32 = 104;
/// No usable grant: the user must sign in / consent interactively.
pub const MAILOAUTH_CONSENT_REQUIRED: i32 = 200;
/// Cancelled by the host.
pub const MAILOAUTH_CANCELLED: i32 = 201;
/// A deadline passed (consent, device code, network); for mailbox_wait: no new mail came.
pub const MAILOAUTH_TIMEOUT: i32 = 202;
/// The user or admin declined consent.
pub const MAILOAUTH_DECLINED: i32 = 203;
/// The identity provider refused for another reason (AADSTS code in the last error).
pub const MAILOAUTH_PROVIDER_ERROR: i32 = 204;
/// The provider or server asked to back off (retry-after in the last error).
pub const MAILOAUTH_THROTTLED: i32 = 205;
/// The user signed in as a different account than the one requested.
pub const MAILOAUTH_ACCOUNT_MISMATCH: i32 = 206;
/// Connect / DNS / reset / proxy failure.
pub const MAILOAUTH_NETWORK: i32 = 300;
/// Certificate or handshake failure.
pub const MAILOAUTH_TLS: i32 = 301;
/// The server spoke something we did not expect.
pub const MAILOAUTH_PROTOCOL: i32 = 302;
/// The mail server rejected the token (after one forced refresh and retry).
pub const MAILOAUTH_AUTH_REJECTED: i32 = 303;
/// Authenticated, but no right to the mailbox / SendAs denied.
pub const MAILOAUTH_MAILBOX_ACCESS_DENIED: i32 = 304;
/// A sender, a recipient or the message was refused; nothing was sent.
pub const MAILOAUTH_SEND_REJECTED: i32 = 305;
/// Unknown account, message id or folder.
pub const MAILOAUTH_NOT_FOUND: i32 = 306;
/// A message, line or JSON document exceeds `limits`.
pub const MAILOAUTH_TOO_LARGE: i32 = 307;
/// A token would go to a host the configuration does not trust.
pub const MAILOAUTH_UNTRUSTED_HOST: i32 = 308;
/// The token or poll-state store could not be read or written.
pub const MAILOAUTH_CACHE_IO: i32 = 400;
/// The store exists but cannot be decrypted or parsed (nothing overwritten).
pub const MAILOAUTH_CACHE_CORRUPT: i32 = 401;
/// The store was written by a newer library (nothing overwritten).
pub const MAILOAUTH_CACHE_VERSION: i32 = 402;
/// A bug, a caught panic.
pub const MAILOAUTH_INTERNAL: i32 = 900;

/// Every code with its name, for mailoauth_result_str and the last error.
const NAMES: &[(i32, &std::ffi::CStr)] = &[
    (MAILOAUTH_OK, c"OK"),
    (MAILOAUTH_PENDING, c"PENDING"),
    (MAILOAUTH_INVALID_ARGUMENT, c"INVALID_ARGUMENT"),
    (MAILOAUTH_INVALID_CONFIG, c"INVALID_CONFIG"),
    (MAILOAUTH_ABI_MISMATCH, c"ABI_MISMATCH"),
    (MAILOAUTH_INVALID_STATE, c"INVALID_STATE"),
    (MAILOAUTH_BUSY, c"BUSY"),
    (MAILOAUTH_CONSENT_REQUIRED, c"CONSENT_REQUIRED"),
    (MAILOAUTH_CANCELLED, c"CANCELLED"),
    (MAILOAUTH_TIMEOUT, c"TIMEOUT"),
    (MAILOAUTH_DECLINED, c"DECLINED"),
    (MAILOAUTH_PROVIDER_ERROR, c"PROVIDER_ERROR"),
    (MAILOAUTH_THROTTLED, c"THROTTLED"),
    (MAILOAUTH_ACCOUNT_MISMATCH, c"ACCOUNT_MISMATCH"),
    (MAILOAUTH_NETWORK, c"NETWORK"),
    (MAILOAUTH_TLS, c"TLS"),
    (MAILOAUTH_PROTOCOL, c"PROTOCOL"),
    (MAILOAUTH_AUTH_REJECTED, c"AUTH_REJECTED"),
    (MAILOAUTH_MAILBOX_ACCESS_DENIED, c"MAILBOX_ACCESS_DENIED"),
    (MAILOAUTH_SEND_REJECTED, c"SEND_REJECTED"),
    (MAILOAUTH_NOT_FOUND, c"NOT_FOUND"),
    (MAILOAUTH_TOO_LARGE, c"TOO_LARGE"),
    (MAILOAUTH_UNTRUSTED_HOST, c"UNTRUSTED_HOST"),
    (MAILOAUTH_CACHE_IO, c"CACHE_IO"),
    (MAILOAUTH_CACHE_CORRUPT, c"CACHE_CORRUPT"),
    (MAILOAUTH_CACHE_VERSION, c"CACHE_VERSION"),
    (MAILOAUTH_INTERNAL, c"INTERNAL"),
];

/// The static name of a code, or `UNKNOWN`.
pub(crate) fn name_of(code: i32) -> &'static std::ffi::CStr {
    NAMES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(c"UNKNOWN", |(_, n)| n)
}

/// The contract's number for an error kind.
pub(crate) fn code_of(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::InvalidArgument => MAILOAUTH_INVALID_ARGUMENT,
        ErrorKind::InvalidConfig => MAILOAUTH_INVALID_CONFIG,
        ErrorKind::AbiMismatch => MAILOAUTH_ABI_MISMATCH,
        ErrorKind::InvalidState => MAILOAUTH_INVALID_STATE,
        ErrorKind::Busy => MAILOAUTH_BUSY,
        ErrorKind::ConsentRequired => MAILOAUTH_CONSENT_REQUIRED,
        ErrorKind::Cancelled => MAILOAUTH_CANCELLED,
        ErrorKind::Timeout => MAILOAUTH_TIMEOUT,
        ErrorKind::Declined => MAILOAUTH_DECLINED,
        ErrorKind::ProviderError => MAILOAUTH_PROVIDER_ERROR,
        ErrorKind::Throttled => MAILOAUTH_THROTTLED,
        ErrorKind::AccountMismatch => MAILOAUTH_ACCOUNT_MISMATCH,
        ErrorKind::Network => MAILOAUTH_NETWORK,
        ErrorKind::Tls => MAILOAUTH_TLS,
        ErrorKind::Protocol => MAILOAUTH_PROTOCOL,
        ErrorKind::AuthRejected => MAILOAUTH_AUTH_REJECTED,
        ErrorKind::MailboxAccessDenied => MAILOAUTH_MAILBOX_ACCESS_DENIED,
        ErrorKind::SendRejected => MAILOAUTH_SEND_REJECTED,
        ErrorKind::NotFound => MAILOAUTH_NOT_FOUND,
        ErrorKind::TooLarge => MAILOAUTH_TOO_LARGE,
        ErrorKind::UntrustedHost => MAILOAUTH_UNTRUSTED_HOST,
        ErrorKind::CacheIo => MAILOAUTH_CACHE_IO,
        ErrorKind::CacheCorrupt => MAILOAUTH_CACHE_CORRUPT,
        ErrorKind::CacheVersion => MAILOAUTH_CACHE_VERSION,
        ErrorKind::Internal => MAILOAUTH_INTERNAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_complete() {
        let mut codes: Vec<i32> = NAMES.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), NAMES.len());
        assert_eq!(name_of(MAILOAUTH_CONSENT_REQUIRED), c"CONSENT_REQUIRED");
        assert_eq!(name_of(12345), c"UNKNOWN");
    }
}
