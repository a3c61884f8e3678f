//! The commands. Each returns the exit code; failures are printed through
//! [`Out`] with the library's message and hint.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailoauth::account_test::{self, TestRequest};
use mailoauth::diagnose::{self, Check};
use mailoauth::ffi::account_test::{account_json, step_json};
use mailoauth::i18n::Language;
use mailoauth::mailbox::handle::Mailbox;
use mailoauth::protocol::Protocols;
use mailoauth::{Config, Context, Error};
use serde_json::{Value, json};

use crate::out::{Out, Progress};
use crate::{Cli, Command, EXIT_FAILED, EXIT_OK};

pub fn run(cli: &Cli, out: &Out) -> u8 {
    let text = match read_config(cli, out) {
        Ok(t) => t,
        Err(code) => return code,
    };
    if let Command::Diagnose { account, protocols } = &cli.command {
        return diagnose(out, &text, account.as_deref(), protocols);
    }
    let (check, config) = diagnose::configuration(&text, Some(out.lang));
    let config = match (check.outcome, config) {
        (Ok(_), Some(c)) => c,
        (Err(e), _) => return out.fail(&e),
        (Ok(_), None) => return out.fail(&Error::internal("no configuration")),
    };
    let ctx = match Context::new(config) {
        Ok(c) => Arc::new(c),
        Err(e) => return out.fail(&e),
    };
    let code = match &cli.command {
        Command::Consent {
            account,
            flow,
            protocols,
            timeout_s,
        } => consent(out, &ctx, account.as_deref(), flow, protocols, *timeout_s),
        Command::Accounts => accounts(out, &ctx),
        Command::Token {
            account,
            check: _,
            show_token,
            protocols,
        } => token(out, &ctx, account.as_deref(), *show_token, protocols),
        Command::Send {
            account,
            to,
            subject,
            body,
            body_file,
            attachment,
        } => send(
            out,
            &ctx,
            account.as_deref(),
            to,
            subject,
            body.as_deref(),
            body_file.as_deref(),
            attachment,
        ),
        Command::Poll {
            account,
            protocol,
            folder,
            max,
            start,
            ack,
        } => poll(
            out,
            &ctx,
            account.as_deref(),
            protocol,
            folder,
            *max,
            start,
            ack.as_deref(),
        ),
        Command::Diagnose { .. } => EXIT_OK,
    };
    ctx.close();
    code
}

/// The configuration file's text: `--config`, else `$MAILOAUTH_CONFIG`.
fn read_config(cli: &Cli, out: &Out) -> Result<String, u8> {
    let path = match &cli.config {
        Some(p) => p.clone(),
        None => match std::env::var_os("MAILOAUTH_CONFIG") {
            Some(p) if !p.is_empty() => p.into(),
            _ => {
                return Err(out.usage(
                    "no configuration: pass --config <file.json> or set MAILOAUTH_CONFIG",
                    "keine Konfiguration: --config <datei.json> angeben oder MAILOAUTH_CONFIG setzen",
                ));
            }
        },
    };
    std::fs::read_to_string(&path).map_err(|e| {
        let p = path.display();
        out.usage(
            &format!("cannot read the configuration file {p}: {e}"),
            &format!("die Konfigurationsdatei {p} ist nicht lesbar: {e}"),
        )
    })
}

fn protocols_of(names: &[String]) -> Option<Protocols> {
    if names.is_empty() {
        return None;
    }
    Protocols::from_names(names.iter().map(String::as_str)).ok()
}

/// `--account`, else the only account in the cache.
fn account_or_only(out: &Out, ctx: &Context, account: Option<&str>) -> Result<String, u8> {
    if let Some(a) = account {
        return Ok(a.to_string());
    }
    let grants = ctx.accounts().map_err(|e| out.fail(&e))?;
    match grants.as_slice() {
        [one] => Ok(one.account.clone()),
        [] => Err(out.usage(
            "no account in the cache: name one with --account (or sign in with 'consent')",
            "kein Konto im Cache: eines mit --account nennen (oder mit 'consent' anmelden)",
        )),
        _ => Err(out.usage(
            "several accounts in the cache: name one with --account",
            "mehrere Konten im Cache: eines mit --account nennen",
        )),
    }
}

