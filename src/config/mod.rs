//! The context's configuration: parsing the host's JSON, applying the
//! provider preset, and checking every rule before anything starts. Every
//! problem is an `InvalidConfig` error that names the key and what was
//! expected (or `InvalidArgument` for control characters in a value).

pub mod hosts;
pub mod provider;
mod raw;
pub(crate) mod strict_json;
mod trust;

use std::path::PathBuf;

use rustls_pki_types::CertificateDer;
use serde::Serialize;
use url::Url;

use crate::error::{Error, ErrorKind, Result};
use crate::i18n::{Language, Text};
use crate::secret::Secret;
use provider::Preset;
use raw::RawConfig;
pub use raw::RawServer;

/// The identity provider family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    Microsoft,
    MicrosoftUsgov,
    MicrosoftChina,
    Custom,
}

impl Provider {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "microsoft" => Self::Microsoft,
            "microsoft-usgov" => Self::MicrosoftUsgov,
            "microsoft-china" => Self::MicrosoftChina,
            "custom" => Self::Custom,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Microsoft => "microsoft",
            Self::MicrosoftUsgov => "microsoft-usgov",
            Self::MicrosoftChina => "microsoft-china",
            Self::Custom => "custom",
        }
    }

    pub fn preset(self) -> Option<&'static Preset> {
        match self {
            Self::Microsoft => Some(&provider::MICROSOFT),
            Self::MicrosoftUsgov => Some(&provider::MICROSOFT_USGOV),
            Self::MicrosoftChina => Some(&provider::MICROSOFT_CHINA),
            Self::Custom => None,
        }
    }
}

/// How a mail connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Implicit TLS from the first byte.
    Tls,
    /// STARTTLS / STLS before anything else.
    #[serde(rename = "starttls")]
    StartTls,
    /// Plaintext: loopback test servers only.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub security: Security,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Servers {
    pub smtp: Option<Server>,
    pub imap: Option<Server>,
    pub pop3: Option<Server>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scopes {
    pub smtp: Option<String>,
    pub imap: Option<String>,
    pub pop3: Option<String>,
    pub app: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoints {
    pub authorize: Option<String>,
    pub token: Option<String>,
    pub device_code: Option<String>,
}

/// `cache.protection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protection {
    User,
    Machine,
    Key,
    None,
}

impl Protection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Machine => "machine",
            Self::Key => "key",
            Self::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheConfig {
    /// The configured path, or the protection's default folder (none for
    /// `key`, which then needs a host store).
    pub path: Option<PathBuf>,
    pub protection: Protection,
}

/// `http.proxy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxy {
    System,
    None,
    Url(Url),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Browser {
    System,
    None,
}

/// A configuration with the preset applied and every rule checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub provider: Provider,
    pub tenant: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub authority: Option<String>,
    pub endpoints: Endpoints,
    pub scopes: Scopes,
    pub servers: Servers,
    pub trusted_hosts: Vec<String>,
    pub cache: CacheConfig,
    pub ca_file: Option<PathBuf>,
    /// The certificates of `tls.ca_file`, on top of the system's.
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub proxy: Proxy,
    pub http_timeout_ms: u32,
    pub smtp_max_connections: u32,
    pub max_message_bytes: u64,
    pub max_json_bytes: u64,
    pub redirect_host: String,
    pub redirect_port: u16,
    pub browser: Browser,
    pub language: Language,
    pub allow_plaintext_loopback: bool,
    pub ignore_unknown_keys: bool,
}

/// A parsed configuration plus what the parser wants logged.
#[derive(Debug)]
pub struct Parsed {
    pub config: Config,
    /// Unknown keys passed over because `ignore_unknown_keys` is true.
    pub ignored_keys: Vec<String>,
}

