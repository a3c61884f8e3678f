//! The browser flow: authorization code + PKCE (S256) with a loopback
//! redirect.
//!
//! - The listener binds 127.0.0.1 and ::1 on one free port (or
//!   `redirect.port`); the redirect URI is `http://localhost:<port>/`
//!   (`redirect.host` when it is an IP literal). Each consent has its own
//!   listener, so two consents at once do not clash.
//! - Only `GET /?state=<ours>&code=…` (or `&error=…`) ends the wait. Any other
//!   request — another path such as `/favicon.ico`, a missing or wrong
//!   `state` — gets a 404 and is otherwise ignored.
//! - Every connection has a read deadline ([`READ_TIMEOUT`]) and a bounded
//!   request head ([`MAX_REQUEST_BYTES`]); at most [`MAX_CONNECTIONS`] are
//!   served at once.
//! - The browser gets a small page in the configured language saying that
//!   the sign-in worked (after the code was redeemed and the account
//!   checked) or why not.
//! - The listener closes when the flow ends (success, failure, timeout or
//!   cancel): it lives in the flow's future.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use super::{ConsentOp, ConsentOutcome, ConsentRequest, ConsentState, resolve_account};
use crate::auth::errors;
use crate::auth::http::random_token;
use crate::auth::{OAuthClient, delegated_scopes, pkce_pair};
use crate::config::{Browser, Config};
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::{Language, Text};
use crate::log;
use crate::secret::Secret;

/// How long one connection may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(8);
/// The largest request head we read.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How long writing the answer page may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`prepare`] sets up synchronously in `begin`.
pub(crate) struct Prepared {
    pub authorize_url: String,
    redirect_uri: String,
    state: String,
    verifier: Secret,
    scopes: Vec<String>,
    listeners: Vec<StdListener>,
}

/// Binds the loopback listener and builds the authorize URL.
pub(crate) fn prepare(
    client: &OAuthClient,
    config: &Config,
    req: &ConsentRequest,
) -> Result<Prepared> {
    let scopes = delegated_scopes(config, req.protocols)?;
    let (listeners, port, uri_host) = bind(config)?;
    let redirect_uri = format!("http://{uri_host}:{port}/");
    let state = random_token();
    let (verifier, challenge) = pkce_pair();
    let authorize_url = client.authorize_url(
        &scopes,
        &redirect_uri,
        &state,
        &challenge,
        req.prompt.as_deref(),
        req.account.as_deref(),
    )?;
    log::debug!("browser sign-in: loopback listener on port {port}");
    Ok(Prepared {
        authorize_url,
        redirect_uri,
        state,
        verifier,
        scopes,
        listeners,
    })
}

fn bind_error(port: u16, e: &io::Error) -> Error {
    Error::new(
        ErrorKind::InvalidState,
        Text::new(
            format!("the sign-in could not listen on the loopback port {port}: {e}"),
            format!("die Anmeldung konnte nicht am Loopback-Port {port} lauschen: {e}"),
        ),
    )
    .with_hint(Text::new(
        "Another sign-in or program uses this port. Wait for it to end, or set redirect.port to 0 (any free port).",
        "Eine andere Anmeldung oder ein anderes Programm verwendet diesen Port. Das Ende abwarten oder redirect.port auf 0 setzen (beliebiger freier Port).",
    ))
}

/// The listeners, their port, and the host for the redirect URI.
fn bind(config: &Config) -> Result<(Vec<StdListener>, u16, String)> {
    let wanted = config.redirect_port;
    let host = crate::config::hosts::normalize(&config.redirect_host);
    if host != "localhost" {
        let ip: IpAddr = host.parse().map_err(|_| {
            Error::plain(
                ErrorKind::InvalidConfig,
                "configuration key 'redirect.host': not an IP literal",
            )
        })?;
        let l = StdListener::bind((ip, wanted)).map_err(|e| bind_error(wanted, &e))?;
        let port = l.local_addr().map_err(|e| bind_error(wanted, &e))?.port();
        let uri_host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        return Ok((vec![l], port, uri_host));
    }
    // localhost: 127.0.0.1 and ::1 on the same port, so whatever the
    // browser resolves localhost to reaches us and nobody else.
    for _ in 0..20 {
        let v4 =
            StdListener::bind((Ipv4Addr::LOCALHOST, wanted)).map_err(|e| bind_error(wanted, &e))?;
        let port = v4.local_addr().map_err(|e| bind_error(wanted, &e))?.port();
        match StdListener::bind((Ipv6Addr::LOCALHOST, port)) {
            Ok(v6) => return Ok((vec![v4, v6], port, "localhost".into())),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                if wanted != 0 {
                    return Err(bind_error(port, &e));
                }
                // Someone holds [::1]:port; try another free port.
            }
            Err(e) => {
                log::debug!(
                    "no IPv6 loopback listener ({:?}); using 127.0.0.1 only",
                    e.kind()
                );
                return Ok((vec![v4], port, "localhost".into()));
            }
        }
    }
    Err(bind_error(
        wanted,
        &io::Error::from(io::ErrorKind::AddrInUse),
    ))
}

