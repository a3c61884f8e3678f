//! SMTP submission with XOAUTH2: request parsing, message composition, the
//! project's own connections (TCP_NODELAY, rustls, AUTH by hand) and a small
//! per-mailbox pool. The C exports live in `ffi` once the whole feature is in.
//!
//! The glue a context needs (see the module docs of each part):
//! [`prepare_send`] / [`prepare_mime`] / [`prepare_forward`] parse and build
//! before anything connects; [`send`] runs inside `Context::run` (so token
//! refreshes and host-store callbacks stay on the caller's thread).

pub mod compose;
pub mod connection;
pub mod pool;
pub mod request;

use std::time::Duration;

use serde_json::{Value, json};

use crate::config::Config;
use crate::context::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::protocol::{Protocol, Protocols};

pub use compose::Composed;
pub use pool::Pools;
pub use request::Common;

/// A send request's timeout when it gives none: connect, AUTH and the
/// transfer of a large message.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(300);

/// What a successful send answers (the ABI's result JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub message_id: Option<String>,
    pub accepted: Vec<String>,
    pub server_reply: String,
}

impl Outcome {
    pub fn to_json(&self) -> Value {
        json!({
            "message_id": self.message_id,
            "accepted": self.accepted,
            "server_reply": self.server_reply,
        })
    }
}

/// Parses a `mailoauth_smtp_send` request and builds its message.
pub fn prepare_send(json: &str, config: &Config) -> Result<(Common, Composed)> {
    let req = request::SendRequest::parse(json, config)?;
    let msg = compose::compose(&req.message)?;
    check_size(&msg, config)?;
    Ok((req.common, msg))
}

/// Parses a `mailoauth_smtp_send_mime` request around the host's bytes.
pub fn prepare_mime(json: &str, mime: &[u8], config: &Config) -> Result<(Common, Composed)> {
    let req = request::MimeRequest::parse(json, config)?;
    let msg = compose::prepare_mime(mime, &req.envelope, config.max_message_bytes)?;
    check_size(&msg, config)?;
    Ok((req.common, msg))
}

/// Parses a `mailoauth_smtp_forward` request and builds the forward.
pub fn prepare_forward(json: &str, original: &[u8], config: &Config) -> Result<(Common, Composed)> {
    let req = request::ForwardRequest::parse(json, config)?;
    if original.len() as u64 > config.max_message_bytes {
        return Err(too_large(config.max_message_bytes));
    }
    let from = request::mailbox("mailbox", &req.common.mailbox)?;
    let spec = compose::ForwardSpec {
        from: &from,
        to: &req.to,
        comment: req.comment.as_deref(),
        reply_to_original: req.reply_to_original,
    };
    let msg = match req.mode {
        request::ForwardMode::Attachment => compose::forward_attachment(&spec, original)?,
        request::ForwardMode::Inline => compose::forward_inline(&spec, original)?,
        request::ForwardMode::Redirect => compose::redirect(&spec, original)?,
    };
    check_size(&msg, config)?;
    Ok((req.common, msg))
}

fn too_large(limit: u64) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        Text::new(
            format!("the message is larger than limits.max_message_bytes ({limit} bytes)"),
            format!("die Nachricht ist größer als limits.max_message_bytes ({limit} Bytes)"),
        ),
    )
}

fn check_size(msg: &Composed, config: &Config) -> Result<()> {
    if msg.bytes.len() as u64 > config.max_message_bytes {
        return Err(too_large(config.max_message_bytes));
    }
    Ok(())
}

/// The endpoint of a request: its `server`, else `servers.smtp`; checked
/// against the trusted hosts before anything connects.
pub fn endpoint(config: &Config, common: &Common) -> Result<connection::Endpoint> {
    let server = common
        .server
        .clone()
        .or_else(|| config.servers.smtp.clone())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                Text::new(
                    "no SMTP server is configured (servers.smtp) and the request names none (server)",
                    "kein SMTP-Server konfiguriert (servers.smtp) und die Anfrage nennt keinen (server)",
                ),
            )
        })?;
    let mut ep = connection::Endpoint::new(config, server)?;
    if let Some(t) = common.timeout {
        ep.io_timeout = ep.io_timeout.min(t);
        ep.connect_timeout = ep.connect_timeout.min(t);
    }
    Ok(ep)
}

/// Sends a prepared message through the context's pools, with the
/// account's tokens (one forced refresh when the server rejects one). Run
/// it with `Context::run(Some(common.timeout or DEFAULT_SEND_TIMEOUT), …)`.
pub async fn send(
    ctx: &Context,
    pools: &Pools,
    common: &Common,
    msg: &Composed,
) -> Result<Outcome> {
    let config = ctx.config();
    let ep = endpoint(config, common)?;
    let store = ctx.grant_store()?;
    let client = ctx.oauth()?;
    let wanted = Protocols::of(Protocol::Smtp);
    let account = common.account.as_str();
    let tokens = async |force: bool| {
        ctx.tokens()
            .get(&store, &client, account, wanted, force)
            .await
    };
    let sent = pools
        .send(
            &ep,
            config.smtp_max_connections,
            &common.mailbox,
            msg,
            tokens,
        )
        .await?;
    Ok(Outcome {
        message_id: msg.message_id.clone(),
        accepted: sent.accepted,
        server_reply: sent.reply,
    })
}

/// The timeout a request runs under.
pub fn timeout_of(common: &Common) -> Duration {
    common.timeout.unwrap_or(DEFAULT_SEND_TIMEOUT)
}
