use super::*;

const CID: &str = "00000000-0000-0000-0000-0000000000a1";

fn ok(json: &str) -> Config {
    match parse(json) {
        Ok(p) => p.config,
        Err(e) => panic!("expected OK for {json}: {}", e.message.en),
    }
}

fn err(json: &str) -> Error {
    match parse(json) {
        Ok(_) => panic!("expected an error for {json}"),
        Err(e) => e,
    }
}

#[test]
fn microsoft_preset_fills_everything() {
    let c = ok(&format!(r#"{{"client_id":"{CID}"}}"#));
    assert_eq!(c.provider, Provider::Microsoft);
    assert_eq!(c.tenant, "organizations");
    assert_eq!(
        c.endpoints.token.as_deref(),
        Some("https://login.microsoftonline.com/organizations/oauth2/v2.0/token")
    );
    assert_eq!(
        c.endpoints.device_code.as_deref(),
        Some("https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode")
    );
    let smtp = c.servers.smtp.unwrap();
    assert_eq!(
        (smtp.host.as_str(), smtp.port, smtp.security),
        ("smtp.office365.com", 587, Security::StartTls)
    );
    assert_eq!(
        c.scopes.imap.as_deref(),
        Some("https://outlook.office.com/IMAP.AccessAsUser.All")
    );
    assert_eq!(c.http_timeout_ms, 30_000);
    assert_eq!(c.smtp_max_connections, 2);
    assert_eq!(c.cache.protection, Protection::User);
}

#[test]
fn national_clouds_resolve_their_hosts() {
    let c = ok(&format!(
        r#"{{"client_id":"{CID}","provider":"microsoft-usgov"}}"#
    ));
    assert_eq!(
        c.authority.as_deref(),
        Some("https://login.microsoftonline.us")
    );
    assert_eq!(c.servers.imap.unwrap().host, "outlook.office365.us");
    let c = ok(&format!(
        r#"{{"client_id":"{CID}","provider":"microsoft-china"}}"#
    ));
    assert_eq!(c.servers.pop3.unwrap().host, "partner.outlook.cn");
}

#[test]
fn explicit_keys_win_over_the_preset() {
    let c = ok(&format!(
        r#"{{"client_id":"{CID}","tenant":"contoso.com","servers":{{"smtp":{{"port":25}}}},"scopes":{{"smtp":"https://outlook.office365.com/SMTP.Send"}},"endpoints":{{"token":"https://login.microsoftonline.com/x/oauth2/v2.0/token"}}}}"#
    ));
    let smtp = c.servers.smtp.unwrap();
    assert_eq!((smtp.host.as_str(), smtp.port), ("smtp.office365.com", 25));
    assert_eq!(
        c.scopes.smtp.as_deref(),
        Some("https://outlook.office365.com/SMTP.Send")
    );
    assert_eq!(
        c.endpoints.token.as_deref(),
        Some("https://login.microsoftonline.com/x/oauth2/v2.0/token")
    );
    assert_eq!(
        c.endpoints.authorize.as_deref(),
        Some("https://login.microsoftonline.com/contoso.com/oauth2/v2.0/authorize")
    );
}

#[test]
fn unknown_keys_are_named_top_level_and_nested() {
    let e = err(&format!(r#"{{"client_id":"{CID}","clientid":1}}"#));
    assert_eq!(e.kind, ErrorKind::InvalidConfig);
    assert!(e.message.en.contains("'clientid'"), "{}", e.message.en);
    let e = err(&format!(
        r#"{{"client_id":"{CID}","servers":{{"smtp":{{"hots":"x"}}}}}}"#
    ));
    assert!(
        e.message.en.contains("servers.smtp.hots"),
        "{}",
        e.message.en
    );
}

#[test]
fn ignore_unknown_keys_reports_them_instead() {
    let p = parse(&format!(
        r#"{{"client_id":"{CID}","future_key":true,"ignore_unknown_keys":true}}"#
    ))
    .unwrap();
    assert_eq!(p.ignored_keys, vec!["future_key".to_string()]);
}

#[test]
fn wrong_types_name_the_key() {
    let e = err(&format!(
        r#"{{"client_id":"{CID}","servers":{{"smtp":{{"port":"587"}}}}}}"#
    ));
    assert_eq!(e.kind, ErrorKind::InvalidConfig);
    assert!(
        e.message.en.contains("servers.smtp.port"),
        "{}",
        e.message.en
    );
    let e = err(&format!(
        r#"{{"client_id":"{CID}","servers":{{"smtp":{{"port":70000}}}}}}"#
    ));
    assert!(
        e.message.en.contains("servers.smtp.port"),
        "{}",
        e.message.en
    );
}

#[test]
fn malformed_and_missing() {
    assert_eq!(err("{").kind, ErrorKind::InvalidConfig);
    assert_eq!(err("[]").kind, ErrorKind::InvalidConfig);
    let e = err("{}");
    assert!(e.message.en.contains("client_id"));
    let e = err(r#"{"client_id":"not-a-guid"}"#);
    assert!(e.message.en.contains("GUID"));
    assert!(e.message.de.contains("GUID"));
}

#[test]
fn control_characters_are_invalid_arguments() {
    let e = err(&format!(r#"{{"client_id":"{CID}","tenant":"a\r\nb"}}"#));
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.en.contains("tenant"));
    let e = err(&format!(
        r#"{{"client_id":"{CID}","trusted_hosts":["ok.com","x\u0000y"]}}"#
    ));
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.en.contains("trusted_hosts[1]"));
}

#[test]
fn plaintext_only_for_loopback_literals_with_the_switch() {
    let base = r#""provider":"custom","client_id":"test-client","tenant":"t1""#;
    let e = err(&format!(
        r#"{{{base},"authority":"http://127.0.0.1:10088"}}"#
    ));
    assert!(e.message.en.contains("allow_plaintext_loopback"));
    let c = ok(&format!(
        r#"{{{base},"authority":"http://127.0.0.1:10088/","allow_plaintext_loopback":true}}"#
    ));
    assert_eq!(
        c.endpoints.token.as_deref(),
        Some("http://127.0.0.1:10088/t1/oauth2/v2.0/token")
    );
    let e = err(&format!(
        r#"{{{base},"authority":"http://localhost:10088","allow_plaintext_loopback":true}}"#
    ));
    assert!(e.message.en.contains("loopback IP"));
    let e = err(&format!(
        r#"{{{base},"authority":"http://127.0.0.1:1","allow_plaintext_loopback":true,"client_secret":"s"}}"#
    ));
    assert!(e.message.en.contains("client_secret"));
    let e = err(&format!(
        r#"{{{base},"authority":"http://127.0.0.1:1","allow_plaintext_loopback":true,"http":{{"proxy":"http://proxy:3128"}}}}"#
    ));
    assert!(e.message.en.contains("proxy"));
    let e = err(&format!(
        r#"{{{base},"authority":"https://idp","servers":{{"imap":{{"host":"10.1.1.1","security":"none"}}}},"allow_plaintext_loopback":true}}"#
    ));
    assert!(e.message.en.contains("servers.imap.security"));
    let c = ok(&format!(
        r#"{{{base},"authority":"https://idp","servers":{{"imap":{{"host":"127.0.0.2","port":10143,"security":"none"}}}},"allow_plaintext_loopback":true}}"#
    ));
    assert_eq!(c.servers.imap.unwrap().security, Security::None);
    let e = err(&format!(
        r#"{{{base},"authority":"https://idp","client_secret":"s","servers":{{"imap":{{"host":"127.0.0.2","security":"none"}}}},"allow_plaintext_loopback":true}}"#
    ));
    assert!(e.message.en.contains("client_secret"), "{}", e.message.en);
}

#[test]
fn duplicate_keys_are_refused() {
    let e = err(&format!(r#"{{"client_id":"{CID}","client_id":"{CID}"}}"#));
    assert_eq!(e.kind, ErrorKind::InvalidConfig);
    assert!(
        e.message.en.contains("duplicate key 'client_id'"),
        "{}",
        e.message.en
    );
}

#[test]
fn trusted_host_rule() {
    let e = err(&format!(
        r#"{{"client_id":"{CID}","servers":{{"smtp":{{"host":"mail.evil.example"}}}}}}"#
    ));
    assert!(e.message.en.contains("servers.smtp.host"));
    let c = ok(&format!(
        r#"{{"client_id":"{CID}","servers":{{"smtp":{{"host":"relay.contoso.com"}}}},"trusted_hosts":["*.contoso.com"]}}"#
    ));
    assert!(c.token_may_go_to("relay.contoso.com"));
    assert!(c.token_may_go_to("outlook.office365.com"));
    assert!(!c.token_may_go_to("mail.evil.example"));
    let c = ok(
        r#"{"provider":"custom","client_id":"c","authority":"https://idp.test","servers":{"imap":{"host":"imap.test"}}}"#,
    );
    assert!(c.token_may_go_to("imap.test"));
    assert!(!c.token_may_go_to("other.test"));
}

#[test]
fn custom_needs_an_authority_or_endpoints() {
    let e = err(r#"{"provider":"custom","client_id":"c"}"#);
    assert!(e.message.en.contains("authority"));
    let c = ok(
        r#"{"provider":"custom","client_id":"c","endpoints":{"token":"https://idp.test/token"}}"#,
    );
    assert_eq!(c.endpoints.authorize, None);
    assert_eq!(c.servers.smtp, None);
}

#[test]
fn ca_file_is_loaded_and_checked() {
    let e = err(&format!(
        r#"{{"client_id":"{CID}","tls":{{"ca_file":"/nonexistent/ca.pem"}}}}"#
    ));
    assert!(e.message.en.contains("tls.ca_file"));
    let dir = std::env::temp_dir().join(format!("mailoauth-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "hello").unwrap();
    let e = err(&format!(
        r#"{{"client_id":"{CID}","tls":{{"ca_file":"{}"}}}}"#,
        junk.display()
    ));
    assert!(
        e.message.en.contains("no PEM certificate"),
        "{}",
        e.message.en
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn enumerations_and_ranges() {
    for (json, key) in [
        (r#""cache":{"protection":"dpapi"}"#, "cache.protection"),
        (r#""browser":"firefox""#, "browser"),
        (r#""language":"fr""#, "language"),
        (r#""smtp":{"max_connections":0}"#, "smtp.max_connections"),
        (r#""http":{"timeout_ms":0}"#, "http.timeout_ms"),
        (r#""http":{"proxy":"not a url"}"#, "http.proxy"),
        (r#""redirect":{"host":"example.com"}"#, "redirect.host"),
        (
            r#""limits":{"max_message_bytes":5}"#,
            "limits.max_message_bytes",
        ),
        (r#""provider":"google""#, "provider"),
        (r#""tenant":"a/b""#, "tenant"),
    ] {
        let e = err(&format!(r#"{{"client_id":"{CID}",{json}}}"#));
        assert_eq!(e.kind, ErrorKind::InvalidConfig, "{json}");
        assert!(e.message.en.contains(key), "{json}: {}", e.message.en);
    }
}

#[test]
fn describe_never_shows_secrets() {
    let c = ok(&format!(
        r#"{{"client_id":"{CID}","tenant":"contoso.com","client_secret":"s3cr3t-value","http":{{"proxy":"http://u:pw123@proxy:3128"}}}}"#
    ));
    let d = c.describe().to_string();
    assert!(!d.contains("s3cr3t-value"));
    assert!(!d.contains("pw123"));
    assert!(d.contains(r#""client_secret":"set""#));
}

#[test]
fn oversized_document_is_too_large() {
    let big = format!(r#"{{"client_id":"{CID}","tenant":"{}"}}"#, "a".repeat(2000));
    let e = parse_with_limit(&big, 1024).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
}

#[test]
fn german_messages_exist() {
    let e = err(&format!(
        r#"{{"client_id":"{CID}","language":"de","browser":"x"}}"#
    ));
    assert!(e.message.de.contains("Konfigurationsschlüssel"));
    assert_eq!(language_hint(r#"{"language":"de"}"#), Language::De);
}
