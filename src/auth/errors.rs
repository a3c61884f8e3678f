//! Provider errors → [`Error`].
//!
//! Decisions key on the OAuth `error` field (Microsoft asks clients to branch
//! on it; AADSTS numbers and texts may change), with HTTP 429/5xx and
//! `temporarily_unavailable`/`server_error` taking precedence as transient:
//!
//! | answer | kind |
//! | --- | --- |
//! | HTTP 429, or transient with `Retry-After` | `Throttled`, transient |
//! | HTTP 5xx, `temporarily_unavailable`, `server_error` | `ProviderError`, transient |
//! | `invalid_grant`, `interaction_required`, `consent_required`, `login_required` | `ConsentRequired` |
//! | `access_denied`, `authorization_declined` | `Declined` |
//! | `expired_token` | `Timeout` |
//! | anything else (`invalid_client`, `invalid_scope`, `bad_verification_code`, …) | `ProviderError` |
//!
//! The AADSTS code then picks a specific hint ([`super::hints`]). The
//! message names the operation, the `error` value and the AADSTS code; it
//! never holds the response body, the description, a token, a code or a
//! secret. A transport error keeps its host and drops query strings.

use serde::{Deserialize, Deserializer, Serialize};

use super::hints;
use super::http::{TransportError, TransportKind};
use crate::error::{Error, ErrorKind};
use crate::i18n::Text;

/// Microsoft's error answer, plus what [`super::http`] copies from outside
/// the JSON (`http_status`, `retry_after`, an echoed `correlation_id`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct MsError {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    #[serde(default, deserialize_with = "lenient_codes")]
    pub error_codes: Vec<u64>,
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub trace_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub correlation_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub suberror: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

fn lenient_codes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_u64()).collect(),
        _ => Vec::new(),
    })
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(v.as_str().map(str::to_string))
}

impl std::fmt::Display for MsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&safe_word(&self.error))?;
        if let Some(c) = self.code() {
            write!(f, " (AADSTS{c})")?;
        }
        Ok(())
    }
}

impl oauth2::ErrorResponse for MsError {}

impl MsError {
    /// The AADSTS number: `error_codes[0]`, else parsed from the description.
    pub fn code(&self) -> Option<u64> {
        self.error_codes
            .first()
            .copied()
            .or_else(|| self.error_description.as_deref().and_then(aadsts_in))
    }

    /// The correlation id: the field, else parsed from the description.
    pub fn correlation(&self) -> Option<String> {
        self.correlation_id
            .clone()
            .filter(|c| is_plain_id(c))
            .or_else(|| self.error_description.as_deref().and_then(correlation_in))
    }
}

/// What the failed call was doing, for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The browser sign-in (an error on the redirect).
    Authorize,
    /// Redeeming an authorization code.
    Code,
    Refresh,
    DeviceStart,
    DevicePoll,
    ClientCredentials,
}

impl Op {
    /// German after a preposition needs the dative: "beim Erneuern des
    /// Zugriffstokens", not "bei das Erneuern".
    fn during_de(self) -> &'static str {
        match self {
            Op::Authorize => "bei der Anmeldung",
            Op::Code => "beim Einlösen des Anmeldecodes",
            Op::Refresh => "beim Erneuern des Zugriffstokens",
            Op::DeviceStart => "beim Starten der Geräteanmeldung",
            Op::DevicePoll => "bei der Geräteanmeldung",
            Op::ClientCredentials => "beim Abrufen eines App-Tokens",
        }
    }

    fn text(self) -> (&'static str, &'static str) {
        match self {
            Op::Authorize => ("the sign-in", "die Anmeldung"),
            Op::Code => (
                "redeeming the sign-in code",
                "das Einlösen des Anmeldecodes",
            ),
            Op::Refresh => (
                "refreshing the access token",
                "das Erneuern des Zugriffstokens",
            ),
            Op::DeviceStart => (
                "starting the device sign-in",
                "das Starten der Geräteanmeldung",
            ),
            Op::DevicePoll => ("the device sign-in", "die Geräteanmeldung"),
            Op::ClientCredentials => ("getting an app token", "das Abrufen eines App-Tokens"),
        }
    }
}