// ---- consent ----

fn consent(
    out: &Out,
    ctx: &Context,
    account: Option<&str>,
    flow: &str,
    protocols: &[String],
    timeout_s: u32,
) -> u8 {
    let mut req = json!({"flow": flow, "timeout_s": timeout_s});
    if let Some(a) = account {
        req["account"] = a.into();
    }
    if !protocols.is_empty() {
        req["protocols"] = protocols.into();
    }
    let op = match ctx.consent_begin(&req.to_string()) {
        Ok(op) => op,
        Err(e) => return out.fail(&e),
    };
    let start = Instant::now();
    let mut progress = Progress::new(out);
    let mut told = false;
    let result = loop {
        let info = op.info();
        if !told {
            told = tell_user(out, &info);
        }
        if let Some(r) = ctx.consent_settle(&op, Duration::from_millis(500)) {
            break r;
        }
        progress.tick(
            out.t("waiting for the sign-in", "warte auf die Anmeldung"),
            start.elapsed().as_secs(),
        );
    };
    progress.done();
    match result {
        Ok(outcome) => {
            let mut v = outcome.result_json();
            if let Some(o) = v.as_object_mut() {
                o.insert("protocols".into(), outcome.protocols.names().into());
            }
            if out.json {
                out.print_json_line(&json!({"ok": true, "result": v}));
            } else {
                out.line(&format!(
                    "{} {} ({})",
                    out.t("Signed in:", "Angemeldet:"),
                    outcome.account,
                    outcome.protocols.names().join(", ")
                ));
            }
            EXIT_OK
        }
        Err(e) => out.fail(&e),
    }
}

/// Shows the URL or the device code once it is known; true when shown.
fn tell_user(out: &Out, info: &Value) -> bool {
    let s = |k: &str| info.get(k).and_then(Value::as_str).map(str::to_string);
    if let (Some(code), Some(uri)) = (s("user_code"), s("verification_uri")) {
        if out.json {
            out.print_json_line(
                &json!({"user_code": code, "verification_uri": uri, "message": s("message")}),
            );
        } else {
            match s("message") {
                Some(m) => out.line(&m),
                None => out.line(&format!(
                    "{} {uri} {} {code}",
                    out.t("Open", "Öffnen Sie"),
                    out.t("and enter the code", "und geben Sie den Code ein:")
                )),
            }
        }
        return true;
    }
    if let Some(url) = s("authorize_url") {
        if out.json {
            out.print_json_line(&json!({"authorize_url": url}));
        } else {
            out.line(out.t(
                "Sign in in the browser (if it did not open, open this URL):",
                "Im Browser anmelden (falls er sich nicht geöffnet hat, diese URL öffnen):",
            ));
            out.line(&format!("  {url}"));
        }
        return true;
    }
    false
}

// ---- accounts, token ----

