//! Liveness, readiness and metrics.

use actix_web::{HttpResponse, web};

use crate::app::AppState;

/// Alive: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Ready: Postgres and Redis answer, and no shutdown is under way (503 `draining` then).
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.drain.is_draining() {
        return mcpauth_runtime::ops::draining_response();
    }
    let pg = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&state.pool)
        .await
        .is_ok();
    let redis = state.ephemeral.ping().await.is_ok();
    let body = serde_json::json!({
        "postgres": if pg { "ok" } else { "unavailable" },
        "redis": if redis { "ok" } else { "unavailable" },
    });
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
