//! Building what goes over the wire: RFC 5322 messages from a send request
//! (RFC 2047 for UTF-8 names and subjects, text / html / alternative,
//! attachments, our own Message-ID and a Date; Bcc only in the envelope),
//! the host's own MIME bytes (CRLF line endings; an envelope from the
//! headers with Bcc removed), and the three kinds of forward.

use lettre::address::Envelope;
use lettre::message::header::{
    ContentDisposition, ContentTransferEncoding, ContentType, HeaderName, HeaderValue, Headers,
};
use lettre::message::{Attachment, Body, Mailbox, Message, MultiPart, SinglePart};
use mail_parser::{MessageParser, MimeHeaders};

use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;

use super::request::{EnvelopeSpec, MessageSpec};

/// A message ready to send.
#[derive(Clone)]
pub struct Composed {
    /// The bytes of the DATA phase, CRLF line endings.
    pub bytes: Vec<u8>,
    pub envelope: Envelope,
    /// `<…>`, or `None` for host MIME without a Message-ID.
    pub message_id: Option<String>,
}

impl std::fmt::Debug for Composed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Composed")
            .field("bytes", &self.bytes.len())
            .field("envelope", &self.envelope)
            .field("message_id", &self.message_id)
            .finish()
    }
}

/// Every line ending as CRLF: a bare LF or a bare CR becomes CRLF, CRLF
/// stays. SMTP needs it (RFC 5321 §2.3.8), and dot-stuffing only works after
/// CRLF.
pub fn to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32 + 2);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if raw.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// A fresh Message-ID in the sender's domain: `<32 hex digits@domain>`.
pub fn new_message_id(domain: &str) -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Unique enough without the random source: time and a counter.
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b[..8].copy_from_slice(&(t as u64).to_le_bytes());
        b[8..].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let domain = if domain.is_empty() || !domain.is_ascii() {
        "mailoauth.invalid"
    } else {
        domain
    };
    format!("<{hex}@{domain}>")
}

fn build_error(e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        Text::new(
            format!("the message could not be built: {e}"),
            format!("die Nachricht konnte nicht erstellt werden: {e}"),
        ),
    )
}

fn envelope(from: &lettre::Address, to: Vec<lettre::Address>) -> Result<Envelope> {
    Envelope::new(Some(from.clone()), to).map_err(|_| {
        Error::new(
            ErrorKind::InvalidConfig,
            Text::new(
                "the message has no recipients",
                "die Nachricht hat keine Empfänger",
            ),
        )
    })
}

/// The body of a message: text, html, both as multipart/alternative, or an
/// empty text.
fn body_part(text: Option<&str>, html: Option<&str>) -> Part {
    match (text, html) {
        (Some(t), Some(h)) => Part::Multi(MultiPart::alternative_plain_html(
            t.to_string(),
            h.to_string(),
        )),
        (None, Some(h)) => Part::Single(SinglePart::html(h.to_string())),
        (t, None) => Part::Single(SinglePart::plain(t.unwrap_or_default().to_string())),
    }
}

enum Part {
    Single(SinglePart),
    Multi(MultiPart),
}

impl Part {
    /// multipart/mixed with this as its first part.
    fn mixed(self) -> MultiPart {
        match self {
            Part::Single(s) => MultiPart::mixed().singlepart(s),
            Part::Multi(m) => MultiPart::mixed().multipart(m),
        }
    }

    fn finish(self, b: lettre::message::MessageBuilder) -> Result<Message> {
        match self {
            Part::Single(s) => b.singlepart(s),
            Part::Multi(m) => b.multipart(m),
        }
        .map_err(build_error)
    }
}

fn content_type(ct: &str) -> Result<ContentType> {
    ContentType::parse(ct).map_err(|_| build_error(format!("'{ct}' is not a MIME type")))
}

/// A message/rfc822 part: the original as it is, 7bit or 8bit, never
/// base64 (RFC 2046 §5.2.1).
fn rfc822_part(original: &[u8], filename: &str) -> Result<SinglePart> {
    let crlf = to_crlf(original);
    let cte = if crlf.is_ascii() {
        ContentTransferEncoding::SevenBit
    } else {
        ContentTransferEncoding::EightBit
    };
    Ok(SinglePart::builder()
        .header(content_type("message/rfc822")?)
        .header(ContentDisposition::attachment(filename))
        .body(Body::dangerous_pre_encoded(crlf, cte)))
}