fn accounts(out: &Out, ctx: &Context) -> u8 {
    let grants = match ctx.accounts() {
        Ok(g) => g,
        Err(e) => return out.fail(&e),
    };
    let list: Vec<Value> = grants.iter().map(|g| account_json(g, out.lang)).collect();
    if out.json {
        out.print_json(&Value::Array(list));
        return EXIT_OK;
    }
    if list.is_empty() {
        out.line(out.t(
            "No accounts in the cache. Sign one in with 'mailoauth-cli consent --account <address>'.",
            "Keine Konten im Cache. Mit 'mailoauth-cli consent --account <Adresse>' eines anmelden.",
        ));
    }
    for a in &list {
        let get = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        let protocols: Vec<&str> = a
            .get("protocols")
            .and_then(Value::as_array)
            .map(|p| p.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.line(&format!(
            "{}  {}: {}  {}: {}  {}: {}",
            get("account"),
            out.t("state", "Zustand"),
            get("state"),
            out.t("protocols", "Protokolle"),
            protocols.join(","),
            out.t("token until", "Token bis"),
            a.get("access_token_expires_at")
                .and_then(Value::as_i64)
                .map(utc)
                .unwrap_or_else(|| "-".into()),
        ));
        if let Some(m) = a.pointer("/last_error/message").and_then(Value::as_str) {
            out.line(&format!(
                "    {} {m}",
                out.t("last error:", "letzter Fehler:")
            ));
        }
    }
    EXIT_OK
}

fn token(
    out: &Out,
    ctx: &Context,
    account: Option<&str>,
    show_token: bool,
    protocols: &[String],
) -> u8 {
    let account = match account_or_only(out, ctx, account) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let wanted = protocols_of(protocols);
    // Without --protocols: whatever the account consented to.
    let wanted = match wanted {
        Some(w) => w,
        None => ctx
            .accounts()
            .ok()
            .and_then(|g| g.into_iter().find(|g| g.account == account))
            .map(|g| g.protocols)
            .filter(|p| !p.is_empty())
            .unwrap_or(Protocols::ALL),
    };
    match ctx.token_get(&account, wanted, false) {
        Ok(tok) => {
            let expires_at = ctx
                .accounts()
                .ok()
                .and_then(|g| g.into_iter().find(|g| g.account == account))
                .and_then(|g| g.access_token)
                .filter(|a| a.token.expose() == tok.expose())
                .map(|a| a.expires_at);
            let now = mailoauth::auth::now();
            if out.json {
                let mut v = json!({
                    "ok": true,
                    "account": account,
                    "available": true,
                    "protocols": wanted.names(),
                    "expires_at": expires_at,
                    "expires_in_s": expires_at.map(|t| (t - now).max(0)),
                });
                if show_token {
                    v["token"] = tok.expose().into();
                }
                out.print_json(&v);
            } else {
                let until = expires_at.map(utc).unwrap_or_else(|| "?".into());
                out.line(&format!(
                    "{} {account} ({}) {} {until}",
                    out.t(
                        "A token is available without signing in for",
                        "Ein Token ist ohne Anmeldung verfügbar für"
                    ),
                    wanted.names().join(", "),
                    out.t("valid until", "gültig bis"),
                ));
                if show_token {
                    out.line(tok.expose());
                }
            }
            EXIT_OK
        }
        Err(e) => {
            if out.json {
                out.print_json(&json!({
                    "ok": false,
                    "account": account,
                    "available": false,
                    "protocols": wanted.names(),
                    "error": out.error_record(&e),
                }));
                EXIT_FAILED
            } else {
                out.fail(&e)
            }
        }
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

// ---- send, poll ----

#[allow(clippy::too_many_arguments)]
fn send(
    out: &Out,
    ctx: &Context,
    account: Option<&str>,
    to: &[String],
    subject: &str,
    body: Option<&str>,
    body_file: Option<&Path>,
    attachments: &[std::path::PathBuf],
) -> u8 {
    let account = match account_or_only(out, ctx, account) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let text = match (body, body_file) {
        (Some(b), _) => b.to_string(),
        (None, Some(f)) => match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                let p = f.display();
                return out.usage(
                    &format!("cannot read the body file {p}: {e}"),
                    &format!("die Textdatei {p} ist nicht lesbar: {e}"),
                );
            }
        },
        (None, None) => String::new(),
    };
    let attachments: Vec<Value> = attachments
        .iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "attachment".into());
            json!({"name": name, "path": p.to_string_lossy()})
        })
        .collect();
    let mut message = json!({"to": to, "subject": subject, "text": text});
    if !attachments.is_empty() {
        message["attachments"] = attachments.into();
    }
    let req = json!({"account": account, "message": message});
    match ctx.smtp_send(&req.to_string()) {
        Ok(v) => {
            if out.json {
                out.print_json(&json!({"ok": true, "result": v}));
            } else {
                let accepted: Vec<&str> = v
                    .get("accepted")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                out.line(&format!(
                    "{} {} ({})",
                    out.t("Sent to", "Gesendet an"),
                    accepted.join(", "),
                    v.get("server_reply").and_then(Value::as_str).unwrap_or("")
                ));
            }
            EXIT_OK
        }
        Err(e) => out.fail(&e),
    }
}

