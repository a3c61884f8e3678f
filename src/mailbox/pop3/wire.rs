//! The POP3 wire format, treating every byte from the server as hostile:
//! a buffered reader with bounded lines, multi-line bodies with RFC 1939
//! dot-unstuffing and a size limit checked before anything grows past it,
//! and the status-line parser. Nothing here panics on any input.

use std::io::{self, Read};

/// The longest status or listing line accepted (RFC 1939 allows 512 octets;
/// servers add long greetings and capability lists).
pub const MAX_LINE: usize = 8192;
/// The read buffer (64 KiB: large reads keep TLS and syscalls few).
pub const BUFFER: usize = 64 * 1024;

/// What went wrong on the wire.
#[derive(Debug)]
pub enum WireError {
    Io(io::Error),
    /// The server closed the connection.
    Eof,
    /// A line longer than the limit.
    LineTooLong(usize),
    /// A multi-line body past its limit, and the rest could not be skipped
    /// (the connection is out of step).
    TooLarge,
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        WireError::Io(e)
    }
}

/// How a multi-line body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// All of it is in the output.
    Complete,
    /// It exceeded the limit: the output holds the first `limit` bytes, the
    /// rest was read and discarded (the connection is still in step).
    Truncated,
}

/// A buffered reader over the connection.
pub struct Reader<S> {
    inner: S,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl<S: Read> Reader<S> {
    pub fn new(inner: S) -> Self {
        Self::with_capacity(inner, BUFFER)
    }

    /// A reader with a given buffer size (small sizes exercise boundaries in
    /// tests); never below what one bounded line needs.
    pub fn with_capacity(inner: S, cap: usize) -> Self {
        Self {
            inner,
            buf: vec![0; cap.max(MAX_LINE + 2)],
            pos: 0,
            end: 0,
        }
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Bytes read from the server but not consumed yet.
    pub fn buffered(&self) -> usize {
        self.end - self.pos
    }

    /// The stream, when nothing is buffered (STLS: bytes sent before the
    /// handshake must not be taken for protected ones).
    pub fn into_inner(self) -> Result<S, Self> {
        if self.buffered() == 0 {
            Ok(self.inner)
        } else {
            Err(self)
        }
    }

    /// Reads more bytes into the buffer; false at end of stream.
    fn fill(&mut self) -> Result<bool, WireError> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            return Err(WireError::LineTooLong(self.buf.len()));
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WireError::Io(e)),
            }
        }
    }

    /// One line without its CRLF (or bare LF), at most `max` bytes.
    pub fn read_line(&mut self, max: usize) -> Result<Vec<u8>, WireError> {
        let max = max.min(self.buf.len().saturating_sub(2));
        let mut searched = 0;
        loop {
            let avail = &self.buf[self.pos..self.end];
            if let Some(i) = avail[searched..].iter().position(|b| *b == b'\n') {
                let i = searched + i;
                let mut line = &avail[..i];
                if let Some(l) = line.strip_suffix(b"\r") {
                    line = l;
                }
                if line.len() > max {
                    return Err(WireError::LineTooLong(max));
                }
                let line = line.to_vec();
                self.pos += i + 1;
                return Ok(line);
            }
            searched = avail.len();
            if avail.len() > max + 1 {
                return Err(WireError::LineTooLong(max));
            }
            if !self.fill()? {
                return Err(WireError::Eof);
            }
        }
    }

    /// A multi-line body up to its terminating `.` line, un-stuffed
    /// (RFC 1939 §3: a line starting with `.` loses that octet), appended
    /// to `out`. Past `limit` bytes the rest is read and dropped, up to
    /// `drain` more; a body longer than that is `TooLarge` (out of step).
    pub fn read_body(
        &mut self,
        out: &mut Vec<u8>,
        limit: u64,
        drain: u64,
    ) -> Result<BodyEnd, WireError> {
        self.read_body_with(
            &mut |chunk| {
                out.extend_from_slice(chunk);
                Ok(())
            },
            limit,
            drain,
        )
    }

    /// [`Reader::read_body`] written to `out` piece by piece as it arrives
    /// (nothing but the read buffer in memory). A failed write is an `Io`
    /// error (the writer knows what it was).
    pub fn read_body_to(
        &mut self,
        out: &mut dyn io::Write,
        limit: u64,
        drain: u64,
    ) -> Result<BodyEnd, WireError> {
        self.read_body_with(&mut |chunk| out.write_all(chunk), limit, drain)
    }

    fn read_body_with(
        &mut self,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
        limit: u64,
        drain: u64,
    ) -> Result<BodyEnd, WireError> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let drain = usize::try_from(drain).unwrap_or(usize::MAX);
        let mut kept: usize = 0;
        let mut discarded: usize = 0;
        let mut at_line_start = true;
        loop {
            if self.pos == self.end && !self.fill()? {
                return Err(WireError::Eof);
            }
            if at_line_start && self.buf[self.pos] == b'.' {
                // Need up to three bytes to tell ".\r\n" from a stuffed line.
                let avail = &self.buf[self.pos..self.end];
                let terminator = match avail.get(1) {
                    None => None,
                    Some(b'\n') => Some(2),
                    Some(b'\r') => match avail.get(2) {
                        None => None,
                        Some(b'\n') => Some(3),
                        Some(_) => Some(0),
                    },
                    Some(_) => Some(0),
                };
                match terminator {
                    None => {
                        if !self.fill()? {
                            return Err(WireError::Eof);
                        }
                        continue;
                    }
                    Some(0) => {
                        // Stuffed: drop the dot, keep the rest of the line.
                        self.pos += 1;
                        at_line_start = false;
                        continue;
                    }
                    Some(n) => {
                        self.pos += n;
                        return Ok(if discarded > 0 {
                            BodyEnd::Truncated
                        } else {
                            BodyEnd::Complete
                        });
                    }
                }
            }
            let avail = &self.buf[self.pos..self.end];
            let (take, ends_line) = match avail.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            let chunk = &avail[..take];
            let room = limit.saturating_sub(kept);
            if chunk.len() <= room {
                sink(chunk)?;
                kept += chunk.len();
            } else {
                sink(&chunk[..room])?;
                kept += room;
                discarded = discarded.saturating_add(chunk.len() - room);
                if discarded > drain {
                    return Err(WireError::TooLarge);
                }
            }
            self.pos += take;
            at_line_start = ends_line;
        }
    }
}

