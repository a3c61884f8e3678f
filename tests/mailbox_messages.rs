//! Odd messages through the ABI's mailbox against Dovecot, over IMAP and
//! POP3: 8-bit headers (raw UTF-8 and Latin-1), broken MIME (an
//! unterminated multipart, bad base64, a multipart without a boundary, a
//! boundary that never appears), no Message-ID, NUL bytes, bare LF, lines
//! starting with a dot, and a message large enough for `fetch_to_file` to
//! stream it. Poll summaries never fail; bytes fetched (and written by
//! `fetch_to_file`) are the bytes seeded as the server hands them out.

mod mailbox_support;
mod support;

use std::collections::BTreeSet;

use mailbox_support::open::{context, request};
use mailbox_support::{imap_normalised, pop3_normalised, stack, unique_user};
use mailoauth::error::ErrorKind;
use mailoauth::mailbox::handle::{Mailbox, STREAM_ABOVE};
use serde_json::json;

/// Extra messages written straight into the maildir.
fn odd_messages() -> Vec<(&'static str, Vec<u8>)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = vec![
        (
            "missing-boundary",
            b"From: a@fabrikam.test\r\nSubject: multipart without a boundary\r\n\
Message-ID: <odd.noboundary@fabrikam.test>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nbody\r\n--x--\r\n"
                .to_vec(),
        ),
        (
            "bad-base64",
            b"From: a@fabrikam.test\r\nSubject: bad base64\r\n\
Message-ID: <odd.badb64@fabrikam.test>\r\nMIME-Version: 1.0\r\n\
Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n\
@@@ this is not base64 !!! ====\r\nQUJD*&^%\r\n"
                .to_vec(),
        ),
        (
            "unterminated-multipart",
            b"From: a@fabrikam.test\r\nSubject: unterminated multipart\r\n\
Message-ID: <odd.unterminated@fabrikam.test>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\n\
Content-Type: text/plain\r\n\r\nfirst part\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>never closed"
                .to_vec(),
        ),
    ];
    // Raw Latin-1 in From and Subject, no Message-ID.
    let mut latin1 = b"From: ".to_vec();
    latin1.extend_from_slice(
        b"J\xfcrgen M\xfcller <jm@fabrikam.test>\r\nSubject: Gr\xfc\xdfe ohne ID\r\n",
    );
    latin1
        .extend_from_slice(b"Content-Type: text/plain; charset=ISO-8859-1\r\n\r\nGr\xf6\xdfe.\r\n");
    out.push(("latin1-no-id", latin1));
    // Larger than STREAM_ABOVE, with lines that start with a dot (POP3
    // dot-stuffing while streaming) and a line that is only a dot.
    let mut big =
        b"From: a@fabrikam.test\r\nSubject: dots\r\nMessage-ID: <odd.dots@fabrikam.test>\r\n\r\n"
            .to_vec();
    let mut i = 0u32;
    while (big.len() as u64) < STREAM_ABOVE + 300_000 {
        let line = match i % 5 {
            0 => format!(".leading dot {i}\r\n"),
            1 => format!("..two dots {i}\r\n"),
            2 => ".\r\n".to_string(),
            3 => format!("plain line {i} with some text to make it longer than short\r\n"),
            _ => format!(". {i}\r\n"),
        };
        big.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out.push(("dots", big));
    out
}

fn odd_messages_over(proto: &str) {
    let Some(stack) = stack() else { return };
    let dir = tempfile::tempdir().unwrap();
    let user = unique_user(&format!("mbm-{proto}"));
    stack.seed(&user, &["--count", "2", "--tricky"]);
    for (name, data) in odd_messages() {
        stack.put_message(&user, None, name, &data);
    }
    let stored = stack.stored_messages(&user, None);
    let expected: BTreeSet<Vec<u8>> = stored
        .iter()
        .map(|m| {
            if proto == "imap" {
                imap_normalised(m)
            } else {
                pop3_normalised(m)
            }
        })
        .collect();
    let ctx = context(&stack, dir.path(), &user, json!({}));
    let mb = Mailbox::open(&ctx, &request(&stack, &user, proto, "tls", json!({}))).unwrap();
    let list = mb.poll(100).unwrap();
    assert_eq!(list.len(), stored.len(), "{list:?}");
    let by_subject = |s: &str| {
        list.iter()
            .find(|x| x.subject == s)
            .unwrap_or_else(|| panic!("no summary with subject {s:?}: {list:#?}"))
    };
    assert_eq!(
        by_subject("Grüße aus Köln – raw UTF-8 in the header").from,
        "Jürgen Müller <juergen@fabrikam.test>"
    );
    assert!(by_subject("No Message-ID here").message_id.is_empty());
    for s in [
        "multipart without a boundary",
        "bad base64",
        "unterminated multipart",
        "Broken MIME boundary",
    ] {
        assert!(!by_subject(s).message_id.is_empty(), "{s}");
    }
    // The raw Latin-1 header is not UTF-8: still a summary, no Message-ID.
    let latin1 = list
        .iter()
        .find(|x| x.from.contains("jm@fabrikam.test"))
        .expect("the Latin-1 message");
    assert!(latin1.message_id.is_empty());
    assert!(!latin1.subject.is_empty());
    let dots = by_subject("dots");
    assert!(dots.size > STREAM_ABOVE, "{}", dots.size);

    let mut fetched = BTreeSet::new();
    for (n, s) in list.iter().enumerate() {
        // fetch_to_file first (streamed for the large one), then fetch.
        let path = dir.path().join(format!("{n}.eml"));
        mb.fetch_to_file(&s.id, &path).unwrap();
        let b = mb.fetch(&s.id).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b, "{}", s.subject);
        fetched.insert(b);
    }
    assert_eq!(fetched, expected);

    // A failed fetch_to_file leaves the target as it was and no
    // temporary file behind.
    let target = dir.path().join("keep.eml");
    std::fs::write(&target, b"old").unwrap();
    let unknown = if proto == "imap" {
        format!("{}:999999", list[0].id.split(':').next().unwrap())
    } else {
        "no-such-uidl".to_string()
    };
    assert_eq!(
        mb.fetch_to_file(&unknown, &target).unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"old");
    assert_eq!(
        mb.fetch_to_file(&dots.id, &dir.path().join("missing/dir/x.eml"))
            .unwrap_err()
            .kind,
        ErrorKind::InvalidArgument
    );
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".mailoauth-fetch-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    for s in &list {
        mb.ack(&s.id, "keep").unwrap();
    }
    assert!(mb.poll(100).unwrap().is_empty());
    mb.close();
}

#[test]
fn odd_messages_over_imap() {
    odd_messages_over("imap");
}

#[test]
fn odd_messages_over_pop3() {
    odd_messages_over("pop3");
}
