//! Our own literal-aware reader for the responses of the commands we send
//! ourselves on the session's connection (bodies, the re-synchronisation
//! index, IDLE): field-notes §1.2 and §5.1 (a). Each response is read once,
//! line by line, and a literal `{n}` is read in one piece straight into
//! its own buffer, instead of re-parsing the pending response after every
//! line as the crate does.
//!
//! Everything read is hostile input: lines are bounded, a literal larger
//! than the limit is refused (`TooLarge`) before anything is allocated for
//! it, every response counts against the command's read budget, the number
//! of literals in one response and the nesting of lists are bounded, and
//! nothing here panics.

use std::io::Read;

use super::wire::{Buffered, ReadError};

/// The longest line outside literals.
pub const MAX_RESPONSE_LINE: usize = 256 * 1024;
/// The most literals in one response.
const MAX_LITERALS: usize = 64;
/// The deepest nesting of parenthesised lists skipped.
const MAX_DEPTH: usize = 32;

/// Limits for one command's responses.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest literal accepted (`limits.max_message_bytes`).
    pub max_literal: u64,
}

/// Why reading a response failed.
#[derive(Debug)]
pub enum RespError {
    Io(std::io::Error),
    /// The connection closed (before or inside a response).
    Eof,
    /// The server announced a literal larger than the limit.
    LiteralTooLarge(u64),
    /// The command's responses passed its read budget.
    BudgetExceeded,
    /// Malformed or oversized protocol data.
    Protocol(&'static str),
}

impl From<ReadError> for RespError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Io(e) => RespError::Io(e),
            ReadError::Eof => RespError::Eof,
            ReadError::LineTooLong => RespError::Protocol("a response line is too long"),
        }
    }
}

/// One FETCH response: the message sequence number and the items we use.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fetch {
    pub seq: u32,
    pub uid: Option<u32>,
    pub size: Option<u64>,
    /// `BODY[<section>]` items: the section text (inside the brackets,
    /// upper case) and the data (NIL: empty).
    pub sections: Vec<(String, Vec<u8>)>,
}

impl Fetch {
    /// The data of `BODY[<section>]`.
    pub fn section(&self, name: &str) -> Option<&[u8]> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.as_slice())
    }

    pub fn take_section(&mut self, name: &str) -> Option<Vec<u8>> {
        let i = self.sections.iter().position(|(n, _)| n == name)?;
        Some(self.sections.swap_remove(i).1)
    }
}

/// A tagged status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

/// One response from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Response {
    Fetch(Fetch),
    Exists(u32),
    Recent(u32),
    Expunge(u32),
    /// `* VANISHED` (QRESYNC).
    Vanished,
    Bye(String),
    /// `* OK`, `* NO`, `* BAD` and any other untagged response.
    Untagged(String),
    /// `+ …`
    Continue(String),
    Tagged {
        tag: String,
        status: Status,
        text: String,
    },
}

/// A response as read: text pieces and the literals between them.
enum Seg {
    Text(Vec<u8>),
    Lit(Vec<u8>),
}

/// Reads one whole response (with all its literals); `Ok(None)` when the
/// connection ended cleanly between responses. `budget` is what the
/// command may still read.
pub fn read_response<S: Read>(
    conn: &mut Buffered<S>,
    limits: Limits,
    budget: &mut u64,
) -> Result<Option<Response>, RespError> {
    read_response_into(conn, limits, budget, None).map(|(r, _)| r)
}

