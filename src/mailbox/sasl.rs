//! SASL payloads for the mail servers (XOAUTH2 and OAUTHBEARER) and the
//! administrator hints for refused logins. The payloads hold the token:
//! they are zeroed when dropped and never logged.

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::i18n::Text;
use crate::secret::Secret;

/// Which OAuth SASL mechanism a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    XOAuth2,
    OAuthBearer,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Self::XOAuth2 => "XOAUTH2",
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// XOAUTH2 where offered (Microsoft), else OAUTHBEARER where offered,
    /// else XOAUTH2 (servers that list nothing). `offered` is upper case.
    pub fn choose<'a>(offered: impl IntoIterator<Item = &'a str> + Clone) -> Option<Self> {
        let has = |m: &str| offered.clone().into_iter().any(|o| o == m);
        if has("XOAUTH2") {
            Some(Self::XOAuth2)
        } else if has("OAUTHBEARER") {
            Some(Self::OAuthBearer)
        } else {
            None
        }
    }

    /// The raw (not yet base64) initial client response.
    pub fn payload(self, user: &str, token: &Secret, host: &str, port: u16) -> Zeroizing<Vec<u8>> {
        let s = match self {
            Self::XOAuth2 => format!("user={user}\x01auth=Bearer {}\x01\x01", token.expose()),
            Self::OAuthBearer => format!(
                "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {}\x01\x01",
                gs2_escape(user),
                token.expose()
            ),
        };
        Zeroizing::new(s.into_bytes())
    }

    /// The base64 line a text protocol sends (no CRLF).
    pub fn payload_b64(
        self,
        user: &str,
        token: &Secret,
        host: &str,
        port: u16,
    ) -> Zeroizing<String> {
        let raw = self.payload(user, token, host, port);
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(raw.as_slice()))
    }

    /// What to answer to an error challenge (base64 form: empty for
    /// XOAUTH2, `\x01` for OAUTHBEARER).
    pub fn error_reply_b64(self) -> &'static str {
        match self {
            Self::XOAuth2 => "",
            Self::OAuthBearer => "AQ==",
        }
    }

    /// The same, raw (for the imap crate, which encodes itself).
    pub fn error_reply_raw(self) -> &'static str {
        match self {
            Self::XOAuth2 => "",
            Self::OAuthBearer => "\x01",
        }
    }
}

