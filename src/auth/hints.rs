//! Hints for administrators and users, keyed by the AADSTS number (specific)
//! or by the OAuth `error` field (general). Each says what to do, in English
//! and German. None of them holds anything the provider sent.

use crate::i18n::Text;

/// The hint for an AADSTS code, when we know one.
pub(crate) fn for_code(code: u32) -> Option<Text> {
    let (en, de) = match code {
        7000218 => (
            "Admin: in the app registration (Entra ID > App registrations > Authentication), turn on \"Allow public client flows\" and register http://localhost as a redirect URI under \"Mobile and desktop applications\", not under \"Web\".",
            "Admin: in der App-Registrierung (Entra ID > App-Registrierungen > Authentifizierung) \"Öffentliche Clientflows zulassen\" einschalten und http://localhost als Umleitungs-URI unter \"Mobile und Desktopanwendungen\" eintragen, nicht unter \"Web\".",
        ),
        65001 => (
            "Sign in again and accept the requested permissions. If it keeps failing, an administrator must grant consent for the app (Entra ID > Enterprise applications > Permissions).",
            "Erneut anmelden und den angeforderten Berechtigungen zustimmen. Schlägt es weiter fehl, muss ein Administrator die Zustimmung für die App erteilen (Entra ID > Unternehmensanwendungen > Berechtigungen).",
        ),
        65004 => (
            "The user declined the permissions. Start the sign-in again and accept, or ask an administrator to grant consent for the organisation.",
            "Die Berechtigungen wurden abgelehnt. Die Anmeldung erneut starten und zustimmen, oder einen Administrator bitten, die Zustimmung für die Organisation zu erteilen.",
        ),
        700082 | 70008 | 50173 | 70043 | 70000 => (
            "The stored sign-in is no longer valid (expired, revoked, password changed or a sign-in frequency policy). Sign in again.",
            "Die gespeicherte Anmeldung ist nicht mehr gültig (abgelaufen, widerrufen, Kennwort geändert oder Richtlinie zur Anmeldehäufigkeit). Bitte erneut anmelden.",
        ),
        53003 => (
            "Admin: a Conditional Access policy blocked the sign-in. Look up the sign-in in the Entra ID sign-in logs by its correlation id to see which policy.",
            "Admin: eine Richtlinie für bedingten Zugriff hat die Anmeldung blockiert. Die Anmeldung in den Entra-ID-Anmeldeprotokollen über die Korrelations-ID suchen, um die Richtlinie zu finden.",
        ),
        530035 => (
            "Admin: the tenant's security defaults block this sign-in. Review the security defaults or use Conditional Access instead.",
            "Admin: die Sicherheitsstandards des Mandanten blockieren diese Anmeldung. Die Sicherheitsstandards prüfen oder stattdessen bedingten Zugriff verwenden.",
        ),
        700016 => (
            "Admin: the application was not found. Check client_id, tenant and the cloud (provider): the app must be registered in that tenant and cloud.",
            "Admin: die Anwendung wurde nicht gefunden. client_id, tenant und die Cloud (provider) prüfen: die App muss in diesem Mandanten und dieser Cloud registriert sein.",
        ),
        50194 | 90002 => (
            "Admin: set 'tenant' in the configuration to the tenant id (GUID) or the tenant's domain, and check that the cloud (provider) is right.",
            "Admin: 'tenant' in der Konfiguration auf die Mandanten-ID (GUID) oder die Domäne des Mandanten setzen und prüfen, ob die Cloud (provider) stimmt.",
        ),
        500011 => (
            "Admin: Exchange Online is not provisioned or licensed in this tenant, the tenant is wrong, or a scope URL is wrong (expected https://outlook.office365.com/.default or https://outlook.office.com/...).",
            "Admin: Exchange Online ist in diesem Mandanten nicht bereitgestellt oder lizenziert, der Mandant ist falsch, oder eine Scope-URL ist falsch (erwartet https://outlook.office365.com/.default oder https://outlook.office.com/...).",
        ),
        7000215 | 7000222 => (
            "Admin: the client secret is wrong or expired. Create a new secret in the app registration (Certificates & secrets) and put it into the configuration.",
            "Admin: das Client-Geheimnis ist falsch oder abgelaufen. In der App-Registrierung (Zertifikate & Geheimnisse) ein neues Geheimnis erstellen und in die Konfiguration eintragen.",
        ),
        700025 => (
            "Admin: this app is a public client; remove client_secret from the configuration.",
            "Admin: diese App ist ein öffentlicher Client; client_secret aus der Konfiguration entfernen.",
        ),
        50020 => (
            "The account does not belong to this tenant (or is a personal Microsoft account). Use the right tenant, or invite the user as a guest.",
            "Das Konto gehört nicht zu diesem Mandanten (oder ist ein persönliches Microsoft-Konto). Den richtigen Mandanten verwenden oder den Benutzer als Gast einladen.",
        ),
        50034 | 50126 => (
            "The account is unknown or the password is wrong. Check the sign-in name and try again.",
            "Das Konto ist unbekannt oder das Kennwort falsch. Den Anmeldenamen prüfen und erneut versuchen.",
        ),
        50011 | 500112 => (
            "Admin: the redirect URI does not match. Register http://localhost under \"Mobile and desktop applications\" in the app registration.",
            "Admin: der Umleitungs-URI stimmt nicht. http://localhost unter \"Mobile und Desktopanwendungen\" in der App-Registrierung eintragen.",
        ),
        70011 | 700022 => (
            "Admin: a scope is invalid or the scopes belong to several resources. Use the Outlook scope URLs (https://outlook.office.com/...) for all protocols, not Graph ones.",
            "Admin: ein Scope ist ungültig oder die Scopes gehören zu mehreren Ressourcen. Für alle Protokolle die Outlook-Scope-URLs (https://outlook.office.com/...) verwenden, nicht die von Graph.",
        ),
        501481 | 54005 => (
            "An internal error of the sign-in (the code was already used or the PKCE check failed). Sign in again; report it if it repeats.",
            "Ein interner Fehler der Anmeldung (der Code wurde schon verwendet oder die PKCE-Prüfung schlug fehl). Erneut anmelden; bei Wiederholung melden.",
        ),
        9002313 => (
            "The request or the stored sign-in is damaged. Sign in again; if it repeats, reset the token cache.",
            "Die Anfrage oder die gespeicherte Anmeldung ist beschädigt. Erneut anmelden; bei Wiederholung den Token-Cache zurücksetzen.",
        ),
        50076 | 50079 | 50072 => (
            "Multi-factor authentication (or its registration) is required. Sign in interactively.",
            "Mehrstufige Authentifizierung (oder ihre Registrierung) ist erforderlich. Interaktiv anmelden.",
        ),
        50058 => (
            "Nobody is signed in for a silent sign-in. Start an interactive sign-in.",
            "Für eine stille Anmeldung ist niemand angemeldet. Eine interaktive Anmeldung starten.",
        ),
        500208 => (
            "This account type is not allowed for the app (for example a personal Microsoft account on an app for organisations only). Use a work or school account, or change the app's supported account types.",
            "Dieser Kontotyp ist für die App nicht zugelassen (etwa ein persönliches Microsoft-Konto bei einer App nur für Organisationen). Ein Geschäfts- oder Schulkonto verwenden oder die unterstützten Kontotypen der App ändern.",
        ),
        90055 | 50196 => (
            "Too many requests to the identity provider. Wait and try again later; tokens are cached, so this should not repeat.",
            "Zu viele Anfragen an den Identitätsanbieter. Warten und später erneut versuchen; Token werden zwischengespeichert, das sollte sich nicht wiederholen.",
        ),
        9001023 => (
            "Admin: this flow needs a tenant id or domain in 'tenant', not common or organizations.",
            "Admin: dieser Ablauf braucht eine Mandanten-ID oder Domäne in 'tenant', nicht common oder organizations.",
        ),
        1002012 => (
            "Admin: the app-only scope must end in /.default (https://outlook.office365.com/.default).",
            "Admin: der Scope für App-Zugriff muss auf /.default enden (https://outlook.office365.com/.default).",
        ),
        70019 => (
            "The device code expired before the sign-in was completed. Start again and enter the code sooner.",
            "Der Gerätecode ist abgelaufen, bevor die Anmeldung abgeschlossen wurde. Erneut starten und den Code früher eingeben.",
        ),
        70018 => (
            "The device code is unknown to the provider. Start the sign-in again.",
            "Der Gerätecode ist dem Anbieter unbekannt. Die Anmeldung erneut starten.",
        ),
        _ => return None,
    };
    Some(Text::new(en, de))
}

