//! Errors. `StoreError` is the storage layer's; `OAuthError` is the protocol edge's (RFC 6749
//! §5.2 / RFC 7591 §3.2.2 shape), and the only error an OAuth endpoint ever answers with.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// Storage failures, with Postgres/Redis specifics mapped in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis pool error: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// An optimistic write lost to concurrent writers more often than it should ever happen.
    #[error("concurrent update conflict: {0}")]
    Conflict(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            // Postgres 23505; SQLite's UNIQUE / PRIMARY KEY constraint codes.
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists,
            _ => StoreError::Database(e),
        }
    }
}

/// An OAuth error as the client sees it.
#[derive(Debug, Clone, Serialize)]
pub struct OAuthError {
    pub error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    #[serde(skip)]
    pub status: StatusCode,
    /// `WWW-Authenticate: Basic` on a failed HTTP Basic client authentication (RFC 6749 §5.2).
    #[serde(skip)]
    pub basic_challenge: bool,
    /// `Retry-After` seconds (rate limits).
    #[serde(skip)]
    pub retry_after: Option<u64>,
    /// `WWW-Authenticate` challenge of a Bearer-protected endpoint (RFC 6750 §3), e.g. the
    /// RFC 7592 client configuration endpoint.
    #[serde(skip)]
    pub bearer_challenge: Option<&'static str>,
}

macro_rules! oauth_errors {
    ($($fn:ident => $code:literal, $status:ident;)*) => {
        impl OAuthError {
            $(
                #[doc = concat!("`", $code, "`")]
                pub fn $fn(description: impl Into<String>) -> Self {
                    Self::new($code, StatusCode::$status, description)
                }
            )*
        }
    };
}

oauth_errors! {
    invalid_request => "invalid_request", BAD_REQUEST;
    invalid_client => "invalid_client", UNAUTHORIZED;
    invalid_grant => "invalid_grant", BAD_REQUEST;
    unauthorized_client => "unauthorized_client", BAD_REQUEST;
    unsupported_grant_type => "unsupported_grant_type", BAD_REQUEST;
    unsupported_response_type => "unsupported_response_type", BAD_REQUEST;
    invalid_scope => "invalid_scope", BAD_REQUEST;
    invalid_target => "invalid_target", BAD_REQUEST;
    access_denied => "access_denied", FORBIDDEN;
    unsupported_token_type => "unsupported_token_type", BAD_REQUEST;
    invalid_redirect_uri => "invalid_redirect_uri", BAD_REQUEST;
    invalid_client_metadata => "invalid_client_metadata", BAD_REQUEST;
    invalid_token => "invalid_token", UNAUTHORIZED;
    temporarily_unavailable => "temporarily_unavailable", SERVICE_UNAVAILABLE;
}

impl OAuthError {
    pub fn new(error: &'static str, status: StatusCode, description: impl Into<String>) -> Self {
        let d = description.into();
        Self {
            error,
            error_description: (!d.is_empty()).then_some(d),
            status,
            basic_challenge: false,
            retry_after: None,
            bearer_challenge: None,
        }
    }

    /// Anything unexpected: the detail goes to the log, never to the client.
    pub fn server_error(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new("server_error", StatusCode::INTERNAL_SERVER_ERROR, "")
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(retry_after: u64) -> Self {
        let mut e = Self::new(
            "rate_limited",
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests, retry later",
        );
        e.retry_after = Some(retry_after);
        e
    }

    pub fn with_basic_challenge(mut self) -> Self {
        self.basic_challenge = true;
        self
    }

    /// Adds `WWW-Authenticate: <challenge>` (a `Bearer …` value, RFC 6750 §3).
    pub fn with_bearer_challenge(mut self, challenge: &'static str) -> Self {
        self.bearer_challenge = Some(challenge);
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        OAuthError::server_error(e)
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)?;
        if let Some(d) = &self.error_description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status);
        resp.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
        if self.basic_challenge {
            resp.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mcpauth\", charset=\"UTF-8\""),
            ));
        }
        if let Some(c) = self.bearer_challenge {
            resp.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static(c)));
        }
        if let Some(s) = self.retry_after {
            resp.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        resp.json(self)
    }
}
