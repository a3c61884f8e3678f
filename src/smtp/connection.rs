//! One SMTP submission connection, owned by the project: our own tokio
//! socket with TCP_NODELAY (lettre never sets it: 44 ms per message),
//! rustls with the platform verifier plus `tls.ca_file`, lettre's low-level
//! `AsyncSmtpConnection` on top, and SASL done by hand so that the server's
//! final reply is read (a 334 error challenge is answered with an empty
//! line). AUTH is never sent before TLS, except to a loopback IP literal
//! with `security: none`, which only the configuration's test rule allows.
//!
//! Nothing here logs a protocol line: the AUTH line carries the token.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Quit, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use rustls_pki_types::{CertificateDer, ServerName};
use zeroize::Zeroizing;

use crate::config::{Config, Security, Server, hosts};
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::log;
use crate::secret::Secret;

use super::compose::Composed;

/// A connect (TCP plus TLS plus greeting) takes at most this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// One command and its reply, or the DATA transfer's final reply.
pub const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// The SASL mechanism used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Xoauth2,
    OAuthBearer,
}

/// What a successful send reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub accepted: Vec<String>,
    /// The final reply to DATA (`250 2.0.0 Ok: queued as …`).
    pub reply: String,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub server: Server,
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub io_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Endpoint {
    /// The endpoint for `server`, refusing before any connection a host
    /// that the configuration does not trust with a token, and plaintext
    /// except for the loopback test rule.
    pub fn new(config: &Config, server: Server) -> Result<Self> {
        config.check_token_destination(&server.host, server.security)?;
        Ok(Self {
            server,
            extra_roots: config.extra_roots.clone(),
            io_timeout: IO_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
        })
    }
}

/// An implicit-TLS stream handed to lettre (which then sees plain bytes).
#[derive(Debug)]
struct TlsStream {
    inner: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    peer: SocketAddr,
}

impl tokio::io::AsyncRead for TlsStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsStream {
    fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

/// A line sent as it is (the CRLF added here).
struct Line<'a>(&'a str);

impl std::fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)?;
        f.write_str("\r\n")
    }
}

/// An open, possibly authenticated submission connection.
pub struct Connection {
    conn: AsyncSmtpConnection,
    host: String,
    port: u16,
    /// TLS is up (or the loopback plaintext rule applies).
    secure: bool,
    io_timeout: Duration,
    /// Who is logged in, and a fingerprint of the token used (never the
    /// token itself), to re-authenticate when the token changes.
    authed: Option<(String, u64)>,
    broken: bool,
    /// The last send got as far as DATA: retrying it could duplicate.
    data_started: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("authenticated", &self.authed.as_ref().map(|a| &a.0))
            .field("broken", &self.broken)
            .finish()
    }
}

/// The fingerprint of a token, for "has it changed?" only.
pub fn token_fingerprint(token: &Secret) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    token.expose().hash(&mut h);
    h.finish()
}

fn network(en: impl Into<String>, de: impl Into<String>) -> Error {
    Error::new(ErrorKind::Network, Text::new(en, de)).transient()
}

fn timeout_error(what: &str, t: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        Text::new(
            format!(
                "the SMTP server did not answer {what} within {} ms",
                t.as_millis()
            ),
            format!(
                "der SMTP-Server hat auf {what} nicht innerhalb von {} ms geantwortet",
                t.as_millis()
            ),
        ),
    )
    .transient()
}

/// Does a rustls error (a certificate problem, a failed handshake) hide in
/// this error's chain?
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && inner.downcast_ref::<rustls::Error>().is_some()
        {
            return true;
        }
        cur = err.source();
    }
    false
}

fn tls_error(host: &str, detail: &str) -> Error {
    Error::new(
        ErrorKind::Tls,
        Text::new(
            format!("TLS with the SMTP server {host} failed: {detail}"),
            format!("TLS mit dem SMTP-Server {host} ist fehlgeschlagen: {detail}"),
        ),
    )
    .with_hint(Text::new(
        "The server's certificate must be trusted by the system or by tls.ca_file and name this host; check the system clock.",
        "Das Zertifikat des Servers muss vom System oder über tls.ca_file vertraut werden und diesen Host nennen; die Systemuhr prüfen.",
    ))
}