/// RFC 5801 `saslname` escaping of the authorization identity.
fn gs2_escape(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// Why a server may refuse a token, and what an administrator can do.
pub fn auth_rejected_hint(protocol: &str) -> Text {
    let (scope, cmdlet) = match protocol {
        "POP3" => ("POP.AccessAsUser.All", "-PopEnabled $true"),
        _ => ("IMAP.AccessAsUser.All", "-ImapEnabled $true"),
    };
    Text::new(
        format!(
            "The {protocol} server refused the access token. Usual causes: the token expired or was revoked \
             (sign in again if a forced refresh does not help); it was issued for the wrong resource (use \
             https://outlook.office.com/{scope}, not a Graph scope); {scope} was not consented; \
             {protocol} is disabled for the mailbox (Set-CASMailbox <mailbox> {cmdlet}); the mailbox \
             address differs from the signed-in user and no FullAccess right exists; for app-only tokens: \
             the service principal is missing (New-ServicePrincipal with the enterprise app's object id) or \
             has no Add-MailboxPermission on the mailbox."
        ),
        format!(
            "Der {protocol}-Server hat das Zugriffstoken abgelehnt. Übliche Ursachen: Das Token ist \
             abgelaufen oder widerrufen (neu anmelden, wenn eine erzwungene Erneuerung nicht hilft); es \
             wurde für die falsche Ressource ausgestellt (https://outlook.office.com/{scope} verwenden, \
             keinen Graph-Bereich); {scope} wurde nicht genehmigt; {protocol} ist für das Postfach \
             abgeschaltet (Set-CASMailbox <Postfach> {cmdlet}); die Postfachadresse weicht vom \
             angemeldeten Benutzer ab und es gibt kein FullAccess-Recht; bei reinen App-Token: Der \
             Dienstprinzipal fehlt (New-ServicePrincipal mit der Objekt-ID der Unternehmensanwendung) oder \
             hat keine Add-MailboxPermission auf das Postfach."
        ),
    )
}

/// A connection dropped while the token was being checked.
pub fn dropped_during_auth_hint(token_len: usize) -> Text {
    Text::new(
        format!(
            "The server closed the connection during authentication instead of answering. Some servers \
             do this with tokens that are too large (this token has {token_len} characters; Dovecot drops \
             SASL responses above 8192 bytes, about 6 KB of token) or when the token is refused; check \
             the token's size and the server's log."
        ),
        format!(
            "Der Server hat die Verbindung während der Anmeldung geschlossen, statt zu antworten. Manche \
             Server tun das bei zu großen Token (dieses hat {token_len} Zeichen; Dovecot verwirft \
             SASL-Antworten über 8192 Bytes, etwa 6 KB Token) oder wenn das Token abgelehnt wird; \
             Tokengröße und Serverprotokoll prüfen."
        ),
    )
}

/// Authenticated, but the mailbox cannot be used (Exchange's
/// "User is authenticated but not connected").
pub fn mailbox_access_hint(mailbox: &str) -> Text {
    Text::new(
        format!(
            "The server accepted the token but refuses access to the mailbox {mailbox}. Usual causes: the \
             mailbox address is not the signed-in user's and no FullAccess right exists \
             (Add-MailboxPermission -Identity {mailbox} -User <user or service principal> -AccessRights \
             FullAccess); for app-only tokens, the service principal was registered with the wrong object \
             id (use the object id of the enterprise application, not of the app registration); or the \
             token lacks the IMAP/POP scope."
        ),
        format!(
            "Der Server hat das Token angenommen, verweigert aber den Zugriff auf das Postfach {mailbox}. \
             Übliche Ursachen: Die Postfachadresse ist nicht die des angemeldeten Benutzers und es gibt \
             kein FullAccess-Recht (Add-MailboxPermission -Identity {mailbox} -User <Benutzer oder \
             Dienstprinzipal> -AccessRights FullAccess); bei reinen App-Token wurde der Dienstprinzipal \
             mit der falschen Objekt-ID angelegt (die Objekt-ID der Unternehmensanwendung verwenden, nicht \
             die der App-Registrierung); oder dem Token fehlt der IMAP/POP-Bereich."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_matches_microsofts_vector() {
        let t = Secret::new("EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA");
        let b = Mechanism::XOAuth2.payload_b64("test@contoso.onmicrosoft.com", &t, "h", 1);
        assert_eq!(
            b.as_str(),
            "dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVyIEV3QkFBbDNCQUFVRkZwVUFvN0ozVmUwYmpMQldaV0NjbFJDM0VvQUEBAQ=="
        );
    }

    #[test]
    fn oauthbearer_payload() {
        let t = Secret::new("tok");
        let p = Mechanism::OAuthBearer.payload("a,b=c@x", &t, "mail.example", 993);
        assert_eq!(
            p.as_slice(),
            b"n,a=a=2Cb=3Dc@x,\x01host=mail.example\x01port=993\x01auth=Bearer tok\x01\x01"
        );
    }

    #[test]
    fn choice_prefers_xoauth2() {
        assert_eq!(
            Mechanism::choose(["PLAIN", "OAUTHBEARER", "XOAUTH2"]),
            Some(Mechanism::XOAuth2)
        );
        assert_eq!(
            Mechanism::choose(["OAUTHBEARER"]),
            Some(Mechanism::OAuthBearer)
        );
        assert_eq!(Mechanism::choose(["PLAIN"]), None);
    }
}