/// RFC 1939 dot-stuffing of a message for the wire, with the terminating
/// line (CRLF added first when the message does not end with a line end).
/// Used by tests and scripted servers.
pub fn stuff(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 64 + 8);
    for line in msg.split_inclusive(|b| *b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    if !msg.is_empty() && !msg.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ok(String),
    Err(String),
    /// `+ …` during AUTH: the text is the (base64) challenge.
    Cont(String),
}

impl Reply {
    /// The whole line as text, for error records.
    pub fn text(&self) -> &str {
        match self {
            Reply::Ok(t) | Reply::Err(t) | Reply::Cont(t) => t,
        }
    }
}

/// Parses a status line; `None` when it is neither `+OK`, `-ERR` nor `+`.
pub fn parse_reply(line: &[u8]) -> Option<Reply> {
    let text = |rest: &[u8]| -> String {
        String::from_utf8_lossy(rest.strip_prefix(b" ").unwrap_or(rest)).into_owned()
    };
    if let Some(rest) = strip_word(line, b"+OK") {
        return Some(Reply::Ok(text(rest)));
    }
    if let Some(rest) = strip_word(line, b"-ERR") {
        return Some(Reply::Err(text(rest)));
    }
    if let Some(rest) = strip_word(line, b"+") {
        return Some(Reply::Cont(text(rest)));
    }
    None
}

/// `word` at the start, followed by the end or a space (case-insensitive).
fn strip_word<'a>(line: &'a [u8], word: &[u8]) -> Option<&'a [u8]> {
    if line.len() < word.len() || !line[..word.len()].eq_ignore_ascii_case(word) {
        return None;
    }
    let rest = &line[word.len()..];
    match rest.first() {
        None | Some(b' ') => Some(rest),
        _ => None,
    }
}

/// The RFC 2449 response code at the start of a reply text (`[AUTH] …` →
/// `AUTH`), upper case.
pub fn response_code(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix('[')?;
    let end = rest.find(']')?;
    let code = &rest[..end];
    if code.is_empty() || code.len() > 64 || !code.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some(code.to_ascii_uppercase())
}

/// A `UIDL` listing line: message number and unique id (1–70 printable
/// ASCII characters, RFC 1939 §7).
pub fn parse_uidl_line(line: &[u8]) -> Option<(u32, String)> {
    let s = std::str::from_utf8(line).ok()?;
    let mut parts = s.split_ascii_whitespace();
    let n = parse_msg_number(parts.next()?)?;
    let uid = parts.next()?;
    if uid.is_empty() || uid.len() > 70 || !uid.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return None;
    }
    Some((n, uid.to_string()))
}

/// A `LIST` listing line: message number and size.
pub fn parse_list_line(line: &[u8]) -> Option<(u32, u64)> {
    let s = std::str::from_utf8(line).ok()?;
    let mut parts = s.split_ascii_whitespace();
    let n = parse_msg_number(parts.next()?)?;
    let size = parts.next()?;
    if size.is_empty() || size.len() > 19 || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((n, size.parse().ok()?))
}

