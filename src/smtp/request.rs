//! The SMTP request documents of the ABI (`mailoauth_smtp_send`,
//! `_send_mime`, `_forward`), parsed strictly: an unknown or duplicate key is
//! `InvalidConfig` naming it, CR/LF/NUL in an address or header value is
//! `InvalidArgument` naming the field, a send without recipients is
//! `InvalidConfig`, an attachment path that cannot be read is
//! `InvalidArgument` naming it. Everything is checked before a connection
//! is opened, so a bad request never sends anything.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use lettre::message::Mailbox;
use serde::Deserialize;
use serde_json::Value;

use crate::config::{Config, RawServer, Server};
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::request::{Doc, shown};

/// The longest address or display name accepted (RFC 5321 caps a path at 256).
const MAX_ADDRESS_LEN: usize = 998;
/// The most recipients in one request (Exchange allows 500 per message).
pub const MAX_RECIPIENTS: usize = 1000;
/// The longest timeout a request may ask for (one hour).
const MAX_TIMEOUT_MS: i64 = 3_600_000;

/// What every SMTP request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// Whose grant is used.
    pub account: String,
    /// The address authenticated as (XOAUTH2 `user=`); the account by default.
    pub mailbox: String,
    /// A server overriding the context's `servers.smtp`.
    pub server: Option<Server>,
    /// `None`: the configured default.
    pub timeout: Option<Duration>,
}

/// An attachment with its bytes (read from `path` or decoded from `base64`).
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("name", &self.name)
            .field("content_type", &self.content_type)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// The `message` of a send request, every address parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSpec {
    /// The mailbox when the request gave none.
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
}

