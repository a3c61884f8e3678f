//! The HTTP transport under the OAuth client: one `reqwest` client per
//! [`OAuthClient`](super::client::OAuthClient) (rustls with the ring provider,
//! the platform verifier plus `tls.ca_file`, no redirects, the configured
//! proxy and timeout), a fresh `client-request-id` on every request, a bounded
//! response body, and the wrapper that keeps what Microsoft's error answers
//! carry outside their JSON (HTTP status, `Retry-After`, the echoed
//! correlation id) by copying it into the error JSON that `oauth2` parses
//! into [`MsError`](super::errors::MsError).

use std::time::Duration;

use oauth2::http::{self, HeaderValue};
use oauth2::{HttpRequest, HttpResponse};

use crate::config::{Config, Proxy};
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;

/// The largest response body we read from the identity provider.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The connect timeout (bounded by the overall one).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// What went wrong below HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransportKind {
    /// Connect, DNS, reset, proxy.
    Connect,
    /// The request took longer than `http.timeout_ms`.
    Timeout,
    /// A certificate or handshake failure.
    Tls,
    /// The answer was larger than we accept, or otherwise unusable.
    Other,
}

/// A transport failure: its kind, the host it concerned, and a text without
/// query strings (reqwest names the URL; we keep only the host).
#[derive(Debug, Clone)]
pub(crate) struct TransportError {
    pub kind: TransportKind,
    pub host: String,
    pub text: String,
    pub request_id: String,
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.text, self.host)
    }
}

impl std::error::Error for TransportError {}

/// The HTTP client for the identity provider.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    pub timeout_ms: u32,
}

impl Http {
    pub fn new(config: &Config) -> Result<Self> {
        let tls = crate::tls::client_config(&config.extra_roots)?;
        let timeout = Duration::from_millis(u64::from(config.http_timeout_ms));
        let mut b = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .user_agent(concat!("mailoauth/", env!("CARGO_PKG_VERSION")));
        // Plaintext endpoints exist only on loopback (the configuration
        // enforces it); they never go through a proxy, whatever the system
        // or the environment says.
        let plaintext_loopback = [
            &config.endpoints.authorize,
            &config.endpoints.token,
            &config.endpoints.device_code,
        ]
        .into_iter()
        .flatten()
        .any(|u| u.starts_with("http://"));
        b = match (&config.proxy, plaintext_loopback) {
            (_, true) | (Proxy::None, _) => b.no_proxy(),
            (Proxy::System, false) => b,
            (Proxy::Url(u), false) => b.proxy(reqwest::Proxy::all(u.as_str()).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    Text::new(
                        format!(
                            "configuration key 'http.proxy': not usable ({})",
                            strip_queries(&e.to_string())
                        ),
                        format!(
                            "Konfigurationsschlüssel 'http.proxy': nicht verwendbar ({})",
                            strip_queries(&e.to_string())
                        ),
                    ),
                )
            })?),
        };
        let client = b.build().map_err(|e| {
            Error::internal(format!("HTTP client: {}", strip_queries(&e.to_string())))
        })?;
        Ok(Self {
            client,
            timeout_ms: config.http_timeout_ms,
        })
    }

    /// Sends one request. Non-200 answers come back as a JSON error object
    /// that always has `error`, plus `http_status`, `retry_after` and
    /// `correlation_id` when known, so that `oauth2` hands them to us inside
    /// `ServerResponse`.
    pub async fn call(
        &self,
        mut req: HttpRequest,
    ) -> std::result::Result<HttpResponse, TransportError> {
        let request_id = new_guid();
        let host = req.uri().host().unwrap_or("?").to_string();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            req.headers_mut().insert("client-request-id", v);
            req.headers_mut()
                .insert("return-client-request-id", HeaderValue::from_static("true"));
        }
        let transport = |kind, text: String| TransportError {
            kind,
            host: host.clone(),
            text,
            request_id: request_id.clone(),
        };
        let rq = reqwest::Request::try_from(req)
            .map_err(|e| transport(TransportKind::Other, describe(&e)))?;
        let mut resp = self
            .client
            .execute(rq)
            .await
            .map_err(|e| transport(classify(&e), describe(&e)))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if body.len() + c.len() > MAX_BODY_BYTES {
                        return Err(transport(
                            TransportKind::Other,
                            format!("the answer is larger than {MAX_BODY_BYTES} bytes"),
                        ));
                    }
                    body.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => return Err(transport(classify(&e), describe(&e))),
            }
        }
        let mut out = http::Response::builder().status(status.as_u16());
        for (k, v) in headers.iter() {
            out = out.header(k, v);
        }
        if status != http::StatusCode::OK {
            body = error_body(status.as_u16(), &headers, &body, &request_id);
            out = out.header(http::header::CONTENT_TYPE, "application/json");
        }
        let mut built = out
            .body(body)
            .map_err(|e| transport(TransportKind::Other, e.to_string()))?;
        if status != http::StatusCode::OK {
            // One Content-Type only: ours.
            built.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        Ok(built)
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for Http {
    type Error = TransportError;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::result::Result<HttpResponse, TransportError>>
                + Send
                + 'c,
        >,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(Http::call(self, request))
    }
}

