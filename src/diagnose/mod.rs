//! The checks an administrator runs before the account test (the CLI's
//! `diagnose`): is the configuration valid, does the identity provider
//! answer, and does it accept the app registration. Each check reports
//! what it found, or an error whose hint says what to change.
//!
//! The app registration check sends a token request with a refresh token
//! that no provider ever issued: a provider that knows the app (and, for a
//! confidential client, accepts its secret) answers `invalid_grant`, which
//! here means "registered; a user still has to sign in", while an unknown
//! app (AADSTS700016), a wrong secret (AADSTS7000215) or another
//! `invalid_client` answer is the failure to fix. Nothing is stored.

use std::time::{Duration, Instant};

use crate::config::{Config, Parsed};
use crate::context::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::{Language, Text};
use crate::protocol::Protocols;
use crate::secret::Secret;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `config`, `provider` or `app`.
    pub name: &'static str,
    pub outcome: std::result::Result<Text, Error>,
    pub ms: u64,
}

impl Check {
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

fn timed(name: &'static str, f: impl FnOnce() -> Result<Text>) -> Check {
    let start = Instant::now();
    let outcome = f();
    Check {
        name,
        outcome,
        ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Parses the configuration (as `mailoauth_context_new` would), with
/// `language` overriding its `language` key when given.
pub fn configuration(json: &str, language: Option<Language>) -> (Check, Option<Config>) {
    let mut parsed: Option<Parsed> = None;
    let check = timed("config", || {
        let mut p = crate::config::parse(json)?;
        if let Some(l) = language {
            p.config.language = l;
        }
        let c = &p.config;
        let servers: Vec<String> = [
            ("smtp", &c.servers.smtp),
            ("imap", &c.servers.imap),
            ("pop3", &c.servers.pop3),
        ]
        .iter()
        .filter_map(|(n, s)| s.as_ref().map(|s| format!("{n} {}:{}", s.host, s.port)))
        .collect();
        let servers = if servers.is_empty() {
            "-".to_string()
        } else {
            servers.join(", ")
        };
        let mut text = Text::new(
            format!(
                "valid: provider {}, tenant {}, client_id {}, servers {servers}",
                c.provider.as_str(),
                c.tenant,
                c.client_id
            ),
            format!(
                "gültig: Anbieter {}, Mandant {}, client_id {}, Server {servers}",
                c.provider.as_str(),
                c.tenant,
                c.client_id
            ),
        );
        if !p.ignored_keys.is_empty() {
            let keys = p.ignored_keys.join(", ");
            text = Text::new(
                format!("{} (unknown keys ignored: {keys})", text.en),
                format!("{} (unbekannte Schlüssel ignoriert: {keys})", text.de),
            );
        }
        parsed = Some(p);
        Ok(text)
    });
    let check = match check.outcome {
        Err(e) if e.hint.is_none() => Check {
            outcome: Err(e.with_hint(Text::new(
                "Fix the key the message names in the configuration file; every key except client_id is optional.",
                "Den genannten Schlüssel in der Konfigurationsdatei korrigieren; außer client_id ist jeder Schlüssel optional.",
            ))),
            ..check
        },
        _ => check,
    };
    (check, parsed.map(|p| p.config))
}

/// The OpenID metadata document of the configured authority and tenant, or
/// None when the configuration names endpoints without an authority.
pub fn metadata_url(config: &Config) -> Option<String> {
    if let Some(a) = &config.authority {
        return Some(format!(
            "{}/{}/v2.0/.well-known/openid-configuration",
            a.trim_end_matches('/'),
            config.tenant
        ));
    }
    let token = config.endpoints.token.as_deref()?;
    token
        .strip_suffix("/oauth2/v2.0/token")
        .map(|base| format!("{base}/v2.0/.well-known/openid-configuration"))
}

/// Does the identity provider answer? Reads the OpenID metadata and checks
/// that it names a token endpoint.
pub fn provider(ctx: &Context) -> Check {
    timed("provider", || {
        let config = ctx.config();
        let url = metadata_url(config).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                Text::new(
                    "the configuration names no authority, so there is no metadata document to read",
                    "die Konfiguration nennt keine authority, daher gibt es kein Metadatendokument",
                ),
            )
            .with_hint(Text::new(
                "Set authority (or provider) so that the identity provider can be checked.",
                "authority (oder provider) setzen, damit der Identitätsanbieter geprüft werden kann.",
            ))
        })?;
        let http = crate::auth::http::Http::new(config)?;
        let req = oauth2::http::Request::builder()
            .method("GET")
            .uri(url.as_str())
            .header("Accept", "application/json")
            .body(Vec::new())
            .map_err(|e| Error::internal(format!("metadata request: {e}")))?;
        let timeout = Duration::from_millis(u64::from(config.http_timeout_ms) + 1000);
        let resp = ctx.run(Some(timeout), async move {
            http.call(req).await.map_err(|e| transport_error(&e))
        })?;
        let status = resp.status().as_u16();
        let body: serde_json::Value =
            serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null);
        if status != 200
            || body
                .get("token_endpoint")
                .and_then(|t| t.as_str())
                .is_none()
        {
            let code = body
                .get("error_codes")
                .and_then(|c| c.get(0))
                .and_then(|c| c.as_u64())
                .map(|c| format!(" (AADSTS{c})"))
                .unwrap_or_default();
            let mut e = Error::new(
                ErrorKind::ProviderError,
                Text::new(
                    format!(
                        "the identity provider answered HTTP {status}{code} for its metadata instead of an OpenID document"
                    ),
                    format!(
                        "der Identitätsanbieter hat auf die Metadatenanfrage mit HTTP {status}{code} statt eines OpenID-Dokuments geantwortet"
                    ),
                ),
            )
            .with_hint(Text::new(
                "Check tenant (the directory's id or domain) and authority; AADSTS90002 means the tenant does not exist.",
                "tenant (ID oder Domäne des Verzeichnisses) und authority prüfen; AADSTS90002 bedeutet, dass der Mandant nicht existiert.",
            ));
            if !code.is_empty() {
                e.provider_code = Some(
                    code.trim_matches(|c| c == ' ' || c == '(' || c == ')')
                        .to_string(),
                );
            }
            return Err(e);
        }
        let host = url::Url::parse(&url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        Ok(Text::new(
            format!("{host} answers and publishes the tenant's OpenID metadata"),
            format!("{host} antwortet und veröffentlicht die OpenID-Metadaten des Mandanten"),
        ))
    })
}

