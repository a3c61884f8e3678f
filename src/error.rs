//! The library's error: a kind (which the C layer turns into a result code),
//! a message and an optional hint in every language, and what the provider or
//! server said. Nothing secret ever goes into it.

use crate::i18n::{Language, Text};

/// What went wrong, in the terms of the contract. The C layer maps each kind
/// to its fixed `MAILOAUTH_*` number; the core knows no numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    InvalidArgument,
    InvalidConfig,
    AbiMismatch,
    InvalidState,
    Busy,
    ConsentRequired,
    Cancelled,
    Timeout,
    Declined,
    ProviderError,
    Throttled,
    AccountMismatch,
    Network,
    Tls,
    Protocol,
    AuthRejected,
    MailboxAccessDenied,
    SendRejected,
    NotFound,
    TooLarge,
    UntrustedHost,
    CacheIo,
    CacheCorrupt,
    CacheVersion,
    Internal,
}

/// A failure with everything a host, a user and an administrator need.
/// Boxed, so that `Result`s stay small; fields are reached through `Deref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(Box<Details>);

/// What an [`Error`] carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    pub kind: ErrorKind,
    pub message: Text,
    pub hint: Option<Text>,
    /// The OAuth `error` field (`invalid_grant`, …).
    pub provider_error: Option<String>,
    /// The provider's code (`AADSTS700082`).
    pub provider_code: Option<String>,
    /// The mail server's reply, control characters removed, at most 1 KiB.
    pub server_reply: Option<String>,
    pub correlation_id: Option<String>,
    pub retry_after_s: Option<u64>,
    /// Refused recipients of a send.
    pub rejected: Vec<String>,
    /// A failure that may go away by itself (network, 5xx, 429,
    /// `temporarily_unavailable`): retried with backoff, never a reason to
    /// discard a refresh token.
    pub transient: bool,
}

/// The longest server reply kept in an error record.
pub const MAX_SERVER_REPLY_BYTES: usize = 1024;

impl Error {
    pub fn new(kind: ErrorKind, message: Text) -> Self {
        Self(Box::new(Details {
            kind,
            message,
            hint: None,
            provider_error: None,
            provider_code: None,
            server_reply: None,
            correlation_id: None,
            retry_after_s: None,
            rejected: Vec::new(),
            transient: false,
        }))
    }

    /// An error whose message is the same in every language.
    pub fn plain(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::new(kind, Text::same(message))
    }

    pub fn transient(mut self) -> Self {
        self.transient = true;
        self
    }

    pub fn with_hint(mut self, hint: Text) -> Self {
        self.hint = Some(hint);
        self
    }

    /// Keeps a server's reply, with control characters removed and cut to 1 KiB.
    pub fn with_server_reply(mut self, reply: &str) -> Self {
        self.server_reply = Some(sanitize_reply(reply));
        self
    }

    pub fn message_in(&self, lang: Language) -> &str {
        self.message.get(lang)
    }

    pub fn cancelled() -> Self {
        Self::new(
            ErrorKind::Cancelled,
            Text::new("the call was cancelled", "der Aufruf wurde abgebrochen"),
        )
    }

    pub fn internal(what: impl Into<String>) -> Self {
        let what = what.into();
        Self::new(
            ErrorKind::Internal,
            Text::new(
                format!("internal error: {what}"),
                format!("interner Fehler: {what}"),
            ),
        )
    }
}

/// An error as kept in a store (an account's last failure): both languages,
/// no secret (errors never hold one), the time it happened.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Stored {
    kind: ErrorKind,
    message_en: String,
    message_de: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hint_en: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hint_de: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provider_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provider_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server_reply: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_after_s: Option<u64>,
    at: i64,
}

impl Error {
    /// The form kept in a store (see [`Error::from_stored`]).
    pub fn to_stored(&self, at: i64) -> serde_json::Value {
        let s = Stored {
            kind: self.kind,
            message_en: self.message.en.clone(),
            message_de: self.message.de.clone(),
            hint_en: self.hint.as_ref().map(|h| h.en.clone()),
            hint_de: self.hint.as_ref().map(|h| h.de.clone()),
            provider_error: self.provider_error.clone(),
            provider_code: self.provider_code.clone(),
            server_reply: self.server_reply.clone(),
            correlation_id: self.correlation_id.clone(),
            retry_after_s: self.retry_after_s,
            at,
        };
        serde_json::to_value(s).unwrap_or(serde_json::Value::Null)
    }

    /// Reads back what [`Error::to_stored`] wrote, with the time it happened.
    pub fn from_stored(v: &serde_json::Value) -> Option<(Error, i64)> {
        let s: Stored = serde_json::from_value(v.clone()).ok()?;
        let mut e = Error::new(s.kind, Text::new(s.message_en, s.message_de));
        if let (Some(en), Some(de)) = (s.hint_en, s.hint_de) {
            e.hint = Some(Text::new(en, de));
        }
        e.provider_error = s.provider_error;
        e.provider_code = s.provider_code;
        e.server_reply = s.server_reply;
        e.correlation_id = s.correlation_id;
        e.retry_after_s = s.retry_after_s;
        Some((e, s.at))
    }
}

impl std::ops::Deref for Error {
    type Target = Details;
    fn deref(&self) -> &Details {
        &self.0
    }
}

impl std::ops::DerefMut for Error {
    fn deref_mut(&mut self) -> &mut Details {
        &mut self.0
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message.en)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Removes control characters from a server's text and cuts it to
/// [`MAX_SERVER_REPLY_BYTES`] at a character boundary.
pub fn sanitize_reply(reply: &str) -> String {
    let mut out = String::with_capacity(reply.len().min(MAX_SERVER_REPLY_BYTES));
    for ch in reply.chars() {
        let ch = if ch == '\r' || ch == '\n' || ch == '\t' {
            ' '
        } else if ch.is_control() {
            continue;
        } else {
            ch
        };
        if out.len() + ch.len_utf8() > MAX_SERVER_REPLY_BYTES {
            break;
        }
        out.push(ch);
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_loses_control_characters_and_is_bounded() {
        assert_eq!(sanitize_reply("535 5.7.3\r\nx\u{7}y"), "535 5.7.3  xy");
        let long = "ü".repeat(2000);
        let s = sanitize_reply(&long);
        assert!(s.len() <= MAX_SERVER_REPLY_BYTES);
        assert!(s.chars().all(|c| c == 'ü'));
    }
}