#[allow(clippy::too_many_arguments)]
fn poll(
    out: &Out,
    ctx: &Arc<Context>,
    account: Option<&str>,
    protocol: &str,
    folder: &str,
    max: u32,
    start: &str,
    ack: Option<&str>,
) -> u8 {
    let account = match account_or_only(out, ctx, account) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut req = json!({"account": account, "protocol": protocol, "start": start});
    if protocol == "imap" {
        req["folder"] = folder.into();
    }
    let mb = match Mailbox::open(ctx, &req.to_string()) {
        Ok(mb) => mb,
        Err(e) => return out.fail(&e),
    };
    let code = poll_open(out, &mb, max, ack);
    mb.close();
    code
}

fn poll_open(out: &Out, mb: &Mailbox, max: u32, ack: Option<&str>) -> u8 {
    let list = match mb.poll_json(max as usize) {
        Ok(j) => serde_json::from_str::<Value>(&j).unwrap_or(Value::Array(Vec::new())),
        Err(e) => return out.fail(&e),
    };
    let items = list.as_array().cloned().unwrap_or_default();
    let mut acked = Vec::new();
    if let Some(mode) = ack {
        for m in &items {
            let Some(id) = m.get("id").and_then(Value::as_str) else {
                continue;
            };
            if let Err(e) = mb.ack(id, mode) {
                return out.fail(&e);
            }
            acked.push(id.to_string());
        }
    }
    if out.json {
        out.print_json(&json!({"ok": true, "messages": items, "acknowledged": acked, "ack": ack}));
        return EXIT_OK;
    }
    if items.is_empty() {
        out.line(out.t("No new messages.", "Keine neuen Nachrichten."));
    }
    for m in &items {
        let g = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        out.line(&format!(
            "{}  {}  {}  {}  ({} {})",
            g("id"),
            g("date"),
            g("from"),
            g("subject"),
            m.get("size").and_then(Value::as_u64).unwrap_or(0),
            out.t("bytes", "Bytes"),
        ));
    }
    if let Some(mode) = ack {
        out.line(&format!(
            "{} {} ({mode})",
            out.t("Acknowledged:", "Bestätigt:"),
            acked.len()
        ));
    }
    EXIT_OK
}

// ---- diagnose ----

fn check_label(out: &Out, name: &str) -> String {
    match name {
        "config" => out.t("configuration", "Konfiguration"),
        "provider" => out.t(
            "identity provider reachable",
            "Identitätsanbieter erreichbar",
        ),
        "app" => out.t("app registration accepted", "App-Registrierung akzeptiert"),
        "token" => out.t("silent token", "Token ohne Anmeldung"),
        "smtp" => out.t("SMTP login (EHLO + AUTH)", "SMTP-Anmeldung (EHLO + AUTH)"),
        "imap" => out.t("IMAP login + SELECT INBOX", "IMAP-Anmeldung + SELECT INBOX"),
        "pop3" => out.t("POP3 login + STAT", "POP3-Anmeldung + STAT"),
        other => other,
    }
    .to_string()
}

fn check_json(c: &Check, lang: Language, out: &Out) -> Value {
    let mut v = match &c.outcome {
        Ok(m) => json!({"code": 0, "name": "OK", "message": m.get(lang)}),
        Err(e) => out.error_record(e),
    };
    if let Some(o) = v.as_object_mut() {
        o.insert("step".into(), c.name.into());
        o.insert("ms".into(), c.ms.into());
    }
    v
}

