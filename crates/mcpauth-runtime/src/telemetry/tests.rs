//! The spans themselves: what they are named, what they continue, and that nothing secret in a
//! request (Authorization, cookies, query, path parameters, gRPC metadata) reaches them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::test as atest;
use actix_web::{App, HttpResponse, web};
use opentelemetry::trace::{SpanKind, TraceContextExt, TraceId};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tower_service::Service;
use tracing_subscriber::layer::SubscriberExt;

use super::*;

const SECRET: &str = "SECRET-7f3a9c";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

#[derive(Debug, Clone, Default)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collect {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.0.lock().unwrap().extend(batch);
        std::future::ready(Ok(()))
    }
}

fn collecting() -> (SdkTracerProvider, Collect) {
    let spans = Collect::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    (provider, spans)
}

fn subscriber(provider: &SdkTracerProvider) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry().with(otel_layer(provider))
}

fn attrs(s: &SpanData) -> HashMap<String, String> {
    s.attributes
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

/// Every piece of text an exported span carries.
fn all_text(spans: &[SpanData]) -> String {
    spans
        .iter()
        .map(|s| {
            let mut t = format!("{} {:?}", s.name, s.status);
            for kv in &s.attributes {
                t += &format!(" {}={}", kv.key, kv.value);
            }
            for e in s.events.iter() {
                t += &format!(" event {} {:?}", e.name, e.attributes);
            }
            t
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn config() -> TelemetryConfig {
    TelemetryConfig {
        otlp_endpoint: "http://127.0.0.1:4317".into(),
        ..TelemetryConfig::default()
    }
}

#[test]
fn off_by_default_and_valid() {
    let d = TelemetryConfig::default();
    assert!(!d.enabled());
    assert_eq!(d.sample_ratio, 1.0);
    d.validate().unwrap();
    config().validate().unwrap();
}

#[test]
fn invalid_settings_are_named_in_one_line() {
    let cases: Vec<(TelemetryConfig, &str)> = vec![
        (
            TelemetryConfig {
                sample_ratio: 1.5,
                ..config()
            },
            "telemetry.sample_ratio",
        ),
        (
            TelemetryConfig {
                sample_ratio: f64::NAN,
                ..TelemetryConfig::default()
            },
            "telemetry.sample_ratio",
        ),
        (
            TelemetryConfig {
                otlp_endpoint: "otel-collector:4317".into(),
                ..config()
            },
            "telemetry.otlp_endpoint",
        ),
        (
            TelemetryConfig {
                otlp_endpoint: "http://user:pw@collector:4317".into(),
                ..config()
            },
            "telemetry.otlp_endpoint",
        ),
        (
            TelemetryConfig {
                otlp_endpoint: "http://collector:4318/v1/traces".into(),
                ..config()
            },
            "telemetry.otlp_endpoint",
        ),
        (
            TelemetryConfig {
                otlp_endpoint: "https://collector:4317".into(),
                ..config()
            },
            "telemetry.otlp_ca_file",
        ),
        (
            TelemetryConfig {
                otlp_ca_file: Some("/ca.pem".into()),
                ..config()
            },
            "telemetry.otlp_ca_file",
        ),
        (
            TelemetryConfig {
                service_name: "a\nb".into(),
                ..config()
            },
            "telemetry.service_name",
        ),
    ];
    for (cfg, key) in cases {
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains(key), "{cfg:?}: {e}");
        assert!(!e.contains('\n'), "{e}");
        assert!(!e.contains("pw@"), "the endpoint is not echoed: {e}");
    }
}

#[test]
fn loads_from_toml_with_defaults_for_missing_keys() {
    #[derive(Debug, Deserialize)]
    struct Wrapper {
        telemetry: TelemetryConfig,
    }
    let env = HashMap::from([(
        "MCPAUTH__TELEMETRY__OTLP_ENDPOINT".to_owned(),
        "http://collector:4317".to_owned(),
    )]);
    let w: Wrapper = crate::service_env::AUTH
        .load::<Wrapper>("[telemetry]\nsample_ratio = 0.25\n", None, &env)
        .map(|(w, _)| w)
        .unwrap();
    assert_eq!(w.telemetry.otlp_endpoint, "http://collector:4317");
    assert_eq!(w.telemetry.sample_ratio, 0.25);
    assert_eq!(w.telemetry.service_name, "");
    let e = crate::service_env::AUTH
        .load::<Wrapper>("[telemetry]\nendpoint = \"x\"\n", None, &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("endpoint"), "{e}");
}

fn app_routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/connect/{ticket}",
        web::get().to(|| async { HttpResponse::Ok().body("ok") }),
    )
    .route(
        "/boom",
        web::post().to(|| async { HttpResponse::InternalServerError().finish() }),
    )
    .route(
        "/healthz",
        web::get().to(|| async { HttpResponse::Ok().finish() }),
    );
}

#[actix_web::test]
async fn http_span_continues_the_trace_and_records_no_secret() {
    let (provider, spans) = collecting();
    let _guard = tracing::subscriber::set_default(subscriber(&provider));
    let app = atest::init_service(
        App::new()
            .wrap(actix_web::middleware::from_fn(http_span))
            .configure(app_routes),
    )
    .await;

    let req = atest::TestRequest::get()
        .uri(&format!("/connect/{SECRET}?code={SECRET}&state=x"))
        .insert_header(("authorization", format!("Bearer {SECRET}")))
        .insert_header(("cookie", format!("session={SECRET}")))
        .insert_header(("x-api-key", SECRET))
        .insert_header(("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01")))
        .insert_header(("tracestate", "vendor=abc"))
        .to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 200);
    let req = atest::TestRequest::post()
        .uri("/boom")
        .insert_header(("authorization", format!("Bearer {SECRET}")))
        .to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 500);
    let req = atest::TestRequest::get().uri("/healthz").to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 200);
    let req = atest::TestRequest::get()
        .uri(&format!("/nowhere/{SECRET}"))
        .to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 404);
    provider.force_flush().unwrap();

    let spans = spans.0.lock().unwrap().clone();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(
        names,
        ["GET /connect/{ticket}", "POST /boom", "GET"],
        "one span per request, probes untraced, unmatched paths named by method"
    );
    let connect = &spans[0];
    assert_eq!(connect.span_kind, SpanKind::Server);
    assert_eq!(
        connect.span_context.trace_id(),
        TraceId::from_hex(TRACE_ID).unwrap(),
        "the caller's trace continues"
    );
    assert_eq!(connect.parent_span_id.to_string(), PARENT_ID);
    assert!(connect.parent_span_is_remote);
    assert_eq!(connect.span_context.trace_state().header(), "vendor=abc");
    let a = attrs(connect);
    assert_eq!(a["http.route"], "/connect/{ticket}");
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["http.response.status_code"], "200");
    assert_eq!(spans[1].status, opentelemetry::trace::Status::error(""));
    assert_ne!(
        spans[1].span_context.trace_id(),
        connect.span_context.trace_id(),
        "no traceparent: a new trace"
    );

    let text = all_text(&spans);
    assert!(!text.contains(SECRET), "a secret reached a span:\n{text}");
    assert!(!text.to_lowercase().contains("bearer"), "{text}");
    assert!(!text.contains("session="), "{text}");
}

