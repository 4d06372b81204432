//! Distributed traces: OpenTelemetry spans exported over OTLP/gRPC, with W3C trace context
//! (`traceparent`, `tracestate`) continued from inbound HTTP requests and gRPC calls and passed
//! on with every outbound gRPC call.
//!
//! Off by default (`telemetry.otlp_endpoint = ""`), and cheap when off: the spans below are
//! `tracing` spans of target [`TARGET`], which no layer is interested in unless the OTLP layer
//! is installed, so creating one is a cached callsite check and nothing else (no header parsing,
//! no allocation). The log layer never sees them either, so log lines look the same either way.
//!
//! What a span records is fixed here and deliberately small: HTTP method, route *pattern*
//! (`/connect/{ticket}`, never the path), status; gRPC service, method, status code. Never
//! headers, query strings, bodies, cookies, tokens or credentials. Log events are not attached
//! to spans (the OTLP layer only sees spans of [`TARGET`]).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use futures_util::future::Either;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::Deserialize;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::{ConfigError, LogConfig, LogFormat};

/// The `tracing` target of every span that is exported. Nothing else is.
pub const TARGET: &str = "mcpauth_trace";

/// `[telemetry]`, the same in every service.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/gRPC endpoint of an OpenTelemetry Collector (or Jaeger, Tempo…), e.g.
    /// `http://otel-collector:4317`. Empty: no traces (the default).
    pub otlp_endpoint: String,
    /// PEM CA bundle that signs the collector's certificate; required for an `https://`
    /// endpoint.
    pub otlp_ca_file: Option<PathBuf>,
    /// `service.name` of the exported spans; empty: the service's own name.
    pub service_name: String,
    /// Fraction of new traces recorded (0.0–1.0). A request that arrives with a `traceparent`
    /// follows the caller's sampling decision instead (parent-based).
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            otlp_ca_file: None,
            service_name: String::new(),
            sample_ratio: 1.0,
        }
    }
}

impl TelemetryConfig {
    /// Whether spans are exported at all.
    pub fn enabled(&self) -> bool {
        !self.otlp_endpoint.is_empty()
    }

    /// Checks what serde cannot; one line naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: &str| Err(ConfigError::new(format!("telemetry.{m}")));
        if !self.sample_ratio.is_finite() || !(0.0..=1.0).contains(&self.sample_ratio) {
            return err("sample_ratio: must be between 0.0 and 1.0");
        }
        if self.service_name.len() > 128 || self.service_name.chars().any(char::is_control) {
            return err("service_name: at most 128 characters, no control characters");
        }
        if !self.enabled() {
            if self.otlp_ca_file.is_some() {
                return err("otlp_ca_file: only meaningful with an https otlp_endpoint");
            }
            return Ok(());
        }
        // The endpoint is not echoed: it may carry credentials in its user info.
        let uri: http::Uri = match self.otlp_endpoint.parse() {
            Ok(u) => u,
            Err(_) => return err("otlp_endpoint: not a URL (expected http://host:4317)"),
        };
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return err("otlp_endpoint: must start with http:// or https://"),
        };
        if uri.host().is_none_or(str::is_empty) {
            return err("otlp_endpoint: must name a host");
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return err("otlp_endpoint: must not contain credentials");
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return err("otlp_endpoint: OTLP/gRPC takes no path or query (host and port only)");
        }
        match (&self.otlp_ca_file, https) {
            (None, true) => err("otlp_ca_file: required for an https otlp_endpoint"),
            (Some(_), false) => err("otlp_ca_file: only meaningful with an https otlp_endpoint"),
            _ => Ok(()),
        }
    }
}

/// Telemetry that could not be started.
#[derive(Debug, thiserror::Error)]
#[error("telemetry: {0}")]
pub struct TelemetryError(String);

