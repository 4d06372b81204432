//! `mcpauth-loadgen`: a bounded, loopback-only load generator for the mcpauth benchmarks.
//!
//! It fires requests from N concurrent workers until a duration or a request count is reached,
//! whichever comes first, and prints one human line and one JSON line:
//!
//! ```text
//! token  requests=120000  errors=0  duration=10.00s  throughput=12000 req/s  p50=2.1ms  ...
//! {"name":"token","requests":120000,"errors":0,"duration_s":10.0,"rps":12000.0,"p50_ms":2.1,...}
//! ```
//!
//! Errors (unexpected HTTP status, gRPC error, wrong `active`, transport failure, timeout) are
//! counted; the first one is described on stderr, and the exit status is 1 when more than 1% of
//! the requests failed (2 for a usage or setup error). Targets other than 127.0.0.0/8, ::1 and
//! `localhost` are refused.
#![forbid(unsafe_code)]

mod cpu;
mod grpc;
mod h1;
mod h2grpc;
mod http;
mod mcp;
mod oauth;
mod pipe;
mod run;
mod stats;
mod target;
mod upstream;
mod vault;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use prost::Message;

use crate::cpu::CpuMeter;
use crate::h2grpc::{Expect, UnarySpec};
use crate::http::{HttpProbe, Payload, RequestSpec};
use crate::pipe::PipeSpec;
use crate::run::{Budget, Limits, Probe};
use crate::stats::{MAX_TRACKED_MICROS, Summary, WorkerStats};
use crate::target::Target;

/// Longest allowed run.
const MAX_DURATION_SECS: f64 = 600.0;
/// Longest allowed per-request timeout (below the histograms' ceiling).
const MAX_TIMEOUT_SECS: f64 = 60.0;
/// A run fails when more than this fraction of its requests failed.
const MAX_ERROR_RATIO: f64 = 0.01;

/// Bounded, loopback-only load generator for the mcpauth benchmarks.
#[derive(Debug, Parser)]
#[command(name = "mcpauth-loadgen", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// HTTP/1.1 requests: a few keep-alive connections, optionally pipelined (lean client), or
    /// one connection per worker (classic).
    Http(HttpArgs),
    /// `mcpauth.v1.TokenIntrospection/Introspect` calls.
    GrpcIntrospect(IntrospectArgs),
    /// `grpc.health.v1.Health/Check` calls: the no-op gRPC ceiling.
    GrpcHealth(HealthArgs),
    /// `mcpauth.v1.TokenVault/GetAccessToken` with a user's MCP token for a provider whose
    /// upstream token is valid (no refresh).
    GrpcVaultGet(VaultGetArgs),
    /// Any unary gRPC method with a request message given as hex or as string fields (lean
    /// client only), e.g. `--path /mcpauth.v1.TokenVault/GetAccessToken --field 1=TOKEN
    /// --field 2=github`.
    GrpcUnary(UnaryArgs),
    /// MCP `tools/call` over Streamable HTTP: one session per connection (initialize, then
    /// notifications/initialized), then pipelined tools/call requests checked for a result
    /// without `isError`.
    McpCall(McpCallArgs),
    /// A minimal upstream API for the connector benchmark (not load): 200 for `Authorization:
    /// Bearer <token>`, 401 otherwise; loopback only, stops after --max-secs.
    ServeUpstream(ServeUpstreamArgs),
    /// Refresh-token rotation: each worker refreshes with the token its last refresh returned.
    RefreshChain(OAuthArgs),
    /// Complete authorization-code flows (`/authorize` with the dev login, then `/token`).
    CodeFlow(OAuthArgs),
}

/// `refresh-chain` / `code-flow` options (auth-service in dev mode, registration open).
#[derive(Debug, Args)]
struct OAuthArgs {
    /// The issuer, e.g. http://127.0.0.1:8080 (loopback only).
    #[arg(long)]
    issuer: String,
    /// The RFC 8707 resource to request.
    #[arg(long)]
    resource: String,
    #[command(flatten)]
    run: RunArgs,
}

