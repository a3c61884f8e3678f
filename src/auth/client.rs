//! [`OAuthClient`]: every request to the identity provider, built with
//! `oauth2` 5 over our own transport ([`super::http`]).
//!
//! Transient failures (connect/reset/timeout, HTTP 5xx, 429,
//! `temporarily_unavailable`) are retried here, at most [`ATTEMPTS`] times
//! with 0.5 s and 1 s between attempts (or the provider's `Retry-After`, when
//! it is longer, up to [`MAX_RETRY_AFTER_S`]). A longer `Retry-After` or the
//! last failure comes back as an [`Error`] with `transient: true` (kind
//! `Throttled` for 429 or a `Retry-After`, else `Network`/`ProviderError`)
//! and `retry_after_s` when known. Dropping a call's future cancels it,
//! including a backoff sleep.

use std::borrow::Cow;
use std::time::Duration;

use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::http::{self, HeaderValue};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationResponse, DeviceAuthorizationUrl, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, ExtraDeviceAuthorizationFields, ExtraTokenFields, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use super::errors::{self, MsError, Op};
use super::http::Http;
use super::{DeviceCode, DevicePoll, OIDC_SCOPES, TokenSet, id_token, now};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::log;
use crate::secret::Secret;

/// Attempts per call for transient failures.
pub const ATTEMPTS: usize = 3;
/// Waits between attempts.
const BACKOFF: [Duration; ATTEMPTS - 1] = [Duration::from_millis(500), Duration::from_secs(1)];
/// The longest `Retry-After` we wait for inside one call.
pub const MAX_RETRY_AFTER_S: u64 = 10;
/// The lifetime assumed when a response has no `expires_in`.
const DEFAULT_EXPIRES_IN_S: u64 = 3600;

/// Microsoft's extra token fields.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct MsTokenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_expires_in: Option<u64>,
}
impl ExtraTokenFields for MsTokenFields {}

/// Microsoft's extra device-code field.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct MsDeviceFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
impl ExtraDeviceAuthorizationFields for MsDeviceFields {}

type MsTokenResponse = StandardTokenResponse<MsTokenFields, BasicTokenType>;
type MsDeviceResponse = DeviceAuthorizationResponse<MsDeviceFields>;
type MsClient = Client<
    MsError,
    MsTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointMaybeSet,
    EndpointMaybeSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The client for one configuration's identity provider. Cheap to share
/// (`Arc<OAuthClient>`); `Send + Sync`.
pub struct OAuthClient {
    oauth: MsClient,
    http: Http,
    token_url: String,
    client_id: String,
    client_secret: Option<Secret>,
    app_scope: Option<String>,
}

fn config_error(key: &str, en: &str, de: &str) -> Error {
    Error::new(
        ErrorKind::InvalidConfig,
        Text::new(
            format!("configuration key '{key}': {en}"),
            format!("Konfigurationsschlüssel '{key}': {de}"),
        ),
    )
}

/// The device-code URL; for Microsoft clouds with `language: de` it asks for
/// a German `message` (`?mkt=de-DE`).
fn device_url_for(config: &Config, url: &str) -> String {
    if config.language != crate::i18n::Language::De
        || config.provider == crate::config::Provider::Custom
    {
        return url.to_string();
    }
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.query_pairs_mut().append_pair("mkt", "de-DE");
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

/// A fresh PKCE pair: the verifier (kept secret until the code is redeemed)
/// and its S256 challenge.
pub fn pkce_pair() -> (Secret, String) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    (
        Secret::new(verifier.secret().as_str()),
        challenge.as_str().to_string(),
    )
}

