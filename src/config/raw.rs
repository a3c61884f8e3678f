//! The configuration JSON exactly as the host wrote it: every key optional,
//! nothing resolved yet. Unknown keys are collected by the parser, not here.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub provider: Option<String>,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub authority: Option<String>,
    pub endpoints: Option<RawEndpoints>,
    pub scopes: Option<RawScopes>,
    pub servers: Option<RawServers>,
    pub trusted_hosts: Option<Vec<String>>,
    pub cache: Option<RawCache>,
    pub tls: Option<RawTls>,
    pub http: Option<RawHttp>,
    pub smtp: Option<RawSmtp>,
    pub limits: Option<RawLimits>,
    pub redirect: Option<RawRedirect>,
    pub browser: Option<String>,
    pub language: Option<String>,
    pub allow_plaintext_loopback: Option<bool>,
    pub ignore_unknown_keys: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawEndpoints {
    pub authorize: Option<String>,
    pub token: Option<String>,
    pub device_code: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawScopes {
    pub smtp: Option<String>,
    pub imap: Option<String>,
    pub pop3: Option<String>,
    pub app: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawServers {
    pub smtp: Option<RawServer>,
    pub imap: Option<RawServer>,
    pub pop3: Option<RawServer>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawServer {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub security: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawCache {
    pub path: Option<String>,
    pub protection: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawTls {
    pub ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawHttp {
    pub proxy: Option<String>,
    pub timeout_ms: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSmtp {
    pub max_connections: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLimits {
    pub max_message_bytes: Option<i64>,
    pub max_json_bytes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRedirect {
    pub host: Option<String>,
    pub port: Option<u16>,
}
