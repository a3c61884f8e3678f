//! SELECT through our own reader ([`super::resp`]) instead of the crate:
//! imap 3.0.0-alpha.15 panics (`unreachable!` in `parse_mailbox`) on an
//! untagged `NO` or `BAD` in a SELECT response, which RFC 3501 allows (for
//! example `* NO [ALERT] Mailbox is over quota`); fuzz/regressions/
//! imap_session holds the inputs. Untagged warnings are logged and
//! otherwise ignored; EXISTS, `[UIDVALIDITY n]` and `[UIDNEXT n]` are
//! taken; the tagged reply decides.

use super::resp::{RespError, Response, Status};
use super::{COMMAND_BUDGET, Selected, Session, is_not_connected, names, protocol};
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::log;

/// The largest literal accepted in a SELECT response (none are expected).
const MAX_SELECT_LITERAL: u64 = 64 * 1024;

/// `[CODE n]` at the start of an untagged `OK` text.
fn ok_code(text: &str, code: &str) -> Option<u32> {
    text.get(..3).filter(|p| p.eq_ignore_ascii_case("OK "))?;
    let inner = text[3..].trim_start().strip_prefix('[')?;
    let inner = &inner[..inner.find(']')?];
    let (name, value) = inner.split_once(' ')?;
    if !name.eq_ignore_ascii_case(code) {
        return None;
    }
    value.trim().parse().ok()
}

impl Session {
    /// `SELECT <folder>` (the name already encoded for the wire).
    pub(super) fn select_own(&mut self, folder: &str, wire_name: &str) -> Result<Selected> {
        const WHAT: &str = "SELECT";
        self.begin_with(COMMAND_BUDGET, false)?;
        // EXISTS during the command belongs to the new folder.
        self.selected = None;
        let wire = self.wire.clone();
        let mut w = wire.lock();
        let tag = self.send_own(&mut w, &format!("SELECT {}", names::quote(wire_name)), WHAT)?;
        let mut left = COMMAND_BUDGET;
        let (mut exists, mut uid_validity, mut uid_next) = (0u32, None, None);
        loop {
            match self.next_response(&mut w, &mut left, MAX_SELECT_LITERAL, WHAT)? {
                Response::Exists(n) => exists = n,
                Response::Untagged(t) => {
                    if let Some(v) = ok_code(&t, "UIDVALIDITY") {
                        uid_validity = Some(v);
                    } else if let Some(v) = ok_code(&t, "UIDNEXT") {
                        uid_next = Some(v);
                    } else if !t.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("OK ")) {
                        log::info!("IMAP {}: SELECT: the server says: {t}", self.host);
                    }
                }
                Response::Tagged {
                    tag: t,
                    status,
                    text,
                } => {
                    if t != tag {
                        return Err(
                            self.lost(RespError::Protocol("a reply with a foreign tag"), WHAT)
                        );
                    }
                    match status {
                        Status::Ok => break,
                        Status::Bad if is_not_connected(&text) => {
                            self.broken = true;
                            return Err(self.access_denied(&text));
                        }
                        Status::Bad => {
                            return Err(Error::new(
                                ErrorKind::Protocol,
                                Text::new(
                                    format!("{} did not understand SELECT", self.host),
                                    format!("{} hat SELECT nicht verstanden", self.host),
                                ),
                            )
                            .with_server_reply(&text));
                        }
                        Status::No => {
                            let kind = if text.to_ascii_uppercase().contains("[NONEXISTENT]")
                                || text.contains("doesn't exist")
                            {
                                ErrorKind::NotFound
                            } else {
                                ErrorKind::MailboxAccessDenied
                            };
                            return Err(Error::new(
                                kind,
                                Text::new(
                                    format!("{} cannot open the folder '{folder}'", self.host),
                                    format!(
                                        "{} kann den Ordner '{folder}' nicht öffnen",
                                        self.host
                                    ),
                                ),
                            )
                            .with_server_reply(&text));
                        }
                    }
                }
                Response::Continue(_) => {
                    return Err(self.lost(RespError::Protocol("an unexpected continuation"), WHAT));
                }
                // FETCH (flags), EXPUNGE, RECENT, BYE (noted; the
                // connection closing next is the error).
                _ => {}
            }
        }
        drop(w);
        let Some(uid_validity) = uid_validity else {
            self.broken = true;
            return Err(protocol(
                &self.host,
                WHAT,
                "the server sent no UIDVALIDITY",
                "der Server hat keine UIDVALIDITY gesendet",
            ));
        };
        Ok(Selected {
            name: folder.to_string(),
            uid_validity,
            exists,
            uid_next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ok_code;

    #[test]
    fn response_codes() {
        assert_eq!(ok_code("OK [UIDVALIDITY 17] Ok", "UIDVALIDITY"), Some(17));
        assert_eq!(ok_code("ok [uidnext 5] Predicted", "UIDNEXT"), Some(5));
        assert_eq!(ok_code("OK [UIDNEXT 5] x", "UIDVALIDITY"), None);
        assert_eq!(ok_code("NO [UIDVALIDITY 17] x", "UIDVALIDITY"), None);
        assert_eq!(ok_code("OK [UIDVALIDITY x] x", "UIDVALIDITY"), None);
        assert_eq!(
            ok_code("OK [UIDVALIDITY 99999999999] x", "UIDVALIDITY"),
            None
        );
        assert_eq!(ok_code("OK [UIDVALIDITY 3", "UIDVALIDITY"), None);
        assert_eq!(ok_code("OK", "UIDVALIDITY"), None);
        assert_eq!(ok_code("OKé", "UIDVALIDITY"), None);
    }
}
