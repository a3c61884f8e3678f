//! The HTML pages a browser sees: sign-in + consent, device code entry, errors.

use crate::settings::Settings;
use crate::util::html_escape as esc;

const STYLE: &str = "body{font-family:Segoe UI,Arial,sans-serif;max-width:32em;margin:3em auto}\
button{margin-right:1em;padding:.4em 1.4em}input[type=text]{width:100%;padding:.3em}\
.error{color:#a80000}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n",
        esc(title)
    )
}

pub fn describe_scope(scope: &str) -> &'static str {
    let s = scope.to_ascii_lowercase();
    if s.ends_with("/imap.accessasuser.all") {
        "Read and write access to your mailbox via IMAP"
    } else if s.ends_with("/pop.accessasuser.all") {
        "Read and write access to your mailbox via POP"
    } else if s.ends_with("/smtp.send") {
        "Send email from your mailbox using SMTP AUTH"
    } else if s == "offline_access" {
        "Maintain access to data you have given it access to"
    } else if s == "openid" {
        "Sign you in"
    } else if s == "profile" {
        "View your basic profile"
    } else if s == "email" {
        "View your email address"
    } else {
        "Access a resource on your behalf"
    }
}

pub struct ConsentPage<'a> {
    pub settings: &'a Settings,
    pub action: &'a str,
    pub txn: &'a str,
    pub app_name: &'a str,
    pub client_id: &'a str,
    pub scopes: &'a [String],
    pub username: &'a str,
    pub select_account: bool,
    pub error: Option<&'a str>,
}

/// Sign-in and consent in one form. Buttons `#accept` and `#cancel` submit `decision`.
pub fn consent(p: &ConsentPage) -> String {
    let mut b = String::new();
    b.push_str("<h1>Sign in to your account</h1>\n");
    b.push_str(&format!(
        "<p id=\"app\"><b>{}</b> (<span id=\"client-id\">{}</span>) wants to access your account.</p>\n",
        esc(p.app_name),
        esc(p.client_id)
    ));
    if let Some(e) = p.error {
        b.push_str(&format!("<p id=\"error\" class=\"error\">{}</p>\n", esc(e)));
    }
    b.push_str(&format!(
        "<form id=\"signin\" method=\"post\" action=\"{}\">\n<input type=\"hidden\" name=\"txn\" value=\"{}\">\n",
        esc(p.action),
        esc(p.txn)
    ));
    let prefill = if p.select_account {
        b.push_str("<fieldset id=\"accounts\"><legend>Pick an account</legend>\n");
        for (i, u) in p.settings.users.iter().enumerate() {
            let checked = if u.username.eq_ignore_ascii_case(p.username) {
                " checked"
            } else {
                ""
            };
            b.push_str(&format!(
                "<div><label><input type=\"radio\" name=\"account\" id=\"account-{i}\" value=\"{}\"{checked}> {} ({})</label></div>\n",
                esc(&u.username),
                esc(&u.display_name),
                esc(&u.username)
            ));
        }
        b.push_str("</fieldset>\n<p>Use another account:</p>\n");
        ""
    } else {
        p.username
    };
    b.push_str(&format!(
        "<p><label for=\"username\">Email, phone, or Skype</label><br><input type=\"text\" id=\"username\" name=\"username\" value=\"{}\" autocomplete=\"username\"></p>\n",
        esc(prefill)
    ));
    b.push_str("<h2>Permissions requested</h2>\n<ul id=\"permissions\">\n");
    for s in p.scopes {
        b.push_str(&format!(
            "<li data-scope=\"{}\">{} <small>({})</small></li>\n",
            esc(s),
            esc(describe_scope(s)),
            esc(s)
        ));
    }
    b.push_str("</ul>\n");
    b.push_str("<p><button type=\"submit\" id=\"accept\" name=\"decision\" value=\"accept\">Accept</button>\n<button type=\"submit\" id=\"cancel\" name=\"decision\" value=\"cancel\">Cancel</button></p>\n</form>");
    page("Sign in to your account", &b)
}

/// `GET /devicelogin`: enter the user code.
pub fn device_entry(prefill: &str, error: Option<&str>) -> String {
    let mut b = String::from(
        "<h1>Enter code</h1>\n<p>Enter the code displayed on your app or device.</p>\n",
    );
    if let Some(e) = error {
        b.push_str(&format!("<p id=\"error\" class=\"error\">{}</p>\n", esc(e)));
    }
    b.push_str(&format!(
        "<form id=\"device\" method=\"post\" action=\"/devicelogin\">\n<p><input type=\"text\" id=\"otc\" name=\"otc\" value=\"{}\" placeholder=\"Code\" autocomplete=\"off\"></p>\n<p><button type=\"submit\" id=\"next\">Next</button></p>\n</form>",
        esc(prefill)
    ));
    page("Enter code", &b)
}

pub fn device_done(app_name: &str, approved: bool) -> String {
    let body = if approved {
        format!(
            "<h1 id=\"done\">{}</h1>\n<p>You have signed in to the {} application on your device. You may now close this window.</p>",
            "Signed in",
            esc(app_name)
        )
    } else {
        format!(
            "<h1 id=\"done\">{}</h1>\n<p>You declined to sign in to the {} application on your device. You may now close this window.</p>",
            "Sign-in declined",
            esc(app_name)
        )
    };
    page("Device sign-in", &body)
}

/// An error page shown instead of a redirect (invalid client, redirect URI mismatch, ...).
pub fn error(code: u32, message: &str, trace_id: &str, correlation_id: &str, ts: &str) -> String {
    let body = format!(
        "<h1>Sorry, but we're having trouble signing you in.</h1>\n<p id=\"error\" data-code=\"{code}\">AADSTS{code}: {}</p>\n<p><small>Request Id: {}<br>Correlation Id: {}<br>Timestamp: {}</small></p>",
        esc(message),
        esc(trace_id),
        esc(correlation_id),
        esc(ts)
    );
    page("Sign in to your account", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_page_has_buttons_and_escapes() {
        let s = Settings::default();
        let scopes = vec!["https://outlook.office.com/SMTP.Send".to_string()];
        let html = consent(&ConsentPage {
            settings: &s,
            action: "/common/oauth2/v2.0/authorize/decide",
            txn: "t\"x",
            app_name: "<app>",
            client_id: "cid",
            scopes: &scopes,
            username: "alice@contoso.test",
            select_account: true,
            error: None,
        });
        assert!(html.contains("id=\"accept\""));
        assert!(html.contains("id=\"cancel\""));
        assert!(html.contains("&lt;app&gt;"));
        assert!(html.contains("t&quot;x"));
        assert!(html.contains("value=\"alice@contoso.test\" checked"));
        assert!(html.contains("SMTP AUTH"));
    }
}