/// `mcp-call` options.
#[derive(Debug, Args)]
struct McpCallArgs {
    /// The MCP endpoint: http://127.0.0.1:PORT/mcp (loopback only, no TLS).
    #[arg(long)]
    url: String,
    /// The MCP access token, sent as `Authorization: Bearer …`.
    #[arg(long, env = "MCPAUTH_LOADGEN_TOKEN", hide_env_values = true)]
    token: String,
    /// The tool to call.
    #[arg(long, default_value = "whoami")]
    tool: String,
    /// The tool's arguments, a JSON object.
    #[arg(long, default_value = "{}")]
    arguments: String,
    /// MCP protocol version (a session-based one: initialize must answer an Mcp-Session-Id).
    #[arg(long, default_value = "2025-11-25")]
    protocol_version: String,
    /// Requests in flight per connection (HTTP/1.1 pipelining; 1: plain keep-alive).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=i64::from(pipe::MAX_DEPTH)))]
    pipeline: u16,
    /// Connections, each with its own session [default: concurrency / pipeline].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    connections: Option<u16>,
    /// Text the response body must also contain (checked on every response).
    #[arg(long)]
    expect_body: Option<String>,
    #[command(flatten)]
    run: RunArgs,
}

/// `serve-upstream` options.
#[derive(Debug, Args)]
struct ServeUpstreamArgs {
    /// Where to listen: 127.0.0.1:PORT (loopback only; port 0 picks one, printed on stdout).
    #[arg(long)]
    addr: std::net::SocketAddr,
    /// The upstream access token every request must carry as `Authorization: Bearer …`.
    #[arg(long, env = "MCPAUTH_LOADGEN_UPSTREAM_TOKEN", hide_env_values = true)]
    token: String,
    /// Stop after this many seconds (at most 3600).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=3600))]
    max_secs: u64,
    /// Runtime threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
}

/// Options every subcommand has.
#[derive(Debug, Args)]
struct RunArgs {
    /// Label of the output lines [default: the subcommand name].
    #[arg(long)]
    name: Option<String>,
    /// Concurrent workers, each with one request in flight.
    #[arg(short, long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,
    /// Stop starting requests after this many seconds (at most 600).
    #[arg(short, long, default_value = "10", value_parser = parse_duration)]
    duration: Duration,
    /// Stop after starting this many requests in total (at most 100,000,000).
    #[arg(short = 'n', long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    requests: u64,
    /// A request without an answer after this many seconds counts as an error (at most 60).
    #[arg(long, default_value = "5", value_parser = parse_timeout)]
    timeout: Duration,
    /// Runtime threads of the generator. One is usually best when the server shares a 2-core
    /// machine: more threads mostly add cross-thread wake-ups and steal the server's CPU.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    /// Also report the CPU time this process (the server under test) used per request.
    #[arg(long)]
    server_pid: Option<u32>,
}

impl RunArgs {
    fn limits(&self) -> Limits {
        Limits {
            duration: self.duration,
            requests: self.requests,
            timeout: self.timeout,
        }
    }

    fn name_or(&self, default: &str) -> String {
        self.name.clone().unwrap_or_else(|| default.to_owned())
    }
}

/// Which client implementation drives the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Client {
    /// The cheap one: HTTP/1.1 connections each driven by one task with up to `--pipeline`
    /// requests in flight; gRPC straight on `h2`, `--streams` calls in flight per connection.
    Lean,
    /// The earlier one: one worker and connection per request in flight (HTTP), generated tonic
    /// clients (gRPC). About as expensive per request as the server.
    Classic,
}