pub const DEFAULT_TENANT: &str = "organizations";
pub const DEFAULT_HTTP_TIMEOUT_MS: u32 = 30_000;
pub const DEFAULT_SMTP_MAX_CONNECTIONS: u32 = 2;
/// Exchange Online's SIZE: 150 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 157_286_400;
pub const DEFAULT_MAX_JSON_BYTES: u64 = 16 * 1024 * 1024;

/// The error for a key whose value is wrong.
fn bad(key: &str, en: impl AsRef<str>, de: impl AsRef<str>) -> Error {
    Error::new(
        ErrorKind::InvalidConfig,
        Text::new(
            format!("configuration key '{key}': {}", en.as_ref()),
            format!("Konfigurationsschlüssel '{key}': {}", de.as_ref()),
        ),
    )
}

/// The language a configuration asks for, for reporting its own errors:
/// `de` when the document says so, else English.
pub fn language_hint(json: &str) -> Language {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| {
            v.get("language")
                .and_then(|l| l.as_str())
                .and_then(Language::parse)
        })
        .unwrap_or_default()
}

/// Parses and checks the host's configuration JSON.
pub fn parse(json: &str) -> Result<Parsed> {
    parse_with_limit(json, DEFAULT_MAX_JSON_BYTES)
}

/// [`parse`] with an explicit size limit for the document itself.
pub fn parse_with_limit(json: &str, max_json_bytes: u64) -> Result<Parsed> {
    if json.len() as u64 > max_json_bytes {
        return Err(Error::new(
            ErrorKind::TooLarge,
            Text::new(
                format!("the configuration JSON is larger than {max_json_bytes} bytes"),
                format!("das Konfigurations-JSON ist größer als {max_json_bytes} Bytes"),
            ),
        ));
    }
    let value = strict_json::parse(json).map_err(|e| {
        Error::new(
            ErrorKind::InvalidConfig,
            Text::new(
                format!("the configuration is not valid JSON: {e}"),
                format!("die Konfiguration ist kein gültiges JSON: {e}"),
            ),
        )
    })?;
    if !value.is_object() {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            Text::new(
                "the configuration must be a JSON object",
                "die Konfiguration muss ein JSON-Objekt sein",
            ),
        ));
    }
    reject_control_characters(&value, "")?;

    let mut unknown = Vec::new();
    let mut note_unknown = |path: serde_ignored::Path<'_>| unknown.push(key_path(&path));
    let de = serde_ignored::Deserializer::new(&value, &mut note_unknown);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner().to_string();
        bad(&key, inner.clone(), format!("ungültiger Wert ({inner})"))
    })?;
    let ignore_unknown = raw.ignore_unknown_keys.unwrap_or(false);
    if let Some(key) = unknown.first().filter(|_| !ignore_unknown) {
        {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                Text::new(
                    format!(
                        "unknown configuration key '{key}' (check the spelling, or set ignore_unknown_keys)"
                    ),
                    format!(
                        "unbekannter Konfigurationsschlüssel '{key}' (Schreibweise prüfen oder ignore_unknown_keys setzen)"
                    ),
                ),
            ));
        }
    }
    let config = resolve(raw)?;
    Ok(Parsed {
        config,
        ignored_keys: unknown,
    })
}

/// A key path as the host wrote it (`servers.smtp.hots`, `trusted_hosts[1]`),
/// without serde's markers for optional values.
pub(crate) fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        Path::Map { parent, key } => {
            let p = key_path(parent);
            let key = crate::request::shown(key);
            if p.is_empty() {
                key
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => key_path(parent),
    }
}