/// The tracer provider of an initialised process. [`Telemetry::shutdown`] (or drop) flushes
/// the spans still queued; call it after the servers have drained and while the tokio runtime
/// that built the exporter is still running.
#[must_use = "dropping the guard shuts the exporter down"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is queued now (tests; shutdown does it anyway).
    pub fn flush(&self) {
        if let Some(p) = &self.provider
            && let Err(e) = p.force_flush()
        {
            tracing::warn!(error = %e, "flushing spans failed");
        }
    }

    /// Flushes queued spans and stops the exporter (at most 5 s). Idempotent.
    pub fn shutdown(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown_with_timeout(Duration::from_secs(5))
        {
            tracing::warn!(error = %e, "telemetry shutdown: spans may be lost");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The log filter: `RUST_LOG`, else `log.filter`, else `info`; spans of [`TARGET`] are never
/// logged (they are for the trace exporter only).
fn log_filter(cfg: &LogConfig) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(&cfg.filter).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    filter.add_directive(format!("{TARGET}=off").parse().expect("static directive"))
}

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

fn log_layer(cfg: &LogConfig) -> BoxedLayer {
    let layer = tracing_subscriber::fmt::layer().with_target(true);
    match cfg.format {
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_filter(log_filter(cfg))
            .boxed(),
        LogFormat::Pretty => layer.compact().with_filter(log_filter(cfg)).boxed(),
    }
}

/// The `tracing` layer that turns spans of [`TARGET`] (and nothing else: no log events, no
/// other crates' spans) into OpenTelemetry spans of `provider`.
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + use<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("mcpauth"))
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|m| {
            m.is_span() && m.target() == TARGET
        }))
}

/// Builds the OTLP/gRPC exporter and tracer provider. Must run inside a tokio runtime (the
/// exporter's channel lives on it).
pub fn provider(service: &str, cfg: &TelemetryConfig) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(cfg.otlp_endpoint.clone())
        .with_timeout(Duration::from_secs(5));
    if let Some(ca) = &cfg.otlp_ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| TelemetryError(format!("telemetry.otlp_ca_file {}: {e}", ca.display())))?;
        builder = builder.with_tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(pem)),
        );
    }
    let exporter = builder
        .build()
        .map_err(|e| TelemetryError(format!("telemetry.otlp_endpoint: {e}")))?;
    let name = if cfg.service_name.is_empty() {
        service.to_owned()
    } else {
        cfg.service_name.clone()
    };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.sample_ratio,
        ))))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(name)
                .build(),
        )
        .build())
}

/// Installs the process-wide subscriber: JSON (or pretty) logs as [`crate::init_logging`] does,
/// plus, when `telemetry.otlp_endpoint` is set, the OTLP trace exporter. Call once, early in
/// `main`, inside the tokio runtime (`let _rt = runtime.enter();`). Keep the returned guard and
/// shut it down after the servers have drained.
pub fn init(
    service: &'static str,
    log: &LogConfig,
    cfg: &TelemetryConfig,
) -> Result<Telemetry, TelemetryError> {
    let provider = if cfg.enabled() {
        Some(provider(service, cfg)?)
    } else {
        None
    };
    let mut layers: Vec<BoxedLayer> = vec![log_layer(log)];
    if let Some(p) = &provider {
        layers.push(Box::new(otel_layer(p)));
    }
    let installed = tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_ok();
    if installed {
        tracing::info!(
            service,
            traces = provider.is_some(),
            sample_ratio = cfg.sample_ratio,
            "logging initialised"
        );
    } else if let Some(p) = provider {
        // Another subscriber owns this process (tests start several services in one): its
        // exporter, not this one, sees the spans.
        let _ = p.shutdown();
        return Ok(Telemetry { provider: None });
    }
    Ok(Telemetry { provider })
}

/// The logs-only subscriber (no traces).
pub(crate) fn init_logs_only(service: &'static str, log: &LogConfig) {
    let _ = init(service, log, &TelemetryConfig::default());
}

// --- W3C trace context -----------------------------------------------------------------------

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Reads only `traceparent` and `tracestate`, whatever else the request carries.
struct ActixHeaders<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for ActixHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT | TRACESTATE => self.0.get(key)?.to_str().ok(),
            _ => None,
        }
    }
    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

