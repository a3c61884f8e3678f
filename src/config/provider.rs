//! Provider presets: the values `provider` fills in unless a key is given
//! explicitly. Only the global cloud is verified against Microsoft's
//! documentation; the US Government and China values are community-sourced
//! (see docs) and every one of them can be overridden.

use super::Security;

/// What a preset fills in.
pub struct Preset {
    pub authority: &'static str,
    pub smtp_scope: &'static str,
    pub imap_scope: &'static str,
    pub pop3_scope: &'static str,
    pub app_scope: &'static str,
    pub smtp: (&'static str, u16, Security),
    pub imap: (&'static str, u16, Security),
    pub pop3: (&'static str, u16, Security),
    /// The cloud's own mail hosts: the only places its tokens may go, besides
    /// `trusted_hosts`.
    pub mail_hosts: &'static [&'static str],
}

pub const MICROSOFT: Preset = Preset {
    authority: "https://login.microsoftonline.com",
    smtp_scope: "https://outlook.office.com/SMTP.Send",
    imap_scope: "https://outlook.office.com/IMAP.AccessAsUser.All",
    pop3_scope: "https://outlook.office.com/POP.AccessAsUser.All",
    app_scope: "https://outlook.office365.com/.default",
    smtp: ("smtp.office365.com", 587, Security::StartTls),
    imap: ("outlook.office365.com", 993, Security::Tls),
    pop3: ("outlook.office365.com", 995, Security::Tls),
    mail_hosts: &[
        "outlook.office365.com",
        "smtp.office365.com",
        "outlook.office.com",
        "smtp-mail.outlook.com",
    ],
};

/// GCC High / DoD. Community-sourced values.
pub const MICROSOFT_USGOV: Preset = Preset {
    authority: "https://login.microsoftonline.us",
    smtp_scope: "https://outlook.office365.us/SMTP.Send",
    imap_scope: "https://outlook.office365.us/IMAP.AccessAsUser.All",
    pop3_scope: "https://outlook.office365.us/POP.AccessAsUser.All",
    app_scope: "https://outlook.office365.us/.default",
    smtp: ("smtp.office365.us", 587, Security::StartTls),
    imap: ("outlook.office365.us", 993, Security::Tls),
    pop3: ("outlook.office365.us", 995, Security::Tls),
    mail_hosts: &[
        "outlook.office365.us",
        "smtp.office365.us",
        "outlook-dod.office365.us",
    ],
};

/// 21Vianet. Community-sourced values.
pub const MICROSOFT_CHINA: Preset = Preset {
    authority: "https://login.partner.microsoftonline.cn",
    smtp_scope: "https://partner.outlook.cn/SMTP.Send",
    imap_scope: "https://partner.outlook.cn/IMAP.AccessAsUser.All",
    pop3_scope: "https://partner.outlook.cn/POP.AccessAsUser.All",
    app_scope: "https://partner.outlook.cn/.default",
    smtp: ("partner.outlook.cn", 587, Security::StartTls),
    imap: ("partner.outlook.cn", 993, Security::Tls),
    pop3: ("partner.outlook.cn", 995, Security::Tls),
    mail_hosts: &["partner.outlook.cn"],
};
