//! Request routing and the endpoint logic.

use crate::errors::{AadError, fault_defaults};
use crate::oauth::{self, IdTokenInput};
use crate::pages;
use crate::scopes::{self, GRAPH, OUTLOOK, Pkce, Scope};
use crate::settings::{Client, Settings, User};
use crate::store::*;
use crate::util::{fmt_timestamp, now_ms, now_s, rand_from, rand_urlsafe, uuid_v4};
use base64::Engine;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Mutex, MutexGuard};

pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const REDACT: [&str; 10] = [
    "code",
    "refresh_token",
    "client_secret",
    "client_assertion",
    "device_code",
    "code_verifier",
    "token",
    "password",
    "access_token",
    "id_token",
];

pub struct App {
    pub store: Mutex<Store>,
    pub http_base: String,
    pub log_file: Mutex<Option<std::fs::File>>,
}

impl App {
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn log_line(&self, line: &str) {
        eprintln!("{line}");
        let mut f = self.log_file.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = f.as_mut() {
            let _ = writeln!(f, "{line}");
        }
    }
}

pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: hyper::HeaderMap,
    pub body: bytes::Bytes,
    pub scheme: &'static str,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// For the request log line only.
    pub grant_type: Option<String>,
}

impl Resp {
    fn new(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Resp {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body,
            grant_type: None,
        }
    }
    fn json(status: u16, v: &Value) -> Self {
        let mut r = Resp::new(
            status,
            "application/json; charset=utf-8",
            serde_json::to_vec(v).unwrap_or_default(),
        );
        r.headers
            .push(("cache-control".into(), "no-store, no-cache".into()));
        r.headers.push(("pragma".into(), "no-cache".into()));
        r
    }
    fn html(status: u16, body: String) -> Self {
        let mut r = Resp::new(status, "text/html; charset=utf-8", body.into_bytes());
        r.headers
            .push(("cache-control".into(), "no-store, no-cache".into()));
        r
    }
    fn redirect(location: &str) -> Self {
        let mut r = Resp::html(
            302,
            format!(
                "<html><head><title>Object moved</title></head><body><h2>Object moved to <a href=\"{}\">here</a>.</h2></body></html>",
                crate::util::html_escape(location)
            ),
        );
        r.headers.push(("location".into(), location.into()));
        r
    }
    fn admin_error(status: u16, msg: &str) -> Self {
        Resp::json(status, &json!({"error": msg}))
    }
}

/// Trace and correlation ids of one request (the correlation id echoes `client-request-id`).
struct Ids {
    trace: String,
    corr: String,
}

impl Ids {
    fn of(req: &Req) -> Self {
        let corr = req
            .header("client-request-id")
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
            .map(str::to_string)
            .unwrap_or_else(uuid_v4);
        Ids {
            trace: uuid_v4(),
            corr,
        }
    }
}

fn err_resp(e: &AadError, ids: &Ids) -> Resp {
    let body = serde_json::to_value(e.body(&ids.trace, &ids.corr)).unwrap_or(Value::Null);
    let mut r = Resp::json(e.status, &body);
    if let Some(ra) = e.retry_after {
        r.headers.push(("retry-after".into(), ra.to_string()));
    }
    r
}

fn html_err(status: u16, code: u32, msg: &str, ids: &Ids) -> Resp {
    Resp::html(
        status,
        pages::error(code, msg, &ids.trace, &ids.corr, &fmt_timestamp(now_s())),
    )
}

/// Form parameters (first occurrence wins; empty values count as absent).
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: &[u8]) -> Self {
        Params(form_urlencoded::parse(raw).into_owned().collect())
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
    fn redacted(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in &self.0 {
            if m.contains_key(k) {
                continue;
            }
            let val = if REDACT.contains(&k.as_str()) {
                format!("[redacted {} chars]", v.len())
            } else {
                v.clone()
            };
            m.insert(k.clone(), Value::String(val));
        }
        Value::Object(m)
    }
    fn record_secrets(&self, st: &mut Store) {
        for (k, v) in &self.0 {
            if REDACT.contains(&k.as_str()) {
                st.secrets.add(v);
            }
        }
    }
}

fn request_entry(req: &Req, tenant: Option<&str>, params: &Params) -> Value {
    let mut headers = serde_json::Map::new();
    for h in [
        "client-request-id",
        "x-anchormailbox",
        "x-client-sku",
        "x-client-ver",
        "user-agent",
        "x-dovecot-auth-service",
    ] {
        if let Some(v) = req.header(h) {
            headers.insert(h.into(), v.into());
        }
    }
    json!({
        "time": fmt_timestamp(now_s()),
        "method": req.method,
        "tenant": tenant,
        "basic_auth": req.header("authorization").is_some_and(|a| a.to_ascii_lowercase().starts_with("basic ")),
        "params": params.redacted(),
        "headers": headers,
    })
}

