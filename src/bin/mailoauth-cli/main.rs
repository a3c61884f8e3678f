//! `mailoauth-cli`: the administrator's tool over the library's public Rust
//! API: sign an account in (`consent`), list the cached accounts, check for
//! a silent token, send a test mail, list new messages, and `diagnose` a
//! setup step by step with what to change when a step fails.
//!
//! Configuration: `--config <file.json>` or `$MAILOAUTH_CONFIG` (the JSON of
//! mailoauth_context_new). Output: text for people (English or German:
//! `--lang`, default from `$LANG`), `--json` for scripts. Exit codes: 0 all
//! went well, 1 a step or the command failed, 2 usage (bad arguments, no
//! configuration file). No secret is ever printed, except the access token
//! with `token --show-token`.

mod commands;
mod out;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mailoauth::i18n::Language;

/// Exit code: everything passed.
pub const EXIT_OK: u8 = 0;
/// Exit code: a step or the command failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad arguments or no configuration.
pub const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "mailoauth-cli",
    version,
    about = "Set up and check mailoauth (OAuth2 for SMTP, IMAP and POP3)",
    after_help = "Exit codes: 0 ok, 1 a step or the command failed, 2 usage error.\n\
                  Configuration: --config FILE or $MAILOAUTH_CONFIG (the JSON of mailoauth_context_new)."
)]
pub struct Cli {
    /// The configuration file (JSON as for mailoauth_context_new); default $MAILOAUTH_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Language of messages and hints (default from $LANG).
    #[arg(long, global = true, value_parser = ["en", "de"])]
    pub lang: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Sign an account in once (browser or device code) for SMTP, IMAP and POP3.
    Consent {
        /// The account (login hint and the name the grant is stored under).
        #[arg(long)]
        account: Option<String>,
        /// browser (opens the system browser or prints the URL) or device (prints a code).
        #[arg(long, default_value = "browser", value_parser = ["browser", "device"])]
        flow: String,
        /// Protocols to consent to (comma-separated; default all three).
        #[arg(long, value_delimiter = ',', value_parser = ["smtp", "imap", "pop3"])]
        protocols: Vec<String>,
        /// How long to wait for the user, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout_s: u32,
    },
    /// List the accounts in the token cache (never a secret).
    Accounts,
    /// Check whether a token is available without signing in, and until when.
    Token {
        /// The account (default: the only one in the cache).
        #[arg(long)]
        account: Option<String>,
        /// Check only (the default); the token itself is never printed without --show-token.
        #[arg(long)]
        check: bool,
        /// Print the access token itself (a secret: handle with care).
        #[arg(long)]
        show_token: bool,
        /// Protocols the token must cover (comma-separated; default all consented).
        #[arg(long, value_delimiter = ',', value_parser = ["smtp", "imap", "pop3"])]
        protocols: Vec<String>,
    },
    /// Send a mail over SMTP with the account's token.
    Send {
        /// The account that sends (default: the only one in the cache).
        #[arg(long)]
        account: Option<String>,
        /// Recipient (repeat for more).
        #[arg(long, required = true)]
        to: Vec<String>,
        #[arg(long, default_value = "")]
        subject: String,
        /// The text body.
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        /// Read the text body from a file.
        #[arg(long, value_name = "FILE")]
        body_file: Option<PathBuf>,
        /// Attach a file (repeat for more).
        #[arg(long, value_name = "FILE")]
        attachment: Vec<PathBuf>,
    },
    /// List the new messages of a mailbox over IMAP or POP3.
    Poll {
        /// The account whose mailbox is read (default: the only one in the cache).
        #[arg(long)]
        account: Option<String>,
        #[arg(long, default_value = "imap", value_parser = ["imap", "pop3"])]
        protocol: String,
        #[arg(long, default_value = "INBOX")]
        folder: String,
        /// At most this many messages.
        #[arg(long, default_value_t = 50)]
        max: u32,
        /// all (every message not acknowledged yet) or new (only what arrives from now on).
        #[arg(long, default_value = "all", value_parser = ["all", "new"])]
        start: String,
        /// Acknowledge each listed message: keep, seen, delete or move:<folder>.
        #[arg(long, value_name = "MODE")]
        ack: Option<String>,
    },
    /// Check the setup step by step: configuration, identity provider, app
    /// registration, then the account test (token, SMTP, IMAP, POP3).
    Diagnose {
        /// The account to test (default: the only one in the cache; none: no account test).
        #[arg(long)]
        account: Option<String>,
        /// Protocols to test (comma-separated; default all three).
        #[arg(long, value_delimiter = ',', value_parser = ["smtp", "imap", "pop3"])]
        protocols: Vec<String>,
    },
}

/// `--lang`, else `$LC_ALL` / `$LC_MESSAGES` / `$LANG` starting with `de`.
fn language(cli: &Cli) -> Language {
    if let Some(l) = cli.lang.as_deref().and_then(Language::parse) {
        return l;
    }
    for var in ["LC_ALL", "LC_MESSAGES", "LANG"] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            return if v.to_ascii_lowercase().starts_with("de") {
                Language::De
            } else {
                Language::En
            };
        }
    }
    Language::En
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let lang = language(&cli);
    let out = out::Out::new(cli.json, lang);
    ExitCode::from(commands::run(&cli, &out))
}