/// The general hint for an OAuth `error` value.
pub(crate) fn for_error(error: &str) -> Option<Text> {
    let (en, de) = match error {
        "invalid_grant" | "interaction_required" | "consent_required" | "login_required" => (
            "Sign in again interactively (consent).",
            "Erneut interaktiv anmelden (Zustimmung).",
        ),
        "access_denied" | "authorization_declined" => (
            "The sign-in was declined. Start it again and accept, or ask an administrator.",
            "Die Anmeldung wurde abgelehnt. Erneut starten und zustimmen oder einen Administrator fragen.",
        ),
        "expired_token" => (
            "The sign-in was not completed in time. Start it again.",
            "Die Anmeldung wurde nicht rechtzeitig abgeschlossen. Erneut starten.",
        ),
        "invalid_client" | "unauthorized_client" => (
            "Admin: check the app registration: client_id, client secret, and \"Allow public client flows\".",
            "Admin: die App-Registrierung prüfen: client_id, Client-Geheimnis und \"Öffentliche Clientflows zulassen\".",
        ),
        "invalid_scope" | "invalid_resource" => (
            "Admin: check the scopes in the configuration.",
            "Admin: die Scopes in der Konfiguration prüfen.",
        ),
        "invalid_request" | "unsupported_grant_type" => (
            "Admin: check tenant, endpoints and scopes in the configuration.",
            "Admin: tenant, Endpunkte und Scopes in der Konfiguration prüfen.",
        ),
        "temporarily_unavailable" | "server_error" | "http_error" => (
            "The identity provider is busy or unavailable. Try again later.",
            "Der Identitätsanbieter ist ausgelastet oder nicht erreichbar. Später erneut versuchen.",
        ),
        _ => return None,
    };
    Some(Text::new(en, de))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hint_has_both_languages() {
        for code in [
            7000218u32, 65001, 65004, 700082, 70008, 50173, 70043, 70000, 53003, 530035, 700016,
            50194, 90002, 500011, 7000215, 7000222, 700025, 50020, 50034, 50126, 50011, 70011,
            700022, 501481, 54005, 9002313, 50076, 50079, 50058, 500208, 90055, 50196,
        ] {
            let t = for_code(code).unwrap_or_else(|| panic!("no hint for {code}"));
            assert!(!t.en.is_empty() && !t.de.is_empty() && t.en != t.de);
        }
        assert!(for_code(1).is_none());
    }
}