async fn apply_latency(app: &App, endpoint: &str) {
    let ms = app.lock().latency.get(endpoint).copied().unwrap_or(0);
    if ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

pub async fn handle(app: &App, req: &Req) -> Resp {
    let path = req.path.clone();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let m = req.method.as_str();
    match segs.as_slice() {
        ["health"] => Resp::json(200, &json!({"status": "ok"})),
        ["introspect"] => introspect(app, req).await,
        ["dovecot", "grant"] => dovecot_grant(app, req).await,
        ["admin", rest @ ..] => admin(app, req, rest),
        ["devicelogin"] if m == "GET" => devicelogin_get(req),
        ["devicelogin"] if m == "POST" => devicelogin_post(app, req),
        ["devicelogin", "decide"] if m == "POST" => decide(app, req),
        [tenant, "oauth2", "v2.0", rest @ ..] => {
            let tenant = tenant.to_string();
            match rest {
                ["authorize"] if m == "GET" => authorize(app, req, &tenant).await,
                ["authorize", "decide"] if m == "POST" => decide(app, req),
                ["token"] => token(app, req, &tenant).await,
                ["devicecode"] => devicecode(app, req, &tenant).await,
                _ => not_found(req),
            }
        }
        [tenant, "v2.0", ".well-known", "openid-configuration"] => discovery(app, req, tenant),
        _ => not_found(req),
    }
}

fn not_found(req: &Req) -> Resp {
    let ids = Ids::of(req);
    err_resp(
        &AadError::new(
            404,
            "invalid_request",
            900561,
            format!("The endpoint {} does not exist.", req.path),
        ),
        &ids,
    )
}

fn discovery(app: &App, req: &Req, tenant: &str) -> Resp {
    let st = app.lock();
    if !st.settings.tenant_ok(tenant) {
        return err_resp(&tenant_not_found(tenant), &Ids::of(req));
    }
    let base = match req.header("host") {
        Some(h) => format!("{}://{}", req.scheme, h),
        None => app.http_base.clone(),
    };
    let tid = &st.settings.tenant_id;
    Resp::json(
        200,
        &json!({
            "issuer": format!("https://login.microsoftonline.com/{tid}/v2.0"),
            "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
            "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
            "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
            "introspection_endpoint": format!("{base}/introspect"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_GRANT, "client_credentials"],
            "code_challenge_methods_supported": ["S256", "plain"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "tenant_region_scope": "WW",
        }),
    )
}

fn tenant_not_found(tenant: &str) -> AadError {
    AadError::bad(
        "invalid_request",
        90002,
        format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
    )
}

fn method_not_allowed(req: &Req) -> AadError {
    AadError::new(
        405,
        "invalid_request",
        900561,
        format!(
            "The endpoint only accepts POST requests. Received a {} request.",
            req.method
        ),
    )
}

fn missing(param: &str) -> AadError {
    AadError::bad(
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{param}'."),
    )
}

fn unknown_client(id: &str, s: &Settings) -> AadError {
    AadError::bad(
        "unauthorized_client",
        700016,
        format!(
            "Application with identifier '{id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
            s.tenant_domain
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Token endpoint

struct TokenCtx<'a> {
    s: Settings,
    tenant: &'a str,
    params: &'a Params,
    client: Client,
    now: u64,
}

async fn token(app: &App, req: &Req, tenant: &str) -> Resp {
    let ids = Ids::of(req);
    if req.method != "POST" {
        let mut r = err_resp(&method_not_allowed(req), &ids);
        r.grant_type = None;
        return r;
    }
    let params = Params::parse(&req.body);
    let grant = params.get("grant_type").map(str::to_string);
    {
        let mut st = app.lock();
        params.record_secrets(&mut st);
        st.log_request("token", request_entry(req, Some(tenant), &params));
    }
    apply_latency(app, "token").await;
    let result = {
        let mut st = app.lock();
        let now = now_ms();
        if now.saturating_sub(st.last_sweep_ms) > 10_000 {
            st.last_sweep_ms = now;
            st.sweep(now);
        }
        if let Some(f) = st.take_fault("token", grant.as_deref()) {
            Err(f.to_error())
        } else {
            token_inner(&mut st, req, tenant, &params, now)
        }
    };
    let mut st = app.lock();
    let mut resp = match result {
        Ok(v) => {
            let c = &mut st.counters.token;
            match grant.as_deref() {
                Some("authorization_code") => c.authorization_code += 1,
                Some("refresh_token") => c.refresh_token += 1,
                Some(DEVICE_GRANT) => c.device_code += 1,
                Some("client_credentials") => c.client_credentials += 1,
                _ => {}
            }
            for k in ["access_token", "refresh_token", "id_token"] {
                if let Some(t) = v.get(k).and_then(Value::as_str) {
                    st.secrets.add(t);
                }
            }
            Resp::json(200, &v)
        }
        Err(e) => {
            st.counters.token.errors += 1;
            err_resp(&e, &ids)
        }
    };
    resp.grant_type = grant;
    resp
}

/// Client id and secret from the body or HTTP Basic (RFC 6749 2.3.1).
fn client_credentials_of(req: &Req, params: &Params) -> (Option<String>, Option<String>) {
    let mut id = params.get("client_id").map(str::to_string);
    let mut secret = params.get("client_secret").map(str::to_string);
    if let Some(auth) = req.header("authorization")
        && auth.len() > 6
        && auth
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("basic "))
        && let Ok(raw) =
            base64::engine::general_purpose::STANDARD.decode(auth.get(6..).unwrap_or("").trim())
        && let Ok(txt) = String::from_utf8(raw)
        && let Some((u, p)) = txt.split_once(':')
    {
        let dec = |s: &str| {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        if id.is_none() {
            id = Some(dec(u));
        }
        if secret.is_none() && !p.is_empty() {
            secret = Some(dec(p));
        }
    }
    (id, secret)
}

fn token_inner(
    st: &mut Store,
    req: &Req,
    tenant: &str,
    params: &Params,
    now: u64,
) -> Result<Value, AadError> {
    let s = st.settings.clone();
    if !s.tenant_ok(tenant) {
        return Err(tenant_not_found(tenant));
    }
    let grant = params
        .get("grant_type")
        .ok_or_else(|| missing("grant_type"))?;
    let (client_id, secret) = client_credentials_of(req, params);
    if let Some(sec) = &secret {
        st.secrets.add(sec);
    }
    if grant == "client_credentials" && Settings::tenant_is_generic(tenant) {
        return Err(AadError::bad(
            "invalid_request",
            9001023,
            "The grant type is not supported over the /common, /consumers or /organizations endpoints. Please use the tenant-specific endpoint (tenant id or verified domain).",
        ));
    }
    let client_id = client_id.ok_or_else(|| missing("client_id"))?;
    let client = s
        .client(&client_id)
        .cloned()
        .ok_or_else(|| unknown_client(&client_id, &s))?;
    let assertion = params.get("client_assertion").is_some();
    if client.is_public() {
        if secret.is_some() || assertion {
            return Err(AadError::new(
                401,
                "invalid_client",
                700025,
                "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
            ));
        }
        if grant == "client_credentials" {
            return Err(secret_required());
        }
    } else {
        match &secret {
            None if !assertion => return Err(secret_required()),
            None => {
                return Err(AadError::new(
                    401,
                    "invalid_client",
                    700027,
                    "Client assertion failed signature validation.",
                ));
            }
            Some(given) => {
                if client.secret.as_deref() != Some(given.as_str()) {
                    return Err(AadError::new(
                        401,
                        "invalid_client",
                        7000215,
                        format!(
                            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                            client.client_id
                        ),
                    ));
                }
            }
        }
    }
    let ctx = TokenCtx {
        s,
        tenant,
        params,
        client,
        now,
    };
    match grant {
        "authorization_code" => grant_code(st, &ctx),
        "refresh_token" => grant_refresh(st, &ctx),
        DEVICE_GRANT => grant_device(st, &ctx),
        "client_credentials" => grant_client_credentials(st, &ctx),
        other => Err(AadError::bad(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}

fn secret_required() -> AadError {
    AadError::new(
        401,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    )
}

fn requested_scopes(st: &Store, ctx: &TokenCtx, user: &str, fallback: &[String]) -> Vec<Scope> {
    match ctx.params.get("scope") {
        Some(raw) => scopes::expand_default_consented(
            scopes::normalize(raw),
            &st.consent(user, &ctx.client.client_id),
        ),
        None => fallback.iter().map(|v| scopes::normalize_one(v)).collect(),
    }
}

fn check_one_resource(req: &[Scope]) -> Result<(), AadError> {
    let res = scopes::resources(req);
    if res.len() <= 1 {
        return Ok(());
    }
    if req.iter().any(Scope::is_default) {
        Err(AadError::bad(
            "invalid_scope",
            700022,
            format!(
                "The provided value for the input parameter scope is not valid because it contains more than one resource. Scope {} is not valid.",
                scopes::join(req)
            ),
        ))
    } else {
        Err(AadError::bad(
            "invalid_scope",
            70011,
            format!(
                "The provided value for the input parameter 'scope' is not valid. One or more scopes in '{}' are not compatible with each other.",
                scopes::join(req)
            ),
        ))
    }
}

fn check_consent(st: &Store, ctx: &TokenCtx, user: &str, req: &[Scope]) -> Result<(), AadError> {
    let consented = st.consent(user, &ctx.client.client_id);
    let missing = scopes::missing_consent(req, &consented);
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|s| s.value.as_str()).collect();
    Err(AadError::bad(
        "invalid_grant",
        65001,
        format!(
            "The user or administrator has not consented to use the application with ID '{}' named '{}'. Send an interactive authorization request for this user and resource. Missing: {}",
            ctx.client.client_id,
            ctx.client.name,
            names.join(" ")
        ),
    )
    .with_suberror("consent_required"))
}

fn user_of(s: &Settings, name: &str) -> Result<User, AadError> {
    s.user(name).cloned().ok_or_else(|| {
        AadError::bad(
            "invalid_grant",
            50034,
            format!(
                "The user account {name} does not exist in the {} directory. To sign into this application, the account must be added to the directory.",
                s.tenant_domain
            ),
        )
    })
}

struct Issue<'a> {
    user: &'a User,
    requested: &'a [Scope],
    want_rt: bool,
    want_id: bool,
    nonce: Option<&'a str>,
}

/// Issue delegated tokens. The access token carries every consented scope of the one resource
/// requested (as Entra does); the response's `scope` lists them.
fn issue_user(st: &mut Store, ctx: &TokenCtx, is: Issue) -> Result<Value, AadError> {
    check_one_resource(is.requested)?;
    let res = scopes::resources(is.requested);
    let (resource, mut granted): (String, Vec<String>) = match res.first() {
        None => (GRAPH.to_string(), vec![format!("{GRAPH}/User.Read")]),
        Some(r) => (
            r.clone(),
            is.requested
                .iter()
                .filter(|s| s.resource.as_deref() == Some(r.as_str()) && !s.is_default())
                .map(|s| s.value.clone())
                .collect(),
        ),
    };
    for c in st.consent(&is.user.username, &ctx.client.client_id) {
        let n = scopes::normalize_one(&c);
        if n.resource.as_deref() == Some(resource.as_str())
            && !granted.iter().any(|g| g.eq_ignore_ascii_case(&c))
        {
            granted.push(n.value);
        }
    }
    let s = &ctx.s;
    let lifetime = s.access_token_lifetime_s;
    let at = rand_urlsafe(s.access_token_length);
    st.access.insert(
        at.clone(),
        AccessToken {
            client_id: ctx.client.client_id.clone(),
            user: Some(is.user.username.clone()),
            app_mailbox: None,
            scopes: granted.clone(),
            roles: vec![],
            expires_ms: ctx.now + lifetime * 1000,
            revoked: false,
        },
    );
    let mut out = json!({
        "token_type": "Bearer",
        "scope": granted.join(" "),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": at,
    });
    if is.want_rt {
        let rt = format!("1.AX{}", rand_urlsafe(900));
        st.refresh.insert(
            rt.clone(),
            RefreshToken {
                client_id: ctx.client.client_id.clone(),
                user: is.user.username.clone(),
                scopes: is.requested.iter().map(|s| s.value.clone()).collect(),
                issued_ms: ctx.now,
                expires_ms: ctx.now + s.refresh_token_lifetime_s * 1000,
                state: RtState::Active,
            },
        );
        out["refresh_token"] = rt.into();
    }
    if is.want_id {
        out["id_token"] = oauth::id_token(&IdTokenInput {
            settings: s,
            client_id: &ctx.client.client_id,
            user: is.user,
            nonce: is.nonce,
            email: scopes::has(is.requested, "email"),
            now_s: ctx.now / 1000,
        })
        .into();
    }
    if ctx.params.get("client_info") == Some("1") {
        out["client_info"] = oauth::client_info(&is.user.oid, &s.tenant_id).into();
    }
    Ok(out)
}

fn grant_code(st: &mut Store, ctx: &TokenCtx) -> Result<Value, AadError> {
    let code_val = ctx.params.get("code").ok_or_else(|| missing("code"))?;
    let code = st
        .codes
        .get(code_val)
        .cloned()
        .ok_or_else(malformed_grant)?;
    if code.used {
        return Err(AadError::bad(
            "invalid_grant",
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
        ));
    }
    if ctx.now >= code.expires_ms {
        return Err(AadError::bad(
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        ));
    }
    if !code.client_id.eq_ignore_ascii_case(&ctx.client.client_id) {
        return Err(AadError::bad(
            "invalid_grant",
            70000,
            "The provided grant is invalid: the authorization code was issued to a different client.",
        )
        .with_suberror("client_mismatch"));
    }
    let redirect = ctx
        .params
        .get("redirect_uri")
        .ok_or_else(|| missing("redirect_uri"))?;
    if redirect != code.redirect_uri {
        return Err(AadError::bad(
            "invalid_grant",
            500112,
            format!(
                "The reply address '{redirect}' does not match the reply address '{}' provided when requesting Authorization code.",
                code.redirect_uri
            ),
        ));
    }
    if let Some((challenge, method)) = &code.challenge {
        match scopes::verify_pkce(challenge, method, ctx.params.get("code_verifier")) {
            Pkce::Ok => {}
            Pkce::MissingVerifier => return Err(missing("code_verifier")),
            Pkce::BadVerifier | Pkce::Mismatch => {
                return Err(AadError::bad(
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                ));
            }
        }
    }
    let user = user_of(&ctx.s, &code.user)?;
    let requested = requested_scopes(st, ctx, &user.username, &code.scopes);
    check_one_resource(&requested)?;
    check_consent(st, ctx, &user.username, &requested)?;
    let out = issue_user(
        st,
        ctx,
        Issue {
            user: &user,
            requested: &requested,
            want_rt: code.scopes.iter().any(|s| s == "offline_access"),
            want_id: code.scopes.iter().any(|s| s == "openid"),
            nonce: code.nonce.as_deref(),
        },
    )?;
    if let Some(c) = st.codes.get_mut(code_val) {
        c.used = true;
    }
    Ok(out)
}

fn malformed_grant() -> AadError {
    AadError::bad(
        "invalid_grant",
        9002313,
        "Invalid request. Request is malformed or invalid.",
    )
    .with_suberror("bad_token")
}

fn grant_refresh(st: &mut Store, ctx: &TokenCtx) -> Result<Value, AadError> {
    let rt_val = ctx
        .params
        .get("refresh_token")
        .ok_or_else(|| missing("refresh_token"))?;
    let rt = st
        .refresh
        .get(rt_val)
        .cloned()
        .ok_or_else(malformed_grant)?;
    check_refresh(
        &rt,
        &ctx.client.client_id,
        ctx.now,
        ctx.s.rotation_reuse_aadsts,
    )?;
    let user = user_of(&ctx.s, &rt.user)?;
    let requested = requested_scopes(st, ctx, &user.username, &rt.scopes);
    check_one_resource(&requested)?;
    // A refused scope leaves the refresh token untouched.
    check_consent(st, ctx, &user.username, &requested)?;
    let out = issue_user(
        st,
        ctx,
        Issue {
            user: &user,
            requested: &requested,
            want_rt: true,
            want_id: scopes::has(&requested, "openid"),
            nonce: None,
        },
    )?;
    if let Some(old) = st.refresh.get_mut(rt_val) {
        old.state = after_redeem(ctx.s.rotation);
    }
    Ok(out)
}

fn grant_device(st: &mut Store, ctx: &TokenCtx) -> Result<Value, AadError> {
    let dc = ctx
        .params
        .get("device_code")
        .ok_or_else(|| missing("device_code"))?
        .to_string();
    let Some(dev) = st.devices.get(&dc).cloned() else {
        return Err(AadError::bad(
            "bad_verification_code",
            70018,
            "The provided value for the input parameter 'device_code' is not valid.",
        ));
    };
    if !dev.client_id.eq_ignore_ascii_case(&ctx.client.client_id) {
        return Err(AadError::bad(
            "invalid_grant",
            70000,
            "The provided grant is invalid: the device code was issued to a different client.",
        )
        .with_suberror("client_mismatch"));
    }
    if ctx.now >= dev.expires_ms {
        return Err(AadError::bad(
            "expired_token",
            70019,
            "Verification code expired.",
        ));
    }
    let last = dev.last_poll_ms;
    if let Some(d) = st.devices.get_mut(&dc) {
        d.last_poll_ms = Some(ctx.now);
    }
    match dev.state {
        DeviceState::Redeemed => Err(AadError::bad(
            "invalid_grant",
            54005,
            "OAuth2 device code was already redeemed, please request a new device code.",
        )),
        DeviceState::Declined => Err(AadError::bad(
            "authorization_declined",
            70000,
            "The user declined the authorization request.",
        )),
        DeviceState::Pending => {
            let interval_ms = ctx.s.device_interval_s * 1000;
            if ctx.s.device_slow_down
                && let Some(l) = last
                && ctx.now.saturating_sub(l) + 250 < interval_ms
            {
                return Err(AadError::bad(
                    "slow_down",
                    70016,
                    "OAuth 2.0 device flow error. Polling too frequently: wait the interval plus 5 seconds before polling again.",
                ));
            }
            Err(AadError::bad(
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            ))
        }
        DeviceState::Approved(username) => {
            let user = user_of(&ctx.s, &username)?;
            let requested: Vec<Scope> = dev
                .scopes
                .iter()
                .map(|v| scopes::normalize_one(v))
                .collect();
            let out = issue_user(
                st,
                ctx,
                Issue {
                    user: &user,
                    requested: &requested,
                    want_rt: scopes::has(&requested, "offline_access"),
                    want_id: scopes::has(&requested, "openid"),
                    nonce: None,
                },
            )?;
            if let Some(d) = st.devices.get_mut(&dc) {
                d.state = DeviceState::Redeemed;
            }
            Ok(out)
        }
    }
}

fn grant_client_credentials(st: &mut Store, ctx: &TokenCtx) -> Result<Value, AadError> {
    let raw = ctx.params.get("scope").ok_or_else(|| missing("scope"))?;
    let req = scopes::normalize(raw);
    let non_default: Vec<&Scope> = req.iter().filter(|s| !s.is_default()).collect();
    if let Some(bad) = non_default.first() {
        return Err(AadError::bad(
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
                bad.value
            ),
        ));
    }
    check_one_resource(&req)?;
    let resource = scopes::resources(&req).first().cloned().unwrap_or_default();
    let roles: Vec<String> = if resource == OUTLOOK {
        ctx.client.app_roles.clone()
    } else if resource == GRAPH {
        vec![]
    } else {
        return Err(AadError::bad(
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {resource} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
                ctx.s.tenant_domain
            ),
        ));
    };
    let _ = ctx.tenant;
    let lifetime = ctx.s.access_token_lifetime_s;
    let at = rand_urlsafe(ctx.s.access_token_length);
    st.access.insert(
        at.clone(),
        AccessToken {
            client_id: ctx.client.client_id.clone(),
            user: None,
            app_mailbox: if resource == OUTLOOK {
                ctx.client.app_mailbox.clone()
            } else {
                None
            },
            scopes: vec![],
            roles,
            expires_ms: ctx.now + lifetime * 1000,
            revoked: false,
        },
    );
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": at,
    }))
}