/// What the redirect brought.
struct Callback {
    code: Option<Secret>,
    error: Option<String>,
    error_description: Option<String>,
    stream: TcpStream,
}

/// Runs the browser flow to its end.
pub(crate) async fn run(
    client: Arc<OAuthClient>,
    config: Arc<Config>,
    req: ConsentRequest,
    op: Arc<ConsentOp>,
    p: Prepared,
) -> Result<ConsentOutcome> {
    let mut listeners = Vec::with_capacity(p.listeners.len());
    for l in p.listeners {
        l.set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(l))
            .map(|l| listeners.push(l))
            .map_err(|e| bind_error(0, &e))?;
    }
    if config.browser == Browser::System {
        let url = p.authorize_url.clone();
        // Detached: some launchers block until the browser exits.
        tokio::task::spawn_blocking(move || {
            if let Err(e) = webbrowser::open(&url) {
                log::warning!(
                    "could not open the system browser ({:?}); the host can show authorize_url from the op's info",
                    e.kind()
                );
            }
        });
    }
    let cb = wait_for_callback(&listeners, &p.state).await?;
    drop(listeners);
    let lang = config.language;
    let mut stream = cb.stream;
    if let Some(error) = cb.error {
        let e = errors::from_redirect(&error, cb.error_description.as_deref());
        respond(&mut stream, 200, &failure_page(lang, &e)).await;
        return Err(e);
    }
    let Some(code) = cb.code else {
        return Err(Error::internal("redirect without code or error"));
    };
    op.set_progress(ConsentState::Exchanging);
    let result = async {
        let tokens = client
            .exchange_code(&code, &p.verifier, &p.redirect_uri, &p.scopes)
            .await?;
        let account = resolve_account(&req, &tokens)?;
        Ok(ConsentOutcome {
            account,
            protocols: req.protocols,
            app: false,
            tokens,
        })
    }
    .await;
    match &result {
        Ok(_) => respond(&mut stream, 200, &success_page(lang)).await,
        Err(e) => respond(&mut stream, 200, &failure_page(lang, e)).await,
    }
    result
}

async fn accept_any(ls: &[TcpListener]) -> io::Result<TcpStream> {
    match ls {
        [] => std::future::pending().await,
        [a] => a.accept().await.map(|x| x.0),
        [a, b, ..] => tokio::select! {
            r = a.accept() => r.map(|x| x.0),
            r = b.accept() => r.map(|x| x.0),
        },
    }
}

/// Serves the listeners until a request with our state and a code or an
/// error arrives. Connection handlers end with this future.
async fn wait_for_callback(listeners: &[TcpListener], state: &str) -> Result<Callback> {
    let (tx, mut rx) = mpsc::channel::<Callback>(4);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            Some(cb) = rx.recv() => return Ok(cb),
            r = accept_any(listeners) => match r {
                Ok(stream) => {
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        drop(stream);
                        continue;
                    };
                    let tx = tx.clone();
                    let state = state.to_string();
                    tasks.spawn(async move {
                        let _permit = permit;
                        serve(stream, &state, tx).await;
                    });
                }
                Err(e) => {
                    log::warning!("loopback listener: accept failed ({:?})", e.kind());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
        while tasks.try_join_next().is_some() {}
    }
}

/// Reads one request; forwards a matching redirect, answers 404 otherwise.
async fn serve(mut stream: TcpStream, state: &str, tx: mpsc::Sender<Callback>) {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(h)) => h,
        Ok(Err(HeadError::TooLarge)) => {
            respond(&mut stream, 431, "").await;
            return;
        }
        _ => return,
    };
    let Some(parsed) = parse_redirect(&head, state) else {
        respond(&mut stream, 404, "").await;
        return;
    };
    let cb = Callback {
        code: parsed.code,
        error: parsed.error,
        error_description: parsed.error_description,
        stream,
    };
    let _ = tx.send(cb).await;
}

enum HeadError {
    TooLarge,
    Io,
}

async fn read_head(stream: &mut TcpStream) -> std::result::Result<String, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Io);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n").or_else(|| find(&buf, b"\n\n")) {
            buf.truncate(end);
            return String::from_utf8(buf).map_err(|_| HeadError::Io);
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Err(HeadError::TooLarge);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

