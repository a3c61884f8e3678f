//! Blocking connections for the mailbox sessions: TCP with timeouts on
//! connect, read and write; TLS through the same rustls configuration as the
//! identity client (platform verifier plus `tls.ca_file`); and an
//! [`Interrupt`] that ends a blocked call from another thread by shutting
//! the socket down.
//!
//! The sessions are synchronous (the `imap` crate is): each mailbox handle
//! runs its calls on the caller's thread, one at a time.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::config::{Config, Security};
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;

/// Where a session connects and how long each step may take.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// TLS client configuration (see [`tls_config`]).
    pub tls: Arc<rustls::ClientConfig>,
    pub connect_timeout: Duration,
    /// Every single read and write.
    pub io_timeout: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint with the configuration's TLS trust and default timeouts
    /// (connect 15 s, each read or write `http_timeout_ms`, at least 10 s).
    pub fn new(config: &Config, host: &str, port: u16, security: Security) -> Result<Self> {
        let io = Duration::from_millis(u64::from(config.http_timeout_ms)).max(MIN_IO_TIMEOUT);
        Ok(Self {
            host: host.to_string(),
            port,
            security,
            tls: tls_config(config)?,
            connect_timeout: CONNECT_TIMEOUT,
            io_timeout: io,
        })
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const MIN_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The rustls configuration for mail servers: the system's verifier plus
/// the configuration's extra roots, ring, TLS 1.2 and 1.3.
pub fn tls_config(config: &Config) -> Result<Arc<rustls::ClientConfig>> {
    crate::tls::client_config(&config.extra_roots).map(Arc::new)
}

/// A connection, plain (before STARTTLS, or loopback test servers) or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Wraps a plain stream in TLS and completes the handshake (the socket's
    /// timeouts bound it).
    pub fn start_tls(self, ep: &Endpoint) -> Result<Stream> {
        let tcp = match self {
            Stream::Plain(s) => s,
            Stream::Tls(_) => {
                return Err(Error::internal("TLS started twice on one connection"));
            }
        };
        let name = ServerName::try_from(ep.host.clone()).map_err(|_| {
            Error::new(
                ErrorKind::InvalidConfig,
                Text::new(
                    format!("'{}' is not a valid server name for TLS", ep.host),
                    format!("'{}' ist kein gültiger Servername für TLS", ep.host),
                ),
            )
        })?;
        let conn = rustls::ClientConnection::new(ep.tls.clone(), name)
            .map_err(|e| Error::internal(format!("TLS client: {e}")))?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| io_error(e, &ep.host, "TLS handshake"))?;
        }
        Ok(Stream::Tls(Box::new(tls)))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Connects to the endpoint (each resolved address in turn, each within the
/// connect timeout), with TCP_NODELAY and the read/write timeouts set; TLS
/// from the first byte when `security` is `tls`.
pub fn connect(ep: &Endpoint, interrupt: &Interrupt) -> Result<Stream> {
    interrupt.check()?;
    let addrs = (ep.host.as_str(), ep.port).to_socket_addrs().map_err(|e| {
        Error::new(
            ErrorKind::Network,
            Text::new(
                format!("cannot resolve {}: {e}", ep.host),
                format!("{} kann nicht aufgelöst werden: {e}", ep.host),
            ),
        )
        .transient()
    })?;
    let mut last: Option<io::Error> = None;
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, ep.connect_timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(tcp) = tcp else {
        let e = last.unwrap_or_else(|| io::Error::other("no address"));
        return Err(io_error(
            e,
            &format!("{}:{}", ep.host, ep.port),
            "connecting",
        ));
    };
    let setup = |s: &TcpStream| -> io::Result<()> {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(ep.io_timeout))?;
        s.set_write_timeout(Some(ep.io_timeout))
    };
    setup(&tcp).map_err(|e| io_error(e, &ep.host, "connecting"))?;
    interrupt.arm(&tcp)?;
    let stream = Stream::Plain(tcp);
    match ep.security {
        Security::Tls => stream.start_tls(ep),
        Security::StartTls | Security::None => Ok(stream),
    }
}

/// Ends a blocked read or write from another thread: [`Interrupt::fire`]
/// shuts the armed socket down, so the call fails at once and the session
/// reports `CANCELLED`. A fired interrupt stays fired until
/// [`Interrupt::reset`].
#[derive(Clone, Default)]
pub struct Interrupt(Arc<Mutex<InterruptState>>);

#[derive(Default)]
struct InterruptState {
    socket: Option<TcpStream>,
    fired: bool,
}

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InterruptState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches this socket (a clone of it) from now on.
    pub fn arm(&self, tcp: &TcpStream) -> Result<()> {
        let clone = tcp
            .try_clone()
            .map_err(|e| Error::internal(format!("socket clone: {e}")))?;
        let mut st = self.lock();
        if st.fired {
            let _ = clone.shutdown(Shutdown::Both);
            return Err(Error::cancelled());
        }
        st.socket = Some(clone);
        Ok(())
    }

    /// Cancels: shuts the watched socket down (any thread).
    pub fn fire(&self) {
        let mut st = self.lock();
        st.fired = true;
        if let Some(s) = st.socket.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn is_fired(&self) -> bool {
        self.lock().fired
    }

    /// Clears a fired state (before the next call) and forgets the socket.
    pub fn reset(&self) {
        let mut st = self.lock();
        st.fired = false;
        st.socket = None;
    }

    /// `Cancelled` when fired.
    pub fn check(&self) -> Result<()> {
        if self.is_fired() {
            Err(Error::cancelled())
        } else {
            Ok(())
        }
    }
}

/// Maps an I/O failure to the contract's kinds: timeouts to `Timeout`, TLS
/// failures (rustls errors inside the io error) to `Tls`, the rest to
/// `Network`; all transient except certificate problems.
pub fn io_error(e: io::Error, host: &str, during: &str) -> Error {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return Error::new(
            ErrorKind::Tls,
            Text::new(
                format!("TLS with {host} failed ({during}): {tls}"),
                format!("TLS mit {host} ist fehlgeschlagen ({during}): {tls}"),
            ),
        );
    }
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::new(
            ErrorKind::Timeout,
            Text::new(
                format!("{host} did not answer in time ({during})"),
                format!("{host} hat nicht rechtzeitig geantwortet ({during})"),
            ),
        )
        .transient(),
        io::ErrorKind::UnexpectedEof => connection_closed(host, during),
        _ => Error::new(
            ErrorKind::Network,
            Text::new(
                format!("network error with {host} ({during}): {e}"),
                format!("Netzwerkfehler mit {host} ({during}): {e}"),
            ),
        )
        .transient(),
    }
}

/// The server closed the connection.
pub fn connection_closed(host: &str, during: &str) -> Error {
    Error::new(
        ErrorKind::Network,
        Text::new(
            format!("{host} closed the connection ({during})"),
            format!("{host} hat die Verbindung geschlossen ({during})"),
        ),
    )
    .transient()
}