/// Rewrites an error answer into a JSON object `MsError` can read.
fn error_body(status: u16, headers: &http::HeaderMap, body: &[u8], request_id: &str) -> Vec<u8> {
    let mut obj = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) if m.get("error").is_some_and(|e| e.is_string()) => m,
        // HTML, empty, or JSON without `error`: a gateway or proxy answered.
        _ => {
            let mut m = serde_json::Map::new();
            m.insert("error".into(), "http_error".into());
            m
        }
    };
    obj.insert("http_status".into(), status.into());
    if let Some(ra) = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        obj.insert("retry_after".into(), ra.into());
    }
    let has_correlation = obj
        .get("correlation_id")
        .and_then(|c| c.as_str())
        .is_some_and(|c| !c.is_empty());
    if !has_correlation {
        let echoed = headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_plain_id(v))
            .unwrap_or(request_id);
        obj.insert("correlation_id".into(), echoed.into());
    }
    serde_json::to_vec(&serde_json::Value::Object(obj))
        .unwrap_or_else(|_| b"{\"error\":\"http_error\"}".to_vec())
}

fn is_plain_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

fn classify(e: &reqwest::Error) -> TransportKind {
    if is_tls(e) {
        TransportKind::Tls
    } else if e.is_timeout() {
        TransportKind::Timeout
    } else if e.is_connect() || e.is_request() || e.is_body() {
        TransportKind::Connect
    } else {
        TransportKind::Other
    }
}

fn is_tls(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if is_rustls(err) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A rustls error, also inside (nested) `io::Error`s, whose `source()`
/// skips the wrapped error itself.
fn is_rustls(err: &(dyn std::error::Error + 'static)) -> bool {
    if err.downcast_ref::<rustls::Error>().is_some() {
        return true;
    }
    match err
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => is_rustls(inner),
        None => false,
    }
}

/// The error and its causes, without the URL reqwest puts in front and
/// without any query string.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = match err.downcast_ref::<reqwest::Error>() {
            Some(r) => WithoutUrl(r).to_string(),
            None => err.to_string(),
        };
        let text = strip_queries(&text);
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    let mut out = parts.join(": ");
    if out.len() > 300 {
        let mut cut = 300;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// Shows a reqwest error's own text with the URL part removed.
struct WithoutUrl<'a>(&'a reqwest::Error);

impl std::fmt::Display for WithoutUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0.to_string();
        // reqwest writes "<what> for url (<url>)".
        let text = match text.find(" for url (") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        f.write_str(&text)
    }
}

/// Removes query strings and fragments from anything that looks like a URL.
pub(crate) fn strip_queries(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            if w.contains("://") || w.contains('?') {
                let end = w.find(['?', '#']).unwrap_or(w.len());
                let mut s = w[..end].to_string();
                // user:password@ of a proxy URL.
                if let Some(scheme_end) = s.find("://")
                    && let Some(at) = s[scheme_end + 3..].find('@')
                {
                    s.replace_range(scheme_end + 3..scheme_end + 3 + at + 1, "");
                }
                if end < w.len() && w.ends_with(')') {
                    s.push(')');
                }
                s
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Random bytes from the operating system.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: fall back to a time- and address-based mix.
        // Used only if the OS source fails, which it does not on supported
        // systems; the values are request ids and state, not keys.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
        }
    }
    b
}

/// A random GUID (version 4), lower case, as Microsoft's correlation ids.
pub(crate) fn new_guid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A random URL-safe string with 192 bits of entropy (state values).
pub(crate) fn random_token() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<24>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_shape() {
        let g = new_guid();
        assert_eq!(g.len(), 36);
        assert_eq!(&g[14..15], "4");
        assert_ne!(g, new_guid());
    }

    #[test]
    fn queries_are_dropped() {
        assert_eq!(
            strip_queries(
                "error sending request for url (https://login.example/t/oauth2/v2.0/token?code=abc)"
            ),
            "error sending request for url (https://login.example/t/oauth2/v2.0/token)"
        );
        assert_eq!(strip_queries("connection refused"), "connection refused");
        assert_eq!(
            strip_queries("proxy http://u:pw@proxy:3128 failed"),
            "proxy http://proxy:3128 failed"
        );
    }

    #[test]
    fn error_bodies_keep_meta() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("7"));
        let b = error_body(429, &h, b"<html>busy</html>", "abc-1");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"], "http_error");
        assert_eq!(v["http_status"], 429);
        assert_eq!(v["retry_after"], 7);
        assert_eq!(v["correlation_id"], "abc-1");
        let b = error_body(
            400,
            &http::HeaderMap::new(),
            br#"{"error":"invalid_grant","error_codes":[700082],"correlation_id":"c-1"}"#,
            "x",
        );
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["correlation_id"], "c-1");
        assert_eq!(v["error_codes"][0], 700082);
    }
}