struct Redirect {
    code: Option<Secret>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The redirect's parameters when the request is `GET /?…` with our state
/// and a code or an error; `None` for anything else.
fn parse_redirect(head: &str, state: &str) -> Option<Redirect> {
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    if method != "GET" || !target.starts_with('/') {
        return None;
    }
    let url = url::Url::parse(&format!("http://localhost{target}")).ok()?;
    if url.path() != "/" {
        return None;
    }
    let mut got_state = None;
    let mut r = Redirect {
        code: None,
        error: None,
        error_description: None,
    };
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "state" if got_state.is_none() => got_state = Some(v.into_owned()),
            "code" if r.code.is_none() => r.code = Some(Secret::new(v.into_owned())),
            "error" if r.error.is_none() => r.error = Some(v.into_owned()),
            "error_description" if r.error_description.is_none() => {
                r.error_description = Some(v.into_owned())
            }
            _ => {}
        }
    }
    let state_ok = got_state.is_some_and(|s| constant_time_eq(s.as_bytes(), state.as_bytes()));
    if !state_ok {
        log::debug!("loopback listener: ignored a request without our state");
        return None;
    }
    if r.code.as_ref().is_some_and(|c| c.is_empty()) {
        r.code = None;
    }
    (r.code.is_some() || r.error.is_some()).then_some(r)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn respond(stream: &mut TcpStream, status: u16, html: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let body = if html.is_empty() { reason } else { html };
    let msg = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        let _ = stream.write_all(msg.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn page(lang: Language, title: &str, lines: &[String]) -> String {
    let lang_tag = match lang {
        Language::En => "en",
        Language::De => "de",
    };
    let mut body = String::new();
    for l in lines {
        body.push_str("<p>");
        body.push_str(&escape(l));
        body.push_str("</p>");
    }
    format!(
        "<!DOCTYPE html><html lang=\"{lang_tag}\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;max-width:36em;margin:3em auto;padding:0 1em}}</style></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    )
}

fn success_page(lang: Language) -> String {
    let t = Text::new("Sign-in complete", "Anmeldung abgeschlossen");
    let l = Text::new(
        "You are signed in. You can close this window and return to the application.",
        "Sie sind angemeldet. Sie können dieses Fenster schließen und zur Anwendung zurückkehren.",
    );
    page(lang, t.get(lang), &[l.get(lang).to_string()])
}

fn failure_page(lang: Language, e: &Error) -> String {
    let t = Text::new("Sign-in failed", "Anmeldung fehlgeschlagen");
    let mut lines = vec![e.message.get(lang).to_string()];
    if let Some(h) = &e.hint {
        lines.push(h.get(lang).to_string());
    }
    if let Some(c) = &e.correlation_id {
        lines.push(format!("Correlation ID: {c}"));
    }
    lines.push(
        Text::new(
            "You can close this window.",
            "Sie können dieses Fenster schließen.",
        )
        .get(lang)
        .to_string(),
    );
    page(lang, t.get(lang), &lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_parsing() {
        let st = "abcDEF";
        let ok = parse_redirect(
            "GET /?code=C0DE&state=abcDEF&session_state=x HTTP/1.1\r\nHost: localhost",
            st,
        )
        .unwrap();
        assert_eq!(ok.code.unwrap().expose(), "C0DE");
        assert!(parse_redirect("GET /?code=C0DE&state=abcDEg HTTP/1.1", st).is_none());
        assert!(parse_redirect("GET /?code=C0DE HTTP/1.1", st).is_none());
        assert!(parse_redirect("GET /favicon.ico HTTP/1.1", st).is_none());
        assert!(parse_redirect("GET /x?code=C&state=abcDEF HTTP/1.1", st).is_none());
        assert!(parse_redirect("POST /?code=C&state=abcDEF HTTP/1.1", st).is_none());
        assert!(parse_redirect("GET /?state=abcDEF HTTP/1.1", st).is_none());
        let e = parse_redirect(
            "GET /?error=access_denied&error_description=AADSTS65004%3A+declined&state=abcDEF HTTP/1.1",
            st,
        )
        .unwrap();
        assert_eq!(e.error.as_deref(), Some("access_denied"));
        assert!(e.error_description.unwrap().starts_with("AADSTS65004"));
    }

    #[test]
    fn pages_escape() {
        let e = Error::plain(ErrorKind::AccountMismatch, "<b>x</b>");
        let p = failure_page(Language::De, &e);
        assert!(p.contains("&lt;b&gt;x") && p.contains("Anmeldung fehlgeschlagen"));
        assert!(success_page(Language::En).contains("You can close this window"));
    }
}