/// [`read_response`], with the literal of a FETCH response's `BODY[]` item
/// written to `sink` in chunks as it arrives instead of being held in
/// memory (the item's data is then empty in the parsed response). The
/// second value is the number of bytes written to `sink` (None when the
/// response had no such literal). The size limit and the budget are checked
/// before anything is written.
pub fn read_response_into<S: Read>(
    conn: &mut Buffered<S>,
    limits: Limits,
    budget: &mut u64,
    mut sink: Option<&mut dyn std::io::Write>,
) -> Result<(Option<Response>, Option<u64>), RespError> {
    let mut streamed = None;
    let mut segs: Vec<Seg> = Vec::new();
    loop {
        let mut line = Vec::new();
        let max = usize::try_from(*budget)
            .unwrap_or(usize::MAX)
            .min(MAX_RESPONSE_LINE);
        match conn.read_line(&mut line, max) {
            Ok(true) => {}
            Ok(false) if segs.is_empty() => return Ok((None, None)),
            Ok(false) => return Err(RespError::Eof),
            Err(ReadError::LineTooLong) if max < MAX_RESPONSE_LINE => {
                return Err(RespError::BudgetExceeded);
            }
            Err(e) => return Err(e.into()),
        }
        *budget = budget.saturating_sub(line.len() as u64);
        let lit = literal_at_end(&line)?;
        segs.push(Seg::Text(line));
        let Some(n) = lit else { break };
        if n > limits.max_literal {
            return Err(RespError::LiteralTooLarge(n));
        }
        if n > *budget {
            return Err(RespError::BudgetExceeded);
        }
        if segs.len() / 2 >= MAX_LITERALS {
            return Err(RespError::Protocol("too many literals in one response"));
        }
        if streamed.is_none()
            && is_body_literal(&segs)
            && let Some(out) = sink.take()
        {
            conn.copy_exact_to(out, n)?;
            *budget = budget.saturating_sub(n);
            streamed = Some(n);
            segs.push(Seg::Lit(Vec::new()));
            continue;
        }
        let n = usize::try_from(n).map_err(|_| RespError::LiteralTooLarge(n))?;
        let mut data = Vec::new();
        data.try_reserve_exact(n)
            .map_err(|_| RespError::LiteralTooLarge(n as u64))?;
        conn.read_exact_into(&mut data, n)?;
        *budget = budget.saturating_sub(n as u64);
        segs.push(Seg::Lit(data));
    }
    parse(segs).map(|r| (Some(r), streamed))
}

/// True when the text read so far is an untagged FETCH whose last item,
/// the one the literal at the end belongs to, is `BODY[]`.
fn is_body_literal(segs: &[Seg]) -> bool {
    let (Some(Seg::Text(first)), Some(Seg::Text(last))) = (segs.first(), segs.last()) else {
        return false;
    };
    if !first.starts_with(b"* ") || !contains_ci(first, b" FETCH ") {
        return false;
    }
    let Some(open) = last.iter().rposition(|&b| b == b'{') else {
        return false;
    };
    let before = last[..open].trim_ascii_end();
    before.len() >= 6 && before[before.len() - 6..].eq_ignore_ascii_case(b"BODY[]")
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// `{123}\r\n` or `{123+}\r\n` at the end of a line: the literal's size.
fn literal_at_end(line: &[u8]) -> Result<Option<u64>, RespError> {
    let Some(l) = line
        .strip_suffix(b"}\r\n")
        .or_else(|| line.strip_suffix(b"}\n"))
    else {
        return Ok(None);
    };
    let Some(open) = l.iter().rposition(|&b| b == b'{') else {
        return Ok(None);
    };
    let mut d = &l[open + 1..];
    if let Some(x) = d.strip_suffix(b"+") {
        d = x;
    }
    if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
        return Ok(None);
    }
    if d.len() > 19 {
        return Err(RespError::LiteralTooLarge(u64::MAX));
    }
    let mut n: u64 = 0;
    for &c in d {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(c - b'0')))
            .ok_or(RespError::LiteralTooLarge(u64::MAX))?;
    }
    Ok(Some(n))
}

