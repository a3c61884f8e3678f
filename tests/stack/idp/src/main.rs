//! mailoauth-test-idp: a local imitation of Microsoft's identity platform (v2.0 endpoints)
//! for mailoauth's tests. See `--help`.

mod errors;
mod handlers;
mod oauth;
mod pages;
mod scopes;
mod settings;
mod store;
mod util;

use handlers::{App, Req};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use settings::Settings;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const USAGE: &str = "usage: mailoauth-test-idp --bind ADDR --http-port P --https-port Q \
[--tls-cert cert.pem --tls-key key.pem] [--config idp.json] [--ports-file F] [--log-file L]";

#[derive(Debug, Default)]
struct Cli {
    bind: String,
    http_port: u16,
    https_port: u16,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    config: Option<String>,
    ports_file: Option<String>,
    log_file: Option<String>,
}

fn parse_cli(args: &[String]) -> Result<Cli, String> {
    let mut cli = Cli {
        bind: "127.0.0.1".into(),
        ..Cli::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-h" || a == "--help" {
            return Err(USAGE.into());
        }
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut val = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it.next().cloned().ok_or(format!("{key} needs a value")),
            }
        };
        let port = |v: String| v.parse::<u16>().map_err(|_| format!("bad port '{v}'"));
        match key.as_str() {
            "--bind" => cli.bind = val()?,
            "--http-port" => cli.http_port = port(val()?)?,
            "--https-port" => cli.https_port = port(val()?)?,
            "--tls-cert" => cli.tls_cert = Some(val()?),
            "--tls-key" => cli.tls_key = Some(val()?),
            "--config" => cli.config = Some(val()?),
            "--ports-file" => cli.ports_file = Some(val()?),
            "--log-file" => cli.log_file = Some(val()?),
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    if cli.tls_cert.is_some() != cli.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    Ok(cli)
}

