//! Requests in flight, for a graceful stop that lets them finish before the MCP sessions end.
//!
//! At shutdown the open event streams (a client's `GET /mcp`) would hold the server until its
//! shutdown timeout, so the sessions are cancelled; but cancelling them also ends any request
//! rmcp is still answering. So every other request is counted until its response body is done
//! (an SSE answer to a `POST` included), and the sessions are cancelled only once none is left.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::app::AppState;

/// How many counted requests are in flight. Cheap to clone.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Inner>);

#[derive(Default)]
struct Inner {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Held while a request is in flight.
pub struct Guard(InFlight);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    /// Counts a request until the guard is dropped.
    pub fn enter(&self) -> Guard {
        self.0.count.fetch_add(1, Ordering::AcqRel);
        Guard(self.clone())
    }

    /// Requests in flight now.
    pub fn count(&self) -> usize {
        self.0.count.load(Ordering::Acquire)
    }

    /// Resolves when no counted request is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A response body that keeps its request counted until it is finished or dropped.
struct Tracked {
    body: BoxBody,
    _guard: Guard,
}

impl MessageBody for Tracked {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<web::Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

/// Middleware: counts every request but a `GET` of the MCP endpoint (a standalone event
/// stream, which only ends with its session).
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let stream = req.method() == actix_web::http::Method::GET
        && state
            .as_ref()
            .is_some_and(|s| req.path() == s.config.mcp_path());
    let guard = match (&state, stream) {
        (Some(s), false) => Some(s.in_flight.enter()),
        _ => None,
    };
    let res = next.call(req).await?.map_into_boxed_body();
    Ok(match guard {
        Some(g) => res.map_body(|_, body| BoxBody::new(Tracked { body, _guard: g })),
        None => res,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_the_last_guard() {
        let f = InFlight::default();
        f.idle().await;
        let a = f.enter();
        let b = f.enter();
        assert_eq!(f.count(), 2);
        let waiter = {
            let f = f.clone();
            tokio::spawn(async move { f.idle().await })
        };
        drop(a);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        drop(b);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("idle once the last request is done")
            .unwrap();
    }
}
