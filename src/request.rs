//! Request documents of the C ABI (an SMTP send, a mailbox open): strict
//! JSON in the configuration's style — size bounded, duplicate and unknown
//! keys refused — and errors that name the request key, in English and
//! German.

use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;

/// What a kind of request is called in messages.
#[derive(Debug, Clone, Copy)]
pub struct Doc {
    /// "SMTP request"
    pub en: &'static str,
    /// "SMTP-Anfrage" (feminine: "die …", "der …")
    pub de: &'static str,
}

impl Doc {
    pub fn invalid(self, en: String, de: String) -> Error {
        Error::new(ErrorKind::InvalidConfig, Text::new(en, de))
    }

    /// `key` of the request has a wrong value.
    pub fn bad_key(self, key: &str, en: impl AsRef<str>, de: impl AsRef<str>) -> Error {
        self.invalid(
            format!("{} key '{key}': {}", self.en, en.as_ref()),
            format!("Schlüssel '{key}' der {}: {}", self.de, de.as_ref()),
        )
    }

    /// `key` holds a CR, LF or NUL.
    pub fn line_break(self, key: &str) -> Error {
        Error::new(
            ErrorKind::InvalidArgument,
            Text::new(
                format!(
                    "{} key '{key}' contains a line break or NUL character",
                    self.en
                ),
                format!(
                    "Schlüssel '{key}' der {} enthält einen Zeilenumbruch oder ein NUL-Zeichen",
                    self.de
                ),
            ),
        )
    }

    /// Parses the document into `T`.
    pub fn parse<T: DeserializeOwned>(self, json: &str, max_json_bytes: u64) -> Result<T> {
        if json.len() as u64 > max_json_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                Text::new(
                    format!("the {} is larger than {max_json_bytes} bytes", self.en),
                    format!("die {} ist größer als {max_json_bytes} Bytes", self.de),
                ),
            ));
        }
        let value = crate::config::strict_json::parse(json).map_err(|e| {
            self.invalid(
                format!("the {} is not valid JSON: {e}", self.en),
                format!("die {} ist kein gültiges JSON: {e}", self.de),
            )
        })?;
        if !value.is_object() {
            return Err(self.invalid(
                format!("the {} must be a JSON object", self.en),
                format!("die {} muss ein JSON-Objekt sein", self.de),
            ));
        }
        let mut unknown = Vec::new();
        let mut note = |path: serde_ignored::Path<'_>| unknown.push(crate::config::key_path(&path));
        let de = serde_ignored::Deserializer::new(&value, &mut note);
        let raw: T = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = shown(&e.path().to_string());
            let inner = e.into_inner().to_string();
            self.bad_key(&key, &inner, format!("ungültiger Wert ({inner})"))
        })?;
        if let Some(key) = unknown.first() {
            let key = shown(key);
            return Err(self.invalid(
                format!("unknown {} key '{key}' (check the spelling)", self.en),
                format!(
                    "unbekannter Schlüssel '{key}' in der {} (Schreibweise prüfen)",
                    self.de
                ),
            ));
        }
        Ok(raw)
    }
}

/// A value as it may appear in a message: no control characters, bounded.
pub fn shown(v: &str) -> String {
    v.chars().filter(|c| !c.is_control()).take(96).collect()
}