struct HttpHeaders<'a>(&'a http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT | TRACESTATE => self.0.get(key)?.to_str().ok(),
            _ => None,
        }
    }
    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

struct HttpHeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HttpHeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Writes `span`'s trace context into `headers` (`traceparent`, and `tracestate` when the
/// trace has one). Nothing when the span is not exported.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut HttpHeadersMut(headers));
}

/// Makes `span` continue the trace of the inbound request `headers` (if they carry one).
fn continue_trace(span: &tracing::Span, extractor: &dyn Extractor) {
    let parent = TraceContextPropagator::new().extract(extractor);
    let _ = span.set_parent(parent);
}

// --- HTTP (actix-web) -------------------------------------------------------------------------

/// Whether spans of [`TARGET`] go anywhere: a cached callsite check, nothing more when off.
pub fn exporting() -> bool {
    tracing::enabled!(kind: tracing::metadata::Kind::SPAN, target: TARGET, tracing::Level::INFO)
}

/// Probes and scrapes are not traced (they would drown the traces that matter).
fn untraced_route(route: &str) -> bool {
    matches!(route, "/healthz" | "/readyz" | "/metrics")
}

/// actix-web middleware (`App::wrap(from_fn(telemetry::http_span))`): one server span per
/// request named `METHOD /route/{pattern}`, continuing the caller's `traceparent`, with
/// `http.request.method`, `http.route` and `http.response.status_code`. The path itself, the
/// query, headers and cookies are never recorded. A request that matches no route is named by
/// its method alone.
pub async fn http_span(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if !exporting() {
        return next.call(req).await;
    }
    let route = req.match_pattern();
    if route.as_deref().is_some_and(untraced_route) {
        return next.call(req).await;
    }
    let span = tracing::info_span!(
        target: TARGET,
        "http request",
        otel.name = Empty,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = Empty,
        http.route = Empty,
        http.response.status_code = Empty,
    );
    // A well-known method, or "_OTHER" (an extension method is caller-chosen text).
    let method = match *req.method() {
        actix_web::http::Method::GET
        | actix_web::http::Method::POST
        | actix_web::http::Method::PUT
        | actix_web::http::Method::DELETE
        | actix_web::http::Method::PATCH
        | actix_web::http::Method::HEAD
        | actix_web::http::Method::OPTIONS => req.method().as_str().to_owned(),
        _ => "_OTHER".to_owned(),
    };
    match &route {
        Some(r) => {
            span.record("otel.name", format!("{method} {r}"));
            span.record("http.route", r.as_str());
        }
        None => {
            span.record("otel.name", method.as_str());
        }
    }
    span.record("http.request.method", method.as_str());
    continue_trace(&span, &ActixHeaders(req.headers()));
    let result = next.call(req).instrument(span.clone()).await;
    let status = match &result {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    result
}

// --- gRPC (tonic) -----------------------------------------------------------------------------

/// `/package.Service/Method` → (`package.Service`, `Method`) when it looks like a gRPC path;
/// anything else (a caller can send any path) is not recorded.
fn grpc_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let ok = |s: &str, dots: bool| {
        !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || (dots && b == b'.'))
    };
    (ok(service, true) && ok(method, false)).then_some((service, method))
}

/// Health probes are not traced.
fn untraced_grpc(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
}

