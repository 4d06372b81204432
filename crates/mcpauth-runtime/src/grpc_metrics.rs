//! Per-method gRPC metrics, for every gRPC server ([`GrpcServerMetricsLayer`]) and every
//! internal gRPC client (recorded by [`crate::telemetry::GrpcClientTrace`]):
//!
//! | metric | labels |
//! |---|---|
//! | `mcpauth_grpc_server_requests_total` | `method`, `code` |
//! | `mcpauth_grpc_server_request_duration_seconds` (histogram) | `method` |
//! | `mcpauth_grpc_client_requests_total` | `method`, `code` |
//! | `mcpauth_grpc_client_request_duration_seconds` (histogram) | `method` |
//!
//! `method` comes from the route table — the methods of the `mcpauth.v1` contract
//! ([`mcpauth_proto::GRPC_METHODS`]), `grpc.health.v1.Health` and server reflection — written
//! `package.Service/Method`; any other path a caller sends is counted as `other`, so a caller
//! cannot create series. `code` is the gRPC status name (`OK`, `UNAUTHENTICATED`, …; 17
//! values). The duration runs until the response starts (for the unary calls here: the whole
//! handler).
//!
//! Cheap on the hot path: the metric handles of each (method, code) are created once, on first
//! use, and kept in a table indexed by the method's position in the route table; a call costs a
//! binary search over 9 paths, two atomic updates and a boxed future.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

/// The gRPC status names, indexed by code.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
const UNKNOWN: usize = 2;
const UNAVAILABLE: usize = 14;

/// Methods served besides the contract's: health probes and server reflection.
const STANDARD_METHODS: [&str; 3] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
];

/// The route table: every known gRPC path, sorted, for a binary search.
fn routes() -> &'static [&'static str] {
    static ROUTES: OnceLock<Vec<&'static str>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let mut r: Vec<&'static str> = mcpauth_proto::GRPC_METHODS
            .iter()
            .copied()
            .chain(STANDARD_METHODS)
            .collect();
        r.sort_unstable();
        r.dedup();
        r
    })
}

/// The `method` label of every route (the path without its leading `/`), then `other`.
fn method_label(index: usize) -> &'static str {
    routes()
        .get(index)
        .map_or("other", |p| p.strip_prefix('/').unwrap_or(p))
}

/// Position of `path` in the route table; unknown paths share the last slot (`other`).
fn route_index(path: &str) -> usize {
    let r = routes();
    r.binary_search(&path).unwrap_or(r.len())
}

/// The handles of one method: a counter per status code and the duration histogram.
struct MethodMetrics {
    requests: [OnceLock<metrics::Counter>; 17],
    duration: OnceLock<metrics::Histogram>,
}

/// Server or client side: metric names and the table of handles.
pub(crate) struct Side {
    requests: &'static str,
    duration: &'static str,
    table: OnceLock<Vec<MethodMetrics>>,
}

pub(crate) static SERVER: Side = Side {
    requests: "mcpauth_grpc_server_requests_total",
    duration: "mcpauth_grpc_server_request_duration_seconds",
    table: OnceLock::new(),
};

pub(crate) static CLIENT: Side = Side {
    requests: "mcpauth_grpc_client_requests_total",
    duration: "mcpauth_grpc_client_request_duration_seconds",
    table: OnceLock::new(),
};

impl Side {
    fn slot(&self, index: usize) -> &MethodMetrics {
        let table = self.table.get_or_init(|| {
            (0..=routes().len())
                .map(|_| MethodMetrics {
                    requests: std::array::from_fn(|_| OnceLock::new()),
                    duration: OnceLock::new(),
                })
                .collect()
        });
        &table[index.min(table.len() - 1)]
    }

    /// Records one finished call of route `index` with status `code`.
    pub(crate) fn record(&self, index: usize, code: usize, started: Instant) {
        let code = if code < CODES.len() { code } else { UNKNOWN };
        let slot = self.slot(index);
        let method = method_label(index);
        slot.requests[code]
            .get_or_init(
                || metrics::counter!(self.requests, "method" => method, "code" => CODES[code]),
            )
            .increment(1);
        slot.duration
            .get_or_init(|| metrics::histogram!(self.duration, "method" => method))
            .record(started.elapsed().as_secs_f64());
    }
}

/// The gRPC status code of a response as far as its headers tell: `grpc-status` of a
/// trailers-only response (how tonic answers an error), else OK once a normal response starts,
/// UNKNOWN for an HTTP error without a gRPC status.
pub(crate) fn response_code<B>(res: &http::Response<B>) -> usize {
    match res.headers().get("grpc-status") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(UNKNOWN),
        None if res.status() == http::StatusCode::OK => 0,
        None => UNKNOWN,
    }
}

/// A call that failed below gRPC (connection refused, reset, timed out): what a client sees as
/// UNAVAILABLE.
pub(crate) const TRANSPORT_FAILURE: usize = UNAVAILABLE;

/// Position of a request's path in the route table (for [`Side::record`]).
pub(crate) fn route_of(path: &str) -> usize {
    route_index(path)
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Tower layer for tonic servers (`Server::builder().layer(GrpcServerMetricsLayer)`): counts
/// every call by method and status code and records its duration. See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcServerMetricsLayer;

impl<S> tower_layer::Layer<S> for GrpcServerMetricsLayer {
    type Service = GrpcServerMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcServerMetrics { inner }
    }
}

/// See [`GrpcServerMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcServerMetrics<S> {
    inner: S,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for GrpcServerMetrics<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let route = route_index(req.uri().path());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            let code = match &result {
                Ok(res) => response_code(res),
                Err(_) => UNKNOWN,
            };
            SERVER.record(route, code, started);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_holds_the_contract_and_nothing_a_caller_sends() {
        let introspect = route_index("/mcpauth.v1.TokenIntrospection/Introspect");
        assert_eq!(
            method_label(introspect),
            "mcpauth.v1.TokenIntrospection/Introspect"
        );
        assert_eq!(
            method_label(route_index("/mcpauth.v1.TokenVault/GetAccessToken")),
            "mcpauth.v1.TokenVault/GetAccessToken"
        );
        assert_eq!(
            method_label(route_index("/grpc.health.v1.Health/Check")),
            "grpc.health.v1.Health/Check"
        );
        for path in [
            "/mcpauth.v1.TokenIntrospection/Introspect2",
            "/random/path",
            "/",
            "",
            "/mcpauth.v1.TokenIntrospection/Introspect?x=1",
        ] {
            assert_eq!(method_label(route_index(path)), "other", "{path}");
        }
    }

    #[test]
    fn response_codes_from_headers() {
        let res = |status: u16, grpc: Option<&str>| {
            let mut b = http::Response::builder().status(status);
            if let Some(g) = grpc {
                b = b.header("grpc-status", g);
            }
            b.body(()).unwrap()
        };
        assert_eq!(response_code(&res(200, None)), 0);
        assert_eq!(
            CODES[response_code(&res(200, Some("16")))],
            "UNAUTHENTICATED"
        );
        assert_eq!(CODES[response_code(&res(200, Some("x")))], "UNKNOWN");
        assert_eq!(CODES[response_code(&res(503, None))], "UNKNOWN");
    }
}