fn parse_msg_number(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    fn body(wire: &[u8], cap: usize, limit: u64) -> Result<(Vec<u8>, BodyEnd), WireError> {
        let mut r = Reader::with_capacity(Cursor::new(wire.to_vec()), cap);
        let mut out = Vec::new();
        let end = r.read_body(&mut out, limit, limit)?;
        Ok((out, end))
    }

    #[test]
    fn unstuffs_and_stops_at_the_terminator() {
        let (out, end) = body(b"a\r\n..b\r\n.c\r\n..\r\n.\r\nNEXT", 16, 1000).unwrap();
        assert_eq!(out, b"a\r\n.b\r\nc\r\n.\r\n");
        assert_eq!(end, BodyEnd::Complete);
    }

    #[test]
    fn empty_body_and_bare_lf_terminator() {
        assert_eq!(body(b".\r\n", 16, 10).unwrap().0, b"");
        assert_eq!(body(b"x\n.\n", 16, 10).unwrap().0, b"x\n");
    }

    #[test]
    fn over_the_limit_is_truncated_and_skipped() {
        let mut r = Reader::with_capacity(Cursor::new(b"0123456789\r\n.\r\n+OK\r\n".to_vec()), 16);
        let mut out = Vec::new();
        assert_eq!(r.read_body(&mut out, 8, 8).unwrap(), BodyEnd::Truncated);
        assert_eq!(out, b"01234567");
        assert_eq!(r.read_line(100).unwrap(), b"+OK");
        // Far past the limit: out of step.
        let wire = [b"x".repeat(100), b"\r\n.\r\n".to_vec()].concat();
        assert!(matches!(body(&wire, 16, 10), Err(WireError::TooLarge)));
    }

    #[test]
    fn eof_inside_a_body() {
        assert!(matches!(body(b"abc\r\n", 16, 100), Err(WireError::Eof)));
        assert!(matches!(body(b"abc\r\n.", 16, 100), Err(WireError::Eof)));
    }

    #[test]
    fn lines_are_bounded() {
        let mut r = Reader::new(Cursor::new([b"+OK ".to_vec(), vec![b'a'; 20000]].concat()));
        assert!(matches!(r.read_line(512), Err(WireError::LineTooLong(_))));
        let mut r = Reader::new(Cursor::new(b"+OK hi\r\n".to_vec()));
        assert_eq!(r.read_line(512).unwrap(), b"+OK hi");
        assert!(matches!(r.read_line(512), Err(WireError::Eof)));
    }

    #[test]
    fn replies_and_codes() {
        assert_eq!(parse_reply(b"+OK"), Some(Reply::Ok(String::new())));
        assert_eq!(
            parse_reply(b"-ERR [AUTH] no"),
            Some(Reply::Err("[AUTH] no".into()))
        );
        assert_eq!(parse_reply(b"+ abc"), Some(Reply::Cont("abc".into())));
        assert_eq!(parse_reply(b"+"), Some(Reply::Cont(String::new())));
        assert_eq!(parse_reply(b"+OKAY"), None);
        assert_eq!(parse_reply(b"* OK"), None);
        assert_eq!(response_code("[SYS/TEMP] later"), Some("SYS/TEMP".into()));
        assert_eq!(response_code("no code"), None);
        assert_eq!(response_code("[unclosed"), None);
    }

    #[test]
    fn listing_lines() {
        assert_eq!(
            parse_uidl_line(b"1 000000016b0b9469"),
            Some((1, "000000016b0b9469".into()))
        );
        assert_eq!(parse_uidl_line(b"0 x"), None);
        assert_eq!(parse_uidl_line(b"1"), None);
        assert_eq!(parse_uidl_line(&[b'1', b' ', 0xff]), None);
        assert_eq!(parse_list_line(b"2 1234"), Some((2, 1234)));
        assert_eq!(parse_list_line(b"2 -1"), None);
        assert_eq!(parse_list_line(b"99999999999 1"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn stuff_unstuff_round_trip(
            msg in proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..1500),
            cap in 8usize..200,
        ) {
            let wire = stuff(&msg);
            let (out, end) = body(&wire, cap, u64::MAX).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            let mut expected = msg.clone();
            if !msg.is_empty() && !msg.ends_with(b"\n") {
                expected.extend_from_slice(b"\r\n");
            }
            prop_assert_eq!(out, expected);
            prop_assert_eq!(end, BodyEnd::Complete);
        }

        #[test]
        fn hostile_bytes_never_panic(
            data in proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'+'), Just(b' '), any::<u8>()], 0..1500),
            cap in 8usize..300,
            limit in 0u64..500,
        ) {
            let mut r = Reader::with_capacity(Cursor::new(data.clone()), cap);
            for _ in 0..64 {
                match r.read_line(100) {
                    Ok(line) => {
                        let _ = parse_reply(&line);
                        let _ = parse_uidl_line(&line);
                        let _ = parse_list_line(&line);
                        if let Ok(t) = std::str::from_utf8(&line) { let _ = response_code(t); }
                    }
                    Err(WireError::Eof) => break,
                    Err(_) => {}
                }
                let mut out = Vec::new();
                match r.read_body(&mut out, limit, limit) {
                    Ok(_) => prop_assert!(out.len() as u64 <= limit),
                    Err(WireError::Eof) => break,
                    Err(_) => {}
                }
            }
        }
    }
}
