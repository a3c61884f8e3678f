//! The POP3 session against scripted server replies.

use std::io::{self, Cursor, Read, Write};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::*;

/// A server that answers from a fixed script and records what it was sent.
struct Script {
    input: Cursor<Vec<u8>>,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Script {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sent.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const GREETING: &str =
    "+OK ready\r\n+OK\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nSASL XOAUTH2\r\n.\r\n";

fn session(replies: &str) -> (Result<Session<Script>>, Arc<Mutex<Vec<u8>>>) {
    session_bytes(replies.as_bytes().to_vec(), Options::default())
}

fn session_bytes(
    replies: Vec<u8>,
    opts: Options,
) -> (Result<Session<Script>>, Arc<Mutex<Vec<u8>>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let s = Script {
        input: Cursor::new(replies),
        sent: sent.clone(),
    };
    (Session::start(s, "pop.test", Interrupt::new(), opts), sent)
}

fn sent(s: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&s.lock().unwrap()).into_owned()
}

fn token() -> Secret {
    Secret::new("tok-123")
}

#[test]
fn two_step_xoauth2_login() {
    let (s, out) = session(&format!("{GREETING}+ \r\n+OK Logged in.\r\n"));
    let mut s = s.unwrap();
    assert!(s.capabilities().has("PIPELINING"));
    s.authenticate("u@x", &token(), 995).unwrap();
    let sent = sent(&out);
    let expected = Mechanism::XOAuth2.payload_b64("u@x", &token(), "pop.test", 995);
    assert_eq!(
        sent,
        format!("CAPA\r\nAUTH XOAUTH2\r\n{}\r\n", expected.as_str())
    );
}

#[test]
fn error_challenge_is_answered_empty_and_auth_err_is_rejected() {
    let (s, out) = session(&format!(
        "{GREETING}+ \r\n+ eyJzdGF0dXMiOiI0MDEifQ==\r\n-ERR [AUTH] Authentication failed.\r\n"
    ));
    let mut s = s.unwrap();
    let e = s.authenticate("u@x", &token(), 995).unwrap_err();
    assert_eq!(e.kind, ErrorKind::AuthRejected);
    assert_eq!(
        e.server_reply.as_deref(),
        Some("[AUTH] Authentication failed.")
    );
    let hint = e.hint.clone().unwrap();
    assert!(hint.en.contains("Set-CASMailbox"));
    assert!(hint.de.contains("Postfach"));
    assert!(sent(&out).ends_with("\r\n\r\n"), "empty answer line sent");
    assert!(!format!("{e:?}").contains("tok-123"));
}

#[test]
fn sys_temp_is_transient() {
    let (s, _) = session(&format!(
        "{GREETING}+ \r\n-ERR [SYS/TEMP] Temporary authentication failure.\r\n"
    ));
    let e = s.unwrap().authenticate("u@x", &token(), 995).unwrap_err();
    assert!(e.transient);
    assert_ne!(e.kind, ErrorKind::AuthRejected);
}

#[test]
fn dropped_connection_during_auth_hints_at_token_size() {
    let (s, _) = session(&format!("{GREETING}+ \r\n"));
    let e = s.unwrap().authenticate("u@x", &token(), 995).unwrap_err();
    assert_eq!(e.kind, ErrorKind::AuthRejected);
    assert!(e.hint.as_ref().unwrap().en.contains("8192"));
}

#[test]
fn oauthbearer_when_only_that_is_offered() {
    let g = "+OK\r\n+OK\r\nSASL OAUTHBEARER\r\n.\r\n+ \r\n+ eyJ9\r\n-ERR no\r\n";
    let (s, out) = session(g);
    let e = s.unwrap().authenticate("u@x", &token(), 995).unwrap_err();
    assert_eq!(e.kind, ErrorKind::AuthRejected);
    let sent = sent(&out);
    assert!(sent.contains("AUTH OAUTHBEARER\r\n"));
    assert!(sent.ends_with("AQ==\r\n"));
}

#[test]
fn no_oauth_mechanism_is_a_protocol_error() {
    let (s, _) = session("+OK\r\n+OK\r\nSASL PLAIN LOGIN\r\n.\r\n");
    let e = s.unwrap().authenticate("u@x", &token(), 995).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol);
}