/// CR, LF and NUL never belong in a configuration value.
fn reject_control_characters(v: &serde_json::Value, path: &str) -> Result<()> {
    match v {
        serde_json::Value::String(s) if s.contains(['\r', '\n', '\0']) => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                Text::new(
                    format!("configuration key '{path}' contains a line break or NUL character"),
                    format!(
                        "Konfigurationsschlüssel '{path}' enthält einen Zeilenumbruch oder ein NUL-Zeichen"
                    ),
                ),
            ));
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                reject_control_characters(item, &format!("{path}[{i}]"))?;
            }
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map {
                // Key names end up in messages and logs: never with their
                // control characters.
                let p = if path.is_empty() {
                    crate::request::shown(k)
                } else {
                    format!("{path}.{}", crate::request::shown(k))
                };
                if k.chars().any(char::is_control) {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        Text::new(
                            format!("configuration key '{p}' contains a control character"),
                            format!("Konfigurationsschlüssel '{p}' enthält ein Steuerzeichen"),
                        ),
                    ));
                }
                reject_control_characters(item, &p)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn resolve(raw: RawConfig) -> Result<Config> {
    let provider = match raw.provider.as_deref() {
        None => Provider::Microsoft,
        Some(p) => Provider::parse(p).ok_or_else(|| {
            bad(
                "provider",
                format!("'{p}' is not one of microsoft, microsoft-usgov, microsoft-china, custom"),
                format!("'{p}' ist keiner von microsoft, microsoft-usgov, microsoft-china, custom"),
            )
        })?,
    };
    let preset = provider.preset();
    let allow_plaintext_loopback = raw.allow_plaintext_loopback.unwrap_or(false);

    let client_id = match raw.client_id.as_deref().map(str::trim) {
        None | Some("") => {
            return Err(bad(
                "client_id",
                "required: the Application (client) ID of the app registration",
                "erforderlich: die Anwendungs-ID (Client-ID) der App-Registrierung",
            ));
        }
        Some(id) => id.to_string(),
    };
    if preset.is_some() && !is_guid(&client_id) {
        return Err(bad(
            "client_id",
            "expected the Application (client) ID from Entra ID, a GUID like 00000000-0000-0000-0000-000000000000",
            "erwartet wird die Anwendungs-ID (Client-ID) aus Entra ID, eine GUID wie 00000000-0000-0000-0000-000000000000",
        ));
    }
    if preset.is_none() && client_id.contains(char::is_whitespace) {
        return Err(bad(
            "client_id",
            "must not contain spaces",
            "darf keine Leerzeichen enthalten",
        ));
    }
    let client_secret = raw.client_secret.filter(|s| !s.is_empty()).map(Secret::new);

    let tenant = raw.tenant.unwrap_or_else(|| DEFAULT_TENANT.to_string());
    if tenant.is_empty()
        || !tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(bad(
            "tenant",
            "expected organizations, common, consumers, a tenant id (GUID) or a domain such as contoso.com",
            "erwartet wird organizations, common, consumers, eine Mandanten-ID (GUID) oder eine Domäne wie contoso.com",
        ));
    }

    let http_timeout_ms = match raw.http.as_ref().and_then(|h| h.timeout_ms) {
        None => DEFAULT_HTTP_TIMEOUT_MS,
        Some(ms) if (1..=3_600_000).contains(&ms) => ms as u32,
        Some(_) => {
            return Err(bad(
                "http.timeout_ms",
                "expected milliseconds between 1 and 3600000",
                "erwartet werden Millisekunden zwischen 1 und 3600000",
            ));
        }
    };
    let proxy = match raw.http.as_ref().and_then(|h| h.proxy.as_deref()) {
        None | Some("system") => Proxy::System,
        Some("none") => Proxy::None,
        Some(p) => {
            let url = Url::parse(p).ok().filter(|u| {
                matches!(u.scheme(), "http" | "https" | "socks5" | "socks5h")
                    && u.host_str().is_some()
            });
            match url {
                Some(u) => Proxy::Url(u),
                None => {
                    return Err(bad(
                        "http.proxy",
                        "expected system, none or a proxy URL such as http://proxy.contoso.com:3128",
                        "erwartet wird system, none oder eine Proxy-URL wie http://proxy.contoso.com:3128",
                    ));
                }
            }
        }
    };

    // Where the identity provider lives.
    let authority = match (raw.authority, preset) {
        (Some(a), _) => Some(check_url(
            "authority",
            &a,
            allow_plaintext_loopback,
            client_secret.is_some(),
            &proxy,
        )?),
        (None, Some(p)) => Some(p.authority.to_string()),
        (None, None) => None,
    };
    let derived = |leaf: &str| {
        authority
            .as_ref()
            .map(|a| format!("{a}/{tenant}/oauth2/v2.0/{leaf}"))
    };
    let raw_endpoints = raw.endpoints.unwrap_or_default();
    let endpoint = |key: &str, given: Option<String>, leaf: &str| -> Result<Option<String>> {
        match given {
            Some(u) => Ok(Some(check_url(
                key,
                &u,
                allow_plaintext_loopback,
                client_secret.is_some(),
                &proxy,
            )?)),
            None => Ok(derived(leaf)),
        }
    };
    let endpoints = Endpoints {
        authorize: endpoint("endpoints.authorize", raw_endpoints.authorize, "authorize")?,
        token: endpoint("endpoints.token", raw_endpoints.token, "token")?,
        device_code: endpoint(
            "endpoints.device_code",
            raw_endpoints.device_code,
            "devicecode",
        )?,
    };
    if endpoints.token.is_none() {
        return Err(bad(
            "authority",
            "provider custom needs an authority or endpoints.token (and endpoints.authorize for sign-in)",
            "Anbieter custom braucht authority oder endpoints.token (und endpoints.authorize für die Anmeldung)",
        ));
    }

    let raw_scopes = raw.scopes.unwrap_or_default();
    let pick = |key: &str,
                given: Option<String>,
                preset_value: Option<&str>|
     -> Result<Option<String>> {
        match given {
            Some(s) if s.trim().is_empty() || s.contains(char::is_whitespace) => Err(bad(
                key,
                "expected one scope URL without spaces, e.g. https://outlook.office.com/SMTP.Send",
                "erwartet wird eine Scope-URL ohne Leerzeichen, z. B. https://outlook.office.com/SMTP.Send",
            )),
            Some(s) => Ok(Some(s)),
            None => Ok(preset_value.map(str::to_string)),
        }
    };
    let scopes = Scopes {
        smtp: pick("scopes.smtp", raw_scopes.smtp, preset.map(|p| p.smtp_scope))?,
        imap: pick("scopes.imap", raw_scopes.imap, preset.map(|p| p.imap_scope))?,
        pop3: pick("scopes.pop3", raw_scopes.pop3, preset.map(|p| p.pop3_scope))?,
        app: pick("scopes.app", raw_scopes.app, preset.map(|p| p.app_scope))?,
    };

    let raw_servers = raw.servers.unwrap_or_default();
    let has_secret = client_secret.is_some();
    let server =
        |name: &str, given: Option<RawServer>, preset_value: Option<(&str, u16, Security)>| {
            resolve_server(
                &format!("servers.{name}"),
                name,
                given,
                preset_value,
                allow_plaintext_loopback,
                has_secret,
            )
        };
    let servers = Servers {
        smtp: server("smtp", raw_servers.smtp, preset.map(|p| p.smtp))?,
        imap: server("imap", raw_servers.imap, preset.map(|p| p.imap))?,
        pop3: server("pop3", raw_servers.pop3, preset.map(|p| p.pop3))?,
    };

    let trusted_hosts = raw.trusted_hosts.unwrap_or_default();
    for (i, h) in trusted_hosts.iter().enumerate() {
        let plain = h.strip_prefix("*.").unwrap_or(h);
        if !hosts::is_valid_host(plain) {
            return Err(bad(
                &format!("trusted_hosts[{i}]"),
                format!("'{h}' is not a host name (write mail.contoso.com or *.contoso.com)"),
                format!("'{h}' ist kein Hostname (mail.contoso.com oder *.contoso.com schreiben)"),
            ));
        }
    }
    // The trusted-host rule: with a Microsoft cloud, tokens go only to that
    // cloud's mail hosts and to hosts the administrator listed.
    if let Some(p) = preset {
        for (name, s) in [
            ("smtp", &servers.smtp),
            ("imap", &servers.imap),
            ("pop3", &servers.pop3),
        ] {
            if let Some(s) = s {
                let trusted = p.mail_hosts.iter().any(|m| hosts::matches(m, &s.host))
                    || trusted_hosts.iter().any(|t| hosts::matches(t, &s.host));
                if !trusted {
                    return Err(bad(
                        &format!("servers.{name}.host"),
                        format!(
                            "'{}' is not a mail host of this Microsoft cloud; access tokens would go to it. Add it to trusted_hosts if that is intended",
                            s.host
                        ),
                        format!(
                            "'{}' ist kein Mailserver dieser Microsoft-Cloud; Zugriffstoken würden dorthin gesendet. In trusted_hosts eintragen, falls das gewollt ist",
                            s.host
                        ),
                    ));
                }
            }
        }
    }

    let (ca_file, extra_roots) = match raw.tls.and_then(|t| t.ca_file) {
        None => (None, Vec::new()),
        Some(path) => {
            let certs = trust::load_ca_file(&path).map_err(|why| {
                bad(
                    "tls.ca_file",
                    format!("expected a PEM file with CA certificates: {why}"),
                    format!("erwartet wird eine PEM-Datei mit CA-Zertifikaten: {why}"),
                )
            })?;
            (Some(PathBuf::from(path)), certs)
        }
    };

    let protection = match raw.cache.as_ref().and_then(|c| c.protection.as_deref()) {
        None | Some("user") => Protection::User,
        Some("machine") => Protection::Machine,
        Some("key") => Protection::Key,
        Some("none") => Protection::None,
        Some(other) => {
            return Err(bad(
                "cache.protection",
                format!("'{other}' is not one of user, machine, key, none"),
                format!("'{other}' ist keiner von user, machine, key, none"),
            ));
        }
    };
    let cache_path = match raw.cache.and_then(|c| c.path) {
        Some(p) if p.trim().is_empty() => {
            return Err(bad(
                "cache.path",
                "must not be empty",
                "darf nicht leer sein",
            ));
        }
        Some(p) => Some(PathBuf::from(p)),
        None => default_cache_dir(protection),
    };

    let smtp_max_connections = match raw.smtp.and_then(|s| s.max_connections) {
        None => DEFAULT_SMTP_MAX_CONNECTIONS,
        Some(n) if (1..=16).contains(&n) => n as u32,
        Some(_) => {
            return Err(bad(
                "smtp.max_connections",
                "expected 1 to 16 (Exchange Online allows 3 per mailbox)",
                "erwartet wird 1 bis 16 (Exchange Online erlaubt 3 pro Postfach)",
            ));
        }
    };
    let limits = raw.limits.unwrap_or_default();
    let max_message_bytes = match limits.max_message_bytes {
        None => DEFAULT_MAX_MESSAGE_BYTES,
        Some(n) if (1024..=(1i64 << 40)).contains(&n) => n as u64,
        Some(_) => {
            return Err(bad(
                "limits.max_message_bytes",
                "expected bytes between 1024 and 2^40",
                "erwartet werden Bytes zwischen 1024 und 2^40",
            ));
        }
    };
    let max_json_bytes = match limits.max_json_bytes {
        None => DEFAULT_MAX_JSON_BYTES,
        Some(n) if (1024..=(1i64 << 31)).contains(&n) => n as u64,
        Some(_) => {
            return Err(bad(
                "limits.max_json_bytes",
                "expected bytes between 1024 and 2^31",
                "erwartet werden Bytes zwischen 1024 und 2^31",
            ));
        }
    };

    let redirect = raw.redirect.unwrap_or_default();
    let redirect_host = redirect.host.unwrap_or_else(|| "localhost".to_string());
    if redirect_host != "localhost" && !hosts::is_loopback_literal(&redirect_host) {
        return Err(bad(
            "redirect.host",
            "expected localhost or a loopback IP literal such as 127.0.0.1",
            "erwartet wird localhost oder eine Loopback-IP wie 127.0.0.1",
        ));
    }

    let browser = match raw.browser.as_deref() {
        None | Some("system") => Browser::System,
        Some("none") => Browser::None,
        Some(other) => {
            return Err(bad(
                "browser",
                format!("'{other}' is not one of system, none"),
                format!("'{other}' ist keiner von system, none"),
            ));
        }
    };
    let language = match raw.language.as_deref() {
        None => Language::En,
        Some(l) => Language::parse(l).ok_or_else(|| {
            bad(
                "language",
                format!("'{l}' is not one of en, de"),
                format!("'{l}' ist keiner von en, de"),
            )
        })?,
    };

    Ok(Config {
        provider,
        tenant,
        client_id,
        client_secret,
        authority,
        endpoints,
        scopes,
        servers,
        trusted_hosts,
        cache: CacheConfig {
            path: cache_path,
            protection,
        },
        ca_file,
        extra_roots,
        proxy,
        http_timeout_ms,
        smtp_max_connections,
        max_message_bytes,
        max_json_bytes,
        redirect_host,
        redirect_port: redirect.port.unwrap_or(0),
        browser,
        language,
        allow_plaintext_loopback,
        ignore_unknown_keys: raw.ignore_unknown_keys.unwrap_or(false),
    })
}

