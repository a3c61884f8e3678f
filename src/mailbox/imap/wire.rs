//! The connection as the project owns it: one buffer in front of the
//! socket that both the `imap` crate and our own readers use.
//!
//! The crate only sees an [`ImapStream`], a handle that hands it at most
//! one line per `read` call. The crate reads everything with
//! `read_until(b'\n')` through its own 8 KiB buffer, so after each of its
//! reads that buffer is empty again: whenever the crate has finished a
//! command, every byte the server sent after that command's last line is
//! still in [`Wire`]'s buffer. That is what lets our own commands (bodies
//! through the literal-aware reader, IDLE) run on the same connection
//! between two of the crate's commands without losing or reordering bytes.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::mailbox::net::Stream;

/// The read buffer in front of the socket (TLS records are at most 16 KiB;
/// a larger buffer lets one `read` take several).
pub const WIRE_BUFFER: usize = 256 * 1024;

/// A buffered connection: reads in large chunks, hands out lines, literals
/// and (to the crate) single lines.
pub struct Buffered<S> {
    pub(crate) inner: S,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
}

impl<S: Read> Buffered<S> {
    pub fn new(inner: S) -> Self {
        Self::with_capacity(inner, WIRE_BUFFER)
    }

    pub fn with_capacity(inner: S, cap: usize) -> Self {
        Self {
            inner,
            buf: vec![0u8; cap.max(16)].into_boxed_slice(),
            pos: 0,
            end: 0,
        }
    }

    /// The connection (for writing).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Bytes read from the socket that nobody has taken yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Reads more when the buffer is empty (one read, bounded by the
    /// socket's read timeout); the bytes buffered, 0 at end of stream.
    pub fn fill_now(&mut self) -> io::Result<usize> {
        self.fill()
    }