fn attachment_part(name: &str, ct: &str, data: &[u8]) -> Result<SinglePart> {
    if ct.eq_ignore_ascii_case("message/rfc822") {
        return rfc822_part(data, name);
    }
    // Always base64: a 7bit or quoted-printable body would have its line
    // endings normalised on the way, which changes binary content.
    let body = Body::new_with_encoding(data.to_vec(), ContentTransferEncoding::Base64)
        .map_err(|_| build_error("attachment encoding"))?;
    Ok(Attachment::new(name.to_string()).body(body, content_type(ct)?))
}

/// Serialises a built message with CRLF line endings.
fn finish(msg: Message, message_id: String) -> Composed {
    Composed {
        bytes: to_crlf(&msg.formatted()),
        envelope: msg.envelope().clone(),
        message_id: Some(message_id),
    }
}

/// Builds the message of a `send` request. Bcc goes into the envelope only.
pub fn compose(spec: &MessageSpec) -> Result<Composed> {
    let message_id = new_message_id(spec.from.email.domain());
    let mut b = Message::builder()
        .from(spec.from.clone())
        .subject(spec.subject.clone())
        .message_id(Some(message_id.clone()))
        .date_now();
    if let Some(r) = &spec.reply_to {
        b = b.reply_to(r.clone());
    }
    for m in &spec.to {
        b = b.to(m.clone());
    }
    for m in &spec.cc {
        b = b.cc(m.clone());
    }
    // Bcc is never written: the envelope is given explicitly.
    b = b.envelope(envelope(&spec.from.email, spec.recipients())?);
    let body = body_part(spec.text.as_deref(), spec.html.as_deref());
    let msg = if spec.attachments.is_empty() {
        body.finish(b)?
    } else {
        let mut mixed = body.mixed();
        for a in &spec.attachments {
            mixed = mixed.singlepart(attachment_part(&a.name, &a.content_type, &a.data)?);
        }
        b.multipart(mixed).map_err(build_error)?
    };
    Ok(finish(msg, message_id))
}

fn parse_error() -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        Text::new(
            "the message could not be parsed as RFC 5322",
            "die Nachricht ist kein lesbares RFC-5322-Format",
        ),
    )
}

/// Where the header section ends in CRLF bytes: the index just past the
/// empty line, or the end when there is no body.
fn header_end(crlf: &[u8]) -> usize {
    if crlf.starts_with(b"\r\n") {
        return 2;
    }
    crlf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(crlf.len(), |p| p + 4)
}

/// Removes every Bcc field (with its folded continuation lines) from the
/// header section of CRLF bytes.
pub fn strip_bcc(crlf: &[u8]) -> Vec<u8> {
    let end = header_end(crlf);
    let mut out = Vec::with_capacity(crlf.len());
    let mut skipping = false;
    let mut i = 0;
    while i < end {
        let line_end = crlf[i..end]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(end, |p| i + p + 2);
        let line = &crlf[i..line_end];
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            skipping = line
                .iter()
                .position(|&c| c == b':')
                .is_some_and(|c| line[..c].trim_ascii().eq_ignore_ascii_case(b"bcc"));
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        i = line_end;
    }
    out.extend_from_slice(&crlf[end..]);
    out
}

fn addresses(a: Option<&mail_parser::Address<'_>>, into: &mut Vec<lettre::Address>) -> Result<()> {
    let Some(a) = a else { return Ok(()) };
    for addr in a.iter() {
        let Some(s) = addr.address() else { continue };
        let parsed = s.trim().parse::<lettre::Address>().map_err(|_| {
            let shown: String = s.chars().filter(|c| !c.is_control()).take(96).collect();
            Error::new(
                ErrorKind::InvalidArgument,
                Text::new(
                    format!("the message's headers hold '{shown}', which is not an e-mail address"),
                    format!(
                        "die Kopfzeilen der Nachricht enthalten '{shown}', keine E-Mail-Adresse"
                    ),
                ),
            )
        })?;
        if !into.contains(&parsed) {
            into.push(parsed);
        }
    }
    Ok(())
}

