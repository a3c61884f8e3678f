//! Output: text in English or German for people, JSON for scripts. Errors
//! carry the library's message and hint (what an administrator should
//! change); nothing here ever prints a token or secret.

use std::io::{IsTerminal, Write};

use mailoauth::Error;
use mailoauth::ffi::account_test::error_json;
use mailoauth::i18n::Language;
use serde_json::Value;

pub struct Out {
    pub json: bool,
    pub lang: Language,
}

impl Out {
    pub fn new(json: bool, lang: Language) -> Self {
        Self { json, lang }
    }

    /// The text in the chosen language.
    pub fn t<'a>(&self, en: &'a str, de: &'a str) -> &'a str {
        match self.lang {
            Language::En => en,
            Language::De => de,
        }
    }

    pub fn line(&self, s: &str) {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{s}");
    }

    pub fn print_json(&self, v: &Value) {
        let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
        self.line(&text);
    }

    /// One JSON document on one line (for output that streams: a script
    /// reads the consent's code before the consent ends).
    pub fn print_json_line(&self, v: &Value) {
        self.line(&v.to_string());
    }

    /// The error as the library's last-error record.
    pub fn error_record(&self, e: &Error) -> Value {
        error_json(e, self.lang)
    }

    /// A failed command: `{"ok": false, "error": {…}}` on stdout with
    /// `--json`, else the message and what to change on stderr.
    pub fn fail(&self, e: &Error) -> u8 {
        if self.json {
            self.print_json(&serde_json::json!({"ok": false, "error": self.error_record(e)}));
        } else {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "{}: {}",
                self.t("error", "Fehler"),
                e.message_in(self.lang)
            );
            for line in self.details(e) {
                let _ = writeln!(err, "  {line}");
            }
        }
        crate::EXIT_FAILED
    }

    /// A usage problem (exit 2): always on stderr.
    pub fn usage(&self, en: &str, de: &str) -> u8 {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "mailoauth-cli: {}", self.t(en, de));
        let _ = writeln!(
            err,
            "{}",
            self.t(
                "Try 'mailoauth-cli --help'.",
                "Siehe 'mailoauth-cli --help'."
            )
        );
        crate::EXIT_USAGE
    }

    /// The lines under a failure: hint, provider code, server reply.
    pub fn details(&self, e: &Error) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(h) = &e.hint {
            v.push(format!(
                "{} {}",
                self.t("what to change:", "was zu ändern ist:"),
                h.get(self.lang)
            ));
        }
        if let Some(c) = &e.provider_code {
            v.push(format!(
                "{} {c}",
                self.t("provider code:", "Code des Anbieters:")
            ));
        }
        if let Some(r) = &e.server_reply {
            v.push(format!("{} {r}", self.t("server reply:", "Serverantwort:")));
        }
        v
    }

    /// One diagnose step: `[OK]` / `[FAILED]`, its label and message, and
    /// for a failure what to change.
    pub fn step(&self, label: &str, outcome: std::result::Result<&str, &Error>, ms: u64) {
        match outcome {
            Ok(msg) => self.line(&format!("[OK]     {label}: {msg} ({ms} ms)")),
            Err(e) => {
                let tag = self.t("[FAILED]", "[FEHLER]");
                self.line(&format!(
                    "{tag:<8} {label}: {} ({ms} ms)",
                    e.message_in(self.lang)
                ));
                for d in self.details(e) {
                    self.line(&format!("         {d}"));
                }
            }
        }
    }
}

/// A progress indication on stderr while waiting (only on a terminal, so
/// logs and pipes stay clean).
pub struct Progress {
    on: bool,
    shown: bool,
}

impl Progress {
    pub fn new(out: &Out) -> Self {
        Self {
            on: !out.json && std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    pub fn tick(&mut self, text: &str, seconds: u64) {
        if !self.on {
            return;
        }
        const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
        let f = FRAMES[(seconds % 4) as usize];
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{f} {text} {seconds} s ");
        let _ = err.flush();
        self.shown = true;
    }

    pub fn done(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err);
            self.shown = false;
        }
    }
}