// ---------------------------------------------------------------------------------------------
// Device code

const USER_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

async fn devicecode(app: &App, req: &Req, tenant: &str) -> Resp {
    let ids = Ids::of(req);
    if req.method != "POST" {
        return err_resp(&method_not_allowed(req), &ids);
    }
    let params = Params::parse(&req.body);
    app.lock()
        .log_request("devicecode", request_entry(req, Some(tenant), &params));
    apply_latency(app, "devicecode").await;
    let mut st = app.lock();
    if let Some(f) = st.take_fault("devicecode", None) {
        return err_resp(&f.to_error(), &ids);
    }
    let s = st.settings.clone();
    let result = (|| {
        if !s.tenant_ok(tenant) {
            return Err(tenant_not_found(tenant));
        }
        let client_id = params
            .get("client_id")
            .ok_or_else(|| missing("client_id"))?;
        let client = s
            .client(client_id)
            .ok_or_else(|| unknown_client(client_id, &s))?;
        let scope = params.get("scope").ok_or_else(|| missing("scope"))?;
        let requested = scopes::expand_default(scopes::normalize(scope));
        Ok((client.client_id.clone(), requested))
    })();
    let (client_id, requested) = match result {
        Ok(v) => v,
        Err(e) => return err_resp(&e, &ids),
    };
    st.counters.devicecode += 1;
    let now = now_ms();
    let mut user_code = rand_from(USER_CODE_ALPHABET, 9);
    while st.user_codes.contains_key(&user_code) {
        user_code = rand_from(USER_CODE_ALPHABET, 9);
    }
    let device_code = format!("DAQABIQEAAAB{}", rand_urlsafe(160));
    st.secrets.add(&device_code);
    st.devices.insert(
        device_code.clone(),
        Device {
            client_id,
            user_code: user_code.clone(),
            scopes: requested.iter().map(|s| s.value.clone()).collect(),
            expires_ms: now + s.device_code_lifetime_s * 1000,
            last_poll_ms: None,
            state: DeviceState::Pending,
        },
    );
    st.user_codes.insert(user_code.clone(), device_code.clone());
    let uri = s
        .verification_uri
        .clone()
        .unwrap_or_else(|| format!("{}/devicelogin", app.http_base));
    Resp::json(
        200,
        &json!({
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": uri,
            "expires_in": s.device_code_lifetime_s,
            "interval": s.device_interval_s,
            "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate."),
        }),
    )
}