/// The first AADSTS number in a text (`AADSTS700082: …`).
pub fn aadsts_in(text: &str) -> Option<u64> {
    let i = text.find("AADSTS")?;
    let digits: String = text[i + 6..]
        .chars()
        .take_while(char::is_ascii_digit)
        .take(9)
        .collect();
    digits.parse().ok()
}

/// `Correlation ID: <guid>` in a description.
fn correlation_in(text: &str) -> Option<String> {
    let i = text.find("Correlation ID:")?;
    let id: String = text[i + 15..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
        .take(64)
        .collect();
    is_plain_id(&id).then_some(id)
}

fn is_plain_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// An `error` value as we show it: lower-case letters and `_` only.
fn safe_word(s: &str) -> String {
    if !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
    {
        s.to_string()
    } else {
        "unknown_error".to_string()
    }
}

/// The kind for an `error` value and HTTP status; `true` when transient.
pub fn classify(
    error: &str,
    http_status: Option<u16>,
    retry_after: Option<u64>,
) -> (ErrorKind, bool) {
    let status_transient = matches!(http_status, Some(s) if s == 429 || s >= 500);
    let error_transient = matches!(error, "temporarily_unavailable" | "server_error");
    if status_transient || error_transient {
        let kind = if http_status == Some(429) || retry_after.is_some() {
            ErrorKind::Throttled
        } else {
            ErrorKind::ProviderError
        };
        return (kind, true);
    }
    let kind = match error {
        "invalid_grant" | "interaction_required" | "consent_required" | "login_required" => {
            ErrorKind::ConsentRequired
        }
        "access_denied" | "authorization_declined" => ErrorKind::Declined,
        "expired_token" => ErrorKind::Timeout,
        _ => ErrorKind::ProviderError,
    };
    (kind, false)
}

/// An error answer of the token or device endpoint.
pub fn from_provider(op: Op, e: &MsError) -> Error {
    let (kind, transient) = classify(&e.error, e.http_status, e.retry_after);
    let code = e.code();
    let error = safe_word(&e.error);
    let (op_en, op_de) = op.text();
    let op_bei = op.during_de();
    let what = match (code, e.http_status) {
        (Some(c), _) => format!("{error}, AADSTS{c}"),
        (None, Some(s)) => format!("{error}, HTTP {s}"),
        (None, None) => error.clone(),
    };
    let message = match kind {
        ErrorKind::ConsentRequired => Text::new(
            format!(
                "a new interactive sign-in is needed: the identity provider refused {op_en} ({what})"
            ),
            format!(
                "eine neue interaktive Anmeldung ist nötig: der Identitätsanbieter hat {op_de} abgelehnt ({what})"
            ),
        ),
        ErrorKind::Declined => Text::new(
            format!("the sign-in was declined ({what})"),
            format!("die Anmeldung wurde abgelehnt ({what})"),
        ),
        ErrorKind::Timeout => Text::new(
            format!("the sign-in expired before it was completed ({what})"),
            format!("die Anmeldung ist abgelaufen, bevor sie abgeschlossen wurde ({what})"),
        ),
        ErrorKind::Throttled => {
            let after = e
                .retry_after
                .map(|s| format!("; retry after {s} s"))
                .unwrap_or_default();
            let after_de = e
                .retry_after
                .map(|s| format!("; erneut versuchen nach {s} s"))
                .unwrap_or_default();
            Text::new(
                format!("the identity provider asks to slow down during {op_en} ({what}{after})"),
                format!("der Identitätsanbieter bittet {op_bei} um eine Pause ({what}{after_de})"),
            )
        }
        _ if transient => Text::new(
            format!("the identity provider is temporarily unavailable during {op_en} ({what})"),
            format!("der Identitätsanbieter ist {op_bei} vorübergehend nicht verfügbar ({what})"),
        ),
        _ => Text::new(
            format!("the identity provider refused {op_en} ({what})"),
            format!("der Identitätsanbieter hat {op_de} abgelehnt ({what})"),
        ),
    };
    let mut err = Error::new(kind, message);
    err.hint = code
        .and_then(|c| u32::try_from(c).ok())
        .and_then(hints::for_code)
        .or_else(|| hints::for_error(&e.error));
    err.provider_error = Some(error);
    err.provider_code = code.map(|c| format!("AADSTS{c}"));
    err.correlation_id = e.correlation();
    err.retry_after_s = e.retry_after;
    err.transient = transient;
    err
}

/// An `error` on the browser redirect (`?error=access_denied&error_description=…`).
pub fn from_redirect(error: &str, description: Option<&str>) -> Error {
    let e = MsError {
        error: error.to_string(),
        error_description: description.map(str::to_string),
        ..MsError::default()
    };
    let mut err = from_provider(Op::Authorize, &e);
    // A redirect is never a retryable HTTP answer.
    err.transient = false;
    if err.kind == ErrorKind::Throttled {
        err.kind = ErrorKind::ProviderError;
    }
    err
}

/// A failure below HTTP.
pub(crate) fn from_transport(op: Op, e: &TransportError, timeout_ms: u32) -> Error {
    let (op_en, op_bei) = (op.text().0, op.during_de());
    let host = &e.host;
    let mut err = match e.kind {
        TransportKind::Connect => Error::new(
            ErrorKind::Network,
            Text::new(
                format!("could not reach the identity provider {host} during {op_en}: {}", e.text),
                format!("der Identitätsanbieter {host} war {op_bei} nicht erreichbar: {}", e.text),
            ),
        )
        .with_hint(Text::new(
            "Check the network connection, DNS and the proxy setting (http.proxy).",
            "Netzwerkverbindung, DNS und die Proxy-Einstellung (http.proxy) prüfen.",
        ))
        .transient(),
        TransportKind::Timeout => Error::new(
            ErrorKind::Network,
            Text::new(
                format!("the identity provider {host} did not answer within {timeout_ms} ms during {op_en}"),
                format!("der Identitätsanbieter {host} hat {op_bei} nicht innerhalb von {timeout_ms} ms geantwortet"),
            ),
        )
        .with_hint(Text::new(
            "Check the network connection and the proxy; http.timeout_ms sets the limit.",
            "Netzwerkverbindung und Proxy prüfen; http.timeout_ms legt die Grenze fest.",
        ))
        .transient(),
        TransportKind::Tls => Error::new(
            ErrorKind::Tls,
            Text::new(
                format!("the TLS connection to {host} failed during {op_en}: {}", e.text),
                format!("die TLS-Verbindung zu {host} ist {op_bei} gescheitert: {}", e.text),
            ),
        )
        .with_hint(Text::new(
            "A proxy that inspects TLS needs its CA certificate in the system store or in tls.ca_file; check the system clock.",
            "Ein Proxy, der TLS aufbricht, braucht sein CA-Zertifikat im Systemspeicher oder in tls.ca_file; die Systemuhr prüfen.",
        )),
        TransportKind::Other => Error::new(
            ErrorKind::Protocol,
            Text::new(
                format!("unusable answer from {host} during {op_en}: {}", e.text),
                format!("unbrauchbare Antwort von {host} {op_bei}: {}", e.text),
            ),
        ),
    };
    err.correlation_id = Some(e.request_id.clone());
    err
}

/// Any failure of an `oauth2` request.
pub(crate) fn from_request_error(
    op: Op,
    e: oauth2::RequestTokenError<TransportError, MsError>,
    timeout_ms: u32,
) -> Error {
    use oauth2::RequestTokenError as R;
    let (op_en, op_de) = op.text();
    match e {
        R::ServerResponse(ms) => from_provider(op, &ms),
        R::Request(t) => from_transport(op, &t, timeout_ms),
        R::Parse(p, _body) => {
            // The path only: serde's message may quote a value (a token).
            let path = p.path().to_string();
            Error::new(
                ErrorKind::Protocol,
                Text::new(
                    format!(
                        "the identity provider's answer to {op_en} could not be read (at '{path}')"
                    ),
                    format!(
                        "die Antwort des Identitätsanbieters auf {op_de} war nicht lesbar (bei '{path}')"
                    ),
                ),
            )
        }
        R::Other(s) => {
            let s = super::http::strip_queries(&s);
            let s: String = s.chars().filter(|c| !c.is_control()).take(200).collect();
            Error::new(
                ErrorKind::Protocol,
                Text::new(
                    format!("unexpected answer of the identity provider to {op_en}: {s}"),
                    format!("unerwartete Antwort des Identitätsanbieters auf {op_de}: {s}"),
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(error: &str, code: Option<u64>, status: Option<u16>, ra: Option<u64>) -> MsError {
        MsError {
            error: error.into(),
            error_description: code.map(|c| format!("AADSTS{c}: text\r\nTrace ID: t\r\nCorrelation ID: 1234abcd-0000-0000-0000-000000000000\r\nTimestamp: x")),
            error_codes: code.into_iter().collect(),
            http_status: status,
            retry_after: ra,
            ..MsError::default()
        }
    }

    #[test]
    fn error_field_decides() {
        let e = from_provider(
            Op::Refresh,
            &ms("invalid_grant", Some(700082), Some(400), None),
        );
        assert_eq!(e.kind, ErrorKind::ConsentRequired);
        assert_eq!(e.provider_code.as_deref(), Some("AADSTS700082"));
        assert_eq!(e.provider_error.as_deref(), Some("invalid_grant"));
        assert_eq!(
            e.correlation_id.as_deref(),
            Some("1234abcd-0000-0000-0000-000000000000")
        );
        assert!(!e.transient);
        assert!(e.hint.as_ref().unwrap().de.contains("erneut anmelden"));
        assert!(!e.message.en.contains("text"));

        let e = from_provider(
            Op::Refresh,
            &ms("temporarily_unavailable", Some(90055), Some(429), Some(7)),
        );
        assert_eq!(
            (e.kind, e.transient, e.retry_after_s),
            (ErrorKind::Throttled, true, Some(7))
        );
        let e = from_provider(
            Op::Refresh,
            &ms("temporarily_unavailable", Some(90033), Some(503), None),
        );
        assert_eq!((e.kind, e.transient), (ErrorKind::ProviderError, true));
        let e = from_provider(Op::Refresh, &ms("http_error", None, Some(502), None));
        assert_eq!((e.kind, e.transient), (ErrorKind::ProviderError, true));
        let e = from_provider(
            Op::DevicePoll,
            &ms("authorization_declined", Some(70000), Some(400), None),
        );
        assert_eq!(e.kind, ErrorKind::Declined);
        let e = from_provider(
            Op::DevicePoll,
            &ms("expired_token", Some(70019), Some(400), None),
        );
        assert_eq!(e.kind, ErrorKind::Timeout);
        let e = from_provider(
            Op::DevicePoll,
            &ms("bad_verification_code", Some(70018), Some(400), None),
        );
        assert_eq!(e.kind, ErrorKind::ProviderError);
        let e = from_provider(
            Op::Code,
            &ms("invalid_client", Some(7000218), Some(401), None),
        );
        assert_eq!(e.kind, ErrorKind::ProviderError);
        assert!(
            e.hint
                .as_ref()
                .unwrap()
                .en
                .contains("Allow public client flows")
        );
        let e = from_redirect(
            "access_denied",
            Some("AADSTS65004: User declined to consent"),
        );
        assert_eq!(e.kind, ErrorKind::Declined);
        assert_eq!(e.provider_code.as_deref(), Some("AADSTS65004"));
    }

    #[test]
    fn odd_error_values_are_not_echoed() {
        let e = from_provider(
            Op::Refresh,
            &ms("<script>secret-ABC123", None, Some(400), None),
        );
        assert_eq!(e.provider_error.as_deref(), Some("unknown_error"));
        assert!(!e.message.en.contains("script"));
    }

    #[test]
    fn lenient_parse() {
        let e: MsError =
            serde_json::from_str(r#"{"error":"x","error_codes":"nope","correlation_id":5}"#)
                .unwrap();
        assert!(e.error_codes.is_empty() && e.correlation_id.is_none());
    }
}
