//! Scope normalisation and PKCE, as the Microsoft identity platform treats them.

use sha2::{Digest, Sha256};

pub const OUTLOOK: &str = "https://outlook.office.com";
pub const GRAPH: &str = "https://graph.microsoft.com";

/// OIDC scopes that never belong to a resource.
pub const OIDC: [&str; 4] = ["openid", "profile", "offline_access", "email"];

/// Permissions of the Exchange Online resource, with their canonical spelling.
const OUTLOOK_PERMS: [&str; 8] = [
    "IMAP.AccessAsUser.All",
    "POP.AccessAsUser.All",
    "SMTP.Send",
    "EWS.AccessAsUser.All",
    "Mail.Read",
    "Mail.Send",
    "User.Read",
    ".default",
];

/// The delegated permissions a `.default` request on Exchange Online expands to
/// (the app registration's static permissions).
pub const OUTLOOK_DEFAULT: [&str; 3] = [
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/POP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `None` for OIDC scopes, else the resource (`https://outlook.office.com`).
    pub resource: Option<String>,
    /// The normalised scope string, e.g. `https://outlook.office.com/SMTP.Send` or `openid`.
    pub value: String,
}

impl Scope {
    pub fn is_default(&self) -> bool {
        self.value.ends_with("/.default")
    }
    pub fn same(&self, other: &str) -> bool {
        self.value.eq_ignore_ascii_case(other)
    }
}

/// Normalise one scope string:
/// - OIDC scopes lowercased;
/// - `https://outlook.office.com/` and `https://outlook.office365.com/` are one resource,
///   written with the first prefix, known permissions in canonical case;
/// - a bare permission (no URL) belongs to Microsoft Graph, as on the real service;
/// - any other URL keeps its own resource (everything before the last `/`).
pub fn normalize_one(raw: &str) -> Scope {
    let lower = raw.to_ascii_lowercase();
    if OIDC.contains(&lower.as_str()) {
        return Scope {
            resource: None,
            value: lower,
        };
    }
    for prefix in [
        "https://outlook.office.com/",
        "https://outlook.office365.com/",
    ] {
        if lower.starts_with(prefix) {
            let perm = &raw[prefix.len()..];
            let canon = OUTLOOK_PERMS
                .iter()
                .find(|p| p.eq_ignore_ascii_case(perm))
                .map(|p| p.to_string())
                .unwrap_or_else(|| perm.to_string());
            return Scope {
                resource: Some(OUTLOOK.to_string()),
                value: format!("{OUTLOOK}/{canon}"),
            };
        }
    }
    if lower.starts_with("https://graph.microsoft.com/") {
        let perm = &raw["https://graph.microsoft.com/".len()..];
        return Scope {
            resource: Some(GRAPH.to_string()),
            value: format!("{GRAPH}/{perm}"),
        };
    }
    if let Some(pos) = raw.find("://") {
        let rest = &raw[pos + 3..];
        if let Some(slash) = rest.rfind('/') {
            let resource = raw[..pos + 3 + slash].to_ascii_lowercase();
            let perm = &rest[slash + 1..];
            return Scope {
                value: format!("{resource}/{perm}"),
                resource: Some(resource),
            };
        }
        let resource = raw.trim_end_matches('/').to_ascii_lowercase();
        return Scope {
            value: format!("{resource}/.default"),
            resource: Some(resource),
        };
    }
    Scope {
        resource: Some(GRAPH.to_string()),
        value: format!("{GRAPH}/{raw}"),
    }
}

/// Normalise a space-separated scope parameter, dropping duplicates (case-insensitive)
/// and keeping the order of first appearance.
pub fn normalize(raw: &str) -> Vec<Scope> {
    let mut out: Vec<Scope> = Vec::new();
    for part in raw.split_whitespace() {
        let s = normalize_one(part);
        if !out.iter().any(|o| o.same(&s.value)) {
            out.push(s);
        }
    }
    out
}

/// Expand `https://outlook.office.com/.default` (delegated) into the app's static permissions.
pub fn expand_default(scopes: Vec<Scope>) -> Vec<Scope> {
    let mut out: Vec<Scope> = Vec::new();
    for s in scopes {
        if s.resource.as_deref() == Some(OUTLOOK) && s.is_default() {
            for d in OUTLOOK_DEFAULT {
                if !out.iter().any(|o| o.same(d)) {
                    out.push(normalize_one(d));
                }
            }
        } else if !out.iter().any(|o| o.same(&s.value)) {
            out.push(s);
        }
    }
    out
}

/// At the token endpoint `https://outlook.office.com/.default` means "every permission consented
/// for Exchange Online"; with no such consent it falls back to the static permissions (which then
/// fail the consent check, as on the real service).
pub fn expand_default_consented(scopes: Vec<Scope>, consented: &[String]) -> Vec<Scope> {
    let mine: Vec<Scope> = consented
        .iter()
        .map(|c| normalize_one(c))
        .filter(|c| c.resource.as_deref() == Some(OUTLOOK) && !c.is_default())
        .collect();
    if mine.is_empty() {
        return expand_default(scopes);
    }
    let mut out: Vec<Scope> = Vec::new();
    for s in scopes {
        let add: Vec<Scope> = if s.resource.as_deref() == Some(OUTLOOK) && s.is_default() {
            mine.clone()
        } else {
            vec![s]
        };
        for a in add {
            if !out.iter().any(|o| o.same(&a.value)) {
                out.push(a);
            }
        }
    }
    out
}