/// The host's own MIME: line endings normalised, the envelope as given or
/// from From/To/Cc/Bcc (then Bcc is removed from the bytes).
pub fn prepare_mime(raw: &[u8], spec: &EnvelopeSpec, max_bytes: u64) -> Result<Composed> {
    if raw.len() as u64 > max_bytes {
        return Err(Error::new(
            ErrorKind::TooLarge,
            Text::new(
                format!("the message is larger than limits.max_message_bytes ({max_bytes} bytes)"),
                format!(
                    "die Nachricht ist größer als limits.max_message_bytes ({max_bytes} Bytes)"
                ),
            ),
        ));
    }
    let crlf = to_crlf(raw);
    let parsed = MessageParser::default().parse_headers(&crlf[..header_end(&crlf)]);
    let message_id = parsed
        .as_ref()
        .and_then(|m| m.message_id())
        .map(|id| format!("<{id}>"));
    match spec {
        EnvelopeSpec::Given { from, to } => Ok(Composed {
            bytes: crlf,
            envelope: envelope(from, to.clone())?,
            message_id,
        }),
        EnvelopeSpec::FromHeaders => {
            let m = parsed.ok_or_else(parse_error)?;
            let mut from = Vec::new();
            addresses(m.from(), &mut from)?;
            let Some(from) = from.into_iter().next() else {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    Text::new(
                        "envelope from_headers: the message has no From address",
                        "envelope from_headers: die Nachricht hat keine From-Adresse",
                    ),
                ));
            };
            let mut to = Vec::new();
            addresses(m.to(), &mut to)?;
            addresses(m.cc(), &mut to)?;
            addresses(m.bcc(), &mut to)?;
            if to.is_empty() {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    Text::new(
                        "envelope from_headers: the message has no To, Cc or Bcc address",
                        "envelope from_headers: die Nachricht hat keine To-, Cc- oder Bcc-Adresse",
                    ),
                ));
            }
            Ok(Composed {
                bytes: strip_bcc(&crlf),
                envelope: envelope(&from, to)?,
                message_id,
            })
        }
    }
}

/// `Fwd: subject`, unless it already says so.
fn fwd_subject(subject: Option<&str>) -> String {
    let s = subject.unwrap_or("").trim();
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("fwd:") || lower.starts_with("fw:") || lower.starts_with("wg:") {
        s.to_string()
    } else {
        format!("Fwd: {s}")
    }
}