#[test]
fn bad_greeting_and_garbage_replies() {
    let (s, _) = session("-ERR go away\r\n");
    assert_eq!(s.err().unwrap().kind, ErrorKind::Protocol);
    let (s, _) = session("HELLO\r\n");
    assert_eq!(s.err().unwrap().kind, ErrorKind::Protocol);
    let (s, _) = session("");
    assert_eq!(s.err().unwrap().kind, ErrorKind::Network);
    let (s, _) = session_bytes(
        [b"+OK ".to_vec(), vec![b'x'; 100_000]].concat(),
        Options::default(),
    );
    let e = s.err().unwrap();
    assert_eq!(e.kind, ErrorKind::Protocol);
    assert!(e.message.en.contains("longer than"));
}

#[test]
fn capa_refused_means_no_capabilities() {
    let (s, _) = session("+OK\r\n-ERR unknown command\r\n");
    let s = s.unwrap();
    assert_eq!(s.capabilities(), &Capabilities::default());
}

#[test]
fn entries_join_uidl_and_list() {
    let (s, out) = session(&format!(
        "{GREETING}+OK\r\n1 aaa\r\n3 ccc\r\n2 bbb\r\n.\r\n+OK 3 messages\r\n1 10\r\n2 20\r\n.\r\n"
    ));
    let mut s = s.unwrap();
    let e = s.entries().unwrap();
    assert_eq!(
        e,
        vec![
            Entry {
                msg: 1,
                uid: "aaa".into(),
                size: 10
            },
            Entry {
                msg: 2,
                uid: "bbb".into(),
                size: 20
            },
        ]
    );
    assert!(sent(&out).ends_with("UIDL\r\nLIST\r\n"));
}

#[test]
fn malformed_listing_breaks_the_session() {
    let (s, _) = session(&format!("{GREETING}+OK\r\n1 \x01bad\r\n.\r\n"));
    let mut s = s.unwrap();
    let e = s.uidl().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol);
    assert!(s.is_broken());
    assert!(s.noop().is_err());
}

#[test]
fn pipelined_retr_sends_commands_ahead_and_unstuffs() {
    let mut replies = GREETING.to_string();
    for i in 1..=5 {
        replies.push_str("+OK\r\n");
        replies.push_str(
            &String::from_utf8(wire::stuff(
                format!("Subject: {i}\r\n\r\n.dot\r\n").as_bytes(),
            ))
            .unwrap(),
        );
    }
    let (s, out) = session_bytes(
        replies.into_bytes(),
        Options {
            pipeline_window: 4,
            ..Options::default()
        },
    );
    let mut s = s.unwrap();
    let mut got = Vec::new();
    let msgs: Vec<(u32, u64)> = (1..=5).map(|i| (i, 20)).collect();
    s.retr_many(&msgs, |m, r| {
        got.push((m, r.unwrap()));
        Ok(())
    })
    .unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(got[2].1, b"Subject: 3\r\n\r\n.dot\r\n");
    // The first write held four commands.
    let sent = sent(&out);
    assert!(sent.contains("RETR 1\r\nRETR 2\r\nRETR 3\r\nRETR 4\r\n"));
}

#[test]
fn without_pipelining_one_command_at_a_time() {
    let replies = "+OK\r\n-ERR\r\n+OK\r\na\r\n.\r\n-ERR no such message\r\n";
    let (s, _) = session(replies);
    let mut s = s.unwrap();
    let mut got = Vec::new();
    s.retr_many(&[(1, 3), (2, 3)], |m, r| {
        got.push((m, r.map_err(|e| e.kind)));
        Ok(())
    })
    .unwrap();
    assert_eq!(got[0], (1, Ok(b"a\r\n".to_vec())));
    assert_eq!(got[1], (2, Err(ErrorKind::NotFound)));
    assert!(!s.is_broken());
}