/// The distinct resources named by a scope list (OIDC scopes excluded).
pub fn resources(scopes: &[Scope]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in scopes {
        if let Some(r) = &s.resource
            && !out.contains(r)
        {
            out.push(r.clone());
        }
    }
    out
}

pub fn has(scopes: &[Scope], name: &str) -> bool {
    scopes.iter().any(|s| s.same(name))
}

pub fn join(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.value.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Scopes that are not covered by `consented` (OIDC scopes are always covered).
pub fn missing_consent<'a>(requested: &'a [Scope], consented: &[String]) -> Vec<&'a Scope> {
    requested
        .iter()
        .filter(|s| s.resource.is_some())
        .filter(|s| !consented.iter().any(|c| s.same(c)))
        .collect()
}

/// Result of a PKCE check.
#[derive(Debug, PartialEq, Eq)]
pub enum Pkce {
    Ok,
    /// Verifier missing although a challenge was sent.
    MissingVerifier,
    /// Verifier has the wrong length or characters (RFC 7636: 43..128 unreserved chars).
    BadVerifier,
    Mismatch,
}

/// Verify a PKCE `code_verifier` against the stored challenge and method (`S256` or `plain`).
pub fn verify_pkce(challenge: &str, method: &str, verifier: Option<&str>) -> Pkce {
    let Some(v) = verifier else {
        return Pkce::MissingVerifier;
    };
    let valid_chars = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if v.len() < 43 || v.len() > 128 || !valid_chars {
        return Pkce::BadVerifier;
    }
    let computed = if method.eq_ignore_ascii_case("S256") {
        crate::util::b64url(&Sha256::digest(v.as_bytes()))
    } else {
        v.to_string()
    };
    if computed == challenge {
        Pkce::Ok
    } else {
        Pkce::Mismatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outlook_prefixes_are_one_resource() {
        let a = normalize_one("https://outlook.office365.com/imap.accessasuser.all");
        let b = normalize_one("https://outlook.office.com/IMAP.AccessAsUser.All");
        assert_eq!(a, b);
        assert_eq!(a.value, "https://outlook.office.com/IMAP.AccessAsUser.All");
        assert_eq!(a.resource.as_deref(), Some(OUTLOOK));
    }

    #[test]
    fn oidc_and_bare_scopes() {
        assert_eq!(normalize_one("OpenID").resource, None);
        assert_eq!(normalize_one("offline_access").value, "offline_access");
        let bare = normalize_one("IMAP.AccessAsUser.All");
        assert_eq!(bare.resource.as_deref(), Some(GRAPH));
        assert_eq!(
            bare.value,
            "https://graph.microsoft.com/IMAP.AccessAsUser.All"
        );
        let other = normalize_one("api://abc/.default");
        assert_eq!(other.resource.as_deref(), Some("api://abc"));
    }

    #[test]
    fn dedupe_and_resources() {
        let s = normalize(
            "openid https://outlook.office.com/SMTP.Send https://outlook.office365.com/smtp.send offline_access",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(resources(&s), vec![OUTLOOK.to_string()]);
        let mixed = normalize("https://outlook.office.com/SMTP.Send User.Read");
        assert_eq!(resources(&mixed).len(), 2);
        let d = expand_default(normalize("https://outlook.office365.com/.default openid"));
        assert_eq!(d.len(), 4);
    }

    #[test]
    fn default_at_token_endpoint_means_consented() {
        let consented = vec![
            "https://outlook.office.com/SMTP.Send".to_string(),
            "offline_access".to_string(),
        ];
        let d = expand_default_consented(
            normalize("https://outlook.office365.com/.default offline_access"),
            &consented,
        );
        assert_eq!(
            join(&d),
            "https://outlook.office.com/SMTP.Send offline_access"
        );
        let none = expand_default_consented(normalize("https://outlook.office.com/.default"), &[]);
        assert_eq!(none.len(), 3);
    }

    #[test]
    fn consent_subset() {
        let consented = vec![
            "https://outlook.office.com/SMTP.Send".to_string(),
            "offline_access".to_string(),
        ];
        let req =
            normalize("https://outlook.office365.com/smtp.send openid profile offline_access");
        assert!(missing_consent(&req, &consented).is_empty());
        let req2 = normalize("https://outlook.office.com/IMAP.AccessAsUser.All");
        assert_eq!(missing_consent(&req2, &consented).len(), 1);
    }

    #[test]
    fn pkce_s256_and_plain() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(verify_pkce(challenge, "S256", Some(verifier)), Pkce::Ok);
        assert_eq!(
            verify_pkce(challenge, "S256", Some(&verifier.replace('d', "e"))),
            Pkce::Mismatch
        );
        assert_eq!(verify_pkce(verifier, "plain", Some(verifier)), Pkce::Ok);
        assert_eq!(verify_pkce(challenge, "S256", None), Pkce::MissingVerifier);
        assert_eq!(
            verify_pkce(challenge, "S256", Some("short")),
            Pkce::BadVerifier
        );
    }
}
