//! Replays every committed fuzz input (fuzz/corpus/<target>/ and
//! fuzz/regressions/<target>/) through the same entry points the fuzz
//! targets use (`mailoauth::fuzzing`), on the stable toolchain:
//!
//! ```sh
//! cargo test --features fuzzing --test fuzz_corpus
//! ```
//!
//! A panic in an entry point (a crash, or a violated property such as a
//! token in an error) fails the test with the file's name. Without the
//! `fuzzing` feature this file compiles to nothing.
#![cfg(feature = "fuzzing")]

use std::path::{Path, PathBuf};

use mailoauth::fuzzing;

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn replay(target: &str) -> usize {
    let files = inputs(target);
    let mut failed = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        match std::panic::catch_unwind(|| fuzzing::run(target, &data)) {
            Ok(true) => {}
            Ok(false) => panic!("unknown fuzz target {target}"),
            Err(_) => failed.push(f.display().to_string()),
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: these inputs fail (see the panics above):\n{}",
        failed.join("\n")
    );
    files.len()
}

macro_rules! corpus_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let n = replay(stringify!($name));
                assert!(n > 0, "no corpus for {}", stringify!($name));
            }
        )*

        #[test]
        fn every_target_is_replayed() {
            let here = [$(stringify!($name)),*];
            for t in fuzzing::TARGETS {
                assert!(here.contains(&t), "{t} has no replay test");
            }
        }
    };
}

corpus_tests!(
    pop3_wire,
    pop3_session,
    imap_resp,
    imap_session,
    smtp_session,
    smtp_reply,
    idp_error,
    config_json,
    mail_message,
);

/// The checks the entry points apply can fail: an error holding the
/// token, or a server reply with a line break, is caught.
#[test]
fn the_checks_can_fail() {
    use mailoauth::error::{Error, ErrorKind};
    use mailoauth::i18n::Text;
    let leak = Error::new(
        ErrorKind::Protocol,
        Text::new(format!("x {}", fuzzing::TOKEN), "x"),
    );
    assert!(std::panic::catch_unwind(|| fuzzing::check_error(&leak)).is_err());
    let mut raw = Error::new(ErrorKind::Protocol, Text::new("x", "x"));
    raw.server_reply = Some("-ERR a\r\nb".into());
    assert!(std::panic::catch_unwind(|| fuzzing::check_error(&raw)).is_err());
    let fine =
        Error::new(ErrorKind::Protocol, Text::new("x", "x")).with_server_reply("-ERR a\r\nb");
    fuzzing::check_error(&fine);
}
