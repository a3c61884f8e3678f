//! The mail protocols a grant can cover. One consent covers any subset; one
//! access token serves all of them (they are all the Exchange resource).

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};
use crate::i18n::Text;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Smtp,
    Imap,
    Pop3,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Smtp, Protocol::Imap, Protocol::Pop3];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Smtp => "smtp",
            Self::Imap => "imap",
            Self::Pop3 => "pop3",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "smtp" => Some(Self::Smtp),
            "imap" => Some(Self::Imap),
            "pop3" => Some(Self::Pop3),
            _ => None,
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Smtp => 1,
            Self::Imap => 2,
            Self::Pop3 => 4,
        }
    }
}

/// A set of protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Protocols(u8);

impl Protocols {
    pub const NONE: Protocols = Protocols(0);
    pub const ALL: Protocols = Protocols(7);

    pub fn of(p: Protocol) -> Self {
        Self(p.bit())
    }

    pub fn contains(self, p: Protocol) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn covers(self, other: Protocols) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Protocols) -> Self {
        Self(self.0 | other.0)
    }

    pub fn insert(&mut self, p: Protocol) {
        self.0 |= p.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Protocol> {
        Protocol::ALL.into_iter().filter(move |p| self.contains(*p))
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Protocol::as_str).collect()
    }

    /// Parses a space-separated list such as `"smtp imap"` (the C ABI's
    /// `protocols` argument). Empty or unknown names are refused.
    pub fn parse_list(s: &str) -> Result<Self, Error> {
        let mut set = Protocols::NONE;
        for name in s.split_whitespace() {
            set.insert(Protocol::parse(name).ok_or_else(|| unknown(name))?);
        }
        if set.is_empty() {
            return Err(unknown(s));
        }
        Ok(set)
    }

    /// Parses a JSON array of names (request documents).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, Error> {
        let mut set = Protocols::NONE;
        for name in names {
            set.insert(Protocol::parse(name).ok_or_else(|| unknown(name))?);
        }
        if set.is_empty() {
            return Err(unknown(""));
        }
        Ok(set)
    }
}

fn unknown(name: &str) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        Text::new(
            format!("'{name}' is not a list of protocols (smtp, imap, pop3)"),
            format!("'{name}' ist keine Liste von Protokollen (smtp, imap, pop3)"),
        ),
    )
}

impl Serialize for Protocols {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Protocols {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut set = Protocols::NONE;
        for n in &names {
            set.insert(
                Protocol::parse(n)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown protocol '{n}'")))?,
            );
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_cover() {
        let s = Protocols::parse_list("smtp  imap").unwrap();
        assert!(
            s.contains(Protocol::Smtp) && s.contains(Protocol::Imap) && !s.contains(Protocol::Pop3)
        );
        assert!(Protocols::ALL.covers(s));
        assert!(!s.covers(Protocols::ALL));
        assert_eq!(s.names(), vec!["smtp", "imap"]);
        assert!(Protocols::parse_list("smtp imapx").is_err());
        assert!(Protocols::parse_list("  ").is_err());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"["smtp","imap"]"#);
        assert_eq!(serde_json::from_str::<Protocols>(&json).unwrap(), s);
    }
}
