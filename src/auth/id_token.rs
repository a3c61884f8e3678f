//! Reading the claims of an id_token: the base64url JSON payload, no
//! signature check. The token comes straight from the token endpoint over
//! TLS (OIDC Core 3.1.3.7) and is used to name the account, never to
//! authorise anything. A malformed id_token gives `None`, never an error.

use base64::Engine;

use super::IdClaims;

/// The largest id_token we look at.
const MAX_ID_TOKEN_BYTES: usize = 64 * 1024;

/// The claims we use, or `None` when the token is not a readable JWT.
pub fn parse_claims(id_token: &str) -> Option<IdClaims> {
    if id_token.len() > MAX_ID_TOKEN_BYTES {
        return None;
    }
    let mut parts = id_token.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let obj = v.as_object()?;
    let text = |k: &str| {
        obj.get(k)
            .and_then(|x| x.as_str())
            .filter(|s| !s.is_empty() && s.len() <= 1024 && !s.contains(['\r', '\n', '\0']))
            .map(str::to_string)
    };
    Some(IdClaims {
        preferred_username: text("preferred_username")
            .or_else(|| text("upn"))
            .or_else(|| text("email")),
        oid: text("oid"),
        tid: text("tid"),
        name: text("name"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            e.encode(r#"{"alg":"RS256"}"#),
            e.encode(payload)
        )
    }

    #[test]
    fn reads_claims() {
        let c = parse_claims(&jwt(
            r#"{"preferred_username":"Alice@Contoso.test","oid":"o","tid":"t","name":"Alice"}"#,
        ))
        .unwrap();
        assert_eq!(c.preferred_username.as_deref(), Some("Alice@Contoso.test"));
        assert_eq!(c.tid.as_deref(), Some("t"));
        let c = parse_claims(&jwt(r#"{"upn":"bob@contoso.test"}"#)).unwrap();
        assert_eq!(c.preferred_username.as_deref(), Some("bob@contoso.test"));
    }

    #[test]
    fn garbage_is_none() {
        assert!(parse_claims("").is_none());
        assert!(parse_claims("abc").is_none());
        assert!(parse_claims("a.!!!.c").is_none());
        assert!(parse_claims(&jwt("[1,2]")).is_none());
        assert!(parse_claims(&jwt("not json")).is_none());
        let c = parse_claims(&jwt(r#"{"preferred_username":"a\r\nb"}"#)).unwrap();
        assert!(c.preferred_username.is_none());
    }
}