impl MessageSpec {
    /// Every envelope recipient: To, Cc and Bcc, each once.
    pub fn recipients(&self) -> Vec<lettre::Address> {
        let mut out: Vec<lettre::Address> = Vec::new();
        for m in self.to.iter().chain(&self.cc).chain(&self.bcc) {
            if !out.contains(&m.email) {
                out.push(m.email.clone());
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    pub common: Common,
    pub message: MessageSpec,
}

/// Where `send_mime` takes its envelope from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeSpec {
    Given {
        from: lettre::Address,
        to: Vec<lettre::Address>,
    },
    /// From/To/Cc/Bcc of the message itself (Bcc then removed from the bytes).
    FromHeaders,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimeRequest {
    pub common: Common,
    pub envelope: EnvelopeSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardMode {
    /// A new message from the mailbox with the original as message/rfc822.
    Attachment,
    /// The original's headers and body quoted, its attachments kept.
    Inline,
    /// Resent-* headers prepended, the original untouched.
    Redirect,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRequest {
    pub common: Common,
    pub to: Vec<Mailbox>,
    pub mode: ForwardMode,
    pub comment: Option<String>,
    /// Put the original sender into Reply-To (default true).
    pub reply_to_original: bool,
}

// ---------------------------------------------------------------------------
// Raw documents, exactly as the host wrote them.

#[derive(Debug, Default, Deserialize)]
struct RawAttachment {
    name: Option<String>,
    content_type: Option<String>,
    path: Option<String>,
    base64: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawMessage {
    from: Option<String>,
    to: Option<Vec<String>>,
    cc: Option<Vec<String>>,
    bcc: Option<Vec<String>>,
    reply_to: Option<String>,
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
    attachments: Option<Vec<RawAttachment>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawSend {
    account: Option<String>,
    mailbox: Option<String>,
    server: Option<RawServer>,
    timeout_ms: Option<i64>,
    message: Option<RawMessage>,
}

#[derive(Debug, Default, Deserialize)]
struct RawEnvelope {
    from: Option<String>,
    to: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawMime {
    account: Option<String>,
    mailbox: Option<String>,
    server: Option<RawServer>,
    timeout_ms: Option<i64>,
    envelope: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct RawForward {
    account: Option<String>,
    mailbox: Option<String>,
    server: Option<RawServer>,
    timeout_ms: Option<i64>,
    to: Option<Vec<String>>,
    mode: Option<String>,
    comment: Option<String>,
    reply_to_original: Option<bool>,
}

// ---------------------------------------------------------------------------
// Errors.

fn invalid_config(en: String, de: String) -> Error {
    Error::new(ErrorKind::InvalidConfig, Text::new(en, de))
}

fn invalid_argument(en: String, de: String) -> Error {
    Error::new(ErrorKind::InvalidArgument, Text::new(en, de))
}

/// What SMTP requests are called in messages.
const DOC: Doc = Doc {
    en: "SMTP request",
    de: "SMTP-Anfrage",
};

/// `key` of the request has a wrong value.
fn bad_key(key: &str, en: impl AsRef<str>, de: impl AsRef<str>) -> Error {
    DOC.bad_key(key, en, de)
}

fn line_break(key: &str) -> Error {
    DOC.line_break(key)
}

// ---------------------------------------------------------------------------
// Parsing.

/// Strict JSON into `T`: size bounded, duplicate and unknown keys refused.
fn parse_doc<T: serde::de::DeserializeOwned>(json: &str, config: &Config) -> Result<T> {
    DOC.parse(json, config.max_json_bytes)
}

/// A header value: no CR, LF or NUL.
fn header_value(key: &str, v: &str) -> Result<()> {
    if v.contains(['\r', '\n', '\0']) {
        return Err(line_break(key));
    }
    Ok(())
}

/// An address with an optional display name (`Name <a@b>` or `a@b`).
pub(crate) fn mailbox(key: &str, v: &str) -> Result<Mailbox> {
    header_value(key, v)?;
    let t = v.trim();
    if t.is_empty() || t.len() > MAX_ADDRESS_LEN || t.chars().any(char::is_control) {
        return Err(bad_address(key, v));
    }
    t.parse::<Mailbox>().map_err(|_| bad_address(key, v))
}

/// A bare address (`a@b`), as in an envelope.
fn address(key: &str, v: &str) -> Result<lettre::Address> {
    header_value(key, v)?;
    let t = v.trim();
    if t.is_empty() || t.len() > MAX_ADDRESS_LEN || t.chars().any(char::is_control) {
        return Err(bad_address(key, v));
    }
    t.parse::<lettre::Address>()
        .map_err(|_| bad_address(key, v))
}

fn bad_address(key: &str, v: &str) -> Error {
    let v = shown(v);
    invalid_argument(
        format!(
            "SMTP request key '{key}': '{v}' is not an e-mail address (user@contoso.com or Name <user@contoso.com>)"
        ),
        format!(
            "Schlüssel '{key}' der SMTP-Anfrage: '{v}' ist keine E-Mail-Adresse (user@contoso.com oder Name <user@contoso.com>)"
        ),
    )
}

fn mailboxes(key: &str, list: Option<Vec<String>>) -> Result<Vec<Mailbox>> {
    list.unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, v)| mailbox(&format!("{key}[{i}]"), v))
        .collect()
}

fn common(
    config: &Config,
    account: Option<String>,
    mailbox_: Option<String>,
    server: Option<RawServer>,
    timeout_ms: Option<i64>,
) -> Result<Common> {
    let account = match account {
        None => {
            return Err(bad_key(
                "account",
                "required: the account whose grant is used (user@contoso.com)",
                "erforderlich: das Konto, dessen Berechtigung verwendet wird (user@contoso.com)",
            ));
        }
        Some(a) => {
            header_value("account", &a)?;
            let a = a.trim().to_string();
            if a.is_empty() || a.len() > MAX_ADDRESS_LEN || a.chars().any(char::is_control) {
                return Err(bad_key(
                    "account",
                    "expected a sign-in name such as user@contoso.com",
                    "erwartet wird ein Anmeldename wie user@contoso.com",
                ));
            }
            a
        }
    };
    let mailbox_ = match mailbox_ {
        None => account.clone(),
        Some(m) => address("mailbox", &m)?.to_string(),
    };
    let server = server.map(|s| server_override(config, s)).transpose()?;
    let timeout = match timeout_ms {
        None => None,
        Some(ms) if ms < 0 => None,
        Some(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => Some(Duration::from_millis(ms as u64)),
        Some(_) => {
            return Err(bad_key(
                "timeout_ms",
                "expected milliseconds between 1 and 3600000 (or negative for the default)",
                "erwartet werden Millisekunden zwischen 1 und 3600000 (oder negativ für den Standardwert)",
            ));
        }
    };
    Ok(Common {
        account,
        mailbox: mailbox_,
        server,
        timeout,
    })
}

/// `server`: the same rules as `servers.smtp` in the configuration (one
/// implementation: `config::server_override`). Whether a token may go there
/// is checked before connecting (`UntrustedHost`).
fn server_override(config: &Config, raw: RawServer) -> Result<Server> {
    if let Some(host) = &raw.host {
        header_value("server.host", host)?;
    }
    crate::config::server_override(config, "smtp", raw)
}

fn attachment(
    config: &Config,
    i: usize,
    raw: RawAttachment,
    total: &mut u64,
) -> Result<Attachment> {
    let key = |k: &str| format!("message.attachments[{i}].{k}");
    let name = match raw.name {
        Some(n) if !n.trim().is_empty() => n,
        _ => {
            return Err(bad_key(
                &key("name"),
                "required: the file name shown to the recipient",
                "erforderlich: der Dateiname, den der Empfänger sieht",
            ));
        }
    };
    header_value(&key("name"), &name)?;
    let content_type = raw
        .content_type
        .unwrap_or_else(|| "application/octet-stream".to_string());
    header_value(&key("content_type"), &content_type)?;
    if lettre::message::header::ContentType::parse(&content_type).is_err() {
        let c = shown(&content_type);
        return Err(invalid_argument(
            format!(
                "SMTP request key '{}': '{c}' is not a MIME type such as application/pdf",
                key("content_type")
            ),
            format!(
                "Schlüssel '{}' der SMTP-Anfrage: '{c}' ist kein MIME-Typ wie application/pdf",
                key("content_type")
            ),
        ));
    }
    let limit = config.max_message_bytes;
    let data = match (raw.path, raw.base64) {
        (Some(path), None) => {
            header_value(&key("path"), &path)?;
            read_attachment(&key("path"), &path, limit.saturating_sub(*total))?
        }
        (None, Some(b64)) => {
            // Decoded size is about 3/4 of the text: bound before decoding.
            if (b64.len() as u64 / 4) * 3 > limit.saturating_sub(*total) {
                return Err(too_large(limit));
            }
            let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .map_err(|e| {
                    invalid_argument(
                        format!(
                            "SMTP request key '{}' is not valid base64: {e}",
                            key("base64")
                        ),
                        format!(
                            "Schlüssel '{}' der SMTP-Anfrage ist kein gültiges Base64: {e}",
                            key("base64")
                        ),
                    )
                })?
        }
        _ => {
            return Err(bad_key(
                &format!("message.attachments[{i}]"),
                "expected exactly one of path and base64",
                "erwartet wird genau eines von path und base64",
            ));
        }
    };
    *total = total.saturating_add(data.len() as u64);
    if *total > limit {
        return Err(too_large(limit));
    }
    Ok(Attachment {
        name,
        content_type,
        data,
    })
}

fn too_large(limit: u64) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        Text::new(
            format!("the message is larger than limits.max_message_bytes ({limit} bytes)"),
            format!("die Nachricht ist größer als limits.max_message_bytes ({limit} Bytes)"),
        ),
    )
}

/// Reads an attachment file with the calling process's rights, bounded.
fn read_attachment(key: &str, path: &str, limit: u64) -> Result<Vec<u8>> {
    let unreadable = |why: String| {
        let p = shown(path);
        invalid_argument(
            format!("SMTP request key '{key}': cannot read the attachment '{p}': {why}"),
            format!("Schlüssel '{key}' der SMTP-Anfrage: der Anhang '{p}' ist nicht lesbar: {why}"),
        )
    };
    let p = PathBuf::from(path);
    let meta = std::fs::metadata(&p).map_err(|e| unreadable(e.to_string()))?;
    if !meta.is_file() {
        return Err(unreadable("not a file".into()));
    }
    if meta.len() > limit {
        return Err(too_large(limit));
    }
    use std::io::Read as _;
    let file = std::fs::File::open(&p).map_err(|e| unreadable(e.to_string()))?;
    let mut data = Vec::with_capacity(meta.len() as usize);
    // One byte more than allowed tells a file that grew meanwhile.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| unreadable(e.to_string()))?;
    if data.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(data)
}

fn no_recipients(key: &str) -> Error {
    invalid_config(
        format!("the SMTP request has no recipients ({key} is empty)"),
        format!("die SMTP-Anfrage hat keine Empfänger ({key} ist leer)"),
    )
}

fn too_many_recipients() -> Error {
    invalid_config(
        format!("the SMTP request has more than {MAX_RECIPIENTS} recipients"),
        format!("die SMTP-Anfrage hat mehr als {MAX_RECIPIENTS} Empfänger"),
    )
}

impl SendRequest {
    /// Parses a `mailoauth_smtp_send` request; attachment files are read here.
    pub fn parse(json: &str, config: &Config) -> Result<Self> {
        let raw: RawSend = parse_doc(json, config)?;
        let common = common(config, raw.account, raw.mailbox, raw.server, raw.timeout_ms)?;
        let Some(m) = raw.message else {
            return Err(bad_key(
                "message",
                "required: the message to send",
                "erforderlich: die zu sendende Nachricht",
            ));
        };
        let from = match m.from {
            Some(f) => mailbox("message.from", &f)?,
            None => mailbox("mailbox", &common.mailbox)?,
        };
        let to = mailboxes("message.to", m.to)?;
        let cc = mailboxes("message.cc", m.cc)?;
        let bcc = mailboxes("message.bcc", m.bcc)?;
        let reply_to = m
            .reply_to
            .map(|r| mailbox("message.reply_to", &r))
            .transpose()?;
        let subject = m.subject.unwrap_or_default();
        header_value("message.subject", &subject)?;
        if subject.len() > 16 * 1024 {
            return Err(bad_key(
                "message.subject",
                "longer than 16384 bytes",
                "länger als 16384 Bytes",
            ));
        }
        let mut total = 0u64;
        let attachments = m
            .attachments
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, a)| attachment(config, i, a, &mut total))
            .collect::<Result<Vec<_>>>()?;
        let body_len =
            m.text.as_ref().map_or(0, String::len) + m.html.as_ref().map_or(0, String::len);
        if total.saturating_add(body_len as u64) > config.max_message_bytes {
            return Err(too_large(config.max_message_bytes));
        }
        let message = MessageSpec {
            from,
            to,
            cc,
            bcc,
            reply_to,
            subject,
            text: m.text,
            html: m.html,
            attachments,
        };
        let n = message.recipients().len();
        if n == 0 {
            return Err(no_recipients("message.to, message.cc and message.bcc"));
        }
        if n > MAX_RECIPIENTS {
            return Err(too_many_recipients());
        }
        Ok(Self { common, message })
    }
}

impl MimeRequest {
    /// Parses a `mailoauth_smtp_send_mime` request.
    pub fn parse(json: &str, config: &Config) -> Result<Self> {
        let raw: RawMime = parse_doc(json, config)?;
        let common = common(config, raw.account, raw.mailbox, raw.server, raw.timeout_ms)?;
        let envelope = match raw.envelope {
            None | Some(Value::Null) => {
                return Err(bad_key(
                    "envelope",
                    "required: {\"from\": \"…\", \"to\": [\"…\"]} or \"from_headers\"",
                    "erforderlich: {\"from\": \"…\", \"to\": [\"…\"]} oder \"from_headers\"",
                ));
            }
            Some(v) => parse_envelope(v)?,
        };
        Ok(Self { common, envelope })
    }
}

fn parse_envelope(v: Value) -> Result<EnvelopeSpec> {
    let expected = || {
        bad_key(
            "envelope",
            "expected {\"from\": \"…\", \"to\": [\"…\"]} or \"from_headers\"",
            "erwartet wird {\"from\": \"…\", \"to\": [\"…\"]} oder \"from_headers\"",
        )
    };
    match v {
        Value::String(w) if w == "from_headers" => Ok(EnvelopeSpec::FromHeaders),
        Value::String(w) => {
            let w = shown(&w);
            Err(bad_key(
                "envelope",
                format!("'{w}' is not from_headers"),
                format!("'{w}' ist nicht from_headers"),
            ))
        }
        Value::Object(map) => {
            if let Some(key) = map.keys().find(|k| !["from", "to"].contains(&k.as_str())) {
                let key = shown(key);
                return Err(invalid_config(
                    format!("unknown SMTP request key 'envelope.{key}' (check the spelling)"),
                    format!(
                        "unbekannter Schlüssel 'envelope.{key}' in der SMTP-Anfrage (Schreibweise prüfen)"
                    ),
                ));
            }
            let e: RawEnvelope =
                serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
                    let key = shown(&format!("envelope.{}", e.path()));
                    let inner = e.into_inner().to_string();
                    bad_key(&key, &inner, format!("ungültiger Wert ({inner})"))
                })?;
            let from = match e.from {
                Some(f) => address("envelope.from", &f)?,
                None => {
                    return Err(bad_key(
                        "envelope.from",
                        "required: the sender address",
                        "erforderlich: die Absenderadresse",
                    ));
                }
            };
            let mut to: Vec<lettre::Address> = Vec::new();
            for (i, t) in e.to.unwrap_or_default().iter().enumerate() {
                let a = address(&format!("envelope.to[{i}]"), t)?;
                if !to.contains(&a) {
                    to.push(a);
                }
            }
            if to.is_empty() {
                return Err(no_recipients("envelope.to"));
            }
            if to.len() > MAX_RECIPIENTS {
                return Err(too_many_recipients());
            }
            Ok(EnvelopeSpec::Given { from, to })
        }
        _ => Err(expected()),
    }
}

impl ForwardRequest {
    /// Parses a `mailoauth_smtp_forward` request.
    pub fn parse(json: &str, config: &Config) -> Result<Self> {
        let raw: RawForward = parse_doc(json, config)?;
        let common = common(config, raw.account, raw.mailbox, raw.server, raw.timeout_ms)?;
        let to = mailboxes("to", raw.to)?;
        if to.is_empty() {
            return Err(no_recipients("to"));
        }
        if to.len() > MAX_RECIPIENTS {
            return Err(too_many_recipients());
        }
        let mode = match raw.mode.as_deref() {
            None | Some("attachment") => ForwardMode::Attachment,
            Some("inline") => ForwardMode::Inline,
            Some("redirect") => ForwardMode::Redirect,
            Some(other) => {
                let o = shown(other);
                return Err(bad_key(
                    "mode",
                    format!("'{o}' is not one of attachment, inline, redirect"),
                    format!("'{o}' ist keiner von attachment, inline, redirect"),
                ));
            }
        };
        Ok(Self {
            common,
            to,
            mode,
            comment: raw.comment,
            reply_to_original: raw.reply_to_original.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        crate::config::parse(
            r#"{"client_id":"00000000-0000-0000-0000-0000000000a1","allow_plaintext_loopback":true}"#,
        )
        .unwrap()
        .config
    }

    fn send(v: Value) -> Result<SendRequest> {
        SendRequest::parse(&v.to_string(), &config())
    }

    fn err(v: Value) -> Error {
        send(v).unwrap_err()
    }

    #[test]
    fn a_full_request() {
        let r = send(json!({
            "account": "alice@contoso.test",
            "mailbox": "shared@contoso.test",
            "timeout_ms": 5000,
            "server": {"host": "127.0.0.2", "port": 10587, "security": "starttls"},
            "message": {
                "to": ["Jürgen Müller <j@contoso.test>"], "cc": ["c@contoso.test"],
                "bcc": ["hidden@contoso.test", "j@contoso.test"], "reply_to": "r@contoso.test",
                "subject": "Grüße", "text": "hallo\nwelt", "html": "<p>hallo</p>",
                "attachments": [{"name": "a.bin", "content_type": "application/octet-stream", "base64": "AAEC/w=="}]
            }
        }))
        .unwrap();
        assert_eq!(r.common.account, "alice@contoso.test");
        assert_eq!(r.common.mailbox, "shared@contoso.test");
        assert_eq!(r.common.timeout, Some(Duration::from_millis(5000)));
        assert_eq!(r.common.server.as_ref().unwrap().port, 10587);
        // From defaults to the mailbox.
        assert_eq!(r.message.from.email.to_string(), "shared@contoso.test");
        assert_eq!(r.message.to[0].name.as_deref(), Some("Jürgen Müller"));
        assert_eq!(r.message.attachments[0].data, vec![0, 1, 2, 255]);
        // Recipients once each.
        assert_eq!(r.message.recipients().len(), 3);
    }

    #[test]
    fn unknown_and_duplicate_keys_are_named() {
        let e = err(json!({"account": "a@b.c", "message": {"to": ["x@y.z"], "subjekt": "x"}}));
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(
            e.message.en.contains("'message.subjekt'"),
            "{}",
            e.message.en
        );
        let e = err(json!({"account": "a@b.c", "message": {"to": ["x@y.z"],
            "attachments": [{"name": "n", "base64": "", "pth": "/x"}]}}));
        assert!(
            e.message.en.contains("'message.attachments[0].pth'"),
            "{}",
            e.message.en
        );
        let e = SendRequest::parse(
            r#"{"account":"a@b.c","account":"d@e.f","message":{"to":["x@y.z"]}}"#,
            &config(),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(
            e.message.en.contains("duplicate key 'account'"),
            "{}",
            e.message.en
        );
        let e = err(json!({"account": "a@b.c", "message": {"to": "x@y.z"}}));
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(e.message.en.contains("'message.to'"), "{}", e.message.en);
        let e = SendRequest::parse("{", &config()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        let e = SendRequest::parse("[]", &config()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
    }

    #[test]
    fn line_breaks_are_refused_naming_the_field() {
        for (field, value) in [
            ("to", json!(["x@y.z\r\nBcc: evil@x.y"])),
            ("subject", json!("hi\r\nBcc: evil@x.y")),
            ("from", json!("a@b.c\n")),
            ("reply_to", json!("r@b.c\u{0}")),
        ] {
            let mut m = json!({"to": ["x@y.z"]});
            m[field] = value;
            let e = err(json!({"account": "a@b.c", "message": m}));
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "{field}");
            assert!(
                e.message.en.contains(&format!("'message.{field}")),
                "{}",
                e.message.en
            );
        }
        let e = err(json!({"account": "a@b.c", "message": {"to": ["x@y.z"],
            "attachments": [{"name": "a\r\nb", "base64": ""}]}}));
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.en.contains("message.attachments[0].name"));
        // A body may of course hold line breaks.
        assert!(
            send(json!({"account": "a@b.c", "message": {"to": ["x@y.z"], "text": "a\r\nb"}}))
                .is_ok()
        );
    }

    #[test]
    fn recipients_and_addresses() {
        let e = err(json!({"account": "a@b.c", "message": {"to": [], "subject": "x"}}));
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(e.message.en.contains("no recipients"));
        let e = err(json!({"account": "a@b.c", "message": {"to": ["not an address"]}}));
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.en.contains("'message.to[0]'"));
        let e = err(json!({"message": {"to": ["x@y.z"]}}));
        assert!(e.message.en.contains("'account'"));
        // Only Bcc is enough.
        assert!(send(json!({"account": "a@b.c", "message": {"bcc": ["x@y.z"]}})).is_ok());
    }

    #[test]
    fn attachments_from_paths() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        std::fs::write(&p, b"\x00\x01binary").unwrap();
        let r = send(json!({"account": "a@b.c", "message": {"to": ["x@y.z"],
            "attachments": [{"name": "f.bin", "path": p.to_string_lossy()}]}}))
        .unwrap();
        assert_eq!(r.message.attachments[0].data, b"\x00\x01binary");
        assert_eq!(
            r.message.attachments[0].content_type,
            "application/octet-stream"
        );
        let missing = dir.path().join("nope.pdf");
        let e = err(json!({"account": "a@b.c", "message": {"to": ["x@y.z"],
            "attachments": [{"name": "n.pdf", "path": missing.to_string_lossy()}]}}));
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.en.contains("message.attachments[0].path"));
        assert!(e.message.en.contains("nope.pdf"));
        let e = err(json!({"account": "a@b.c", "message": {"to": ["x@y.z"],
            "attachments": [{"name": "n", "path": dir.path().to_string_lossy()}]}}));
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        let e = err(json!({"account": "a@b.c", "message": {"to": ["x@y.z"],
            "attachments": [{"name": "n", "path": "/x", "base64": "AA=="}]}}));
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        let e = err(json!({"account": "a@b.c", "message": {"to": ["x@y.z"],
            "attachments": [{"name": "n", "base64": "%%%"}]}}));
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        let e = err(json!({"account": "a@b.c", "message": {"to": ["x@y.z"],
            "attachments": [{"name": "n", "content_type": "nonsense", "base64": "AA=="}]}}));
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
    }

    #[test]
    fn server_override_rules() {
        let e = err(
            json!({"account": "a@b.c", "server": {"host": "mail.example.com", "security": "none"},
            "message": {"to": ["x@y.z"]}}),
        );
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(e.message.en.contains("server.security"));
        let r = send(
            json!({"account": "a@b.c", "server": {"host": "mail.example.com", "security": "tls"},
            "message": {"to": ["x@y.z"]}}),
        )
        .unwrap();
        assert_eq!(r.common.server.unwrap().port, 465);
        let e = err(
            json!({"account": "a@b.c", "server": {"host": "https://x"}, "message": {"to": ["x@y.z"]}}),
        );
        assert!(e.message.en.contains("server.host"));
        let e = err(json!({"account": "a@b.c", "timeout_ms": 0, "message": {"to": ["x@y.z"]}}));
        assert!(e.message.en.contains("timeout_ms"));
        let r = send(json!({"account": "a@b.c", "timeout_ms": -1, "message": {"to": ["x@y.z"]}}))
            .unwrap();
        assert_eq!(r.common.timeout, None);
    }

    #[test]
    fn mime_and_forward_requests() {
        let c = config();
        let r = MimeRequest::parse(
            &json!({"account": "a@b.c", "envelope": {"from": "a@b.c", "to": ["x@y.z", "x@y.z"]}})
                .to_string(),
            &c,
        )
        .unwrap();
        assert!(matches!(r.envelope, EnvelopeSpec::Given { ref to, .. } if to.len() == 1));
        let r = MimeRequest::parse(
            &json!({"account": "a@b.c", "envelope": "from_headers"}).to_string(),
            &c,
        )
        .unwrap();
        assert_eq!(r.envelope, EnvelopeSpec::FromHeaders);
        let e = MimeRequest::parse(&json!({"account": "a@b.c"}).to_string(), &c).unwrap_err();
        assert!(e.message.en.contains("'envelope'"));
        let e = MimeRequest::parse(
            &json!({"account": "a@b.c", "envelope": {"from": "a@b.c", "to": []}}).to_string(),
            &c,
        )
        .unwrap_err();
        assert!(e.message.en.contains("no recipients"));
        let e = MimeRequest::parse(
            &json!({"account": "a@b.c", "envelope": {"from": "a@b.c", "to": ["x@y.z"], "cc": []}})
                .to_string(),
            &c,
        )
        .unwrap_err();
        assert!(e.message.en.contains("'envelope.cc'"), "{}", e.message.en);
        let e = MimeRequest::parse(
            &json!({"account": "a@b.c", "envelope": {"from": "a@b.c\r\n", "to": ["x@y.z"]}})
                .to_string(),
            &c,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        let r = ForwardRequest::parse(
            &json!({"account": "a@b.c", "to": ["x@y.z"], "comment": "FYI"}).to_string(),
            &c,
        )
        .unwrap();
        assert_eq!(r.mode, ForwardMode::Attachment);
        assert!(r.reply_to_original);
        let e = ForwardRequest::parse(
            &json!({"account": "a@b.c", "to": ["x@y.z"], "mode": "bounce"}).to_string(),
            &c,
        )
        .unwrap_err();
        assert!(e.message.en.contains("'mode'"));
        let e = ForwardRequest::parse(&json!({"account": "a@b.c", "to": []}).to_string(), &c)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
    }
}