fn devicelogin_get(req: &Req) -> Resp {
    let q = Params::parse(req.query.as_bytes());
    Resp::html(200, pages::device_entry(q.get("otc").unwrap_or(""), None))
}

fn devicelogin_post(app: &App, req: &Req) -> Resp {
    let params = Params::parse(&req.body);
    let code = params
        .get("otc")
        .unwrap_or("")
        .trim()
        .to_ascii_uppercase()
        .replace(['-', ' '], "");
    let mut st = app.lock();
    let now = now_ms();
    let dev = st
        .user_codes
        .get(&code)
        .and_then(|dc| st.devices.get(dc).map(|d| (dc.clone(), d.clone())));
    let Some((device_code, dev)) = dev else {
        return Resp::html(
            400,
            pages::device_entry(
                &code,
                Some("AADSTS70018: We don't recognize this code. Check the code and try again."),
            ),
        );
    };
    if now >= dev.expires_ms {
        return Resp::html(
            400,
            pages::device_entry(
                &code,
                Some(
                    "AADSTS70019: That code has expired. Go back to your device and request a new code.",
                ),
            ),
        );
    }
    if dev.state != DeviceState::Pending {
        return Resp::html(
            400,
            pages::device_entry(
                &code,
                Some(
                    "AADSTS90120: This code was already used. Go back to your device and request a new code.",
                ),
            ),
        );
    }
    let txn = uuid_v4();
    st.pending.insert(
        txn.clone(),
        Pending {
            kind: PendingKind::Device { device_code },
            created_ms: now,
        },
    );
    let s = st.settings.clone();
    let name = s
        .client(&dev.client_id)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    Resp::html(
        200,
        pages::consent(&pages::ConsentPage {
            settings: &s,
            action: "/devicelogin/decide",
            txn: &txn,
            app_name: &name,
            client_id: &dev.client_id,
            scopes: &dev.scopes,
            username: "",
            select_account: false,
            error: None,
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// Authorize

fn make_code(st: &mut Store, p: &PendingKind, user: &str, now: u64) -> Option<String> {
    let PendingKind::Authorize {
        client_id,
        redirect_uri,
        scopes,
        challenge,
        nonce,
        ..
    } = p
    else {
        return None;
    };
    let code = format!("1.AX{}", rand_urlsafe(600));
    st.secrets.add(&code);
    st.codes.insert(
        code.clone(),
        AuthCode {
            client_id: client_id.clone(),
            user: user.to_string(),
            scopes: scopes.clone(),
            redirect_uri: redirect_uri.clone(),
            challenge: challenge.clone(),
            nonce: nonce.clone(),
            expires_ms: now + st.settings.code_lifetime_s * 1000,
            used: false,
        },
    );
    Some(code)
}

fn redirect_error(
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    e: &AadError,
    ids: &Ids,
) -> Resp {
    let desc = e.description(&ids.trace, &ids.corr, &fmt_timestamp(now_s()));
    let mut q: Vec<(&str, &str)> = vec![("error", error), ("error_description", &desc)];
    if let Some(s) = state {
        q.push(("state", s));
    }
    Resp::redirect(&oauth::with_query(redirect_uri, &q))
}

fn redirect_code(redirect_uri: &str, code: &str, state: Option<&str>) -> Resp {
    let mut q: Vec<(&str, &str)> = vec![("code", code)];
    if let Some(s) = state {
        q.push(("state", s));
    }
    let session = uuid_v4();
    q.push(("session_state", &session));
    Resp::redirect(&oauth::with_query(redirect_uri, &q))
}

async fn authorize(app: &App, req: &Req, tenant: &str) -> Resp {
    let ids = Ids::of(req);
    let params = Params::parse(req.query.as_bytes());
    {
        let mut st = app.lock();
        st.counters.authorize += 1;
        st.log_request("authorize", request_entry(req, Some(tenant), &params));
    }
    apply_latency(app, "authorize").await;
    let mut st = app.lock();
    if let Some(f) = st.take_fault("authorize", None) {
        let mut r = Resp::html(f.status, f.html());
        if let Some(ra) = f.retry_after {
            r.headers.push(("retry-after".into(), ra.to_string()));
        }
        return r;
    }
    let s = st.settings.clone();
    if !s.tenant_ok(tenant) {
        return html_err(400, 90002, &tenant_not_found(tenant).message, &ids);
    }
    let Some(client_id) = params.get("client_id") else {
        return html_err(400, 900144, &missing("client_id").message, &ids);
    };
    let Some(client) = s.client(client_id).cloned() else {
        return html_err(400, 700016, &unknown_client(client_id, &s).message, &ids);
    };
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return html_err(400, 900144, &missing("redirect_uri").message, &ids);
    };
    if !client
        .redirect_uris
        .iter()
        .any(|r| oauth::redirect_matches(r, redirect_uri))
    {
        return html_err(
            400,
            50011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal.",
                client.client_id
            ),
            &ids,
        );
    }
    let state = params.get("state");
    let fail = |error: &str, e: AadError| redirect_error(redirect_uri, state, error, &e, &ids);
    match params.get("response_type") {
        None => return fail("invalid_request", missing("response_type")),
        Some("code") => {}
        Some(other) => {
            return fail(
                "unsupported_response_type",
                AadError::bad(
                    "unsupported_response_type",
                    700054,
                    format!("response_type '{other}' is not enabled for the application."),
                ),
            );
        }
    }
    if let Some(mode) = params.get("response_mode")
        && mode != "query"
    {
        return fail(
            "invalid_request",
            AadError::bad(
                "invalid_request",
                90023,
                format!(
                    "Unsupported response_mode '{mode}': this service answers with response_mode=query only."
                ),
            ),
        );
    }
    let Some(scope_raw) = params.get("scope") else {
        return fail("invalid_request", missing("scope"));
    };
    let challenge = match params.get("code_challenge") {
        None => None,
        Some(c) => {
            let method = params.get("code_challenge_method").unwrap_or("plain");
            if method != "S256" && method != "plain" {
                return fail(
                    "invalid_request",
                    AadError::bad(
                        "invalid_request",
                        90023,
                        format!("Invalid code_challenge_method '{method}'; use S256 or plain."),
                    ),
                );
            }
            if c.len() < 43 || c.len() > 128 {
                return fail(
                    "invalid_request",
                    AadError::bad(
                        "invalid_request",
                        501491,
                        "Invalid size of Code_Challenge parameter.",
                    ),
                );
            }
            Some((c.to_string(), method.to_string()))
        }
    };
    let requested = scopes::expand_default(scopes::normalize(scope_raw));
    let scope_values: Vec<String> = requested.iter().map(|s| s.value.clone()).collect();
    let kind = PendingKind::Authorize {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        scopes: scope_values.clone(),
        state: state.map(str::to_string),
        challenge,
        nonce: params.get("nonce").map(str::to_string),
    };
    let now = now_ms();
    let prompt = params.get("prompt").unwrap_or("");
    let hint = params.get("login_hint");
    if prompt == "none" {
        let who = hint.or(if s.auto_consent {
            Some(s.auto_consent_user.as_str())
        } else {
            None
        });
        let Some(user) = who.and_then(|u| s.user(u)) else {
            return fail(
                "login_required",
                AadError::bad(
                    "login_required",
                    50058,
                    "A silent sign-in request was sent but no user is signed in.",
                ),
            );
        };
        let consented = st.consent(&user.username, &client.client_id);
        if !scopes::missing_consent(&requested, &consented).is_empty() {
            return fail(
                "interaction_required",
                AadError::bad(
                    "interaction_required",
                    65001,
                    format!(
                        "The user or administrator has not consented to use the application with ID '{}'. Send an interactive authorization request for this user and resource.",
                        client.client_id
                    ),
                ),
            );
        }
        let username = user.username.clone();
        let code = make_code(&mut st, &kind, &username, now).unwrap_or_default();
        return redirect_code(redirect_uri, &code, state);
    }
    if s.auto_consent {
        let who = hint.unwrap_or(s.auto_consent_user.as_str());
        let Some(user) = s.user(who) else {
            return html_err(
                400,
                50034,
                &user_of(&s, who)
                    .err()
                    .map(|e| e.message)
                    .unwrap_or_default(),
                &ids,
            );
        };
        st.add_consent(&user.username, &client.client_id, &scope_values);
        let code = make_code(&mut st, &kind, &user.username, now).unwrap_or_default();
        return redirect_code(redirect_uri, &code, state);
    }
    let txn = uuid_v4();
    st.pending.insert(
        txn.clone(),
        Pending {
            kind,
            created_ms: now,
        },
    );
    Resp::html(
        200,
        pages::consent(&pages::ConsentPage {
            settings: &s,
            action: &format!("/{tenant}/oauth2/v2.0/authorize/decide"),
            txn: &txn,
            app_name: &client.name,
            client_id: &client.client_id,
            scopes: &scope_values,
            username: hint.unwrap_or(""),
            select_account: prompt == "select_account",
            error: None,
        }),
    )
}

/// The form POST from the sign-in/consent page (both authorize and device flows).
fn decide(app: &App, req: &Req) -> Resp {
    let ids = Ids::of(req);
    let params = Params::parse(&req.body);
    let mut st = app.lock();
    let s = st.settings.clone();
    let txn = params.get("txn").unwrap_or("").to_string();
    let Some(pending) = st.pending.get(&txn).cloned() else {
        return html_err(
            400,
            90120,
            "This sign-in request has expired or was already completed. Start the sign-in again.",
            &ids,
        );
    };
    let now = now_ms();
    let accept = params.get("decision") != Some("cancel");
    let (client_id, scopes_list, action) = match &pending.kind {
        PendingKind::Authorize {
            client_id, scopes, ..
        } => (client_id.clone(), scopes.clone(), req.path.clone()),
        PendingKind::Device { device_code } => match st.devices.get(device_code) {
            Some(d) => (d.client_id.clone(), d.scopes.clone(), req.path.clone()),
            None => {
                st.pending.remove(&txn);
                return html_err(400, 70019, "The device code has expired.", &ids);
            }
        },
    };
    let client_name = s
        .client(&client_id)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    if !accept {
        st.pending.remove(&txn);
        return match pending.kind {
            PendingKind::Authorize {
                redirect_uri,
                state,
                ..
            } => redirect_error(
                &redirect_uri,
                state.as_deref(),
                "access_denied",
                &AadError::bad(
                    "access_denied",
                    65004,
                    "User declined to consent to access the app.",
                ),
                &ids,
            ),
            PendingKind::Device { device_code } => {
                if let Some(d) = st.devices.get_mut(&device_code) {
                    d.state = DeviceState::Declined;
                }
                Resp::html(200, pages::device_done(&client_name, false))
            }
        };
    }
    let typed = params
        .get("username")
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let chosen = typed.or(params.get("account"));
    let user = chosen.and_then(|u| s.user(u)).cloned();
    let Some(user) = user else {
        let msg = match chosen {
            None => "Enter a valid email address, phone number, or Skype name.".to_string(),
            Some(u) => format!(
                "AADSTS50034: The user account {u} does not exist in the {} directory. To sign into this application, the account must be added to the directory.",
                s.tenant_domain
            ),
        };
        return Resp::html(
            400,
            pages::consent(&pages::ConsentPage {
                settings: &s,
                action: &action,
                txn: &txn,
                app_name: &client_name,
                client_id: &client_id,
                scopes: &scopes_list,
                username: chosen.unwrap_or(""),
                select_account: false,
                error: Some(&msg),
            }),
        );
    };
    st.pending.remove(&txn);
    st.add_consent(&user.username, &client_id, &scopes_list);
    match &pending.kind {
        PendingKind::Authorize {
            redirect_uri,
            state,
            ..
        } => {
            let code = make_code(&mut st, &pending.kind, &user.username, now).unwrap_or_default();
            redirect_code(redirect_uri, &code, state.as_deref())
        }
        PendingKind::Device { device_code } => {
            if let Some(d) = st.devices.get_mut(device_code) {
                d.state = DeviceState::Approved(user.username.clone());
            }
            Resp::html(200, pages::device_done(&client_name, true))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Introspection (RFC 7662) for Dovecot

/// The delegated scope and the app role a service needs.
fn service_requirements(service: &str) -> Option<(&'static str, &'static str)> {
    match service.to_ascii_lowercase().as_str() {
        "imap" => Some((
            "https://outlook.office.com/IMAP.AccessAsUser.All",
            "IMAP.AccessAsApp",
        )),
        "pop3" | "pop" => Some((
            "https://outlook.office.com/POP.AccessAsUser.All",
            "POP.AccessAsApp",
        )),
        "smtp" | "submission" => Some(("https://outlook.office.com/SMTP.Send", "SMTP.SendAsApp")),
        _ => None,
    }
}

/// Why a token is inactive, or the active answer.
pub fn introspect_token(
    st: &Store,
    token: &str,
    service: Option<&str>,
    now: u64,
) -> Result<Value, &'static str> {
    let at = st.access.get(token).ok_or("unknown token")?;
    if at.revoked {
        return Err("revoked");
    }
    if now >= at.expires_ms {
        return Err("expired");
    }
    let username = match (&at.user, &at.app_mailbox) {
        (Some(u), _) => u.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => return Err("app token without mailbox binding"),
    };
    if let Some(svc) = service {
        let (scope, role) = service_requirements(svc).ok_or("unknown service")?;
        let ok = if at.user.is_some() {
            at.scopes.iter().any(|s| s.eq_ignore_ascii_case(scope))
        } else {
            at.roles.iter().any(|r| r.eq_ignore_ascii_case(role))
        };
        if !ok {
            return Err("scope does not cover the service");
        }
    }
    let scope = if at.user.is_some() {
        at.scopes.join(" ")
    } else {
        at.roles.join(" ")
    };
    let mut v = json!({
        "active": true,
        "username": username,
        "token_type": "Bearer",
        "expires_in": (at.expires_ms.saturating_sub(now)) / 1000,
        "exp": at.expires_ms / 1000,
        "scope": scope,
        "client_id": at.client_id,
    });
    if let Some(extra) = st.settings.mailbox_access.get(&username)
        && !extra.is_empty()
    {
        v["mailboxes"] = extra.join(" ").into();
    }
    Ok(v)
}

async fn introspect(app: &App, req: &Req) -> Resp {
    let ids = Ids::of(req);
    let params = if req.method == "POST" {
        Params::parse(&req.body)
    } else {
        Params::parse(req.query.as_bytes())
    };
    let service = req
        .header("x-dovecot-auth-service")
        .or(req.header("x-dovecot-auth-protocol"))
        .map(str::to_string);
    {
        let mut st = app.lock();
        params.record_secrets(&mut st);
        st.log_request("introspect", request_entry(req, None, &params));
    }
    apply_latency(app, "introspect").await;
    let mut st = app.lock();
    if let Some(f) = st.take_fault("introspect", None) {
        let mut r = err_resp(&f.to_error(), &ids);
        r.grant_type = service.map(|s| format!("service={s}"));
        return r;
    }
    let mut token = params.get("token").map(str::to_string);
    if token.is_none()
        && let Some(a) = req.header("authorization")
        && a.len() > 7
        && a.get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
    {
        token = Some(a.get(7..).unwrap_or("").trim().to_string());
    }
    let result = match token {
        Some(t) => introspect_token(&st, &t, service.as_deref(), now_ms()),
        None => Err("no token"),
    };
    let mut r = match result {
        Ok(v) => {
            st.counters.introspect.active += 1;
            Resp::json(200, &v)
        }
        Err(_) => {
            st.counters.introspect.inactive += 1;
            Resp::json(200, &json!({"active": false}))
        }
    };
    r.grant_type = service.map(|s| format!("service={s}"));
    r
}

/// May a token that introspects as `v` open the mailbox `sasl_user`? Its own user (or an app
/// token's `app_mailbox`), or, for a user token, a mailbox in `mailbox_access` for that user.
fn grant_allows(st: &Store, token: &str, v: &Value, sasl_user: &str) -> bool {
    let Some(username) = v["username"].as_str() else {
        return false;
    };
    if username.eq_ignore_ascii_case(sasl_user) {
        return true;
    }
    let user_token = st.access.get(token).is_some_and(|at| at.user.is_some());
    user_token
        && st
            .settings
            .mailbox_access
            .iter()
            .filter(|(owner, _)| owner.eq_ignore_ascii_case(username))
            .flat_map(|(_, boxes)| boxes.iter())
            .any(|b| b.eq_ignore_ascii_case(sasl_user))
}

/// Dovecot's password-grant hook (`use_grant_password = yes`, stack grant mode): a form with
/// `grant_type=password&username=<SASL user>&password=<access token>&client_id=…`. Allowed when
/// the token is active, covers the service and may open that mailbox. Counted, logged, delayed
/// and failed like `/introspect` (faults and latency use the endpoint name `introspect`).
async fn dovecot_grant(app: &App, req: &Req) -> Resp {
    let ids = Ids::of(req);
    if req.method != "POST" {
        return err_resp(&method_not_allowed(req), &ids);
    }
    let params = Params::parse(&req.body);
    let service = req
        .header("x-dovecot-auth-service")
        .or(req.header("x-dovecot-auth-protocol"))
        .map(str::to_string);
    {
        let mut st = app.lock();
        params.record_secrets(&mut st);
        st.log_request("introspect", request_entry(req, None, &params));
    }
    apply_latency(app, "introspect").await;
    let mut st = app.lock();
    if let Some(f) = st.take_fault("introspect", None) {
        let mut r = err_resp(&f.to_error(), &ids);
        r.grant_type = service.map(|s| format!("password service={s}"));
        return r;
    }
    let allowed = match (
        params.get("grant_type"),
        params.get("username"),
        params.get("password"),
    ) {
        (Some("password"), Some(user), Some(token)) => {
            match introspect_token(&st, token, service.as_deref(), now_ms()) {
                Ok(v) if grant_allows(&st, token, &v, user) => Some((user.to_string(), v)),
                _ => None,
            }
        }
        _ => None,
    };
    let mut r = match allowed {
        Some((user, v)) => {
            st.counters.introspect.active += 1;
            let issued = format!("dovecot-grant-{}", rand_urlsafe(24));
            st.secrets.add(&issued);
            Resp::json(
                200,
                &json!({
                    "access_token": issued,
                    "username": user,
                    "active": true,
                    "token_type": "Bearer",
                    "expires_in": v["expires_in"],
                    "scope": v["scope"],
                }),
            )
        }
        None => {
            st.counters.introspect.inactive += 1;
            Resp::json(400, &json!({"error": "invalid_grant"}))
        }
    };
    r.grant_type = Some(match service {
        Some(s) => format!("password service={s}"),
        None => "password".to_string(),
    });
    r
}

// ---------------------------------------------------------------------------------------------
// Admin API

fn admin(app: &App, req: &Req, rest: &[&str]) -> Resp {
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return Resp::admin_error(400, &format!("invalid JSON: {e}")),
        }
    };
    if !body.is_object() {
        return Resp::admin_error(400, "the body must be a JSON object");
    }
    let m = req.method.as_str();
    let mut st = app.lock();
    let now = now_ms();
    let user_filter = body
        .get("user")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    let matches_user = |u: Option<&String>| match (&user_filter, u) {
        (None, _) => true,
        (Some(f), Some(u)) => u.to_ascii_lowercase() == *f,
        (Some(_), None) => false,
    };
    match (m, rest) {
        ("GET", ["settings"]) => {
            Resp::json(200, &serde_json::to_value(&st.settings).unwrap_or_default())
        }
        ("POST", ["settings"]) => match st.settings.merged(&body) {
            Ok(next) => {
                st.settings = next;
                st.record_client_secrets();
                Resp::json(200, &serde_json::to_value(&st.settings).unwrap_or_default())
            }
            Err(e) => Resp::admin_error(400, &e),
        },
        ("POST", ["reset"]) => {
            st.reset();
            Resp::json(200, &json!({"ok": true}))
        }
        ("GET", ["counters"]) => {
            Resp::json(200, &serde_json::to_value(&st.counters).unwrap_or_default())
        }
        ("GET", ["secrets"]) => Resp::json(200, &json!(st.secrets.list())),
        ("GET", ["requests"]) => {
            let q = Params::parse(req.query.as_bytes());
            match q.get("endpoint") {
                Some(ep) => {
                    let list: Vec<Value> = st
                        .requests
                        .get(ep)
                        .map(|d| d.iter().cloned().collect())
                        .unwrap_or_default();
                    Resp::json(200, &Value::Array(list))
                }
                None => {
                    let all: serde_json::Map<String, Value> = st
                        .requests
                        .iter()
                        .map(|(k, d)| (k.clone(), Value::Array(d.iter().cloned().collect())))
                        .collect();
                    Resp::json(200, &Value::Object(all))
                }
            }
        }
        ("POST", ["fail"]) => {
            let endpoint = body.get("endpoint").and_then(Value::as_str).unwrap_or("");
            if !["token", "devicecode", "introspect", "authorize"].contains(&endpoint) {
                return Resp::admin_error(
                    400,
                    "endpoint must be token, devicecode, introspect or authorize",
                );
            }
            let status = body.get("status").and_then(Value::as_u64).unwrap_or(503);
            if !(400..=599).contains(&status) {
                return Resp::admin_error(400, "status must be 400..=599");
            }
            let (def_err, def_code) = fault_defaults(status as u16);
            let count = body.get("count").and_then(Value::as_u64).unwrap_or(1);
            st.faults.push(Fault {
                endpoint: endpoint.to_string(),
                remaining: count,
                status: status as u16,
                retry_after: body.get("retry_after").and_then(Value::as_u64),
                error: body
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or(def_err)
                    .to_string(),
                aadsts: body
                    .get("aadsts")
                    .and_then(Value::as_u64)
                    .map(|c| c as u32)
                    .unwrap_or(def_code),
                message: body
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                grant_type: body
                    .get("grant_type")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
            Resp::json(200, &json!({"ok": true, "faults": st.faults.len()}))
        }
        ("POST", ["latency"]) => {
            let endpoint = body.get("endpoint").and_then(Value::as_str).unwrap_or("");
            if !["token", "devicecode", "introspect", "authorize"].contains(&endpoint) {
                return Resp::admin_error(
                    400,
                    "endpoint must be token, devicecode, introspect or authorize",
                );
            }
            let ms = body.get("ms").and_then(Value::as_u64).unwrap_or(0);
            if ms == 0 {
                st.latency.remove(endpoint);
            } else {
                st.latency.insert(endpoint.to_string(), ms);
            }
            Resp::json(200, &json!({"ok": true}))
        }
        ("POST", ["revoke_refresh_tokens"]) => {
            let code = body
                .get("aadsts")
                .and_then(Value::as_u64)
                .map(|c| c as u32)
                .unwrap_or(50173);
            let mut n = 0;
            for rt in st.refresh.values_mut() {
                if matches_user(Some(&rt.user)) && rt.state == RtState::Active {
                    rt.state = RtState::Revoked(code);
                    n += 1;
                }
            }
            Resp::json(200, &json!({"revoked": n}))
        }
        ("POST", [op @ ("expire_access_tokens" | "revoke_access_tokens")]) => {
            let mut n = 0;
            for at in st.access.values_mut() {
                let who = at.user.as_ref().or(at.app_mailbox.as_ref());
                if matches_user(who) {
                    if *op == "expire_access_tokens" {
                        at.expires_ms = at.expires_ms.min(now.saturating_sub(1));
                    } else {
                        at.revoked = true;
                    }
                    n += 1;
                }
            }
            let key = if *op == "expire_access_tokens" {
                "expired"
            } else {
                "revoked"
            };
            Resp::json(200, &json!({key: n}))
        }
        ("POST", ["mint"]) => admin_mint(&mut st, &body, now),
        ("GET", ["device", "pending"]) => {
            let mut list: Vec<Value> = st
                .devices
                .values()
                .filter(|d| d.state == DeviceState::Pending && now < d.expires_ms)
                .map(|d| {
                    json!({
                        "user_code": d.user_code,
                        "client_id": d.client_id,
                        "scope": d.scopes.join(" "),
                        "expires_in": (d.expires_ms - now) / 1000,
                    })
                })
                .collect();
            list.sort_by_key(|v| v["user_code"].as_str().unwrap_or("").to_string());
            let codes: Vec<Value> = list.iter().map(|v| v["user_code"].clone()).collect();
            Resp::json(200, &json!({"user_codes": codes, "pending": list}))
        }
        ("POST", ["device", op @ ("approve" | "deny")]) => {
            let code = body
                .get("user_code")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_ascii_uppercase();
            let Some(dc) = st.user_codes.get(&code).cloned() else {
                return Resp::admin_error(404, "unknown user_code");
            };
            let s = st.settings.clone();
            let Some(dev) = st.devices.get(&dc).cloned() else {
                return Resp::admin_error(404, "unknown user_code");
            };
            if dev.state != DeviceState::Pending {
                return Resp::admin_error(409, "device code already decided");
            }
            if *op == "deny" {
                if let Some(d) = st.devices.get_mut(&dc) {
                    d.state = DeviceState::Declined;
                }
                return Resp::json(200, &json!({"ok": true}));
            }
            let who = body
                .get("user")
                .and_then(Value::as_str)
                .unwrap_or(s.auto_consent_user.as_str());
            let Some(user) = s.user(who) else {
                return Resp::admin_error(400, "unknown user");
            };
            st.add_consent(&user.username, &dev.client_id, &dev.scopes);
            if let Some(d) = st.devices.get_mut(&dc) {
                d.state = DeviceState::Approved(user.username.clone());
            }
            Resp::json(200, &json!({"ok": true, "user": user.username}))
        }
        _ => Resp::admin_error(404, "unknown admin endpoint or method"),
    }
}

fn admin_mint(st: &mut Store, body: &Value, now: u64) -> Resp {
    let s = st.settings.clone();
    let lifetime = body
        .get("lifetime_s")
        .and_then(Value::as_u64)
        .unwrap_or(s.access_token_lifetime_s);
    let client_id = body.get("client_id").and_then(Value::as_str);
    let token = if let Some(mb) = body.get("app_mailbox").and_then(Value::as_str) {
        let client = match client_id {
            Some(c) => s.client(c).cloned(),
            None => s
                .clients
                .iter()
                .find(|c| {
                    c.app_mailbox
                        .as_deref()
                        .is_some_and(|m| m.eq_ignore_ascii_case(mb))
                })
                .cloned(),
        };
        let roles: Vec<String> = match body.get("roles") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => client
                .as_ref()
                .map(|c| c.app_roles.clone())
                .unwrap_or_else(|| {
                    vec![
                        "IMAP.AccessAsApp".into(),
                        "POP.AccessAsApp".into(),
                        "SMTP.SendAsApp".into(),
                    ]
                }),
        };
        AccessToken {
            client_id: client
                .map(|c| c.client_id)
                .unwrap_or_else(|| client_id.unwrap_or_default().to_string()),
            user: None,
            app_mailbox: Some(mb.to_string()),
            scopes: vec![],
            roles,
            expires_ms: now + lifetime * 1000,
            revoked: false,
        }
    } else {
        let Some(user) = body
            .get("user")
            .and_then(Value::as_str)
            .and_then(|u| s.user(u))
        else {
            return Resp::admin_error(400, "give a known 'user' or an 'app_mailbox'");
        };
        let scopes: Vec<String> = match body.get("scopes") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(scopes::normalize_one)
                .filter(|sc| sc.resource.is_some())
                .map(|sc| sc.value)
                .collect(),
            Some(Value::String(raw)) => scopes::normalize(raw)
                .into_iter()
                .filter(|sc| sc.resource.is_some())
                .map(|sc| sc.value)
                .collect(),
            _ => scopes::OUTLOOK_DEFAULT
                .iter()
                .map(|v| v.to_string())
                .collect(),
        };
        AccessToken {
            client_id: client_id
                .unwrap_or(
                    s.clients
                        .first()
                        .map(|c| c.client_id.as_str())
                        .unwrap_or_default(),
                )
                .to_string(),
            user: Some(user.username.clone()),
            app_mailbox: None,
            scopes,
            roles: vec![],
            expires_ms: now + lifetime * 1000,
            revoked: false,
        }
    };
    let at = rand_urlsafe(s.access_token_length);
    st.secrets.add(&at);
    let scope = if token.user.is_some() {
        token.scopes.join(" ")
    } else {
        token.roles.join(" ")
    };
    st.access.insert(at.clone(), token);
    Resp::json(
        200,
        &json!({"access_token": at, "token_type": "Bearer", "expires_in": lifetime, "scope": scope}),
    )
}