/// An address header as text (`Name <a@b>, c@d`).
fn show_addresses(a: Option<&mail_parser::Address<'_>>) -> String {
    a.map(|a| {
        a.iter()
            .map(|x| match (x.name(), x.address()) {
                (Some(n), Some(e)) => format!("{n} <{e}>"),
                (None, Some(e)) => e.to_string(),
                (Some(n), None) => n.to_string(),
                (None, None) => String::new(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_default()
}

/// The original sender as a mailbox for Reply-To, when it parses.
fn original_sender(m: &mail_parser::Message<'_>) -> Option<Mailbox> {
    let a = m.from()?.first()?;
    let email = a.address()?.trim().parse::<lettre::Address>().ok()?;
    let name = a
        .name()
        .map(|n| n.replace(['\r', '\n', '\0'], " "))
        .filter(|n| !n.trim().is_empty());
    Some(Mailbox::new(name, email))
}

/// What every forward shares.
pub struct ForwardSpec<'a> {
    /// The authenticated mailbox: From of the new message (SendAs rules).
    pub from: &'a Mailbox,
    pub to: &'a [Mailbox],
    pub comment: Option<&'a str>,
    pub reply_to_original: bool,
}

fn forward_builder(
    spec: &ForwardSpec<'_>,
    original: &mail_parser::Message<'_>,
    message_id: &str,
) -> Result<lettre::message::MessageBuilder> {
    let mut b = Message::builder()
        .from(spec.from.clone())
        .subject(fwd_subject(original.subject()))
        .message_id(Some(message_id.to_string()))
        .date_now();
    for m in spec.to {
        b = b.to(m.clone());
    }
    if spec.reply_to_original
        && let Some(r) = original_sender(original)
        && r.email != spec.from.email
    {
        b = b.reply_to(r);
    }
    let to: Vec<lettre::Address> = spec.to.iter().map(|m| m.email.clone()).collect();
    Ok(b.envelope(envelope(&spec.from.email, to)?))
}

/// Forward as attachment: a new message from the mailbox with the comment
/// and the original untouched as message/rfc822 (8bit or 7bit).
pub fn forward_attachment(spec: &ForwardSpec<'_>, original: &[u8]) -> Result<Composed> {
    let parsed = MessageParser::default()
        .parse(original)
        .ok_or_else(parse_error)?;
    let message_id = new_message_id(spec.from.email.domain());
    let b = forward_builder(spec, &parsed, &message_id)?;
    let note = SinglePart::plain(spec.comment.unwrap_or("").to_string());
    let mixed = MultiPart::mixed()
        .singlepart(note)
        .singlepart(rfc822_part(original, "forwarded.eml")?);
    let msg = b.multipart(mixed).map_err(build_error)?;
    Ok(finish(msg, message_id))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Forward inline: the comment, the original's headers and body quoted,
/// its attachments kept.
pub fn forward_inline(spec: &ForwardSpec<'_>, original: &[u8]) -> Result<Composed> {
    let m = MessageParser::default()
        .parse(original)
        .ok_or_else(parse_error)?;
    let message_id = new_message_id(spec.from.email.domain());
    let b = forward_builder(spec, &m, &message_id)?;
    let mut head = vec![
        ("From", show_addresses(m.from())),
        ("Date", m.date().map(|d| d.to_rfc822()).unwrap_or_default()),
        ("Subject", m.subject().unwrap_or("").to_string()),
        ("To", show_addresses(m.to())),
    ];
    let cc = show_addresses(m.cc());
    if !cc.is_empty() {
        head.push(("Cc", cc));
    }
    let comment = spec.comment.unwrap_or("");
    let mut text = String::new();
    if !comment.is_empty() {
        text.push_str(comment);
        text.push_str("\n\n");
    }
    text.push_str("---------- Forwarded message ----------\n");
    for (k, v) in &head {
        text.push_str(&format!("{k}: {v}\n"));
    }
    text.push('\n');
    text.push_str(&m.body_text(0).unwrap_or_default());
    let has_html = m
        .html_body
        .first()
        .and_then(|i| m.parts.get(*i as usize))
        .is_some_and(|p| matches!(p.body, mail_parser::PartType::Html(_)));
    let html = has_html.then(|| {
        let mut h = String::new();
        if !comment.is_empty() {
            h.push_str(&format!(
                "<p>{}</p>\n",
                html_escape(comment).replace('\n', "<br>\n")
            ));
        }
        h.push_str("<p>---------- Forwarded message ----------<br>\n");
        for (k, v) in &head {
            h.push_str(&format!("{k}: {}<br>\n", html_escape(v)));
        }
        h.push_str("</p>\n");
        h.push_str(&m.body_html(0).unwrap_or_default());
        h
    });
    let body = body_part(Some(&text), html.as_deref());
    let attachments: Vec<_> = m.attachments().collect();
    let msg = if attachments.is_empty() {
        body.finish(b)?
    } else {
        let mut mixed = body.mixed();
        for (i, a) in attachments.iter().enumerate() {
            let name = a
                .attachment_name()
                .map(|n| n.replace(['\r', '\n', '\0'], " "))
                .unwrap_or_else(|| format!("attachment-{}", i + 1));
            let ct = a
                .content_type()
                .map(|c| match c.subtype() {
                    Some(s) => format!("{}/{}", c.ctype(), s),
                    None => c.ctype().to_string(),
                })
                .filter(|c| ContentType::parse(c).is_ok())
                .unwrap_or_else(|| "application/octet-stream".to_string());
            mixed = mixed.singlepart(attachment_part(&name, &ct, a.contents())?);
        }
        b.multipart(mixed).map_err(build_error)?
    };
    Ok(finish(msg, message_id))
}

/// Redirect: Resent-From/To/Date/Message-ID prepended, the original
/// untouched (Exchange refuses it unless the mailbox may send as the
/// original From).
pub fn redirect(spec: &ForwardSpec<'_>, original: &[u8]) -> Result<Composed> {
    let crlf = to_crlf(original);
    MessageParser::default()
        .parse_headers(&crlf[..header_end(&crlf)])
        .ok_or_else(parse_error)?;
    let message_id = new_message_id(spec.from.email.domain());
    let mut h = Headers::new();
    h.set(lettre::message::header::Date::now());
    let date = h.get_raw("Date").unwrap_or_default().to_string();
    let name = |n: &'static str| HeaderName::new_from_ascii_str(n);
    let mut resent = Headers::new();
    resent.insert_raw(HeaderValue::new(name("Resent-From"), spec.from.to_string()));
    let to: Vec<String> = spec.to.iter().map(ToString::to_string).collect();
    resent.insert_raw(HeaderValue::new(name("Resent-To"), to.join(", ")));
    resent.insert_raw(HeaderValue::new(name("Resent-Date"), date));
    resent.insert_raw(HeaderValue::new(
        name("Resent-Message-ID"),
        message_id.clone(),
    ));
    let mut bytes = resent.to_string().into_bytes();
    bytes.extend_from_slice(&crlf);
    let to: Vec<lettre::Address> = spec.to.iter().map(|m| m.email.clone()).collect();
    Ok(Composed {
        bytes,
        envelope: envelope(&spec.from.email, to)?,
        message_id: Some(message_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::request::Attachment as Att;
    use mail_parser::MessageParser;
    use proptest::prelude::*;

    fn mb(s: &str) -> Mailbox {
        s.parse().unwrap()
    }

    fn spec() -> MessageSpec {
        MessageSpec {
            from: mb("Jörg Äpfel <alice@contoso.test>"),
            to: vec![mb("Bärbel Groß <bob@contoso.test>")],
            cc: vec![mb("carol@contoso.test")],
            bcc: vec![mb("hidden@contoso.test")],
            reply_to: Some(mb("replies@contoso.test")),
            subject: "Grüße aus Köln – Übersicht".into(),
            text: Some("Hallo Bärbel,\nschöne Grüße.\n.\nEnde".into()),
            html: Some("<p>Hallo <b>Bärbel</b></p>".into()),
            attachments: vec![Att {
                name: "Bericht März.bin".into(),
                content_type: "application/octet-stream".into(),
                data: (0..=255u8).collect(),
            }],
        }
    }

    #[test]
    fn crlf_examples() {
        assert_eq!(to_crlf(b"a\nb\r\nc\rd\r"), b"a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(to_crlf(b""), b"");
        assert_eq!(to_crlf(b"\r\r\n\n"), b"\r\n\r\n\r\n");
    }

    proptest! {
        #[test]
        fn crlf_normalisation(raw in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'a'), any::<u8>()], 0..300)) {
            let out = to_crlf(&raw);
            // Every CR is followed by LF and every LF preceded by CR.
            for (i, &b) in out.iter().enumerate() {
                if b == b'\r' { prop_assert_eq!(out.get(i + 1), Some(&b'\n')); }
                if b == b'\n' { prop_assert!(i > 0 && out[i - 1] == b'\r'); }
            }
            // Idempotent, and nothing but line endings changes.
            prop_assert_eq!(to_crlf(&out), out.clone());
            let strip = |v: &[u8]| v.iter().copied().filter(|b| *b != b'\r' && *b != b'\n').collect::<Vec<_>>();
            prop_assert_eq!(strip(&out), strip(&raw));
            // As many line breaks as CRLF pairs, bare CRs and bare LFs.
            let breaks = {
                let mut n = 0; let mut i = 0;
                while i < raw.len() {
                    if raw[i] == b'\r' { n += 1; if raw.get(i + 1) == Some(&b'\n') { i += 1; } }
                    else if raw[i] == b'\n' { n += 1; }
                    i += 1;
                }
                n
            };
            prop_assert_eq!(out.iter().filter(|b| **b == b'\n').count(), breaks);
        }
    }

    #[test]
    fn composed_message_reads_back() {
        let c = compose(&spec()).unwrap();
        let text = String::from_utf8_lossy(&c.bytes).to_string();
        // RFC 2047 in the headers: no raw 8-bit header bytes.
        let head = &c.bytes[..header_end(&c.bytes)];
        assert!(head.is_ascii(), "{text}");
        assert!(!text.to_ascii_lowercase().contains("\r\nbcc:"), "{text}");
        assert!(!text.contains("hidden@contoso.test"));
        let m = MessageParser::default().parse(&c.bytes).unwrap();
        assert_eq!(m.subject(), Some("Grüße aus Köln – Übersicht"));
        let from = m.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("Jörg Äpfel"));
        assert_eq!(m.to().unwrap().first().unwrap().name(), Some("Bärbel Groß"));
        assert_eq!(
            m.cc().unwrap().first().unwrap().address(),
            Some("carol@contoso.test")
        );
        assert_eq!(
            m.reply_to().unwrap().first().unwrap().address(),
            Some("replies@contoso.test")
        );
        assert!(m.bcc().is_none());
        assert!(m.date().is_some());
        assert_eq!(
            format!("<{}>", m.message_id().unwrap()),
            c.message_id.clone().unwrap()
        );
        assert!(c.message_id.unwrap().ends_with("@contoso.test>"));
        assert_eq!(
            m.body_text(0).unwrap().replace("\r\n", "\n"),
            "Hallo Bärbel,\nschöne Grüße.\n.\nEnde"
        );
        assert!(m.body_html(0).unwrap().contains("<b>Bärbel</b>"));
        let att = m.attachments().next().unwrap();
        assert_eq!(att.attachment_name(), Some("Bericht März.bin"));
        assert_eq!(att.contents(), (0..=255u8).collect::<Vec<_>>().as_slice());
        // The envelope has every recipient, Bcc included, once.
        let rcpt: Vec<String> = c.envelope.to().iter().map(ToString::to_string).collect();
        assert_eq!(
            rcpt,
            [
                "bob@contoso.test",
                "carol@contoso.test",
                "hidden@contoso.test"
            ]
        );
        assert_eq!(c.envelope.from().unwrap().to_string(), "alice@contoso.test");
        // No bare line endings anywhere.
        assert_eq!(to_crlf(&c.bytes), c.bytes);
    }

    #[test]
    fn text_only_and_html_only() {
        let mut s = spec();
        s.html = None;
        s.attachments.clear();
        let c = compose(&s).unwrap();
        let m = MessageParser::default().parse(&c.bytes).unwrap();
        assert_eq!(m.content_type().unwrap().ctype(), "text");
        assert_eq!(m.content_type().unwrap().subtype(), Some("plain"));
        s.text = None;
        s.html = Some("<p>x</p>".into());
        let c = compose(&s).unwrap();
        let m = MessageParser::default().parse(&c.bytes).unwrap();
        assert_eq!(m.content_type().unwrap().subtype(), Some("html"));
        let mut s = spec();
        s.attachments.clear();
        let c = compose(&s).unwrap();
        let m = MessageParser::default().parse(&c.bytes).unwrap();
        assert_eq!(m.content_type().unwrap().subtype(), Some("alternative"));
    }

    #[test]
    fn bcc_stripping_handles_folding_and_case() {
        let raw = b"From: a@b.c\r\nBCC: x@y.z,\r\n  w@y.z\r\nTo: t@y.z\r\nbcc : v@y.z\r\nSubject: s\r\n\r\nBcc: stays in the body\r\n";
        let out = strip_bcc(raw);
        assert_eq!(
            out,
            b"From: a@b.c\r\nTo: t@y.z\r\nSubject: s\r\n\r\nBcc: stays in the body\r\n".to_vec()
        );
    }

    #[test]
    fn mime_envelope_from_headers() {
        let raw = b"From: Alice <alice@contoso.test>\nTo: bob@contoso.test\nCc: Team: carol@contoso.test, dave@contoso.test;\nBcc: hidden@contoso.test\nMessage-ID: <m1@contoso.test>\nSubject: x\n\nbody\n";
        let c = prepare_mime(raw, &EnvelopeSpec::FromHeaders, 1 << 20).unwrap();
        let rcpt: Vec<String> = c.envelope.to().iter().map(ToString::to_string).collect();
        assert_eq!(
            rcpt,
            [
                "bob@contoso.test",
                "carol@contoso.test",
                "dave@contoso.test",
                "hidden@contoso.test"
            ]
        );
        assert_eq!(c.envelope.from().unwrap().to_string(), "alice@contoso.test");
        assert!(!String::from_utf8_lossy(&c.bytes).contains("hidden"));
        assert_eq!(c.message_id.as_deref(), Some("<m1@contoso.test>"));
        assert!(c.bytes.ends_with(b"\r\n\r\nbody\r\n"));
        // Given envelope: the bytes stay (CRLF only), Bcc included.
        let given = EnvelopeSpec::Given {
            from: "alice@contoso.test".parse().unwrap(),
            to: vec!["bob@contoso.test".parse().unwrap()],
        };
        let c = prepare_mime(raw, &given, 1 << 20).unwrap();
        assert_eq!(c.bytes, to_crlf(raw));
        let e =
            prepare_mime(b"Subject: x\r\n\r\nb", &EnvelopeSpec::FromHeaders, 1 << 20).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        let e =
            prepare_mime(b"From: a@b.c\r\n\r\nb", &EnvelopeSpec::FromHeaders, 1 << 20).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        let e = prepare_mime(&[b'x'; 2000], &given, 1024).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge);
    }

    const ORIGINAL: &[u8] = b"From: =?utf-8?q?J=C3=BCrgen?= <juergen@fabrikam.test>\r\nTo: alice@contoso.test\r\nSubject: =?utf-8?q?Angebot_f=C3=BCr_M=C3=A4rz?=\r\nDate: Mon, 2 Mar 2026 10:00:00 +0100\r\nMessage-ID: <orig@fabrikam.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nDas Angebot f\xc3\xbcr M\xc3\xa4rz.\r\n--b1\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n";

    fn fwd<'a>(from: &'a Mailbox, to: &'a [Mailbox]) -> ForwardSpec<'a> {
        ForwardSpec {
            from,
            to,
            comment: Some("Bitte prüfen."),
            reply_to_original: true,
        }
    }

    #[test]
    fn forward_as_attachment_keeps_the_original_in_8bit() {
        let from = mb("alice@contoso.test");
        let to = [mb("bob@contoso.test")];
        let c = forward_attachment(&fwd(&from, &to), ORIGINAL).unwrap();
        let text = String::from_utf8_lossy(&c.bytes).to_string();
        assert!(text.contains("Content-Type: message/rfc822"), "{text}");
        assert!(text.contains("Content-Transfer-Encoding: 8bit"), "{text}");
        // The original travels byte for byte.
        assert!(c.bytes.windows(ORIGINAL.len()).any(|w| w == ORIGINAL));
        let m = MessageParser::default().parse(&c.bytes).unwrap();
        assert_eq!(m.subject(), Some("Fwd: Angebot für März"));
        assert_eq!(
            m.from().unwrap().first().unwrap().address(),
            Some("alice@contoso.test")
        );
        assert_eq!(
            m.reply_to().unwrap().first().unwrap().address(),
            Some("juergen@fabrikam.test")
        );
        assert_eq!(m.body_text(0).unwrap(), "Bitte prüfen.");
        let nested = m.attachments().find_map(|a| a.message()).unwrap();
        assert_eq!(nested.message_id(), Some("orig@fabrikam.test"));
        assert_eq!(c.envelope.to().len(), 1);
        // An ASCII original is 7bit.
        let ascii = b"From: a@b.c\r\nSubject: s\r\n\r\nplain\r\n";
        let c = forward_attachment(&fwd(&from, &to), ascii).unwrap();
        assert!(String::from_utf8_lossy(&c.bytes).contains("Content-Transfer-Encoding: 7bit"));
    }

    #[test]
    fn forward_inline_quotes_and_keeps_attachments() {
        let from = mb("alice@contoso.test");
        let to = [mb("bob@contoso.test")];
        let c = forward_inline(&fwd(&from, &to), ORIGINAL).unwrap();
        let m = MessageParser::default().parse(&c.bytes).unwrap();
        let body = m.body_text(0).unwrap().replace("\r\n", "\n");
        assert!(
            body.starts_with("Bitte prüfen.\n\n---------- Forwarded message ----------\n"),
            "{body}"
        );
        assert!(
            body.contains("From: Jürgen <juergen@fabrikam.test>"),
            "{body}"
        );
        assert!(body.contains("Subject: Angebot für März"), "{body}");
        assert!(body.contains("Das Angebot für März."), "{body}");
        let att = m.attachments().next().unwrap();
        assert_eq!(att.attachment_name(), Some("a.pdf"));
        assert_eq!(att.contents(), b"%PDF-1.4\n");
    }

    #[test]
    fn redirect_prepends_resent_headers() {
        let from = mb("alice@contoso.test");
        let to = [mb("bob@contoso.test"), mb("carol@contoso.test")];
        let c = redirect(&fwd(&from, &to), ORIGINAL).unwrap();
        assert!(c.bytes.starts_with(b"Resent-From: alice@contoso.test\r\nResent-To: bob@contoso.test, carol@contoso.test\r\nResent-Date: "));
        assert!(c.bytes.ends_with(ORIGINAL));
        let m = MessageParser::default().parse(&c.bytes).unwrap();
        assert_eq!(m.message_id(), Some("orig@fabrikam.test"));
        assert_eq!(c.envelope.to().len(), 2);
        assert_eq!(c.envelope.from().unwrap().to_string(), "alice@contoso.test");
    }
}
