//! Pure OAuth helpers: redirect URI matching, redirect building, id_token shape.

use crate::settings::{Settings, User};
use crate::util::{b64url, rand_bytes};
use sha2::{Digest, Sha256};

fn is_loopback(host: Option<&str>) -> bool {
    matches!(host, Some("localhost") | Some("127.0.0.1"))
}

/// Does `given` match the registered redirect URI `registered`?
/// Loopback `http` registrations ignore the port (RFC 8252, as Entra does), accept
/// `localhost` and `127.0.0.1` alike, and need the same path (empty and `/` are equal).
/// Anything else must be equal after URL normalisation.
pub fn redirect_matches(registered: &str, given: &str) -> bool {
    if registered == given {
        return true;
    }
    let (Ok(r), Ok(g)) = (url::Url::parse(registered), url::Url::parse(given)) else {
        return false;
    };
    if g.fragment().is_some() || !g.username().is_empty() || g.password().is_some() {
        return false;
    }
    if r.scheme() == "http" && is_loopback(r.host_str()) {
        return g.scheme() == "http"
            && is_loopback(g.host_str())
            && r.path() == g.path()
            && g.query().is_none();
    }
    r.as_str() == g.as_str()
}

/// Append query parameters to a redirect URI as sent by the client.
pub fn with_query(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    let q = ser.finish();
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{sep}{q}")
}

/// The pairwise `sub` claim: stable per (user, app).
pub fn pairwise_sub(oid: &str, client_id: &str) -> String {
    let d = Sha256::digest(format!("{oid}|{}", client_id.to_ascii_lowercase()).as_bytes());
    b64url(&d)
}

pub struct IdTokenInput<'a> {
    pub settings: &'a Settings,
    pub client_id: &'a str,
    pub user: &'a User,
    pub nonce: Option<&'a str>,
    pub email: bool,
    pub now_s: u64,
}

/// A JWT-shaped id_token (`header.payload.signature`, base64url). The signature is random:
/// clients take the id_token straight from the token endpoint and must not need to verify it.
pub fn id_token(i: &IdTokenInput) -> String {
    let tid = &i.settings.tenant_id;
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": "mailoauth-test-idp"});
    let mut payload = serde_json::json!({
        "aud": i.client_id,
        "iss": format!("https://login.microsoftonline.com/{tid}/v2.0"),
        "iat": i.now_s,
        "nbf": i.now_s,
        "exp": i.now_s + 3600,
        "name": i.user.display_name,
        "preferred_username": i.user.username,
        "oid": i.user.oid,
        "tid": tid,
        "sub": pairwise_sub(&i.user.oid, i.client_id),
        "uti": b64url(&rand_bytes(16)),
        "ver": "2.0",
    });
    if let Some(obj) = payload.as_object_mut() {
        if let Some(n) = i.nonce {
            obj.insert("nonce".into(), n.into());
        }
        if i.email {
            obj.insert("email".into(), i.user.username.clone().into());
        }
    }
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(payload.to_string().as_bytes()),
        b64url(&rand_bytes(256))
    )
}

/// MSAL's `client_info`: base64url of `{"uid": oid, "utid": tid}`.
pub fn client_info(oid: &str, tid: &str) -> String {
    b64url(
        serde_json::json!({"uid": oid, "utid": tid})
            .to_string()
            .as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn loopback_redirects() {
        let reg = "http://localhost";
        assert!(redirect_matches(reg, "http://localhost"));
        assert!(redirect_matches(reg, "http://localhost:53123"));
        assert!(redirect_matches(reg, "http://localhost:53123/"));
        assert!(redirect_matches(reg, "http://127.0.0.1:8080"));
        assert!(!redirect_matches(reg, "http://localhost:53123/callback"));
        assert!(!redirect_matches(reg, "https://localhost:53123"));
        assert!(!redirect_matches(reg, "http://[::1]:53123"));
        assert!(!redirect_matches(reg, "http://evil.test:53123"));
        assert!(!redirect_matches(reg, "http://localhost:1/?x=1"));
        assert!(!redirect_matches(reg, "not a url"));
        assert!(redirect_matches(
            "https://app.test/cb",
            "https://app.test/cb"
        ));
        assert!(!redirect_matches(
            "https://app.test/cb",
            "https://app.test/cb2"
        ));
    }

    #[test]
    fn query_building() {
        assert_eq!(
            with_query("http://localhost:1", &[("code", "a b"), ("state", "s&")]),
            "http://localhost:1?code=a+b&state=s%26"
        );
        assert_eq!(
            with_query("http://x/?a=1", &[("b", "2")]),
            "http://x/?a=1&b=2"
        );
    }

    #[test]
    fn id_token_claims() {
        let s = Settings::default();
        let u = s.user("alice@contoso.test").unwrap().clone();
        let t = id_token(&IdTokenInput {
            settings: &s,
            client_id: "cid",
            user: &u,
            nonce: Some("n1"),
            email: false,
            now_s: 1000,
        });
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["aud"], "cid");
        assert_eq!(
            v["iss"],
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"
        );
        assert_eq!(v["preferred_username"], "alice@contoso.test");
        assert_eq!(v["ver"], "2.0");
        assert_eq!(v["exp"], 4600);
        assert_eq!(v["nonce"], "n1");
    }
}