/// A `server` object of a request (an SMTP send, a mailbox open): the same
/// rules as `servers.<protocol>` in the configuration, keys named
/// `server.host` and so on. Whether a token may go there is checked by the
/// caller before connecting (`UntrustedHost`).
pub fn server_override(config: &Config, protocol: &str, raw: RawServer) -> Result<Server> {
    if raw.host.is_none() {
        return Err(bad(
            "server.host",
            "required when server is given",
            "erforderlich, wenn server angegeben ist",
        ));
    }
    resolve_server(
        "server",
        protocol,
        Some(raw),
        None,
        config.allow_plaintext_loopback,
        config.client_secret.is_some(),
    )?
    .ok_or_else(|| bad("server.host", "required", "erforderlich"))
}

/// Resolves a server under the key `prefix` (`servers.smtp`, `server`) for
/// `name` (smtp, imap, pop3), with the preset's values where keys are absent.
fn resolve_server(
    prefix: &str,
    name: &str,
    given: Option<RawServer>,
    preset: Option<(&str, u16, Security)>,
    allow_plaintext_loopback: bool,
    has_secret: bool,
) -> Result<Option<Server>> {
    let given = given.unwrap_or_default();
    let host = given.host.or_else(|| preset.map(|p| p.0.to_string()));
    let Some(host) = host else {
        if given.port.is_some() || given.security.is_some() {
            return Err(bad(
                &format!("{prefix}.host"),
                "required with provider custom",
                "erforderlich beim Anbieter custom",
            ));
        }
        return Ok(None);
    };
    if !hosts::is_valid_host(&host) {
        return Err(bad(
            &format!("{prefix}.host"),
            format!("'{host}' is not a host name or IP address (no scheme or port here)"),
            format!("'{host}' ist kein Hostname und keine IP-Adresse (ohne Schema und Port)"),
        ));
    }
    let security = match given.security.as_deref() {
        // Microsoft's defaults: STARTTLS for submission, implicit TLS for
        // IMAP and POP3.
        None => preset.map(|p| p.2).unwrap_or(if name == "smtp" {
            Security::StartTls
        } else {
            Security::Tls
        }),
        Some("tls") => Security::Tls,
        Some("starttls") => Security::StartTls,
        Some("none") => Security::None,
        Some(other) => {
            return Err(bad(
                &format!("{prefix}.security"),
                format!("'{other}' is not one of tls, starttls, none"),
                format!("'{other}' ist keiner von tls, starttls, none"),
            ));
        }
    };
    let default_port = match (name, security) {
        ("smtp", Security::Tls) => 465,
        ("smtp", _) => 587,
        ("imap", Security::Tls) => 993,
        ("imap", _) => 143,
        (_, Security::Tls) => 995,
        _ => 110,
    };
    let port = given
        .port
        .or_else(|| preset.filter(|p| p.2 == security).map(|p| p.1))
        .unwrap_or(default_port);
    if port == 0 {
        return Err(bad(
            &format!("{prefix}.port"),
            "expected a port between 1 and 65535",
            "erwartet wird ein Port zwischen 1 und 65535",
        ));
    }
    if security == Security::None
        && !(allow_plaintext_loopback && hosts::is_loopback_literal(&host))
    {
        return Err(bad(
            &format!("{prefix}.security"),
            "none (plaintext) is allowed only for a loopback IP literal such as 127.0.0.1 with allow_plaintext_loopback: true",
            "none (Klartext) ist nur für eine Loopback-IP wie 127.0.0.1 mit allow_plaintext_loopback: true erlaubt",
        ));
    }
    if security == Security::None && has_secret {
        return Err(bad(
            &format!("{prefix}.security"),
            "none (plaintext) is never allowed together with a client_secret",
            "none (Klartext) ist zusammen mit einem client_secret nie erlaubt",
        ));
    }
    Ok(Some(Server {
        host,
        port,
        security,
    }))
}