/// The reply as text: `535 5.7.8 Error: authentication failed`.
fn reply_text(r: &Response) -> String {
    let code: u16 = r.code().into();
    let lines: Vec<&str> = r.message().collect();
    format!("{code} {}", lines.join(" "))
}

/// A lettre error as (code, reply text) when it is a server reply.
fn error_reply(e: &lettre::transport::smtp::Error) -> Option<(u16, String)> {
    let code: u16 = e.status()?.into();
    let text = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_default();
    Some((code, format!("{code} {text}")))
}

/// The phase of the SMTP dialogue an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connect,
    Auth,
    MailFrom,
    RcptTo,
    Data,
}

/// Maps a server's refusal to the library's error, with an admin hint in
/// English and German for the replies Exchange Online is known for.
pub fn map_reply(code: u16, reply: &str, phase: Phase, mailbox: &str, from: &str) -> Error {
    let lower = reply.to_ascii_lowercase();
    let transient = (400..500).contains(&code);
    let e = if lower.contains("5.7.139") {
        Error::new(
            ErrorKind::AuthRejected,
            Text::new(
                "the SMTP server refused the login: SMTP AUTH (authenticated client submission) is disabled for this mailbox or tenant",
                "der SMTP-Server hat die Anmeldung abgelehnt: SMTP AUTH (authentifizierte Client-Übermittlung) ist für dieses Postfach oder den Mandanten deaktiviert",
            ),
        )
        .with_hint(Text::new(
            format!("An Exchange administrator must enable SMTP AUTH: Set-CASMailbox -Identity {mailbox} -SmtpClientAuthenticationDisabled $false (this mailbox), or Set-TransportConfig -SmtpClientAuthenticationDisabled $false (whole organisation); Security Defaults also block it. See https://aka.ms/smtp_auth_disabled"),
            format!("Ein Exchange-Administrator muss SMTP AUTH aktivieren: Set-CASMailbox -Identity {mailbox} -SmtpClientAuthenticationDisabled $false (dieses Postfach) oder Set-TransportConfig -SmtpClientAuthenticationDisabled $false (ganze Organisation); auch Sicherheitsstandards blockieren es. Siehe https://aka.ms/smtp_auth_disabled"),
        ))
    } else if lower.contains("5.2.252")
        || lower.contains("sendasdenied")
        || lower.contains("5.7.60")
    {
        Error::new(
            ErrorKind::MailboxAccessDenied,
            Text::new(
                format!("the SMTP server refused to send as {from} for {mailbox} (SendAs denied)"),
                format!("der SMTP-Server verweigert {mailbox} das Senden als {from} (SendAs verweigert)"),
            ),
        )
        .with_hint(Text::new(
            format!("Send from {mailbox} itself, or let an Exchange administrator grant the right: Add-RecipientPermission -Identity {from} -Trustee {mailbox} -AccessRights SendAs"),
            format!("Von {mailbox} selbst senden, oder ein Exchange-Administrator erteilt das Recht: Add-RecipientPermission -Identity {from} -Trustee {mailbox} -AccessRights SendAs"),
        ))
    } else if lower.contains("4.3.2") || lower.contains("thread limit") {
        let mut e = Error::new(
            ErrorKind::Throttled,
            Text::new(
                "the SMTP server asked to back off: too many connections for this mailbox (sender thread limit)",
                "der SMTP-Server verlangt eine Pause: zu viele Verbindungen für dieses Postfach (sender thread limit)",
            ),
        )
        .with_hint(Text::new(
            "Exchange Online allows 3 concurrent SMTP connections per mailbox, shared by every program sending from it; lower smtp.max_connections or retry later.",
            "Exchange Online erlaubt 3 gleichzeitige SMTP-Verbindungen pro Postfach, geteilt von allen Programmen, die daraus senden; smtp.max_connections senken oder später erneut versuchen.",
        ))
        .transient();
        e.retry_after_s = Some(60);
        e
    } else if lower.contains("5.7.57") {
        Error::new(
            ErrorKind::Protocol,
            Text::new(
                "the SMTP server says the client is not authenticated",
                "der SMTP-Server meldet, dass der Client nicht angemeldet ist",
            ),
        )
    } else if phase == Phase::Auth {
        Error::new(
            ErrorKind::AuthRejected,
            Text::new(
                format!("the SMTP server rejected the access token for {mailbox}"),
                format!("der SMTP-Server hat das Zugriffstoken für {mailbox} abgelehnt"),
            ),
        )
        .with_hint(Text::new(
            format!("Usual causes: the token lacks the SMTP.Send permission (consent again with smtp), it was issued for another account than {mailbox} (a shared mailbox needs Send As / Full Access for the signed-in user), or an app-only token's service principal has no mailbox permission."),
            format!("Übliche Ursachen: dem Token fehlt die Berechtigung SMTP.Send (erneut mit smtp zustimmen), es wurde für ein anderes Konto als {mailbox} ausgestellt (ein freigegebenes Postfach braucht Senden als / Vollzugriff für den angemeldeten Benutzer), oder dem Dienstprinzipal eines App-Tokens fehlt die Postfachberechtigung."),
        ))
    } else {
        let (en, de) = match phase {
            Phase::MailFrom => (
                format!("the SMTP server refused the sender {from}"),
                format!("der SMTP-Server hat den Absender {from} abgelehnt"),
            ),
            Phase::RcptTo => (
                "the SMTP server refused a recipient; nothing was sent".to_string(),
                "der SMTP-Server hat einen Empfänger abgelehnt; nichts wurde gesendet".to_string(),
            ),
            Phase::Data => (
                "the SMTP server refused the message".to_string(),
                "der SMTP-Server hat die Nachricht abgelehnt".to_string(),
            ),
            Phase::Connect | Phase::Auth => (
                "the SMTP server refused the connection".to_string(),
                "der SMTP-Server hat die Verbindung abgelehnt".to_string(),
            ),
        };
        let kind = if phase == Phase::Connect {
            ErrorKind::Protocol
        } else {
            ErrorKind::SendRejected
        };
        let e = Error::new(kind, Text::new(en, de));
        if transient { e.transient() } else { e }
    };
    e.with_server_reply(reply)
}

