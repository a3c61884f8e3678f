//! The device-code flow: show `user_code` and `verification_uri` (in the
//! op's info), poll the token endpoint every `interval` seconds (+5 s after
//! each `slow_down`) until the user finishes, declines, or the code expires.
//! A transient failure of one poll (after the client's own retries) does not
//! end the flow: polling goes on, less often, until the code expires.

use std::sync::Arc;
use std::time::Duration;

use super::{ConsentOp, ConsentOutcome, ConsentRequest, ConsentState, resolve_account};
use crate::auth::{DevicePoll, OAuthClient, now};
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::log;

/// The longest pause between polls.
const MAX_INTERVAL_S: u64 = 60;

pub(crate) async fn run(
    client: Arc<OAuthClient>,
    req: ConsentRequest,
    op: Arc<ConsentOp>,
    scopes: Vec<String>,
) -> Result<ConsentOutcome> {
    let dc = client.device_start(&scopes).await?;
    op.set_device(&dc);
    log::info!(
        "device sign-in: waiting for the user at {} (code expires in {} s)",
        dc.verification_uri,
        dc.expires_at - now()
    );
    let mut interval = dc.interval_s.max(1);
    loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        if now() >= dc.expires_at {
            return Err(expired());
        }
        match client.device_poll(&dc).await {
            Ok(DevicePoll::Pending) => {}
            Ok(DevicePoll::SlowDown) => {
                interval = (interval + 5).min(MAX_INTERVAL_S);
                log::debug!("device sign-in: slow_down, polling every {interval} s");
            }
            Ok(DevicePoll::Done(tokens)) => {
                op.set_progress(ConsentState::Exchanging);
                let tokens = *tokens;
                let account = resolve_account(&req, &tokens)?;
                return Ok(ConsentOutcome {
                    account,
                    protocols: req.protocols,
                    app: false,
                    tokens,
                });
            }
            Err(e) if e.transient => {
                interval = (interval * 2).min(MAX_INTERVAL_S);
                log::warning!(
                    "device sign-in: a poll failed transiently ({:?}); polling again in {interval} s",
                    e.kind
                );
            }
            Err(e) => return Err(e),
        }
    }
}

fn expired() -> Error {
    Error::new(
        ErrorKind::Timeout,
        Text::new(
            "the device code expired before the sign-in was completed",
            "der Gerätecode ist abgelaufen, bevor die Anmeldung abgeschlossen wurde",
        ),
    )
    .with_hint(Text::new(
        "Start the sign-in again and enter the code sooner.",
        "Die Anmeldung erneut starten und den Code früher eingeben.",
    ))
}