/// Checks an identity-provider URL: https, or http for a loopback IP literal
/// in test setups. Returns it without a trailing slash.
fn check_url(
    key: &str,
    value: &str,
    allow_plaintext_loopback: bool,
    has_secret: bool,
    proxy: &Proxy,
) -> Result<String> {
    let url = Url::parse(value).map_err(|e| {
        bad(
            key,
            format!("'{value}' is not a URL ({e})"),
            format!("'{value}' ist keine URL ({e})"),
        )
    })?;
    let host = url.host_str().unwrap_or("");
    if host.is_empty()
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(bad(
            key,
            "expected an https URL with a host and without query, fragment or user",
            "erwartet wird eine https-URL mit Host, ohne Query, Fragment oder Benutzer",
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" => {
            let why_en;
            let why_de;
            if !hosts::is_loopback_literal(host) {
                why_en = "http:// is allowed only for a loopback IP literal such as 127.0.0.1";
                why_de = "http:// ist nur für eine Loopback-IP wie 127.0.0.1 erlaubt";
            } else if !allow_plaintext_loopback {
                why_en = "http:// needs allow_plaintext_loopback: true (local test services only)";
                why_de = "http:// braucht allow_plaintext_loopback: true (nur lokale Testdienste)";
            } else if has_secret {
                why_en = "http:// is never allowed together with a client_secret";
                why_de = "http:// ist zusammen mit einem client_secret nie erlaubt";
            } else if matches!(proxy, Proxy::Url(_)) {
                why_en = "http:// is never used through a proxy";
                why_de = "http:// wird nie über einen Proxy verwendet";
            } else {
                return Ok(value.trim_end_matches('/').to_string());
            }
            return Err(bad(key, why_en, why_de));
        }
        other => {
            return Err(bad(
                key,
                format!("scheme '{other}' is not https"),
                format!("Schema '{other}' ist nicht https"),
            ));
        }
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The default folder of a protection mode (none for `key`).
fn default_cache_dir(protection: Protection) -> Option<PathBuf> {
    match protection {
        Protection::Key => None,
        Protection::Machine => Some(machine_data_dir().join("mailoauth")),
        Protection::User | Protection::None => user_data_dir().map(|d| d.join("mailoauth")),
    }
}

#[cfg(windows)]
fn user_data_dir() -> Option<PathBuf> {
    std::env::var_os("LOCALAPPDATA").map(PathBuf::from)
}

#[cfg(not(windows))]
fn user_data_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
}

#[cfg(windows)]
fn machine_data_dir() -> PathBuf {
    std::env::var_os("ProgramData")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"))
}

#[cfg(not(windows))]
fn machine_data_dir() -> PathBuf {
    PathBuf::from("/var/lib")
}

impl Config {
    /// May an access token be sent to this host? (Microsoft clouds: the
    /// cloud's mail hosts and `trusted_hosts`; custom: the configured
    /// servers and `trusted_hosts`.)
    pub fn token_may_go_to(&self, host: &str) -> bool {
        let listed = self.trusted_hosts.iter().any(|t| hosts::matches(t, host));
        let own = match self.provider.preset() {
            Some(p) => p.mail_hosts.iter().any(|m| hosts::matches(m, host)),
            None => [&self.servers.smtp, &self.servers.imap, &self.servers.pop3]
                .into_iter()
                .flatten()
                .any(|s| hosts::matches(&s.host, host)),
        };
        listed || own
    }

    /// Refuses, before any connection, a mail server that may not receive
    /// an access token: a host outside [`token_may_go_to`](Self::token_may_go_to),
    /// or plaintext except to a loopback IP literal with
    /// `allow_plaintext_loopback`. One rule for SMTP, IMAP and POP3.
    pub fn check_token_destination(&self, host: &str, security: Security) -> Result<()> {
        if !self.token_may_go_to(host) {
            let h = crate::request::shown(host);
            return Err(Error::new(
                ErrorKind::UntrustedHost,
                Text::new(
                    format!(
                        "access tokens are not sent to '{h}': it is not a configured mail server or in trusted_hosts"
                    ),
                    format!(
                        "Zugriffstoken werden nicht an '{h}' gesendet: kein konfigurierter Mailserver und nicht in trusted_hosts"
                    ),
                ),
            ));
        }
        if security == Security::None
            && !(self.allow_plaintext_loopback && hosts::is_loopback_literal(host))
        {
            return Err(Error::new(
                ErrorKind::Tls,
                Text::new(
                    "plaintext is allowed only to a loopback IP literal with allow_plaintext_loopback: true",
                    "Klartext ist nur zu einer Loopback-IP mit allow_plaintext_loopback: true erlaubt",
                ),
            ));
        }
        Ok(())
    }

    /// The resolved configuration as JSON for hosts and administrators:
    /// never a secret (a client secret shows as "set", a proxy password as
    /// "***").
    pub fn describe(&self) -> serde_json::Value {
        let proxy = match &self.proxy {
            Proxy::System => "system".to_string(),
            Proxy::None => "none".to_string(),
            Proxy::Url(u) => {
                let mut u = u.clone();
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.to_string()
            }
        };
        serde_json::json!({
            "provider": self.provider,
            "tenant": self.tenant,
            "client_id": self.client_id,
            "client_secret": self.client_secret.as_ref().map(|_| "set"),
            "authority": self.authority,
            "endpoints": self.endpoints,
            "scopes": self.scopes,
            "servers": self.servers,
            "trusted_hosts": self.trusted_hosts,
            "cache": self.cache,
            "tls": {"ca_file": self.ca_file, "extra_roots": self.extra_roots.len()},
            "http": {"proxy": proxy, "timeout_ms": self.http_timeout_ms},
            "smtp": {"max_connections": self.smtp_max_connections},
            "limits": {"max_message_bytes": self.max_message_bytes, "max_json_bytes": self.max_json_bytes},
            "redirect": {"host": self.redirect_host, "port": self.redirect_port},
            "browser": self.browser,
            "language": self.language,
            "allow_plaintext_loopback": self.allow_plaintext_loopback,
            "ignore_unknown_keys": self.ignore_unknown_keys,
        })
    }
}

#[cfg(test)]
mod tests;
