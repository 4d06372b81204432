//! Liveness, readiness and metrics.

use actix_web::{HttpResponse, web};

use crate::state::AppState;

/// Alive: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Ready: the durable store (Postgres) and Redis answer, and no shutdown is under way (503
/// `draining` then).
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.drain.is_draining() {
        return mcpauth_runtime::ops::draining_response();
    }
    let pg = state.durable.ping().await.is_ok();
    let redis = state.ephemeral.ping().await.is_ok();
    let mut body = serde_json::Map::new();
    body.insert(
        state.durable.backend().into(),
        (if pg { "ok" } else { "unavailable" }).into(),
    );
    body.insert(
        "redis".into(),
        (if redis { "ok" } else { "unavailable" }).into(),
    );
    if pg && redis {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text exposition.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