fn load_settings(cli: &Cli) -> Result<Settings, String> {
    let base = Settings::default();
    let Some(path) = &cli.config else {
        return Ok(base);
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("--config {path}: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("--config {path}: {e}"))?;
    base.merged(&v).map_err(|e| format!("--config {path}: {e}"))
}

fn tls_acceptor(cert: &str, key: &str) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("--tls-cert {cert}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {cert}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("--tls-cert {cert}: no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {key}: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS configuration: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

async fn serve(
    app: Arc<App>,
    req: Request<Incoming>,
    scheme: &'static str,
) -> Response<Full<bytes::Bytes>> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    // Entra echoes client-request-id in a response header.
    let client_request_id = parts.headers.get("client-request-id").cloned();
    let body = match Limited::new(body, 1 << 20).collect().await {
        Ok(b) => Some(b.to_bytes()),
        Err(_) => None,
    };
    let resp = match body {
        Some(body) => {
            let r = Req {
                method: method.clone(),
                path: path.clone(),
                query,
                headers: parts.headers,
                body,
                scheme,
            };
            handlers::handle(&app, &r).await
        }
        None => {
            let e = errors::AadError::new(
                413,
                "invalid_request",
                9002313,
                "Invalid request. Request is malformed or invalid.",
            );
            let body =
                serde_json::to_vec(&e.body(&util::uuid_v4(), &util::uuid_v4())).unwrap_or_default();
            handlers::Resp {
                status: 413,
                headers: vec![(
                    "content-type".into(),
                    "application/json; charset=utf-8".into(),
                )],
                body,
                grant_type: None,
            }
        }
    };
    app.log_line(&format!(
        "{} {} {} {} {} grant_type={} {}ms",
        util::fmt_timestamp(util::now_s()),
        scheme,
        method,
        path,
        resp.status,
        resp.grant_type.as_deref().unwrap_or("-"),
        started.elapsed().as_millis()
    ));
    let mut builder = Response::builder().status(resp.status);
    for (k, v) in &resp.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    if let Some(id) = client_request_id {
        builder = builder.header("client-request-id", id);
    }
    builder
        .body(Full::new(bytes::Bytes::from(resp.body)))
        .unwrap_or_else(|_| {
            let mut r = Response::new(Full::new(bytes::Bytes::from_static(b"internal error")));
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
}

async fn serve_conn<S>(app: Arc<App>, io: S, scheme: &'static str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(serve(app, req, scheme).await) }
    });
    // writev(false): headers and body go out in one buffer, one write (no delayed-ACK stalls).
    let _ = http1::Builder::new()
        .writev(false)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

async fn accept_loop(app: Arc<App>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    loop {
        let (stream, _peer): (TcpStream, SocketAddr) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                app.log_line(&format!("accept error: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_conn(app, stream, "http").await,
                Some(acc) => {
                    match tokio::time::timeout(Duration::from_secs(10), acc.accept(stream)).await {
                        Ok(Ok(s)) => serve_conn(app, s, "https").await,
                        Ok(Err(e)) => app.log_line(&format!("TLS handshake failed: {e}")),
                        Err(_) => app.log_line("TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

fn write_ports_file(path: &str, http: u16, https: Option<u16>) -> std::io::Result<()> {
    let v = serde_json::json!({"http": http, "https": https});
    let tmp = format!("{path}.tmp{}", std::process::id());
    std::fs::write(&tmp, v.to_string())?;
    std::fs::rename(&tmp, path)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let settings = load_settings(&cli)?;
    let log_file = match &cli.log_file {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("--log-file {p}: {e}"))?,
        ),
        None => None,
    };
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(c), Some(k)) => Some(tls_acceptor(c, k)?),
        _ => None,
    };
    let http = TcpListener::bind((cli.bind.as_str(), cli.http_port))
        .await
        .map_err(|e| format!("bind {}:{}: {e}", cli.bind, cli.http_port))?;
    let http_port = http.local_addr().map_err(|e| e.to_string())?.port();
    let https = match &tls {
        Some(_) => Some(
            TcpListener::bind((cli.bind.as_str(), cli.https_port))
                .await
                .map_err(|e| format!("bind {}:{}: {e}", cli.bind, cli.https_port))?,
        ),
        None => None,
    };
    let https_port = match &https {
        Some(l) => Some(l.local_addr().map_err(|e| e.to_string())?.port()),
        None => None,
    };
    let host = if cli.bind.contains(':') {
        format!("[{}]", cli.bind)
    } else {
        cli.bind.clone()
    };
    let app = Arc::new(App {
        store: Mutex::new(store::Store::new(settings)),
        http_base: format!("http://{host}:{http_port}"),
        log_file: Mutex::new(log_file),
    });
    tokio::spawn(accept_loop(app.clone(), http, None));
    if let (Some(l), Some(acc)) = (https, tls) {
        tokio::spawn(accept_loop(app.clone(), l, Some(acc)));
    }
    if let Some(p) = &cli.ports_file {
        write_ports_file(p, http_port, https_port).map_err(|e| format!("--ports-file {p}: {e}"))?;
    }
    app.log_line(&format!(
        "mailoauth-test-idp listening: http://{host}:{http_port}{}",
        https_port
            .map(|p| format!(" https://{host}:{p}"))
            .unwrap_or_default()
    ));
    shutdown_signal().await;
    app.log_line("mailoauth-test-idp: shutting down");
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = match parse_cli(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(run(cli));
    rt.shutdown_timeout(Duration::from_millis(200));
    if let Err(e) = result {
        eprintln!("mailoauth-test-idp: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn cli_parsing() {
        let c = parse_cli(&args(
            "--bind 127.0.0.1 --http-port 0 --https-port=10443 --ports-file p.json",
        ))
        .unwrap();
        assert_eq!(c.https_port, 10443);
        assert_eq!(c.ports_file.as_deref(), Some("p.json"));
        assert!(parse_cli(&args("--tls-cert a.pem")).is_err());
        assert!(parse_cli(&args("--http-port x")).is_err());
        assert!(parse_cli(&args("--nope")).is_err());
    }
}