/// A "network" for the gRPC layers: the client layer's request goes straight into the server
/// layer, whose inner handler remembers the headers it saw and answers with `grpc_status`.
#[derive(Clone)]
struct Handler {
    seen: Arc<Mutex<Vec<http::HeaderMap>>>,
    grpc_status: Option<&'static str>,
}

impl Service<http::Request<String>> for Handler {
    type Response = http::Response<String>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<String>) -> Self::Future {
        // The handler runs inside the server span.
        tracing::info!(target: "handler", secret = SECRET, "handled");
        self.seen.lock().unwrap().push(req.headers().clone());
        let mut res = http::Response::new(String::new());
        if let Some(s) = self.grpc_status {
            res.headers_mut()
                .insert("grpc-status", http::HeaderValue::from_static(s));
        }
        std::future::ready(Ok(res))
    }
}

#[derive(Clone)]
struct Loopback(GrpcServerTrace<Handler>);

impl Service<http::Request<String>> for Loopback {
    type Response = http::Response<String>;
    type Error = std::convert::Infallible;
    type Future = Either<
        std::future::Ready<Result<Self::Response, Self::Error>>,
        BoxFuture<Result<Self::Response, Self::Error>>,
    >;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }
    fn call(&mut self, req: http::Request<String>) -> Self::Future {
        // Only headers cross the wire: the server span's parent must come from `traceparent`
        // (`parent_span_is_remote` below).
        self.0.call(req)
    }
}

fn grpc_request(path: &str) -> http::Request<String> {
    let mut req = http::Request::builder()
        .uri(format!("http://vault{path}"))
        .body(String::new())
        .unwrap();
    req.headers_mut().insert(
        "authorization",
        http::HeaderValue::from_str(&format!("Bearer {SECRET}")).unwrap(),
    );
    req
}