fn grpc_span(kind: &'static str, path: &str) -> tracing::Span {
    let span = tracing::info_span!(
        target: TARGET,
        "grpc",
        otel.name = Empty,
        otel.kind = kind,
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = Empty,
        rpc.method = Empty,
        rpc.grpc.status_code = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    match grpc_path(path) {
        Some((service, method)) => {
            span.record("otel.name", format!("{service}/{method}"));
            span.record("rpc.service", service);
            span.record("rpc.method", method);
        }
        None => {
            span.record("otel.name", "grpc unknown");
        }
    }
    span
}

/// The status of a gRPC response as far as its headers tell: `grpc-status` of a trailers-only
/// response (how tonic answers an error), else OK once the response has started (the unary
/// calls here put an error status only in trailers-only responses).
fn record_grpc_response<B>(span: &tracing::Span, res: &http::Response<B>) {
    let code = res
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(if res.status() == http::StatusCode::OK {
            0
        } else {
            2 // UNKNOWN: an HTTP error without a gRPC status
        });
    span.record("rpc.grpc.status_code", code);
    if code != 0 {
        span.record("otel.status_code", "ERROR");
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Tower layer for tonic servers (`Server::builder().layer(GrpcServerTraceLayer)`): one server
/// span per call named `package.Service/Method`, continuing the caller's `traceparent`, with
/// `rpc.service`, `rpc.method` and `rpc.grpc.status_code`. Metadata (the `authorization`
/// credential among it) and messages are never recorded. `grpc.health.v1` probes are not
/// traced.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcServerTraceLayer;

impl<S> tower_layer::Layer<S> for GrpcServerTraceLayer {
    type Service = GrpcServerTrace<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcServerTrace { inner }
    }
}

/// See [`GrpcServerTraceLayer`].
#[derive(Debug, Clone)]
pub struct GrpcServerTrace<S> {
    inner: S,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for GrpcServerTrace<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, BoxFuture<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if untraced_grpc(req.uri().path()) {
            return Either::Left(self.inner.call(req));
        }
        let span = grpc_span("server", req.uri().path());
        if span.is_disabled() {
            return Either::Left(self.inner.call(req));
        }
        continue_trace(&span, &HttpHeaders(req.headers()));
        let fut = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Either::Right(Box::pin(async move {
            let result = fut.instrument(span.clone()).await;
            match &result {
                Ok(res) => record_grpc_response(&span, res),
                Err(_) => {
                    span.record("otel.status_code", "ERROR");
                }
            }
            result
        }))
    }
}

/// Tower wrapper for tonic clients (`XClient::new(GrpcClientTrace::new(channel))`): the
/// client metrics of [`crate::grpc_metrics`] for every call, and one client span per traced
/// call named `package.Service/Method`, a child of the current span, whose trace
/// context goes out as `traceparent`/`tracestate` metadata. Nothing but the trace context is
/// added to the request; nothing of it is recorded.
#[derive(Debug, Clone)]
pub struct GrpcClientTrace<S> {
    inner: S,
}

impl<S> GrpcClientTrace<S> {
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

/// A tonic channel whose calls carry the trace context.
pub type TracedChannel = GrpcClientTrace<tonic::transport::Channel>;

/// Wraps `channel` (see [`GrpcClientTrace`]).
pub fn traced(channel: tonic::transport::Channel) -> TracedChannel {
    GrpcClientTrace::new(channel)
}

impl<S, B, R> tower_service::Service<http::Request<B>> for GrpcClientTrace<S>
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

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // Every call is counted and timed (crate::grpc_metrics); only traced ones get a span.
        let started = std::time::Instant::now();
        let route = crate::grpc_metrics::route_of(req.uri().path());
        let span = if untraced_grpc(req.uri().path()) {
            tracing::Span::none()
        } else {
            grpc_span("client", req.uri().path())
        };
        if !span.is_disabled() {
            inject(&span, req.headers_mut());
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = if span.is_disabled() {
                fut.await
            } else {
                fut.instrument(span.clone()).await
            };
            let code = match &result {
                Ok(res) => {
                    if !span.is_disabled() {
                        record_grpc_response(&span, res);
                    }
                    crate::grpc_metrics::response_code(res)
                }
                Err(_) => {
                    span.record("otel.status_code", "ERROR");
                    crate::grpc_metrics::TRANSPORT_FAILURE
                }
            };
            crate::grpc_metrics::CLIENT.record(route, code, started);
            result
        })
    }
}

#[cfg(test)]
mod tests;
