//! Folder names on the wire: modified UTF-7 (RFC 3501 §5.1.3) and quoted
//! strings. CR, LF and NUL are refused.

use base64::Engine as _;

use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;

/// The folder name as the server knows it (modified UTF-7), unquoted.
pub fn encode(name: &str) -> Result<String> {
    if name.is_empty() || name.len() > 1024 || name.chars().any(|c| matches!(c, '\r' | '\n' | '\0'))
    {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            Text::new(
                "a folder name must be 1 to 1024 bytes without CR, LF or NUL",
                "ein Ordnername muss 1 bis 1024 Bytes lang sein, ohne CR, LF oder NUL",
            ),
        ));
    }
    let mut out = String::with_capacity(name.len() + 8);
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
        out.push('&');
        out.push_str(&b64.replace('/', ","));
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    Ok(out)
}

/// An IMAP quoted string (`"` and `\` escaped).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_utf7() {
        assert_eq!(encode("INBOX").unwrap(), "INBOX");
        assert_eq!(encode("Deleted Items").unwrap(), "Deleted Items");
        assert_eq!(encode("A&B").unwrap(), "A&-B");
        assert_eq!(encode("Entwürfe").unwrap(), "Entw&APw-rfe");
        assert_eq!(encode("台北").unwrap(), "&U,BTFw-");
        assert!(encode("a\r\nb").is_err());
        assert!(encode("").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    }
}