fn parse(mut segs: Vec<Seg>) -> Result<Response, RespError> {
    let Some(Seg::Text(first)) = segs.first() else {
        return Err(RespError::Protocol("empty response"));
    };
    let first = trim_crlf(first);
    if let Some(rest) = first.strip_prefix(b"+") {
        return Ok(Response::Continue(text(rest)));
    }
    let Some(rest) = first.strip_prefix(b"* ") else {
        // Tagged: "<tag> OK|NO|BAD text".
        let (tag, rest) = split_word(first);
        let (word, rest) = split_word(rest);
        let status = if word.eq_ignore_ascii_case(b"OK") {
            Status::Ok
        } else if word.eq_ignore_ascii_case(b"NO") {
            Status::No
        } else if word.eq_ignore_ascii_case(b"BAD") {
            Status::Bad
        } else {
            return Err(RespError::Protocol(
                "a response that is neither tagged nor untagged",
            ));
        };
        return Ok(Response::Tagged {
            tag: text(tag),
            status,
            text: text(rest),
        });
    };
    let (word, after) = split_word(rest);
    if let Some(n) = number(word) {
        let (kind, _) = split_word(after);
        let n = u32::try_from(n).map_err(|_| RespError::Protocol("a number out of range"))?;
        if kind.eq_ignore_ascii_case(b"EXISTS") {
            return Ok(Response::Exists(n));
        }
        if kind.eq_ignore_ascii_case(b"RECENT") {
            return Ok(Response::Recent(n));
        }
        if kind.eq_ignore_ascii_case(b"EXPUNGE") {
            return Ok(Response::Expunge(n));
        }
        if kind.eq_ignore_ascii_case(b"FETCH") {
            // The items start after "* n FETCH ".
            let skip = first.len() - after.len() + kind.len();
            let mut cur = Cursor {
                segs: &mut segs,
                seg: 0,
                at: skip,
            };
            let mut f = parse_fetch(&mut cur)?;
            f.seq = n;
            return Ok(Response::Fetch(f));
        }
        return Ok(Response::Untagged(text(rest)));
    }
    if word.eq_ignore_ascii_case(b"BYE") {
        return Ok(Response::Bye(text(after)));
    }
    if word.eq_ignore_ascii_case(b"VANISHED") {
        return Ok(Response::Vanished);
    }
    Ok(Response::Untagged(text(rest)))
}

fn trim_crlf(l: &[u8]) -> &[u8] {
    let l = l.strip_suffix(b"\n").unwrap_or(l);
    l.strip_suffix(b"\r").unwrap_or(l)
}

fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|b| *b == b' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Printable text, at most 1,000 characters (for messages and logs).
fn text(s: &[u8]) -> String {
    String::from_utf8_lossy(&s[..s.len().min(1000)])
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

/// A position in a response's pieces.
struct Cursor<'a> {
    segs: &'a mut Vec<Seg>,
    seg: usize,
    at: usize,
}

enum Tok {
    Open,
    Close,
    /// An atom or number (with a `[section]` and `<partial>` kept in it).
    Atom(Vec<u8>),
    Str(Vec<u8>),
    End,
}

impl Cursor<'_> {
    fn cur_text(&self) -> Option<&[u8]> {
        match self.segs.get(self.seg) {
            Some(Seg::Text(t)) => Some(trim_crlf(t)),
            _ => None,
        }
    }

    fn next(&mut self) -> Result<Tok, RespError> {
        let Some(t) = self.cur_text() else {
            return Ok(Tok::End);
        };
        let mut i = self.at;
        while t.get(i) == Some(&b' ') {
            i += 1;
        }
        let Some(&c) = t.get(i) else {
            self.at = i;
            return Ok(Tok::End);
        };
        match c {
            b'(' => {
                self.at = i + 1;
                Ok(Tok::Open)
            }
            b')' => {
                self.at = i + 1;
                Ok(Tok::Close)
            }
            b'"' => {
                let mut out = Vec::new();
                let mut j = i + 1;
                loop {
                    match t.get(j) {
                        None => return Err(RespError::Protocol("an unterminated quoted string")),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            let Some(&e) = t.get(j + 1) else {
                                return Err(RespError::Protocol("an unterminated quoted string"));
                            };
                            out.push(e);
                            j += 2;
                        }
                        Some(&b) => {
                            out.push(b);
                            j += 1;
                        }
                    }
                }
                self.at = j + 1;
                Ok(Tok::Str(out))
            }
            b'{' => {
                // A literal: the rest of this piece is "{n}", the data is
                // the next piece, and the text goes on after it.
                let rest = &t[i..];
                if !rest.ends_with(b"}") || !rest.iter().skip(1).all(|b| *b != b' ') {
                    return Err(RespError::Protocol("a malformed literal"));
                }
                let lit = match self.segs.get_mut(self.seg + 1) {
                    Some(Seg::Lit(d)) => std::mem::take(d),
                    _ => return Err(RespError::Protocol("a literal without data")),
                };
                self.seg += 2;
                self.at = 0;
                if self.segs.get(self.seg).is_none() {
                    return Err(RespError::Protocol("a response ends inside a literal"));
                }
                Ok(Tok::Str(lit))
            }
            _ => {
                let mut j = i;
                let mut bracket = false;
                while let Some(&b) = t.get(j) {
                    if bracket {
                        if b == b']' {
                            bracket = false;
                        }
                    } else if b == b'[' {
                        bracket = true;
                    } else if matches!(b, b' ' | b'(' | b')' | b'"' | b'{') {
                        break;
                    }
                    j += 1;
                }
                if bracket {
                    return Err(RespError::Protocol("an unterminated section"));
                }
                let atom = t[i..j].to_vec();
                self.at = j;
                Ok(Tok::Atom(atom))
            }
        }
    }

    /// Skips one value (atom, string, literal or nested list).
    fn skip_value(&mut self, first: Tok) -> Result<(), RespError> {
        let mut depth = match first {
            Tok::Open => 1usize,
            Tok::Close | Tok::End => return Err(RespError::Protocol("a FETCH item without value")),
            Tok::Atom(_) | Tok::Str(_) => return Ok(()),
        };
        while depth > 0 {
            match self.next()? {
                Tok::Open => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(RespError::Protocol("lists nested too deeply"));
                    }
                }
                Tok::Close => depth -= 1,
                Tok::End => return Err(RespError::Protocol("an unterminated list")),
                Tok::Atom(_) | Tok::Str(_) => {}
            }
        }
        Ok(())
    }
}