#[test]
fn too_large_before_and_while_reading() {
    let opts = Options {
        max_message_bytes: 10,
        pipeline_window: 1,
    };
    // Listed too large: never requested.
    let (s, out) = session_bytes(b"+OK\r\n-ERR\r\n".to_vec(), opts.clone());
    let e = s.unwrap().retr(1, 11).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    assert!(!sent(&out).contains("RETR"));
    // Listed small, sent large: skipped, session still in step.
    let (s, _) = session_bytes(
        b"+OK\r\n-ERR\r\n+OK\r\n0123456789abc\r\n.\r\n+OK bye\r\n".to_vec(),
        opts.clone(),
    );
    let mut s = s.unwrap();
    assert_eq!(s.retr(1, 5).unwrap_err().kind, ErrorKind::TooLarge);
    s.quit().unwrap();
    // Far too large: the session is given up.
    let (s, _) = session_bytes(
        [
            b"+OK\r\n-ERR\r\n+OK\r\n".to_vec(),
            vec![b'x'; 100],
            b"\r\n.\r\n".to_vec(),
        ]
        .concat(),
        opts,
    );
    let mut s = s.unwrap();
    assert_eq!(s.retr(1, 5).unwrap_err().kind, ErrorKind::TooLarge);
    assert!(s.is_broken());
}

#[test]
fn headers_are_cut_not_refused() {
    let opts = Options {
        max_message_bytes: 8,
        pipeline_window: 1,
    };
    let (s, out) = session_bytes(
        b"+OK\r\n-ERR\r\n+OK\r\nSubject: long\r\n\r\n.\r\n".to_vec(),
        opts,
    );
    let mut s = s.unwrap();
    let mut got = Vec::new();
    s.headers(&[7], |_, r| {
        got.push(r.unwrap());
        Ok(())
    })
    .unwrap();
    assert_eq!(got, vec![b"Subject:".to_vec()]);
    assert!(sent(&out).ends_with("TOP 7 0\r\n"));
}

#[test]
fn dele_and_quit() {
    let (s, out) = session("+OK\r\n-ERR\r\n+OK deleted\r\n-ERR no such message\r\n+OK bye\r\n");
    let mut s = s.unwrap();
    s.dele(1).unwrap();
    assert_eq!(s.dele(9).unwrap_err().kind, ErrorKind::NotFound);
    s.quit().unwrap();
    assert!(sent(&out).ends_with("DELE 1\r\nDELE 9\r\nQUIT\r\n"));
}

#[test]
fn cancelled_session_refuses_calls() {
    let (s, _) = session("+OK\r\n-ERR\r\n");
    let mut s = s.unwrap();
    s.interrupt.fire();
    assert_eq!(s.noop().unwrap_err().kind, ErrorKind::Cancelled);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the server sends, the session returns errors, never panics.
    #[test]
    fn arbitrary_server_bytes_never_panic(
        data in proptest::collection::vec(
            prop_oneof![
                Just(b"+OK\r\n".to_vec()), Just(b"-ERR x\r\n".to_vec()), Just(b"+ \r\n".to_vec()),
                Just(b".\r\n".to_vec()), Just(b"1 abc\r\n".to_vec()), Just(b"SASL XOAUTH2\r\n".to_vec()),
                Just(b"PIPELINING\r\n".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..40),
            ], 0..40),
    ) {
        let bytes: Vec<u8> = data.concat();
        let (s, _) = session_bytes(bytes, Options { max_message_bytes: 64, pipeline_window: 3 });
        if let Ok(mut s) = s {
            let _ = s.authenticate("u@x", &token(), 995);
            let _ = s.entries();
            let _ = s.retr_many(&[(1, 10), (2, 100), (3, 1)], |_, _| Ok(()));
            let _ = s.headers(&[1, 2], |_, _| Ok(()));
            let _ = s.dele(1);
            let _ = s.quit();
        }
    }
}