/// Evaluates `$attempt` (an expression giving `Result<T>`, may `.await`)
/// until it succeeds or [`OAuthClient::next_wait`] says the failure is final
/// (then `return Err`). A loop rather than a closure-taking helper keeps the
/// futures `Send` for every lifetime.
macro_rules! retry {
    ($self:ident, $op:expr, $attempt:expr) => {{
        let mut attempt = 0usize;
        loop {
            match $attempt {
                Ok(v) => break v,
                Err(e) => match $self.next_wait($op, &e, attempt) {
                    Some(d) => {
                        tokio::time::sleep(d).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                },
            }
        }
    }};
}

impl OAuthClient {
    pub fn new(config: &Config) -> Result<Self> {
        let token = config.endpoints.token.clone().ok_or_else(|| {
            config_error(
                "endpoints.token",
                "required (or an authority)",
                "erforderlich (oder eine authority)",
            )
        })?;
        let token_url = TokenUrl::new(token.clone())
            .map_err(|_| config_error("endpoints.token", "not a URL", "keine URL"))?;
        let auth_url = match &config.endpoints.authorize {
            Some(u) => Some(
                AuthUrl::new(u.clone())
                    .map_err(|_| config_error("endpoints.authorize", "not a URL", "keine URL"))?,
            ),
            None => None,
        };
        let device_url = match &config.endpoints.device_code {
            Some(u) => Some(
                DeviceAuthorizationUrl::new(device_url_for(config, u))
                    .map_err(|_| config_error("endpoints.device_code", "not a URL", "keine URL"))?,
            ),
            None => None,
        };
        let mut oauth = Client::new(ClientId::new(config.client_id.clone()))
            .set_auth_type(AuthType::RequestBody)
            .set_auth_uri_option(auth_url)
            .set_device_authorization_url_option(device_url)
            .set_token_uri(token_url);
        if let Some(s) = &config.client_secret {
            oauth = oauth.set_client_secret(ClientSecret::new(s.expose().to_string()));
        }
        Ok(Self {
            oauth,
            http: Http::new(config)?,
            token_url: token,
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            app_scope: config.scopes.app.clone(),
        })
    }

    /// The authorize URL for the browser sign-in (auth code + PKCE S256,
    /// `response_mode=query`).
    pub fn authorize_url(
        &self,
        scopes: &[String],
        redirect_uri: &str,
        state: &str,
        pkce_challenge_s256: &str,
        prompt: Option<&str>,
        login_hint: Option<&str>,
    ) -> Result<String> {
        let redirect = RedirectUrl::new(redirect_uri.to_string()).map_err(|_| {
            Error::plain(ErrorKind::InvalidArgument, "the redirect URI is not a URL")
        })?;
        let state = state.to_string();
        let mut req = self
            .oauth
            .authorize_url(move || CsrfToken::new(state))
            .map_err(|_| {
                config_error(
                    "endpoints.authorize",
                    "required for the browser sign-in",
                    "für die Anmeldung im Browser erforderlich",
                )
            })?
            .set_redirect_uri(Cow::Owned(redirect))
            .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())))
            .add_extra_param("response_mode", "query")
            .add_extra_param("code_challenge", pkce_challenge_s256.to_string())
            .add_extra_param("code_challenge_method", "S256");
        if let Some(p) = prompt.filter(|p| !p.is_empty()) {
            req = req.add_extra_param("prompt", p.to_string());
        }
        if let Some(h) = login_hint.filter(|h| !h.is_empty()) {
            req = req.add_extra_param("login_hint", h.to_string());
        }
        let (url, _) = req.url();
        Ok(url.to_string())
    }

    /// Redeems an authorization code (with its PKCE verifier).
    pub async fn exchange_code(
        &self,
        code: &Secret,
        verifier: &Secret,
        redirect_uri: &str,
        scopes: &[String],
    ) -> Result<TokenSet> {
        let redirect = RedirectUrl::new(redirect_uri.to_string()).map_err(|_| {
            Error::plain(ErrorKind::InvalidArgument, "the redirect URI is not a URL")
        })?;
        let scope = scopes.join(" ");
        let resp = retry!(self, Op::Code, {
            self.oauth
                .exchange_code(AuthorizationCode::new(code.expose().to_string()))
                .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose().to_string()))
                .set_redirect_uri(Cow::Borrowed(&redirect))
                .add_extra_param("scope", scope.clone())
                .request_async(&self.http)
                .await
                .map_err(|e| self.map(Op::Code, e))
        });
        Ok(token_set(&resp, scopes))
    }

    /// Redeems a refresh token for the given scopes. The answer's
    /// `refresh_token` (Entra rotates it) must replace the old one.
    pub async fn refresh(&self, refresh_token: &Secret, scopes: &[String]) -> Result<TokenSet> {
        let rt = RefreshToken::new(refresh_token.expose().to_string());
        let resp = retry!(self, Op::Refresh, {
            self.oauth
                .exchange_refresh_token(&rt)
                .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())))
                .request_async(&self.http)
                .await
                .map_err(|e| self.map(Op::Refresh, e))
        });
        Ok(token_set(&resp, scopes))
    }

    /// Starts a device-code sign-in.
    pub async fn device_start(&self, scopes: &[String]) -> Result<DeviceCode> {
        let started = now();
        let resp: MsDeviceResponse = retry!(self, Op::DeviceStart, {
            match self.oauth.exchange_device_code() {
                Ok(req) => req
                    .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())))
                    .request_async(&self.http)
                    .await
                    .map_err(|e| self.map(Op::DeviceStart, e)),
                Err(_) => Err(config_error(
                    "endpoints.device_code",
                    "required for the device sign-in",
                    "für die Geräteanmeldung erforderlich",
                )),
            }
        });
        let expires_in = resp.expires_in().as_secs().clamp(1, 24 * 3600);
        let interval_s = resp.interval().as_secs().clamp(1, 60);
        let user_code = resp.user_code().secret().clone();
        let verification_uri = resp.verification_uri().to_string();
        let message = resp.extra_fields().message.clone().unwrap_or_else(|| {
            format!("To sign in, open {verification_uri} and enter the code {user_code}.")
        });
        Ok(DeviceCode {
            device_code: Secret::new(resp.device_code().secret().as_str()),
            user_code,
            verification_uri,
            message,
            expires_at: started.saturating_add(expires_in as i64),
            interval_s,
        })
    }

    /// One poll of the device-code grant. `authorization_pending` and
    /// `slow_down` are not errors; every other `error` is (mapped by
    /// [`errors`]: `authorization_declined` → Declined, `expired_token` →
    /// Timeout, `bad_verification_code` → ProviderError).
    pub async fn device_poll(&self, dc: &DeviceCode) -> Result<DevicePoll> {
        Ok(retry!(
            self,
            Op::DevicePoll,
            self.device_poll_once(dc).await
        ))
    }

    async fn device_poll_once(&self, dc: &DeviceCode) -> Result<DevicePoll> {
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "urn:ietf:params:oauth:grant-type:device_code");
            form.append_pair("client_id", &self.client_id);
            form.append_pair("device_code", dc.device_code.expose());
            if let Some(s) = &self.client_secret {
                form.append_pair("client_secret", s.expose());
            }
            Secret::new(form.finish())
        };
        let req = http::Request::builder()
            .method(http::Method::POST)
            .uri(self.token_url.as_str())
            .header(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .header(
                http::header::ACCEPT,
                HeaderValue::from_static("application/json"),
            )
            .body(body.expose().as_bytes().to_vec())
            .map_err(|_| Error::internal("could not build the device poll request"))?;
        let resp = self
            .http
            .call(req)
            .await
            .map_err(|t| errors::from_transport(Op::DevicePoll, &t, self.http.timeout_ms))?;
        if resp.status() == http::StatusCode::OK {
            let tr: MsTokenResponse = serde_json::from_slice(resp.body()).map_err(|_| {
                Error::new(
                    ErrorKind::Protocol,
                    Text::new(
                        "the identity provider's answer to the device sign-in could not be read",
                        "die Antwort des Identitätsanbieters auf die Geräteanmeldung war nicht lesbar",
                    ),
                )
            })?;
            return Ok(DevicePoll::Done(Box::new(token_set(&tr, &[]))));
        }
        let ms: MsError = serde_json::from_slice(resp.body()).unwrap_or_else(|_| MsError {
            error: "http_error".into(),
            http_status: Some(resp.status().as_u16()),
            ..MsError::default()
        });
        match ms.error.as_str() {
            "authorization_pending" => Ok(DevicePoll::Pending),
            "slow_down" => Ok(DevicePoll::SlowDown),
            _ => Err(errors::from_provider(Op::DevicePoll, &ms)),
        }
    }

    /// An app-only token (client credentials) for `scopes.app`.
    pub async fn client_credentials(&self) -> Result<TokenSet> {
        if self.client_secret.is_none() {
            return Err(config_error(
                "client_secret",
                "required for app-only access (flow app)",
                "für App-Zugriff (flow app) erforderlich",
            ));
        }
        let Some(scope) = self.app_scope.clone() else {
            return Err(config_error(
                "scopes.app",
                "required for app-only access (flow app)",
                "für App-Zugriff (flow app) erforderlich",
            ));
        };
        let resp = retry!(self, Op::ClientCredentials, {
            self.oauth
                .exchange_client_credentials()
                .add_scope(Scope::new(scope.clone()))
                .request_async(&self.http)
                .await
                .map_err(|e| self.map(Op::ClientCredentials, e))
        });
        Ok(token_set(&resp, std::slice::from_ref(&scope)))
    }

    fn map(
        &self,
        op: Op,
        e: oauth2::RequestTokenError<super::http::TransportError, MsError>,
    ) -> Error {
        errors::from_request_error(op, e, self.http.timeout_ms)
    }

    /// How long to wait before the next attempt after `err`, or `None` when
    /// it is final (see the module docs).
    fn next_wait(&self, op: Op, err: &Error, attempt: usize) -> Option<Duration> {
        if !err.transient || attempt >= BACKOFF.len() {
            return None;
        }
        let wait = match err.retry_after_s {
            Some(s) if s > MAX_RETRY_AFTER_S => return None,
            Some(s) => BACKOFF[attempt].max(Duration::from_secs(s)),
            None => BACKOFF[attempt],
        };
        log::info!(
            "identity provider: {:?} failed transiently ({}; correlation id {}), retrying in {} ms",
            op,
            err.provider_code
                .as_deref()
                .or(err.provider_error.as_deref())
                .unwrap_or("network"),
            err.correlation_id.as_deref().unwrap_or("-"),
            wait.as_millis()
        );
        Some(wait)
    }
}

