//! Message summaries for `mailbox_poll`, parsed from a header block with
//! mail-parser (RFC 2047 words and legacy charsets decoded, dates in
//! RFC 3339). Headers are hostile input: mail-parser never panics, and every
//! field is cut to a bounded length.

use mail_parser::MessageParser;
use serde::Serialize;

/// The longest text kept per field (a subject, one address).
const MAX_FIELD_CHARS: usize = 4096;
/// The most recipients listed.
const MAX_RECIPIENTS: usize = 100;

/// One entry of the poll result (ABI "Mailboxes", `poll`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Summary {
    pub id: String,
    pub size: u64,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    /// RFC 3339; the Date header, else the server's arrival time, else empty.
    pub date: String,
    /// With angle brackets; empty when the message has none.
    pub message_id: String,
}

impl Summary {
    /// Parses a header block (or a whole message). `fallback_date` is used
    /// when there is no valid Date header (IMAP INTERNALDATE).
    pub fn parse(id: String, size: u64, header: &[u8], fallback_date: Option<String>) -> Self {
        let parsed = MessageParser::default().parse_headers(header);
        let mut s = Summary {
            id,
            size,
            from: String::new(),
            to: Vec::new(),
            subject: String::new(),
            date: String::new(),
            message_id: String::new(),
        };
        if let Some(m) = parsed {
            if let Some(from) = m.from().and_then(|a| a.iter().next()) {
                s.from = bounded(&format_addr(from.name(), from.address()));
            }
            if let Some(to) = m.to() {
                s.to = to
                    .iter()
                    .take(MAX_RECIPIENTS)
                    .map(|a| bounded(&format_addr(a.name(), a.address())))
                    .filter(|a| !a.is_empty())
                    .collect();
            }
            s.subject = bounded(m.subject().unwrap_or_default());
            s.date = m
                .date()
                .filter(|d| d.is_valid())
                .map(|d| d.to_rfc3339())
                .unwrap_or_default();
            if let Some(id) = m.message_id() {
                s.message_id = bounded(&format!("<{id}>"));
            }
        }
        if s.date.is_empty() {
            s.date = fallback_date.unwrap_or_default();
        }
        s
    }
}

fn format_addr(name: Option<&str>, addr: Option<&str>) -> String {
    match (name.map(str::trim).filter(|n| !n.is_empty()), addr) {
        (Some(n), Some(a)) => format!("{n} <{a}>"),
        (None, Some(a)) => a.to_string(),
        (Some(n), None) => n.to_string(),
        (None, None) => String::new(),
    }
}

/// Control characters removed, at most [`MAX_FIELD_CHARS`] characters.
fn bounded(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_FIELD_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_encoded_words_and_dates() {
        let h = b"From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <j@example.com>\r\n\
To: a@example.com, \"B, C\" <b@example.com>\r\n\
Subject: =?ISO-8859-1?Q?Gr=FC=DFe?=\r\n\
Date: Tue, 3 Mar 2026 10:11:12 +0100\r\n\
Message-ID: <abc@x>\r\n\r\n";
        let s = Summary::parse("1".into(), 10, h, None);
        assert_eq!(s.from, "Jürgen Müller <j@example.com>");
        assert_eq!(s.to, vec!["a@example.com", "B, C <b@example.com>"]);
        assert_eq!(s.subject, "Grüße");
        assert_eq!(s.date, "2026-03-03T10:11:12+01:00");
        assert_eq!(s.message_id, "<abc@x>");
    }

    #[test]
    fn garbage_gives_empty_fields_and_fallback_date() {
        let s = Summary::parse(
            "x".into(),
            3,
            b"\xff\xfe\x00garbage",
            Some("2026-01-01T00:00:00+00:00".into()),
        );
        assert_eq!(s.date, "2026-01-01T00:00:00+00:00");
        assert!(s.message_id.is_empty());
    }
}