/// `http` options.
#[derive(Debug, Args)]
struct HttpArgs {
    /// Client implementation.
    #[arg(long, value_enum, default_value_t = Client::Lean)]
    client: Client,
    /// Requests in flight per connection (HTTP/1.1 pipelining; 1: plain keep-alive). Lean only.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=i64::from(pipe::MAX_DEPTH)))]
    pipeline: u16,
    /// Connections [default: concurrency / pipeline]. Lean only; in flight = connections ×
    /// pipeline.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    connections: Option<u16>,
    /// Text the response body must contain (checked on every response). Lean only.
    #[arg(long)]
    expect_body: Option<String>,
    /// Target URL: http://127.0.0.1:PORT/path?query (loopback only, no TLS).
    #[arg(long)]
    url: String,
    /// Request method [default: GET, or POST with --body/--form].
    #[arg(short = 'X', long)]
    method: Option<String>,
    /// Extra request header 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Raw request body.
    #[arg(long, conflicts_with = "form")]
    body: Option<String>,
    /// Form body, already URL-encoded ('a=1&b=x%20y'); sets the form content type.
    #[arg(long)]
    form: Option<String>,
    /// The only status that counts as a success [default: any 2xx].
    #[arg(long, value_parser = clap::value_parser!(u16).range(100..=999))]
    expect_status: Option<u16>,
    #[command(flatten)]
    run: RunArgs,
}

/// `grpc-introspect` options.
#[derive(Debug, Args)]
struct IntrospectArgs {
    #[command(flatten)]
    grpc: GrpcArgs,
    /// Service credential, sent as `authorization: Bearer <credential>`.
    #[arg(long, env = "MCPAUTH_LOADGEN_CREDENTIAL", hide_env_values = true)]
    credential: String,
    /// The token to introspect.
    #[arg(long, env = "MCPAUTH_LOADGEN_TOKEN", hide_env_values = true)]
    token: String,
    /// Resource the token must be issued for (`expected_resource`).
    #[arg(long)]
    expected_resource: Option<String>,
    /// The `active` answer that counts as a success.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    expect_active: bool,
    #[command(flatten)]
    run: RunArgs,
}

/// `grpc-vault-get` options.
#[derive(Debug, Args)]
struct VaultGetArgs {
    #[command(flatten)]
    grpc: GrpcArgs,
    /// Service credential with the `get` permission, sent as `authorization: Bearer …`.
    #[arg(long, env = "MCPAUTH_LOADGEN_CREDENTIAL", hide_env_values = true)]
    credential: String,
    /// The user's MCP access token.
    #[arg(long, env = "MCPAUTH_LOADGEN_TOKEN", hide_env_values = true)]
    token: String,
    /// Provider name of the stored credential.
    #[arg(long)]
    provider: String,
    /// Before the run, store a valid (one-day) upstream credential for this user id and
    /// provider (PutCredential; the credential then needs the `put` permission too).
    #[arg(long)]
    seed_user: Option<String>,
    /// The upstream access token to seed [default: a fresh one].
    #[arg(
        long,
        env = "MCPAUTH_LOADGEN_UPSTREAM_TOKEN",
        hide_env_values = true,
        requires = "seed_user"
    )]
    seed_token: Option<String>,
    #[command(flatten)]
    run: RunArgs,
}

/// `grpc-health` options.
#[derive(Debug, Args)]
struct HealthArgs {
    #[command(flatten)]
    grpc: GrpcArgs,
    /// Service to check (empty: the server as a whole).
    #[arg(long, default_value = "")]
    service: String,
    #[command(flatten)]
    run: RunArgs,
}

/// `grpc-unary` options.
#[derive(Debug, Args)]
struct UnaryArgs {
    #[command(flatten)]
    grpc: GrpcArgs,
    /// The method: /package.Service/Method.
    #[arg(long)]
    path: String,
    /// The request message, protobuf-encoded, in hex.
    #[arg(long, conflicts_with = "field")]
    body_hex: Option<String>,
    /// A string field of the request message, NUMBER=VALUE (repeatable, encoded in order).
    #[arg(long)]
    field: Vec<String>,
    /// Service credential, sent as `authorization: Bearer <credential>`.
    #[arg(long, env = "MCPAUTH_LOADGEN_CREDENTIAL", hide_env_values = true)]
    credential: Option<String>,
    /// The exact response message (hex) that counts as a success [default: any message with
    /// grpc-status 0].
    #[arg(long)]
    expect_response_hex: Option<String>,
    #[command(flatten)]
    run: RunArgs,
}