fn parse_fetch(cur: &mut Cursor<'_>) -> Result<Fetch, RespError> {
    let mut f = Fetch::default();
    if !matches!(cur.next()?, Tok::Open) {
        return Err(RespError::Protocol("FETCH without a list"));
    }
    loop {
        let name = match cur.next()? {
            Tok::Close => break,
            Tok::Atom(a) => a,
            _ => return Err(RespError::Protocol("a malformed FETCH item")),
        };
        let value = cur.next()?;
        let upper = name.to_ascii_uppercase();
        match upper.as_slice() {
            b"UID" => {
                let Tok::Atom(v) = value else {
                    return Err(RespError::Protocol("UID without a number"));
                };
                let uid = number(&v)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or(RespError::Protocol("UID without a number"))?;
                f.uid = Some(uid);
            }
            b"RFC822.SIZE" => {
                let Tok::Atom(v) = value else {
                    return Err(RespError::Protocol("RFC822.SIZE without a number"));
                };
                f.size =
                    Some(number(&v).ok_or(RespError::Protocol("RFC822.SIZE without a number"))?);
            }
            n if n.starts_with(b"BODY[") || n.starts_with(b"BINARY[") => {
                let open = n.iter().position(|b| *b == b'[').unwrap_or(0);
                let close = n.iter().rposition(|b| *b == b']').unwrap_or(n.len());
                let section = text(n.get(open + 1..close).unwrap_or_default());
                let data = match value {
                    Tok::Str(d) => d,
                    Tok::Atom(a) if a.eq_ignore_ascii_case(b"NIL") => Vec::new(),
                    _ => return Err(RespError::Protocol("a body section without data")),
                };
                if f.sections.len() >= MAX_LITERALS {
                    return Err(RespError::Protocol("too many body sections"));
                }
                f.sections.push((section, data));
            }
            _ => cur.skip_value(value)?,
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(data: &[u8], max_literal: u64) -> Result<Vec<Response>, RespError> {
        let mut b = Buffered::with_capacity(data, 64);
        let mut budget = 10_000_000u64;
        let mut out = Vec::new();
        while let Some(r) = read_response(&mut b, Limits { max_literal }, &mut budget)? {
            out.push(r);
        }
        Ok(out)
    }

    #[test]
    fn body_literals_stream_to_the_sink() {
        let data = b"* 1 FETCH (UID 5 BODY[HEADER] {4}\r\nh:x\n BODY[] {12}\r\nhello\r\nworld BODY[] {3}\r\nabc)\r\n\
* 2 FETCH (UID 6 BODY[] {2}\r\nzz)\r\n\
m1 OK done\r\n";
        // A small buffer: the literal crosses many refills.
        let mut b = Buffered::with_capacity(&data[..], 16);
        let mut budget = 1000u64;
        let mut sink: Vec<u8> = Vec::new();
        let (r, n) = read_response_into(
            &mut b,
            Limits { max_literal: 100 },
            &mut budget,
            Some(&mut sink),
        )
        .unwrap();
        assert_eq!(n, Some(12));
        assert_eq!(sink, b"hello\r\nworld");
        let Some(Response::Fetch(f)) = r else {
            panic!()
        };
        assert_eq!(f.uid, Some(5));
        assert_eq!(f.section("HEADER"), Some(&b"h:x\n"[..]));
        // Only the first BODY[] went to the sink; the second is in memory.
        assert_eq!(f.sections.iter().filter(|(n, _)| n.is_empty()).count(), 2);
        assert!(f.sections.iter().any(|(n, d)| n.is_empty() && d == b"abc"));
        // Without a sink the next one is held as before.
        let (r, n) =
            read_response_into(&mut b, Limits { max_literal: 100 }, &mut budget, None).unwrap();
        assert_eq!(n, None);
        let Some(Response::Fetch(f)) = r else {
            panic!()
        };
        assert_eq!(f.section(""), Some(&b"zz"[..]));
        // Fails with what the sink got: over the limit, refused before a
        // byte is written; cut in the middle, what arrived is in the sink.
        let failing = |data: &[u8]| {
            let mut b = Buffered::with_capacity(data, 64);
            let mut sink: Vec<u8> = Vec::new();
            let mut budget = 1000u64;
            let limits = Limits { max_literal: 100 };
            let e = read_response_into(&mut b, limits, &mut budget, Some(&mut sink)).unwrap_err();
            (e, sink)
        };
        let (e, sink) = failing(b"* 1 FETCH (UID 5 BODY[] {500}\r\n");
        assert!(matches!(e, RespError::LiteralTooLarge(500)));
        assert!(sink.is_empty());
        let (e, sink) = failing(b"* 1 FETCH (UID 5 BODY[] {50}\r\nonly this");
        assert!(matches!(e, RespError::Eof));
        assert_eq!(sink, b"only this");
    }

    #[test]
    fn fetch_bodies_in_any_item_order() {
        let data = b"* 1 FETCH (UID 5 BODY[] {12}\r\nhello\r\nworld)\r\n\
* 2 EXISTS\r\n\
* 2 FETCH (FLAGS (\\Seen $Label) BODY[] {3}\r\nabc UID 9 INTERNALDATE \"1-Jan-2026 00:00:00 +0000\")\r\n\
* 3 FETCH (UID 10 RFC822.SIZE 12 BODY[HEADER.FIELDS (MESSAGE-ID)] {13}\r\nMessage-ID:\r\n)\r\n\
* 4 FETCH (UID 11 BODY[] \"q\\\"x\")\r\n\
* 5 FETCH (UID 12 BODY[] NIL)\r\n\
* 6 FETCH (FLAGS (\\Deleted))\r\n\
* OK [ALERT] hi\r\n\
* BYE going\r\n\
+ idling\r\n\
m1 OK done\r\n";
        let r = all(data, 100).unwrap();
        assert_eq!(r.len(), 11);
        let Response::Fetch(f) = &r[0] else { panic!() };
        assert_eq!((f.seq, f.uid), (1, Some(5)));
        assert_eq!(f.section(""), Some(&b"hello\r\nworld"[..]));
        assert_eq!(r[1], Response::Exists(2));
        let Response::Fetch(f) = &r[2] else { panic!() };
        assert_eq!((f.uid, f.section("")), (Some(9), Some(&b"abc"[..])));
        let Response::Fetch(f) = &r[3] else { panic!() };
        assert_eq!(f.size, Some(12));
        assert_eq!(
            f.section("HEADER.FIELDS (MESSAGE-ID)"),
            Some(&b"Message-ID:\r\n"[..])
        );
        let Response::Fetch(f) = &r[4] else { panic!() };
        assert_eq!(f.section(""), Some(&b"q\"x"[..]));
        let Response::Fetch(f) = &r[5] else { panic!() };
        assert_eq!(f.section(""), Some(&b""[..]));
        let Response::Fetch(f) = &r[6] else { panic!() };
        assert_eq!((f.uid, f.sections.len()), (None, 0));
        assert_eq!(r[8], Response::Bye("going".into()));
        assert_eq!(r[9], Response::Continue(" idling".into()));
        assert_eq!(
            r[10],
            Response::Tagged {
                tag: "m1".into(),
                status: Status::Ok,
                text: "done".into()
            }
        );
    }

    #[test]
    fn a_literal_past_the_limit_is_refused_before_reading_it() {
        let e = all(b"* 1 FETCH (UID 5 BODY[] {101}\r\n", 100).unwrap_err();
        assert!(matches!(e, RespError::LiteralTooLarge(101)), "{e:?}");
        let e = all(
            b"* 1 FETCH (UID 5 BODY[] {99999999999999999999999}\r\n",
            100,
        )
        .unwrap_err();
        assert!(matches!(e, RespError::LiteralTooLarge(_)), "{e:?}");
        // Within the limit but past the budget.
        let mut b = Buffered::with_capacity(&b"* 1 FETCH (BODY[] {50}\r\n"[..], 64);
        let mut budget = 40;
        let e = read_response(&mut b, Limits { max_literal: 100 }, &mut budget).unwrap_err();
        assert!(matches!(e, RespError::BudgetExceeded), "{e:?}");
    }

    #[test]
    fn truncated_and_malformed() {
        assert!(matches!(
            all(b"* 1 FETCH (UID 5 BODY[] {10}\r\nabc", 100),
            Err(RespError::Eof)
        ));
        assert!(matches!(
            all(b"* 1 FETCH (UID x)\r\n", 100),
            Err(RespError::Protocol(_))
        ));
        assert!(matches!(
            all(b"* 1 FETCH (UID 1 BODY[\r\n", 100),
            Err(RespError::Protocol(_))
        ));
        assert!(matches!(
            all(b"* 1 FETCH (UID 1 BODY[] {2}\r\nab", 100),
            Err(RespError::Eof)
        ));
        assert!(matches!(
            all(b"garbage\r\n", 100),
            Err(RespError::Protocol(_))
        ));
        let deep = format!("* 1 FETCH (X {}{})\r\n", "(".repeat(100), ")".repeat(100));
        assert!(matches!(
            all(deep.as_bytes(), 100),
            Err(RespError::Protocol(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn hostile_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = all(&data, 64);
        }

        #[test]
        fn hostile_fetch_lines_never_panic(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(b"* 1 FETCH (".to_vec()), Just(b"UID 7 ".to_vec()),
                    Just(b"BODY[] ".to_vec()), Just(b"BODY[HEADER".to_vec()),
                    Just(b"{3}\r\nabc".to_vec()), Just(b"{0}\r\n".to_vec()),
                    Just(b"{70}\r\n".to_vec()), Just(b"\"q\\\"\" ".to_vec()),
                    Just(b"(".to_vec()), Just(b")".to_vec()), Just(b"\r\n".to_vec()),
                    Just(b"NIL ".to_vec()), Just(b"RFC822.SIZE 99999999999 ".to_vec()),
                    Just(b"m1 OK x\r\n".to_vec()), Just(b"* 3 EXISTS\r\n".to_vec()),
                    proptest::collection::vec(any::<u8>(), 0..12),
                ],
                0..40,
            )
        ) {
            let data: Vec<u8> = parts.concat();
            let _ = all(&data, 64);
        }

        #[test]
        fn literal_sizes_past_the_limit_are_too_large(n in 65u64..u64::MAX) {
            let data = format!("* 1 FETCH (UID 1 BODY[] {{{n}}}\r\n");
            prop_assert!(matches!(all(data.as_bytes(), 64), Err(RespError::LiteralTooLarge(_))));
        }

        #[test]
        fn bodies_come_back_whole(body in proptest::collection::vec(any::<u8>(), 0..3000), uid in 1u32..) {
            let mut data = format!("* 1 FETCH (UID {uid} BODY[] {{{}}}\r\n", body.len()).into_bytes();
            data.extend_from_slice(&body);
            data.extend_from_slice(b")\r\nm1 OK done\r\n");
            let r = all(&data, 4000).unwrap();
            let Response::Fetch(f) = &r[0] else { panic!("not a fetch") };
            prop_assert_eq!(f.uid, Some(uid));
            prop_assert_eq!(f.section(""), Some(&body[..]));
        }
    }
}