    /// Reads more when the buffer is empty; 0 at end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        if self.pos < self.end {
            return Ok(self.end - self.pos);
        }
        self.pos = 0;
        self.end = 0;
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(n) => {
                    self.end = n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// For the crate: at most one line (up to and including the first LF)
    /// and at most `out.len()` bytes.
    pub fn read_line_part(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.fill()? == 0 || out.is_empty() {
            return Ok(0);
        }
        let avail = &self.buf[self.pos..self.end];
        let upto = match avail.iter().position(|b| *b == b'\n') {
            Some(i) => i + 1,
            None => avail.len(),
        }
        .min(out.len());
        out[..upto].copy_from_slice(&avail[..upto]);
        self.pos += upto;
        Ok(upto)
    }

    /// Appends one line (with its CRLF) to `out`. `Ok(false)` at end of
    /// stream before any byte; `LineTooLong` past `max` bytes.
    pub fn read_line(&mut self, out: &mut Vec<u8>, max: usize) -> Result<bool, ReadError> {
        let start = out.len();
        loop {
            if self.fill()? == 0 {
                if out.len() == start {
                    return Ok(false);
                }
                return Err(ReadError::Eof);
            }
            let avail = &self.buf[self.pos..self.end];
            let (take, done) = match avail.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            if out.len() - start + take > max {
                return Err(ReadError::LineTooLong);
            }
            out.extend_from_slice(&avail[..take]);
            self.pos += take;
            if done {
                return Ok(true);
            }
        }
    }

    /// Appends exactly `n` bytes to `out` (what is buffered first, then
    /// straight from the socket into `out`).
    pub fn read_exact_into(&mut self, out: &mut Vec<u8>, n: usize) -> Result<(), ReadError> {
        let from_buf = n.min(self.end - self.pos);
        out.extend_from_slice(&self.buf[self.pos..self.pos + from_buf]);
        self.pos += from_buf;
        let mut left = n - from_buf;
        if left == 0 {
            return Ok(());
        }
        // Small remainders go through the buffer (fewer, larger reads).
        if left < self.buf.len() / 2 {
            while left > 0 {
                if self.fill()? == 0 {
                    return Err(ReadError::Eof);
                }
                let take = left.min(self.end - self.pos);
                out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
                self.pos += take;
                left -= take;
            }
            return Ok(());
        }
        let start = out.len();
        out.resize(start + left, 0);
        let mut at = start;
        while at < out.len() {
            match self.inner.read(&mut out[at..]) {
                Ok(0) => {
                    out.truncate(at);
                    return Err(ReadError::Eof);
                }
                Ok(k) => at += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    out.truncate(at);
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Copies exactly `n` bytes to `out` as they arrive, one buffer at a
    /// time (never more than the buffer in memory). A failed write is an
    /// `Io` error (the writer knows what it was).
    pub fn copy_exact_to(&mut self, out: &mut dyn io::Write, n: u64) -> Result<(), ReadError> {
        let mut left = n;
        while left > 0 {
            if self.fill()? == 0 {
                return Err(ReadError::Eof);
            }
            let avail = (self.end - self.pos) as u64;
            let take = usize::try_from(left.min(avail)).unwrap_or(usize::MAX);
            out.write_all(&self.buf[self.pos..self.pos + take])?;
            self.pos += take;
            left -= take as u64;
        }
        Ok(())
    }
}

/// Why a read of ours stopped.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// The connection closed in the middle of a response.
    Eof,
    LineTooLong,
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// The connection with its settings.
pub struct Wire {
    pub(crate) conn: Buffered<Stream>,
    pub(crate) io_timeout: Duration,
}

impl Wire {
    pub fn stream(&mut self) -> &mut Stream {
        &mut self.conn.inner
    }

    /// Sets the socket's read timeout (never "none": at least 1 ms).
    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        self.conn
            .inner
            .tcp()
            .set_read_timeout(Some(t.max(Duration::from_millis(1))))
    }

    /// Writes a whole command line (CRLF included by the caller) and
    /// flushes it.
    pub fn send(&mut self, line: &[u8]) -> io::Result<()> {
        let s = self.stream();
        s.write_all(line)?;
        s.flush()
    }
}

/// The wire shared by the crate's handle and the session.
#[derive(Clone)]
pub struct SharedWire(Arc<Mutex<Wire>>);

impl SharedWire {
    pub fn new(stream: Stream, io_timeout: Duration) -> Self {
        Self(Arc::new(Mutex::new(Wire {
            conn: Buffered::new(stream),
            io_timeout,
        })))
    }

    pub fn lock(&self) -> MutexGuard<'_, Wire> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts what the crate reads; past the budget every read fails.
#[derive(Debug, Default)]
pub struct Budget {
    pub(crate) left: AtomicU64,
    pub(crate) exceeded: AtomicBool,
    /// Look for `* BYE` in what is read.
    sniff: AtomicBool,
    /// The text of the last `* BYE` seen: the crate drops it when the
    /// connection closes right after (Exchange's expired-token BYE).
    bye: Mutex<Option<String>>,
}

impl Budget {
    pub fn set(&self, bytes: u64, sniff: bool) {
        self.left.store(bytes, Ordering::SeqCst);
        self.exceeded.store(false, Ordering::SeqCst);
        self.sniff.store(sniff, Ordering::SeqCst);
    }

    pub fn is_exceeded(&self) -> bool {
        self.exceeded.load(Ordering::SeqCst)
    }

    pub fn note_bye(&self, text: String) {
        *self.bye.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
    }

    fn look_for_bye(&self, chunk: &[u8]) {
        if let Some(i) = chunk.windows(6).position(|w| w == b"* BYE ") {
            let rest = &chunk[i + 6..];
            let end = rest
                .iter()
                .position(|b| *b == b'\r' || *b == b'\n')
                .unwrap_or(rest.len())
                .min(512);
            self.note_bye(String::from_utf8_lossy(&rest[..end]).into_owned());
        }
    }

    pub fn take_bye(&self) -> Option<String> {
        self.bye
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// The stream the crate sees: a handle to the shared wire with a read
/// budget, one line per read, and a read timeout that can be changed but
/// never removed.
pub struct ImapStream {
    pub(crate) wire: SharedWire,
    pub(crate) budget: Arc<Budget>,
}

impl Read for ImapStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.budget.left.load(Ordering::SeqCst);
        if left == 0 {
            self.budget.exceeded.store(true, Ordering::SeqCst);
            return Err(io::Error::other("response larger than the allowed size"));
        }
        let cap = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = self.wire.lock().conn.read_line_part(&mut buf[..cap])?;
        self.budget.left.fetch_sub(n as u64, Ordering::SeqCst);
        if self.budget.sniff.load(Ordering::Relaxed) {
            self.budget.look_for_bye(&buf[..n]);
        }
        Ok(n)
    }
}

impl Write for ImapStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.wire.lock().stream().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.wire.lock().stream().flush()
    }
}

impl imap::extensions::idle::SetReadTimeout for ImapStream {
    fn set_read_timeout(&mut self, t: Option<Duration>) -> imap::Result<()> {
        // None (the crate's IDLE clean-up) means our default, never "wait
        // forever".
        let w = self.wire.lock();
        let t = t.unwrap_or(w.io_timeout);
        w.set_read_timeout(t).map_err(imap::Error::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per read.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(b.len()).min(self.1);
            b[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn crate_reads_stop_at_line_ends() {
        let data = b"* 1 EXISTS\r\n* 2 RECENT\r\na1 OK done\r\nrest";
        let mut b = Buffered::with_capacity(Trickle(data, 1000), 64);
        let mut out = [0u8; 100];
        let n = b.read_line_part(&mut out).unwrap();
        assert_eq!(&out[..n], b"* 1 EXISTS\r\n");
        let n = b.read_line_part(&mut out[..4]).unwrap();
        assert_eq!(&out[..n], b"* 2 ");
        let n = b.read_line_part(&mut out).unwrap();
        assert_eq!(&out[..n], b"RECENT\r\n");
        let n = b.read_line_part(&mut out).unwrap();
        assert_eq!(&out[..n], b"a1 OK done\r\n");
        assert_eq!(b.buffered(), b"rest");
    }

    #[test]
    fn lines_and_literals_across_small_reads() {
        let mut data = b"line one\r\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 300));
        data.extend_from_slice(b"tail\r\n");
        for step in [1, 3, 7, 64, 1000] {
            let mut b = Buffered::with_capacity(Trickle(&data, step), 32);
            let mut l = Vec::new();
            assert!(b.read_line(&mut l, 100).unwrap());
            assert_eq!(l, b"line one\r\n");
            let mut lit = Vec::new();
            b.read_exact_into(&mut lit, 300).unwrap();
            assert_eq!(lit.len(), 300);
            let mut l = Vec::new();
            assert!(b.read_line(&mut l, 100).unwrap());
            assert_eq!(l, b"tail\r\n");
            let mut l = Vec::new();
            assert!(!b.read_line(&mut l, 100).unwrap());
        }
        let mut b = Buffered::with_capacity(Trickle(b"abcdefgh", 3), 32);
        assert!(matches!(
            b.read_line(&mut Vec::new(), 4),
            Err(ReadError::LineTooLong)
        ));
        let mut b = Buffered::with_capacity(Trickle(b"ab", 3), 32);
        assert!(matches!(
            b.read_exact_into(&mut Vec::new(), 5),
            Err(ReadError::Eof)
        ));
    }
}