/// Where and how to connect for gRPC.
#[derive(Debug, Args)]
struct GrpcArgs {
    /// Server address: http://127.0.0.1:PORT (loopback only, no TLS).
    #[arg(long)]
    addr: String,
    /// Client implementation.
    #[arg(long, value_enum, default_value_t = Client::Lean)]
    client: Client,
    /// HTTP/2 connections [default: lean, 2 (or concurrency / streams); classic, one per 8
    /// workers].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    connections: Option<u16>,
    /// Calls in flight per connection [default: concurrency / connections]. Lean only; in
    /// flight = connections × streams.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    streams: Option<u16>,
}

impl GrpcArgs {
    /// Connections of the classic client, shared by `concurrency` workers.
    fn connection_count(&self, concurrency: u16) -> usize {
        let count = self.connections.unwrap_or(concurrency.div_ceil(8));
        usize::from(count.min(concurrency))
    }

    /// Connections and streams per connection of the lean client.
    fn lean_layout(&self, concurrency: u16) -> (usize, usize) {
        let (connections, streams) = match (self.connections, self.streams) {
            (Some(c), Some(s)) => (c, s),
            (Some(c), None) => (c, concurrency.div_ceil(c)),
            (None, Some(s)) => (concurrency.div_ceil(s), s),
            (None, None) => {
                let c = concurrency.min(2);
                (c, concurrency.div_ceil(c))
            }
        };
        (usize::from(connections), usize::from(streams))
    }

    fn check_classic(&self) -> Result<()> {
        if self.client == Client::Classic && self.streams.is_some() {
            bail!("--streams needs --client lean");
        }
        Ok(())
    }
}

