//! The directory and behaviour settings (`GET/POST /admin/settings`, `--config`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub username: String,
    pub oid: String,
    pub display_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Client {
    pub client_id: String,
    #[serde(default)]
    pub name: String,
    /// `public` or `confidential`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// The one mailbox app-only (client credentials) tokens are bound to.
    #[serde(default)]
    pub app_mailbox: Option<String>,
    /// Application permissions (roles) of app-only tokens.
    #[serde(default)]
    pub app_roles: Vec<String>,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.kind.eq_ignore_ascii_case("public")
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    /// Every redemption returns a new RT; the old one stays valid until its own expiry.
    Microsoft,
    /// The old RT is dead once used; reuse gives invalid_grant (`rotation_reuse_aadsts`).
    Strict,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub tenant_id: String,
    pub tenant_domain: String,
    pub users: Vec<User>,
    pub clients: Vec<Client>,
    /// user -> further mailboxes that user may open (shared mailboxes).
    pub mailbox_access: BTreeMap<String, Vec<String>>,
    pub auto_consent: bool,
    pub auto_consent_user: String,
    pub rotation: Rotation,
    pub rotation_reuse_aadsts: u32,
    pub code_lifetime_s: u64,
    pub access_token_lifetime_s: u64,
    pub access_token_length: usize,
    pub refresh_token_lifetime_s: u64,
    pub device_code_lifetime_s: u64,
    pub device_interval_s: u64,
    pub device_slow_down: bool,
    /// Overrides `{http base}/devicelogin` in device code responses.
    pub verification_uri: Option<String>,
}

fn user(name: &str, oid: &str, display: &str) -> User {
    User {
        username: name.to_string(),
        oid: oid.to_string(),
        display_name: display.to_string(),
    }
}

impl Default for Settings {
    fn default() -> Self {
        let mut access = BTreeMap::new();
        access.insert(
            "alice@contoso.test".to_string(),
            vec!["shared@contoso.test".to_string()],
        );
        Settings {
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            tenant_domain: "contoso.test".into(),
            users: vec![
                user(
                    "alice@contoso.test",
                    "a11ce000-0000-4000-8000-00000000a11c",
                    "Alice Example",
                ),
                user(
                    "bob@contoso.test",
                    "b0b00000-0000-4000-8000-000000000b0b",
                    "Bob Example",
                ),
                user(
                    "carol@contoso.test",
                    "ca201000-0000-4000-8000-0000000ca201",
                    "Carol Example",
                ),
                user(
                    "service@contoso.test",
                    "5e2f1ce0-0000-4000-8000-00005e2f1ce0",
                    "Service Mailbox",
                ),
                user(
                    "shared@contoso.test",
                    "5ba2ed00-0000-4000-8000-0000005ba2ed",
                    "Shared Mailbox",
                ),
            ],
            clients: vec![
                Client {
                    client_id: "00000000-0000-0000-0000-0000000000a1".into(),
                    name: "mailoauth test public client".into(),
                    kind: "public".into(),
                    secret: None,
                    redirect_uris: vec!["http://localhost".into()],
                    app_mailbox: None,
                    app_roles: vec![],
                },
                Client {
                    client_id: "00000000-0000-0000-0000-0000000000a2".into(),
                    name: "mailoauth test confidential client".into(),
                    kind: "confidential".into(),
                    secret: Some("idp-test-secret-a2-0123456789".into()),
                    redirect_uris: vec!["http://localhost".into()],
                    app_mailbox: Some("service@contoso.test".into()),
                    app_roles: vec![
                        "IMAP.AccessAsApp".into(),
                        "POP.AccessAsApp".into(),
                        "SMTP.SendAsApp".into(),
                    ],
                },
            ],
            mailbox_access: access,
            auto_consent: false,
            auto_consent_user: "alice@contoso.test".into(),
            rotation: Rotation::Microsoft,
            rotation_reuse_aadsts: 70000,
            code_lifetime_s: 600,
            access_token_lifetime_s: 3600,
            access_token_length: 1600,
            refresh_token_lifetime_s: 90 * 86_400,
            device_code_lifetime_s: 900,
            device_interval_s: 5,
            device_slow_down: true,
            verification_uri: None,
        }
    }
}

impl Settings {
    /// Merge a partial JSON object into these settings (top-level keys replace whole values).
    /// Unknown keys and wrong types are errors; on error nothing changes.
    pub fn merged(&self, patch: &serde_json::Value) -> Result<Settings, String> {
        let serde_json::Value::Object(patch) = patch else {
            return Err("settings must be a JSON object".into());
        };
        let mut cur = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let serde_json::Value::Object(cur_map) = &mut cur else {
            return Err("internal: settings are not an object".into());
        };
        for (k, v) in patch {
            if !cur_map.contains_key(k) {
                return Err(format!("unknown setting '{k}'"));
            }
            cur_map.insert(k.clone(), v.clone());
        }
        let next: Settings =
            serde_json::from_value(cur).map_err(|e| format!("invalid settings: {e}"))?;
        next.validate()?;
        Ok(next)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.access_token_length < 16 || self.access_token_length > 16_384 {
            return Err("access_token_length must be within 16..=16384".into());
        }
        if self.device_interval_s > 3600 {
            return Err("device_interval_s is too large".into());
        }
        for c in &self.clients {
            if !c.is_public() && !c.kind.eq_ignore_ascii_case("confidential") {
                return Err(format!(
                    "client {} has type '{}'; use public or confidential",
                    c.client_id, c.kind
                ));
            }
        }
        Ok(())
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.username.eq_ignore_ascii_case(name.trim()))
    }

    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients
            .iter()
            .find(|c| c.client_id.eq_ignore_ascii_case(id.trim()))
    }

    /// Is `segment` a tenant path segment this directory answers to?
    pub fn tenant_ok(&self, segment: &str) -> bool {
        let s = segment.to_ascii_lowercase();
        s == "common"
            || s == "organizations"
            || s == self.tenant_id.to_ascii_lowercase()
            || s == self.tenant_domain.to_ascii_lowercase()
    }

    pub fn tenant_is_generic(segment: &str) -> bool {
        let s = segment.to_ascii_lowercase();
        s == "common" || s == "organizations"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_partial_and_reject_unknown() {
        let s = Settings::default();
        let m = s
            .merged(&json!({"rotation": "strict", "device_interval_s": 1}))
            .unwrap();
        assert_eq!(m.rotation, Rotation::Strict);
        assert_eq!(m.device_interval_s, 1);
        assert_eq!(m.tenant_domain, "contoso.test");
        assert!(s.merged(&json!({"no_such_key": 1})).is_err());
        assert!(s.merged(&json!({"rotation": "sometimes"})).is_err());
        assert!(s.merged(&json!({"access_token_length": 3})).is_err());
    }

    #[test]
    fn tenants() {
        let s = Settings::default();
        assert!(s.tenant_ok("common"));
        assert!(s.tenant_ok("Organizations"));
        assert!(s.tenant_ok("72F988BF-86F1-41AF-91AB-2D7CD011DB47"));
        assert!(s.tenant_ok("contoso.test"));
        assert!(!s.tenant_ok("consumers"));
        assert!(!s.tenant_ok("fabrikam.test"));
    }
}