fn transport_error(e: &crate::auth::http::TransportError) -> Error {
    use crate::auth::http::TransportKind;
    let host = &e.host;
    let (kind, en, de) = match e.kind {
        TransportKind::Tls => (
            ErrorKind::Tls,
            format!(
                "the TLS connection to the identity provider {host} failed: {}",
                e.text
            ),
            format!(
                "die TLS-Verbindung zum Identitätsanbieter {host} ist gescheitert: {}",
                e.text
            ),
        ),
        TransportKind::Other => (
            ErrorKind::Protocol,
            format!(
                "unusable answer from the identity provider {host}: {}",
                e.text
            ),
            format!(
                "unbrauchbare Antwort des Identitätsanbieters {host}: {}",
                e.text
            ),
        ),
        TransportKind::Connect | TransportKind::Timeout => (
            ErrorKind::Network,
            format!("could not reach the identity provider {host}: {}", e.text),
            format!(
                "der Identitätsanbieter {host} ist nicht erreichbar: {}",
                e.text
            ),
        ),
    };
    Error::new(kind, Text::new(en, de)).with_hint(Text::new(
        "Check authority, the network connection, DNS, the proxy setting (http.proxy) and, behind a TLS-inspecting proxy, tls.ca_file.",
        "authority, Netzwerkverbindung, DNS, die Proxy-Einstellung (http.proxy) und hinter einem TLS-aufbrechenden Proxy tls.ca_file prüfen.",
    ))
}

/// Does the provider accept the app registration? (See the module docs.)
pub fn app_registration(ctx: &Context) -> Check {
    timed("app", || {
        let config = ctx.config();
        let client = ctx.oauth()?;
        let mut wanted = Protocols::NONE;
        for (p, s) in [
            (crate::protocol::Protocol::Smtp, &config.scopes.smtp),
            (crate::protocol::Protocol::Imap, &config.scopes.imap),
            (crate::protocol::Protocol::Pop3, &config.scopes.pop3),
        ] {
            if s.is_some() {
                wanted.insert(p);
            }
        }
        let scopes = crate::auth::delegated_scopes(config, wanted)?;
        let probe = Secret::new("mailoauth-diagnose-probe-not-a-refresh-token");
        let timeout = Duration::from_millis(u64::from(config.http_timeout_ms) * 4 + 1000);
        let answer = ctx.run(Some(timeout), async {
            client.refresh(&probe, &scopes).await
        });
        let who = match &config.client_secret {
            Some(_) => "confidential client",
            None => "public client",
        };
        let wer = match &config.client_secret {
            Some(_) => "vertraulicher Client",
            None => "öffentlicher Client",
        };
        let id = &config.client_id;
        match answer {
            Ok(_) => Ok(Text::new(
                format!("the identity provider accepts the app {id} ({who})"),
                format!("der Identitätsanbieter akzeptiert die App {id} ({wer})"),
            )),
            Err(e) if e.kind == ErrorKind::ConsentRequired => Ok(Text::new(
                format!(
                    "the identity provider knows the app {id} ({who}); a user signs in with `consent` to grant access"
                ),
                format!(
                    "der Identitätsanbieter kennt die App {id} ({wer}); ein Benutzer meldet sich mit `consent` an, um Zugriff zu gewähren"
                ),
            )),
            Err(mut e) if e.kind == ErrorKind::ProviderError && e.provider_error.is_some() => {
                // Say what was checked: the message the refresh gave names
                // a refresh, which the probe only stands in for.
                let what = [e.provider_error.as_deref(), e.provider_code.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ");
                e.message = Text::new(
                    format!("the identity provider does not accept the app {id} ({who}): {what}"),
                    format!("der Identitätsanbieter akzeptiert die App {id} ({wer}) nicht: {what}"),
                );
                Err(e)
            }
            Err(e) => Err(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_urls() {
        let c = crate::config::parse(
            r#"{"client_id":"00000000-0000-0000-0000-0000000000a1","tenant":"contoso.com"}"#,
        )
        .unwrap()
        .config;
        assert_eq!(
            metadata_url(&c).unwrap(),
            "https://login.microsoftonline.com/contoso.com/v2.0/.well-known/openid-configuration"
        );
    }

    #[test]
    fn a_bad_configuration_names_the_key_and_has_a_hint() {
        let (check, config) = configuration(
            r#"{"client_id":"00000000-0000-0000-0000-0000000000a1","servers":{"smtp":{"hots":"x"}}}"#,
            Some(Language::De),
        );
        assert!(config.is_none());
        let e = check.outcome.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(e.message.de.contains("hots"), "{}", e.message.de);
        assert!(e.hint.is_some());
        let (check, config) = configuration(
            r#"{"client_id":"00000000-0000-0000-0000-0000000000a1"}"#,
            Some(Language::De),
        );
        assert!(check.is_ok());
        assert_eq!(config.unwrap().language, Language::De);
    }
}