#[tokio::test]
async fn grpc_trace_context_crosses_the_call_and_records_no_secret() {
    let (provider, spans) = collecting();
    let _guard = tracing::subscriber::set_default(subscriber(&provider));
    let seen = Arc::new(Mutex::new(vec![]));
    let handler = |grpc_status| Handler {
        seen: seen.clone(),
        grpc_status,
    };
    let mut ok = GrpcClientTrace::new(Loopback(tower_layer::Layer::layer(
        &GrpcServerTraceLayer,
        handler(None),
    )));
    let mut denied = GrpcClientTrace::new(Loopback(tower_layer::Layer::layer(
        &GrpcServerTraceLayer,
        handler(Some("16")),
    )));

    let root = tracing::info_span!(target: TARGET, "request", otel.kind = "server");
    async {
        ok.call(grpc_request("/mcpauth.v1.TokenVault/GetAccessToken"))
            .await
            .unwrap();
        denied
            .call(grpc_request("/mcpauth.v1.TokenIntrospection/Introspect"))
            .await
            .unwrap();
        // Health probes are not traced, and a caller-chosen path is not recorded.
        ok.call(grpc_request("/grpc.health.v1.Health/Check"))
            .await
            .unwrap();
        ok.call(grpc_request(&format!("/{SECRET}/x-y")))
            .await
            .unwrap();
    }
    .instrument(root.clone())
    .await;
    let root_id = root.context().span().span_context().clone();
    drop(root);
    provider.force_flush().unwrap();

    let seen = seen.lock().unwrap().clone();
    let traceparent = seen[0]["traceparent"].to_str().unwrap().to_owned();
    assert!(
        traceparent.starts_with(&format!("00-{}-", root_id.trace_id())),
        "{traceparent}"
    );
    assert_eq!(
        seen[0]["authorization"],
        format!("Bearer {SECRET}").as_str()
    );

    let spans = spans.0.lock().unwrap().clone();
    let find = |name: &str, kind: SpanKind| {
        spans
            .iter()
            .find(|s| s.name == name && s.span_kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} span {name}: {}", all_text(&spans)))
    };
    let client = find("mcpauth.v1.TokenVault/GetAccessToken", SpanKind::Client);
    let server = find("mcpauth.v1.TokenVault/GetAccessToken", SpanKind::Server);
    assert_eq!(client.parent_span_id, root_id.span_id());
    assert_eq!(server.parent_span_id, client.span_context.span_id());
    assert!(server.parent_span_is_remote);
    for s in [client, server] {
        assert_eq!(s.span_context.trace_id(), root_id.trace_id());
        let a = attrs(s);
        assert_eq!(a["rpc.system"], "grpc");
        assert_eq!(a["rpc.service"], "mcpauth.v1.TokenVault");
        assert_eq!(a["rpc.method"], "GetAccessToken");
        assert_eq!(a["rpc.grpc.status_code"], "0");
    }
    let refused = find("mcpauth.v1.TokenIntrospection/Introspect", SpanKind::Server);
    assert_eq!(attrs(refused)["rpc.grpc.status_code"], "16");
    assert_eq!(refused.status, opentelemetry::trace::Status::error(""));
    assert!(!spans.iter().any(|s| s.name.contains("health")));
    find("grpc unknown", SpanKind::Server);
    // client + server for each of the two named calls and the unknown one, and the root.
    assert_eq!(spans.len(), 7, "{}", all_text(&spans));

    let text = all_text(&spans);
    assert!(!text.contains(SECRET), "a secret reached a span:\n{text}");
    assert!(!text.to_lowercase().contains("bearer"), "{text}");
}

#[tokio::test]
async fn without_the_exporter_nothing_is_added_to_calls() {
    // Logs only, as in a service with telemetry off.
    let log = LogConfig {
        filter: "trace".into(),
        format: LogFormat::Json,
    };
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(vec![log_layer(&log)]),
    );
    let seen = Arc::new(Mutex::new(vec![]));
    let mut client = GrpcClientTrace::new(Loopback(tower_layer::Layer::layer(
        &GrpcServerTraceLayer,
        Handler {
            seen: seen.clone(),
            grpc_status: None,
        },
    )));
    // The call is still counted (grpc_metrics), but nothing is added to it.
    client
        .call(grpc_request("/mcpauth.v1.TokenVault/GetAccessToken"))
        .await
        .unwrap();
    assert!(seen.lock().unwrap()[0].get("traceparent").is_none());
    assert!(
        grpc_span("client", "/a.B/C").is_disabled(),
        "the log layer never builds trace spans, even at level trace"
    );
}