fn diagnose(out: &Out, text: &str, account: Option<&str>, protocols: &[String]) -> u8 {
    let mut steps: Vec<Value> = Vec::new();
    let mut failed = 0usize;
    let show = |c: &Check, steps: &mut Vec<Value>| {
        if !out.json {
            out.step(
                &check_label(out, c.name),
                c.outcome.as_ref().map(|t| t.get(out.lang)),
                c.ms,
            );
        }
        steps.push(check_json(c, out.lang, out));
    };
    if !out.json {
        out.line(out.t("mailoauth diagnose", "mailoauth-Diagnose"));
    }
    let (check, config) = diagnose::configuration(text, Some(out.lang));
    show(&check, &mut steps);
    let config: Config = match config {
        Some(c) if check.is_ok() => c,
        _ => return finish_diagnose(out, steps, 1, None),
    };
    let ctx = match Context::new(config) {
        Ok(c) => Arc::new(c),
        Err(e) => return out.fail(&e),
    };
    for c in [diagnose::provider(&ctx), diagnose::app_registration(&ctx)] {
        if !c.is_ok() {
            failed += 1;
        }
        show(&c, &mut steps);
    }
    let account = match account {
        Some(a) => Some(a.to_string()),
        None => match ctx.accounts() {
            Ok(g) if g.len() == 1 => g.first().map(|g| g.account.clone()),
            _ => None,
        },
    };
    let skipped = match &account {
        None => Some(
            out.t(
                "account test skipped: name the account with --account",
                "Kontotest übersprungen: das Konto mit --account nennen",
            )
            .to_string(),
        ),
        Some(account) => {
            let req = TestRequest {
                account: account.clone(),
                protocols: protocols_of(protocols).unwrap_or(Protocols::ALL),
                step_timeout: account_test::DEFAULT_STEP_TIMEOUT,
            };
            if !out.json {
                out.line(&format!(
                    "{} {account}",
                    out.t("account test of", "Kontotest von")
                ));
            }
            let mut on_step = |s: &account_test::Step| {
                if !out.json {
                    let label = check_label(out, s.kind.as_str());
                    match &s.outcome {
                        Ok(p) => out.step(&label, Ok(p.message.get(out.lang)), s.ms),
                        Err(e) => out.step(&label, Err(e), s.ms),
                    }
                }
            };
            match account_test::run(&ctx, &req, &mut on_step) {
                Ok(list) => {
                    for s in &list {
                        if !s.is_ok() {
                            failed += 1;
                        }
                        steps.push(step_json(s, out.lang));
                    }
                    None
                }
                Err(e) => {
                    failed += 1;
                    let c = Check {
                        name: "token",
                        outcome: Err(e),
                        ms: 0,
                    };
                    show(&c, &mut steps);
                    ctx.close();
                    return finish_diagnose(out, steps, failed, None);
                }
            }
        }
    };
    ctx.close();
    finish_diagnose(out, steps, failed, skipped)
}

fn finish_diagnose(out: &Out, steps: Vec<Value>, failed: usize, skipped: Option<String>) -> u8 {
    let ok = failed == 0;
    if out.json {
        let mut v = json!({"ok": ok, "failed": failed, "steps": steps});
        if let Some(s) = &skipped {
            v["skipped"] = s.as_str().into();
        }
        out.print_json(&v);
    } else {
        if let Some(s) = &skipped {
            out.line(s);
        }
        if ok {
            out.line(out.t("All checks passed.", "Alle Prüfungen bestanden."));
        } else {
            out.line(&format!(
                "{} {failed} {}",
                out.t("Failed:", "Fehlgeschlagen:"),
                out.t("check(s)", "Prüfung(en)")
            ));
        }
    }
    if ok { EXIT_OK } else { EXIT_FAILED }
}
