//! Microsoft-shaped OAuth error responses.

use crate::util::{fmt_timestamp, now_s};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AadError {
    pub status: u16,
    pub error: String,
    pub code: u32,
    pub message: String,
    pub suberror: Option<String>,
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
pub struct ErrorBody {
    pub error: String,
    pub error_description: String,
    pub error_codes: Vec<u32>,
    pub timestamp: String,
    pub trace_id: String,
    pub correlation_id: String,
    pub error_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suberror: Option<String>,
}

impl AadError {
    pub fn new(status: u16, error: &str, code: u32, message: impl Into<String>) -> Self {
        AadError {
            status,
            error: error.to_string(),
            code,
            message: message.into(),
            suberror: None,
            retry_after: None,
        }
    }
    pub fn bad(error: &str, code: u32, message: impl Into<String>) -> Self {
        Self::new(400, error, code, message)
    }
    pub fn with_suberror(mut self, s: &str) -> Self {
        self.suberror = Some(s.to_string());
        self
    }

    /// The `error_description` text: `AADSTSnnnn: text\r\nTrace ID: …\r\nCorrelation ID: …\r\nTimestamp: …`.
    pub fn description(&self, trace_id: &str, correlation_id: &str, ts: &str) -> String {
        format!(
            "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
            self.code, self.message, trace_id, correlation_id, ts
        )
    }

    pub fn body(&self, trace_id: &str, correlation_id: &str) -> ErrorBody {
        self.body_at(trace_id, correlation_id, now_s())
    }

    pub fn body_at(&self, trace_id: &str, correlation_id: &str, unix_s: u64) -> ErrorBody {
        let ts = fmt_timestamp(unix_s);
        ErrorBody {
            error: self.error.clone(),
            error_description: self.description(trace_id, correlation_id, &ts),
            error_codes: vec![self.code],
            timestamp: ts,
            trace_id: trace_id.to_string(),
            correlation_id: correlation_id.to_string(),
            error_uri: format!("https://login.microsoftonline.com/error?code={}", self.code),
            suberror: self.suberror.clone(),
        }
    }
}

/// Default `error` and AADSTS code for an injected fault with the given HTTP status.
pub fn fault_defaults(status: u16) -> (&'static str, u32) {
    match status {
        429 => ("temporarily_unavailable", 90055),
        502..=504 => ("temporarily_unavailable", 90033),
        500 => ("server_error", 90000),
        401 => ("invalid_client", 7000215),
        _ => ("invalid_grant", 70000),
    }
}

pub fn fault_message(code: u32) -> &'static str {
    match code {
        90055 => {
            "The tenant is being throttled: too many requests. Retry after the interval given in Retry-After."
        }
        90033 => "A transient error has occurred. Please try again.",
        90000 => "The service encountered an internal error. Please retry.",
        50173 => {
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password."
        }
        700082 => "The refresh token has expired due to inactivity.",
        70008 => {
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource."
        }
        70043 => {
            "The refresh token has expired or is invalid due to sign-in frequency checks by conditional access."
        }
        65001 => {
            "The user or administrator has not consented to use the application. Send an interactive authorization request for this user and resource."
        }
        50076 => {
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access the resource."
        }
        53003 => {
            "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance."
        }
        9002313 => "Invalid request. Request is malformed or invalid.",
        _ => "The request was denied (injected fault).",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_shape() {
        let e = AadError::bad("invalid_grant", 70008, "The code expired.");
        let body = e.body_at("t-1", "c-1", 1_704_067_200);
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["error"], "invalid_grant");
        assert_eq!(
            v["error_description"],
            "AADSTS70008: The code expired.\r\nTrace ID: t-1\r\nCorrelation ID: c-1\r\nTimestamp: 2024-01-01 00:00:00Z"
        );
        assert_eq!(v["error_codes"], serde_json::json!([70008]));
        assert_eq!(v["timestamp"], "2024-01-01 00:00:00Z");
        assert_eq!(v["trace_id"], "t-1");
        assert_eq!(v["correlation_id"], "c-1");
        assert_eq!(
            v["error_uri"],
            "https://login.microsoftonline.com/error?code=70008"
        );
        assert!(v.get("suberror").is_none());
        let s = serde_json::to_value(e.with_suberror("consent_required").body("a", "b")).unwrap();
        assert_eq!(s["suberror"], "consent_required");
    }

    #[test]
    fn fault_defaults_by_status() {
        assert_eq!(fault_defaults(429), ("temporarily_unavailable", 90055));
        assert_eq!(fault_defaults(503), ("temporarily_unavailable", 90033));
        assert_eq!(fault_defaults(500).0, "server_error");
    }
}