/// Parses a number of seconds (fractions allowed) between 0 and `max`.
fn parse_seconds(s: &str, max: f64) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= max) {
        return Err(format!("must be more than 0 and at most {max} seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    parse_seconds(s, MAX_DURATION_SECS)
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_seconds(s, MAX_TIMEOUT_SECS)
}

impl Command {
    /// Runtime threads the command asks for.
    fn threads(&self) -> u16 {
        match self {
            Command::Http(a) => a.run.threads,
            Command::GrpcIntrospect(a) => a.run.threads,
            Command::GrpcHealth(a) => a.run.threads,
            Command::GrpcVaultGet(a) => a.run.threads,
            Command::GrpcUnary(a) => a.run.threads,
            Command::McpCall(a) => a.run.threads,
            Command::ServeUpstream(a) => a.threads,
            Command::RefreshChain(a) | Command::CodeFlow(a) => a.run.threads,
        }
    }
}

/// `mcp-call`: a session per connection, then pipelined `tools/call` requests.
async fn mcp_call(a: McpCallArgs) -> Result<Summary> {
    let target = target::resolve(&a.url).await?;
    let arguments: serde_json::Value =
        serde_json::from_str(&a.arguments).context("--arguments is not JSON")?;
    if !arguments.is_object() {
        bail!("--arguments must be a JSON object");
    }
    let endpoint = mcp::Endpoint::new(&target, a.token, a.protocol_version)?;
    let connections = usize::from(
        a.connections
            .unwrap_or(a.run.concurrency.div_ceil(a.pipeline)),
    );
    let mut drivers = Vec::with_capacity(connections);
    let mut sessions = Vec::with_capacity(connections);
    for _ in 0..connections {
        let session = endpoint.open_session().await?;
        let (request, slot) = endpoint.call_request(&target, &session, &a.tool, &arguments)?;
        let spec = PipeSpec::new(Arc::new(request), a.pipeline, a.expect_body.clone())
            .with_mcp_result()
            .with_id_slot(slot);
        let conn = pipe::connect(target.addr)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("cannot connect to {}", a.url))?;
        drivers.push(Some((Arc::new(spec), conn)));
        sessions.push(session);
    }
    let timeout = a.run.timeout;
    let summary = measure_drivers(
        connections,
        connections * usize::from(a.pipeline),
        &a.run,
        "mcp-call",
        |i, budget| {
            let (spec, conn) = drivers[i].take().expect("one connection per driver");
            pipe::drive(spec, conn, budget, timeout)
        },
    )
    .await;
    for session in &sessions {
        endpoint.close_session(session).await;
    }
    summary
}

/// Connects the workers, runs them, and summarizes.
async fn execute(command: Command) -> Result<Summary> {
    match command {
        Command::Http(a) => {
            let target = target::resolve(&a.url).await?;
            let payload = match (a.body, a.form) {
                (Some(body), _) => Payload::Raw(body),
                (None, Some(form)) => Payload::Form(form),
                (None, None) => Payload::None,
            };
            let spec = Arc::new(RequestSpec::new(
                &target,
                a.method.as_deref(),
                &a.headers,
                payload,
                a.expect_status,
            )?);
            if a.client == Client::Lean {
                let connections = usize::from(
                    a.connections
                        .unwrap_or(a.run.concurrency.div_ceil(a.pipeline)),
                );
                let depth = usize::from(a.pipeline);
                let pipe = Arc::new(PipeSpec::new(spec, a.pipeline, a.expect_body));
                let mut conns = Vec::with_capacity(connections);
                for _ in 0..connections {
                    let conn = pipe::connect(pipe.addr())
                        .await
                        .map_err(anyhow::Error::msg)
                        .with_context(|| format!("cannot connect to {}", a.url))?;
                    conns.push(Some(conn));
                }
                let timeout = a.run.timeout;
                return measure_drivers(
                    connections,
                    connections * depth,
                    &a.run,
                    "http",
                    |i, budget| {
                        let conn = conns[i].take().expect("one connection per driver");
                        pipe::drive(Arc::clone(&pipe), conn, budget, timeout)
                    },
                )
                .await;
            }
            if a.pipeline != 1 || a.connections.is_some() || a.expect_body.is_some() {
                bail!("--pipeline, --connections and --expect-body need --client lean");
            }
            let mut probes = Vec::with_capacity(a.run.concurrency.into());
            for _ in 0..a.run.concurrency {
                probes.push(
                    HttpProbe::connect(Arc::clone(&spec))
                        .await
                        .with_context(|| format!("cannot connect to {}", a.url))?,
                );
            }
            measure(probes, &a.run, "http").await
        }
        Command::GrpcIntrospect(a) => {
            let target = target::resolve(&a.grpc.addr).await?;
            a.grpc.check_classic()?;
            if a.grpc.client == Client::Lean {
                let message = mcpauth_proto::v1::IntrospectRequest {
                    token: a.token,
                    expected_resource: a.expected_resource.unwrap_or_default(),
                }
                .encode_to_vec();
                let spec = UnarySpec::new(
                    &target,
                    "/mcpauth.v1.TokenIntrospection/Introspect",
                    &message,
                    Some(&a.credential),
                    Expect::Active(a.expect_active),
                )?;
                return measure_lean_grpc(spec, &target, &a.grpc, &a.run, "grpc-introspect").await;
            }
            let channels = grpc::connect(
                &target,
                a.grpc.connection_count(a.run.concurrency),
                a.run.timeout,
            )
            .await?;
            let spec = Arc::new(grpc::IntrospectSpec::new(
                &a.credential,
                a.token,
                a.expected_resource,
                a.expect_active,
            )?);
            let probes = (0..usize::from(a.run.concurrency))
                .map(|i| {
                    grpc::IntrospectProbe::new(
                        channels[i % channels.len()].clone(),
                        Arc::clone(&spec),
                    )
                })
                .collect();
            measure(probes, &a.run, "grpc-introspect").await
        }
        Command::GrpcHealth(a) => {
            let target = target::resolve(&a.grpc.addr).await?;
            a.grpc.check_classic()?;
            if a.grpc.client == Client::Lean {
                let message =
                    tonic_health::pb::HealthCheckRequest { service: a.service }.encode_to_vec();
                let spec = UnarySpec::new(
                    &target,
                    "/grpc.health.v1.Health/Check",
                    &message,
                    None,
                    Expect::Serving,
                )?;
                return measure_lean_grpc(spec, &target, &a.grpc, &a.run, "grpc-health").await;
            }
            let channels = grpc::connect(
                &target,
                a.grpc.connection_count(a.run.concurrency),
                a.run.timeout,
            )
            .await?;
            let service: Arc<str> = a.service.into();
            let probes = (0..usize::from(a.run.concurrency))
                .map(|i| {
                    grpc::HealthProbe::new(
                        channels[i % channels.len()].clone(),
                        Arc::clone(&service),
                    )
                })
                .collect();
            measure(probes, &a.run, "grpc-health").await
        }
        Command::GrpcVaultGet(a) => {
            let target = target::resolve(&a.grpc.addr).await?;
            a.grpc.check_classic()?;
            let spec = Arc::new(vault::VaultGetSpec::new(
                &a.credential,
                a.token,
                a.provider,
            )?);
            if let Some(user) = &a.seed_user {
                let channel = grpc::connect(&target, 1, a.run.timeout).await?.remove(0);
                vault::seed(channel, &spec, user, a.seed_token.as_deref()).await?;
            }
            if a.grpc.client == Client::Lean {
                // Like the classic probe: grpc-status 0 and a non-empty access token.
                let spec = UnarySpec::new(
                    &target,
                    "/mcpauth.v1.TokenVault/GetAccessToken",
                    &spec.message(),
                    Some(&a.credential),
                    Expect::AccessToken,
                )?;
                return measure_lean_grpc(spec, &target, &a.grpc, &a.run, "grpc-vault-get").await;
            }
            let channels = grpc::connect(
                &target,
                a.grpc.connection_count(a.run.concurrency),
                a.run.timeout,
            )
            .await?;
            let probes = (0..usize::from(a.run.concurrency))
                .map(|i| {
                    vault::VaultGetProbe::new(
                        channels[i % channels.len()].clone(),
                        Arc::clone(&spec),
                    )
                })
                .collect();
            measure(probes, &a.run, "grpc-vault-get").await
        }
        Command::GrpcUnary(a) => {
            let target = target::resolve(&a.grpc.addr).await?;
            if a.grpc.client != Client::Lean {
                bail!("grpc-unary has only the lean client");
            }
            let message = match &a.body_hex {
                Some(hex) => h2grpc::parse_hex(hex).context("--body-hex")?,
                None => h2grpc::encode_string_fields(&a.field)?,
            };
            let expect = match &a.expect_response_hex {
                Some(hex) => {
                    Expect::Exact(h2grpc::parse_hex(hex).context("--expect-response-hex")?)
                }
                None => Expect::Any,
            };
            let spec = UnarySpec::new(&target, &a.path, &message, a.credential.as_deref(), expect)?;
            measure_lean_grpc(spec, &target, &a.grpc, &a.run, "grpc-unary").await
        }
        Command::McpCall(a) => mcp_call(a).await,
        Command::ServeUpstream(_) => bail!("serve-upstream is not a load run"),
        Command::RefreshChain(a) => {
            target::resolve(&a.issuer).await?;
            let t = oauth::OAuthTarget {
                issuer: a.issuer.clone(),
                resource: a.resource.clone(),
            };
            let client_id = oauth::register(&t).await?;
            let mut probes = Vec::with_capacity(a.run.concurrency.into());
            for _ in 0..a.run.concurrency {
                probes.push(oauth::RefreshChainProbe::start(t.clone(), client_id.clone()).await?);
            }
            measure(probes, &a.run, "refresh-chain").await
        }
        Command::CodeFlow(a) => {
            target::resolve(&a.issuer).await?;
            let t = oauth::OAuthTarget {
                issuer: a.issuer.clone(),
                resource: a.resource.clone(),
            };
            let client_id = oauth::register(&t).await?;
            let probes = (0..a.run.concurrency)
                .map(|_| oauth::CodeFlowProbe::new(t.clone(), client_id.clone()))
                .collect::<Result<Vec<_>>>()?;
            measure(probes, &a.run, "code-flow").await
        }
    }
}

/// Runs one worker per probe, measuring the CPU the run takes.
async fn measure<P: Probe>(probes: Vec<P>, args: &RunArgs, kind: &str) -> Result<Summary> {
    let workers = probes.len();
    let meter = CpuMeter::start(args.server_pid);
    let (stats, elapsed) = run::run(probes, args.limits()).await?;
    let cpu = meter.stop();
    Ok(stats
        .summarize(&args.name_or(kind), elapsed, workers)
        .with_cpu(cpu))
}

/// Runs `count` connection drivers (`concurrency` requests in flight in all), measuring the CPU
/// the run takes.
async fn measure_drivers<F, Fut>(
    count: usize,
    concurrency: usize,
    args: &RunArgs,
    kind: &str,
    drive: F,
) -> Result<Summary>
where
    F: FnMut(usize, Arc<Budget>) -> Fut,
    Fut: Future<Output = WorkerStats> + Send + 'static,
{
    let meter = CpuMeter::start(args.server_pid);
    let (stats, elapsed) = run::run_drivers(count, args.limits(), drive).await?;
    let cpu = meter.stop();
    Ok(stats
        .summarize(&args.name_or(kind), elapsed, concurrency)
        .with_cpu(cpu))
}

/// Connects the lean gRPC client and runs `spec` on every stream.
async fn measure_lean_grpc(
    spec: UnarySpec,
    target: &Target,
    grpc: &GrpcArgs,
    run: &RunArgs,
    kind: &str,
) -> Result<Summary> {
    let (connections, streams) = grpc.lean_layout(run.concurrency);
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        let conn = h2grpc::connect(target.addr)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("cannot connect to {}", target.uri))?;
        conns.push(Some(conn));
    }
    let spec = Arc::new(spec);
    let (addr, timeout) = (target.addr, run.timeout);
    measure_drivers(
        connections,
        connections * streams,
        run,
        kind,
        |i, budget| {
            let conn = conns[i].take().expect("one connection per driver");
            h2grpc::drive(Arc::clone(&spec), addr, conn, streams, budget, timeout)
        },
    )
    .await
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // reqwest (the OAuth flow probes) needs a process-wide rustls provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    debug_assert!(MAX_TIMEOUT_SECS * 1e6 < MAX_TRACKED_MICROS as f64);
    let threads = usize::from(cli.command.threads());
    // One thread: a current-thread runtime, without the work-stealing machinery.
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcpauth-loadgen: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::ServeUpstream(a) = cli.command {
        let max = Duration::from_secs(a.max_secs);
        return match runtime.block_on(upstream::run(a.addr, a.token, max)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mcpauth-loadgen: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let summary = match runtime.block_on(execute(cli.command)) {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("mcpauth-loadgen: {e:#}");
            return ExitCode::from(2);
        }
    };
    println!("{}", summary.human_line());
    println!("{}", summary.json_line());
    if let Some(first) = &summary.first_error {
        eprintln!("{}: first error: {first}", summary.name);
    }
    let ratio = summary.error_ratio();
    if ratio > MAX_ERROR_RATIO {
        eprintln!(
            "{}: FAILED: {} of {} requests failed ({:.2}%, limit {:.0}%)",
            summary.name,
            summary.errors,
            summary.requests,
            ratio * 100.0,
            MAX_ERROR_RATIO * 100.0
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bounds_are_enforced() {
        let parse = |args: &[&str]| Cli::try_parse_from(["mcpauth-loadgen"].iter().chain(args));
        assert!(parse(&["http", "--url", "http://127.0.0.1/"]).is_ok());
        assert!(parse(&["http", "--url", "u", "--duration", "601"]).is_err());
        assert!(parse(&["http", "--url", "u", "--duration", "0"]).is_err());
        assert!(parse(&["http", "--url", "u", "--concurrency", "1025"]).is_err());
        assert!(parse(&["http", "--url", "u", "--requests", "0"]).is_err());
        assert!(parse(&["http", "--url", "u", "--timeout", "61"]).is_err());
        assert!(parse(&["http", "--url", "u", "--body", "a", "--form", "b"]).is_err());
        let cli = parse(&[
            "grpc-introspect",
            "--addr",
            "http://127.0.0.1:9090",
            "--credential",
            "c",
            "--token",
            "t",
            "--expect-active",
            "false",
            "-c",
            "20",
        ])
        .unwrap();
        let Command::GrpcIntrospect(a) = cli.command else {
            panic!("wrong subcommand")
        };
        assert!(!a.expect_active);
        assert_eq!(a.grpc.connection_count(a.run.concurrency), 3);
        assert_eq!(a.run.limits().requests, 1_000_000);
        assert_eq!(a.run.limits().duration, Duration::from_secs(10));
    }

    #[test]
    fn lean_layouts() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(
                [
                    "mcpauth-loadgen",
                    "grpc-health",
                    "--addr",
                    "http://127.0.0.1:1",
                ]
                .iter()
                .chain(args),
            )
            .unwrap();
            let Command::GrpcHealth(a) = cli.command else {
                panic!("wrong subcommand")
            };
            (a.grpc.client, a.grpc.lean_layout(a.run.concurrency))
        };
        assert_eq!(parse(&[]), (Client::Lean, (2, 16)));
        assert_eq!(parse(&["-c", "1"]), (Client::Lean, (1, 1)));
        assert_eq!(parse(&["-c", "64", "--connections", "4"]).1, (4, 16));
        assert_eq!(parse(&["-c", "64", "--streams", "50"]).1, (2, 50));
        assert_eq!(parse(&["--connections", "3", "--streams", "7"]).1, (3, 7));
        assert_eq!(parse(&["--client", "classic"]).0, Client::Classic);

        let cli = Cli::try_parse_from([
            "mcpauth-loadgen",
            "http",
            "--url",
            "http://127.0.0.1/",
            "--pipeline",
            "16",
        ])
        .unwrap();
        let Command::Http(a) = cli.command else {
            panic!("wrong subcommand")
        };
        assert_eq!(
            (a.client, a.pipeline, a.connections),
            (Client::Lean, 16, None)
        );
        let too_deep = ["mcpauth-loadgen", "http", "--url", "u", "--pipeline", "257"];
        assert!(Cli::try_parse_from(too_deep).is_err());
        let unary = [
            "mcpauth-loadgen",
            "grpc-unary",
            "--addr",
            "a",
            "--path",
            "/a.B/C",
            "--body-hex",
            "0a00",
            "--field",
            "1=x",
        ];
        assert!(Cli::try_parse_from(unary).is_err());
    }

    #[test]
    fn connections_never_exceed_workers() {
        let g = GrpcArgs {
            addr: String::new(),
            client: Client::Classic,
            connections: Some(16),
            streams: None,
        };
        assert_eq!(g.connection_count(4), 4);
        assert_eq!(g.connection_count(64), 16);
        let g = GrpcArgs {
            addr: String::new(),
            client: Client::Classic,
            connections: None,
            streams: None,
        };
        assert_eq!(g.connection_count(1), 1);
        assert_eq!(g.connection_count(64), 8);
    }
}