/// Our token set from a token response (absolute times, id claims).
fn token_set(r: &MsTokenResponse, requested: &[String]) -> TokenSet {
    let issued_at = now();
    let expires_in = r
        .expires_in()
        .map(|d| d.as_secs())
        .unwrap_or(DEFAULT_EXPIRES_IN_S)
        .min(10 * 365 * 24 * 3600);
    let scopes = match r.scopes() {
        Some(s) if !s.is_empty() => s.iter().map(|x| x.to_string()).collect(),
        _ => requested
            .iter()
            .filter(|s| !OIDC_SCOPES.contains(&s.as_str()))
            .cloned()
            .collect(),
    };
    TokenSet {
        access_token: Secret::new(r.access_token().secret().as_str()),
        refresh_token: r
            .refresh_token()
            .map(|t| Secret::new(t.secret().as_str()))
            .filter(|s| !s.is_empty()),
        expires_at: issued_at.saturating_add(expires_in as i64),
        issued_at,
        scopes,
        id: r
            .extra_fields()
            .id_token
            .as_deref()
            .and_then(id_token::parse_claims),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::parse(
            r#"{"provider":"custom","authority":"http://127.0.0.1:9","allow_plaintext_loopback":true,
                "tenant":"t1","client_id":"cid","scopes":{"smtp":"https://outlook.office.com/SMTP.Send"}}"#,
        )
        .unwrap()
        .config
    }

    #[test]
    fn authorize_url_has_pkce_and_hint() {
        let c = OAuthClient::new(&config()).unwrap();
        let (_v, ch) = pkce_pair();
        let u = c
            .authorize_url(
                &[
                    "https://outlook.office.com/SMTP.Send".into(),
                    "openid".into(),
                ],
                "http://localhost:5555/",
                "st4te",
                &ch,
                Some("select_account"),
                Some("alice@contoso.test"),
            )
            .unwrap();
        let url = url::Url::parse(&u).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["response_mode"], "query");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], ch);
        assert_eq!(q["state"], "st4te");
        assert_eq!(q["prompt"], "select_account");
        assert_eq!(q["login_hint"], "alice@contoso.test");
        assert_eq!(q["redirect_uri"], "http://localhost:5555/");
        assert_eq!(q["client_id"], "cid");
        assert_eq!(q["scope"], "https://outlook.office.com/SMTP.Send openid");
    }

    #[test]
    fn client_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<OAuthClient>();
    }

    #[tokio::test]
    async fn app_flow_needs_a_secret() {
        let c = OAuthClient::new(&config()).unwrap();
        let e = c.client_credentials().await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
    }
}