impl Connection {
    /// Connects, secures the connection (implicit TLS or STARTTLS) and says
    /// EHLO. No AUTH yet.
    pub async fn open(ep: &Endpoint) -> Result<Self> {
        let host = ep.server.host.clone();
        let port = ep.server.port;
        let t = ep.connect_timeout;
        let connect = async {
            let addr_host = hosts::normalize(&host);
            let tcp = tokio::net::TcpStream::connect((addr_host.as_str(), port))
                .await
                .map_err(|e| {
                    network(
                        format!("could not connect to the SMTP server {host}:{port}: {e}"),
                        format!("keine Verbindung zum SMTP-Server {host}:{port}: {e}"),
                    )
                })?;
            tcp.set_nodelay(true).map_err(|e| {
                network(
                    format!("could not set TCP_NODELAY: {e}"),
                    format!("TCP_NODELAY nicht setzbar: {e}"),
                )
            })?;
            let peer = tcp.peer_addr().map_err(|e| {
                network(
                    format!("the connection to {host}:{port} broke: {e}"),
                    format!("die Verbindung zu {host}:{port} ist abgebrochen: {e}"),
                )
            })?;
            let hello = ClientId::default();
            match ep.server.security {
                Security::Tls => {
                    let stream = implicit_tls(tcp, peer, &host, &ep.extra_roots).await?;
                    let conn =
                        AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello)
                            .await
                            .map_err(|e| greeting_error(&host, port, &e))?;
                    Ok(Self::new(conn, &host, port, true, ep.io_timeout))
                }
                Security::StartTls => {
                    let mut conn =
                        AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
                            .await
                            .map_err(|e| greeting_error(&host, port, &e))?;
                    if !conn.server_info().supports_feature(Extension::StartTls) {
                        conn.abort().await;
                        return Err(Error::new(
                            ErrorKind::Tls,
                            Text::new(
                                format!(
                                    "the SMTP server {host}:{port} does not offer STARTTLS; the token is not sent without TLS"
                                ),
                                format!(
                                    "der SMTP-Server {host}:{port} bietet kein STARTTLS an; das Token wird nicht ohne TLS gesendet"
                                ),
                            ),
                        ));
                    }
                    let params = tls_parameters(&host, &ep.extra_roots)?;
                    conn.starttls(params, &hello).await.map_err(|e| {
                        if is_tls_failure(&e) || e.is_tls() {
                            tls_error(&host, &e.to_string())
                        } else if let Some((code, reply)) = error_reply(&e) {
                            map_reply(code, &reply, Phase::Connect, "", "")
                        } else {
                            network(
                                format!("STARTTLS with {host}:{port} failed: {e}"),
                                format!("STARTTLS mit {host}:{port} ist fehlgeschlagen: {e}"),
                            )
                        }
                    })?;
                    Ok(Self::new(conn, &host, port, true, ep.io_timeout))
                }
                Security::None => {
                    let conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
                        .await
                        .map_err(|e| greeting_error(&host, port, &e))?;
                    Ok(Self::new(conn, &host, port, true, ep.io_timeout))
                }
            }
        };
        match tokio::time::timeout(t, connect).await {
            Ok(r) => r,
            Err(_) => Err(timeout_error("the connection attempt", t)),
        }
    }

    fn new(conn: AsyncSmtpConnection, host: &str, port: u16, secure: bool, io: Duration) -> Self {
        log::debug!("SMTP connection to {host}:{port} open");
        Self {
            conn,
            host: host.to_string(),
            port,
            secure,
            io_timeout: io,
            authed: None,
            broken: false,
            data_started: false,
        }
    }

    pub fn is_broken(&self) -> bool {
        self.broken || self.conn.has_broken()
    }

    /// Is it logged in as `mailbox` with this very token?
    pub fn is_authenticated_with(&self, mailbox: &str, token: &Secret) -> bool {
        self.authed
            .as_ref()
            .is_some_and(|(m, f)| m.eq_ignore_ascii_case(mailbox) && *f == token_fingerprint(token))
    }

    /// Did the last send reach DATA? (Then it is never retried.)
    pub fn data_started(&self) -> bool {
        self.data_started
    }

    pub fn is_authenticated(&self) -> bool {
        self.authed.is_some()
    }

    /// One command with the I/O timeout; a timeout or a network failure
    /// breaks the connection.
    async fn cmd<C: std::fmt::Display>(
        &mut self,
        c: C,
        what: &str,
    ) -> std::result::Result<Response, CmdError> {
        match tokio::time::timeout(self.io_timeout, self.conn.command(c)).await {
            Err(_) => {
                self.broken = true;
                Err(CmdError::Fatal(timeout_error(what, self.io_timeout)))
            }
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => match error_reply(&e) {
                Some((code, reply)) => Err(CmdError::Reply(code, reply)),
                None => {
                    self.broken = true;
                    Err(CmdError::Fatal(self.lost(&e)))
                }
            },
        }
    }

    fn lost(&self, e: &lettre::transport::smtp::Error) -> Error {
        let (host, port) = (&self.host, self.port);
        if e.is_timeout() {
            return timeout_error("a command", self.io_timeout);
        }
        if e.is_response() {
            return Error::new(
                ErrorKind::Protocol,
                Text::new(
                    format!("the SMTP server {host}:{port} sent a reply that is not SMTP: {e}"),
                    format!(
                        "der SMTP-Server {host}:{port} hat eine Antwort gesendet, die kein SMTP ist: {e}"
                    ),
                ),
            );
        }
        network(
            format!("the connection to the SMTP server {host}:{port} broke: {e}"),
            format!("die Verbindung zum SMTP-Server {host}:{port} ist abgebrochen: {e}"),
        )
    }

    /// Logs in as `mailbox` with `token`: XOAUTH2, or OAUTHBEARER when the
    /// server offers only that. A refusal is `AuthRejected` (or the mapped
    /// Exchange error) with the server's final reply.
    pub async fn authenticate(&mut self, mailbox: &str, token: &Secret) -> Result<Mechanism> {
        if !self.secure {
            return Err(Error::new(
                ErrorKind::Tls,
                Text::new(
                    "the token is never sent before TLS",
                    "das Token wird nie vor TLS gesendet",
                ),
            ));
        }
        if self.authed.is_some() {
            return Err(Error::internal("an SMTP connection logs in once"));
        }
        let mech = self.pick_mechanism().await?;
        let user = mailbox;
        let payload = Zeroizing::new(match mech {
            Mechanism::Xoauth2 => format!("user={user}\x01auth=Bearer {}\x01\x01", token.expose()),
            Mechanism::OAuthBearer => format!(
                "n,a={user},\x01host={}\x01port={}\x01auth=Bearer {}\x01\x01",
                self.host,
                self.port,
                token.expose()
            ),
        });
        let b64 =
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(payload.as_bytes()));
        let name = match mech {
            Mechanism::Xoauth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        };
        let line = Zeroizing::new(format!("AUTH {name} {}", b64.as_str()));
        log::debug!(
            "SMTP AUTH {name} as {mailbox} (token {} chars)",
            token.expose().len()
        );
        let first = self.cmd(Line(&line), "AUTH").await;
        drop(line);
        let result = match first {
            Ok(r) if r.has_code(334) => {
                // An error challenge: answer it so that the final reply comes.
                let challenge = r
                    .first_word()
                    .and_then(|w| base64::engine::general_purpose::STANDARD.decode(w).ok())
                    .and_then(|b| String::from_utf8(b).ok())
                    .map(|s| {
                        s.chars()
                            .filter(|c| !c.is_control())
                            .take(300)
                            .collect::<String>()
                    });
                let answer = match mech {
                    Mechanism::Xoauth2 => "",
                    Mechanism::OAuthBearer => "AQ==",
                };
                let fin = self.cmd(Line(answer), "AUTH").await;
                match fin {
                    Ok(r) if r.has_code(235) => Ok(()),
                    Ok(r) => Err(CmdError::Reply(r.code().into(), reply_text(&r))),
                    Err(CmdError::Reply(code, mut reply)) => {
                        if let Some(c) = challenge {
                            reply.push_str(&format!(" (challenge: {c})"));
                        }
                        Err(CmdError::Reply(code, reply))
                    }
                    Err(e) => Err(e),
                }
            }
            Ok(r) if r.has_code(235) => Ok(()),
            Ok(r) => Err(CmdError::Reply(r.code().into(), reply_text(&r))),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.authed = Some((mailbox.to_string(), token_fingerprint(token)));
                Ok(mech)
            }
            Err(CmdError::Reply(code, reply)) => {
                Err(map_reply(code, &reply, Phase::Auth, mailbox, mailbox))
            }
            Err(CmdError::Fatal(e)) => {
                // Dovecot drops a connection whose SASL response is too long.
                if e.kind == ErrorKind::Network {
                    log::warning!(
                        "the SMTP server closed the connection during AUTH (token of {} chars)",
                        token.expose().len()
                    );
                }
                Err(e)
            }
        }
    }

    /// XOAUTH2 when offered; else OAUTHBEARER (lettre does not know it, so
    /// the EHLO reply is read again).
    async fn pick_mechanism(&mut self) -> Result<Mechanism> {
        use lettre::transport::smtp::authentication::Mechanism as L;
        if self.conn.server_info().supports_auth_mechanism(L::Xoauth2) {
            return Ok(Mechanism::Xoauth2);
        }
        let hello = ClientId::default();
        let r = match self
            .cmd(lettre::transport::smtp::commands::Ehlo::new(hello), "EHLO")
            .await
        {
            Ok(r) => r,
            Err(CmdError::Reply(code, reply)) => {
                return Err(map_reply(code, &reply, Phase::Connect, "", ""));
            }
            Err(CmdError::Fatal(e)) => return Err(e),
        };
        let offers_bearer = r.message().any(|l| {
            let mut w = l.split_whitespace();
            w.next().is_some_and(|k| k.eq_ignore_ascii_case("AUTH"))
                && w.any(|m| m.eq_ignore_ascii_case("OAUTHBEARER"))
        });
        if offers_bearer {
            return Ok(Mechanism::OAuthBearer);
        }
        Err(Error::new(
            ErrorKind::Protocol,
            Text::new(
                format!(
                    "the SMTP server {} offers neither XOAUTH2 nor OAUTHBEARER",
                    self.host
                ),
                format!(
                    "der SMTP-Server {} bietet weder XOAUTH2 noch OAUTHBEARER an",
                    self.host
                ),
            ),
        ))
    }

    /// Sends one message. Every recipient is tried first: when any is
    /// refused, the transaction is reset and nothing is sent
    /// (`SendRejected` with the refused addresses).
    pub async fn send(&mut self, msg: &Composed, mailbox: &str) -> Result<Sent> {
        if self.authed.is_none() {
            return Err(Error::internal("send before AUTH"));
        }
        self.data_started = false;
        let from = msg
            .envelope
            .from()
            .map(ToString::to_string)
            .unwrap_or_default();
        let mut params = Vec::new();
        if !msg.bytes.is_ascii() {
            if !self
                .conn
                .server_info()
                .supports_feature(Extension::EightBitMime)
            {
                return Err(Error::new(
                    ErrorKind::SendRejected,
                    Text::new(
                        "the message has 8-bit content but the server does not offer 8BITMIME",
                        "die Nachricht hat 8-Bit-Inhalt, aber der Server bietet kein 8BITMIME an",
                    ),
                ));
            }
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let non_ascii = msg
            .envelope
            .from()
            .iter()
            .map(|a| a.to_string())
            .chain(msg.envelope.to().iter().map(ToString::to_string))
            .any(|a| !a.is_ascii());
        if non_ascii {
            if !self
                .conn
                .server_info()
                .supports_feature(Extension::SmtpUtfEight)
            {
                return Err(Error::new(
                    ErrorKind::SendRejected,
                    Text::new(
                        "an address is not ASCII but the server does not offer SMTPUTF8",
                        "eine Adresse ist nicht ASCII, aber der Server bietet kein SMTPUTF8 an",
                    ),
                ));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        match self
            .cmd(Mail::new(msg.envelope.from().cloned(), params), "MAIL FROM")
            .await
        {
            Ok(_) => {}
            Err(CmdError::Reply(code, reply)) => {
                self.reset().await;
                return Err(map_reply(code, &reply, Phase::MailFrom, mailbox, &from));
            }
            Err(CmdError::Fatal(e)) => return Err(e),
        }
        let mut refused: Vec<String> = Vec::new();
        let mut first_refusal: Option<(u16, String)> = None;
        let mut accepted = Vec::new();
        for to in msg.envelope.to() {
            match self.cmd(Rcpt::new(to.clone(), vec![]), "RCPT TO").await {
                Ok(_) => accepted.push(to.to_string()),
                Err(CmdError::Reply(code, reply)) => {
                    refused.push(to.to_string());
                    first_refusal.get_or_insert((code, reply));
                }
                Err(CmdError::Fatal(e)) => return Err(e),
            }
        }
        if let Some((code, reply)) = first_refusal {
            self.reset().await;
            let mut e = map_reply(code, &reply, Phase::RcptTo, mailbox, &from);
            if e.kind == ErrorKind::SendRejected {
                let list = refused.join(", ");
                e.message = Text::new(
                    format!("the SMTP server refused the recipients {list}; nothing was sent"),
                    format!(
                        "der SMTP-Server hat die Empfänger {list} abgelehnt; nichts wurde gesendet"
                    ),
                );
            }
            e.rejected = refused;
            return Err(e);
        }
        self.data_started = true;
        match self.cmd(Data, "DATA").await {
            Ok(_) => {}
            Err(CmdError::Reply(code, reply)) => {
                self.reset().await;
                return Err(map_reply(code, &reply, Phase::Data, mailbox, &from));
            }
            Err(CmdError::Fatal(e)) => return Err(e),
        }
        let t = self.io_timeout;
        // lettre always ends the data with CRLF . CRLF: a final CRLF of the
        // message itself is that CRLF (else the message gains an empty line).
        let data = msg.bytes.strip_suffix(b"\r\n").unwrap_or(&msg.bytes);
        let sent = match tokio::time::timeout(t, self.conn.message(data)).await {
            Err(_) => {
                self.broken = true;
                return Err(timeout_error("the message", t));
            }
            Ok(r) => r,
        };
        match sent {
            Ok(r) => Ok(Sent {
                accepted,
                reply: crate::error::sanitize_reply(&reply_text(&r)),
            }),
            Err(e) => match error_reply(&e) {
                Some((code, reply)) => Err(map_reply(code, &reply, Phase::Data, mailbox, &from)),
                None => {
                    self.broken = true;
                    Err(self.lost(&e))
                }
            },
        }
    }

    /// RSET after a refused transaction; a failure breaks the connection.
    async fn reset(&mut self) {
        if self.cmd(Rset, "RSET").await.is_err() {
            self.broken = true;
        }
    }

    /// QUIT, briefly; the socket closes either way.
    pub async fn close(mut self) {
        if !self.is_broken() {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.conn.command(Quit)).await;
        }
        self.conn.abort().await;
    }
}

enum CmdError {
    /// The server answered with a refusal.
    Reply(u16, String),
    /// The connection is unusable.
    Fatal(Error),
}

fn greeting_error(host: &str, port: u16, e: &lettre::transport::smtp::Error) -> Error {
    if let Some((code, reply)) = error_reply(e) {
        return map_reply(code, &reply, Phase::Connect, "", "");
    }
    if is_tls_failure(e) {
        return tls_error(host, &e.to_string());
    }
    network(
        format!("the SMTP server {host}:{port} did not greet: {e}"),
        format!("der SMTP-Server {host}:{port} hat nicht begrüßt: {e}"),
    )
}

/// rustls with the platform verifier plus the configured extra roots.
fn client_config(extra_roots: &[CertificateDer<'static>]) -> Result<Arc<rustls::ClientConfig>> {
    crate::tls::client_config(extra_roots).map(Arc::new)
}

async fn implicit_tls(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    host: &str,
    extra_roots: &[CertificateDer<'static>],
) -> Result<TlsStream> {
    let config = client_config(extra_roots)?;
    let name = ServerName::try_from(hosts::normalize(host))
        .map_err(|_| tls_error(host, "not a valid TLS server name"))?;
    let inner = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            if is_tls_failure(&e) {
                tls_error(host, &e.to_string())
            } else {
                network(
                    format!("the TLS handshake with {host} broke off: {e}"),
                    format!("der TLS-Handshake mit {host} ist abgebrochen: {e}"),
                )
            }
        })?;
    Ok(TlsStream { inner, peer })
}

/// lettre's TLS parameters for STARTTLS: the same trust (platform verifier
/// plus the extra roots), TLS 1.2 at least.
fn tls_parameters(host: &str, extra_roots: &[CertificateDer<'static>]) -> Result<TlsParameters> {
    let mut b = TlsParameters::builder(hosts::normalize(host));
    for der in extra_roots {
        let cert = Certificate::from_der(der.to_vec())
            .map_err(|e| tls_error(host, &format!("tls.ca_file: {e}")))?;
        b = b.add_root_certificate(cert);
    }
    b.build_rustls()
        .map_err(|e| tls_error(host, &e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_replies_are_mapped_with_hints() {
        let e = map_reply(
            535,
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled",
            Phase::Auth,
            "alice@contoso.com",
            "alice@contoso.com",
        );
        assert_eq!(e.kind, ErrorKind::AuthRejected);
        let hint = e.hint.clone().unwrap();
        assert!(hint.en.contains(
            "Set-CASMailbox -Identity alice@contoso.com -SmtpClientAuthenticationDisabled $false"
        ));
        assert!(
            hint.en
                .contains("Set-TransportConfig -SmtpClientAuthenticationDisabled $false")
        );
        assert!(hint.de.contains("Set-TransportConfig"));
        assert!(
            e.server_reply
                .as_deref()
                .unwrap()
                .starts_with("535 5.7.139")
        );

        let e = map_reply(
            535,
            "535 5.7.3 Authentication unsuccessful [X]",
            Phase::Auth,
            "a@b.c",
            "a@b.c",
        );
        assert_eq!(e.kind, ErrorKind::AuthRejected);
        assert!(e.hint.clone().unwrap().en.contains("SMTP.Send"));

        let e = map_reply(
            554,
            "554 5.2.252 SendAsDenied; alice@contoso.com not allowed to send as boss@contoso.com; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied",
            Phase::Data,
            "alice@contoso.com",
            "boss@contoso.com",
        );
        assert_eq!(e.kind, ErrorKind::MailboxAccessDenied);
        assert!(e.hint.clone().unwrap().en.contains(
            "Add-RecipientPermission -Identity boss@contoso.com -Trustee alice@contoso.com -AccessRights SendAs"
        ));
        let e = map_reply(
            550,
            "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
            Phase::MailFrom,
            "a@b.c",
            "x@b.c",
        );
        assert_eq!(e.kind, ErrorKind::MailboxAccessDenied);

        let e = map_reply(
            432,
            "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
            Phase::MailFrom,
            "a@b.c",
            "a@b.c",
        );
        assert_eq!(e.kind, ErrorKind::Throttled);
        assert!(e.transient);

        let e = map_reply(
            550,
            "550 5.1.1 <x@y.z>: Recipient address rejected",
            Phase::RcptTo,
            "a@b.c",
            "a@b.c",
        );
        assert_eq!(e.kind, ErrorKind::SendRejected);
        assert!(!e.transient);
        let e = map_reply(
            452,
            "452 4.5.3 Too many recipients\r\nx",
            Phase::RcptTo,
            "a@b.c",
            "a@b.c",
        );
        assert!(e.transient);
        assert_eq!(
            e.server_reply.as_deref(),
            Some("452 4.5.3 Too many recipients  x")
        );
    }

    #[test]
    fn untrusted_hosts_and_plaintext_are_refused_before_connecting() {
        let cfg = crate::config::parse(
            r#"{"provider":"custom","authority":"https://login.example.com","client_id":"x","servers":{"smtp":{"host":"smtp.example.com","security":"starttls"}}}"#,
        )
        .unwrap()
        .config;
        let evil = Server {
            host: "smtp.evil.test".into(),
            port: 587,
            security: Security::StartTls,
        };
        assert_eq!(
            Endpoint::new(&cfg, evil).unwrap_err().kind,
            ErrorKind::UntrustedHost
        );
        let ok = cfg.servers.smtp.clone().unwrap();
        assert!(Endpoint::new(&cfg, ok.clone()).is_ok());
        let plain = Server {
            security: Security::None,
            ..ok
        };
        assert_eq!(Endpoint::new(&cfg, plain).unwrap_err().kind, ErrorKind::Tls);
    }

    #[test]
    fn fingerprints_tell_tokens_apart() {
        let a = Secret::new("token-a");
        assert_eq!(
            token_fingerprint(&a),
            token_fingerprint(&Secret::new("token-a"))
        );
        assert_ne!(
            token_fingerprint(&a),
            token_fingerprint(&Secret::new("token-b"))
        );
    }
}
