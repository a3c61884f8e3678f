//! Host names and the rules about where tokens and plaintext may go.

use std::net::IpAddr;

/// Lower case, without a trailing dot and without IPv6 brackets.
pub fn normalize(host: &str) -> String {
    let h = host.trim_end_matches('.');
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    h.to_ascii_lowercase()
}

/// True for an IP literal of the loopback range (127.0.0.0/8, ::1). A name
/// such as `localhost` is not a literal: it could resolve elsewhere.
pub fn is_loopback_literal(host: &str) -> bool {
    normalize(host)
        .parse::<IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// A syntactically plausible host: a DNS name or an IP literal, nothing else
/// (no scheme, port, path, spaces or control characters).
pub fn is_valid_host(host: &str) -> bool {
    let h = normalize(host);
    if h.is_empty() || h.len() > 253 {
        return false;
    }
    if h.parse::<IpAddr>().is_ok() {
        return true;
    }
    h.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

/// Matches a host against a trusted-host entry: exact, or `*.example.com`
/// for any name below example.com.
pub fn matches(pattern: &str, host: &str) -> bool {
    let p = normalize(pattern);
    let h = normalize(host);
    match p.strip_prefix("*.") {
        Some(suffix) => h.len() > suffix.len() + 1 && h.ends_with(&format!(".{suffix}")),
        None => p == h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_literals_only() {
        assert!(is_loopback_literal("127.0.0.2"));
        assert!(is_loopback_literal("::1"));
        assert!(is_loopback_literal("[::1]"));
        assert!(!is_loopback_literal("localhost"));
        assert!(!is_loopback_literal("10.0.0.1"));
    }

    #[test]
    fn host_validity() {
        assert!(is_valid_host("smtp.office365.com"));
        assert!(is_valid_host("127.0.0.2"));
        assert!(!is_valid_host("smtp.office365.com:587"));
        assert!(!is_valid_host("https://x"));
        assert!(!is_valid_host("a b"));
        assert!(!is_valid_host(""));
    }

    #[test]
    fn wildcard_matching() {
        assert!(matches("*.contoso.com", "mail.contoso.com"));
        assert!(!matches("*.contoso.com", "contoso.com"));
        assert!(!matches("*.contoso.com", "evilcontoso.com"));
        assert!(matches("Mail.Contoso.com.", "mail.contoso.com"));
    }
}
