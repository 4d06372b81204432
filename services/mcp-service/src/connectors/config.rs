//! Configuration of declarative HTTP connector tools (`[[connectors]]`), the upstream providers
//! they need (`[providers.<name>]`), token-vault (`[vault]`) and auth-service's connect service
//! (`[connect]`), with the start-time validation that turns every mistake into one line.

use std::collections::{BTreeMap, BTreeSet};

use mcpauth_runtime::Secret;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::template::UrlTemplate;

/// token-vault, the gRPC service that holds each user's upstream credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// token-vault gRPC address, e.g. `http://127.0.0.1:9091`.
    pub addr: String,
    /// This service's credential for token-vault (needs the `get` permission).
    pub credential: Secret,
    /// token-vault's Redis key prefix: connection events arrive on `<key_prefix>:connections`.
    #[serde(default = "default_vault_prefix")]
    pub key_prefix: String,
    /// How long a user's list of connected providers is reused (connection events invalidate
    /// it at once; this bounds staleness when an event is missed).
    #[serde(default = "default_connections_ttl")]
    pub connections_cache_ttl_ms: u64,
    /// How long an upstream access token from the vault is reused by the same MCP token
    /// (connection events drop it at once; never past the token's expiry minus 60 s). 0: every
    /// tool call asks the vault. See `connectors::connections::UpstreamTokenCache`.
    #[serde(default = "default_upstream_token_ttl")]
    pub upstream_token_cache_ttl_ms: u64,
    /// `[vault.tls]`: CA (and client certificate for mTLS) for an `https://` addr.
    #[serde(default)]
    pub tls: Option<mcpauth_runtime::GrpcClientTls>,
}

fn default_vault_prefix() -> String {
    "mcpauth-vault".into()
}
fn default_connections_ttl() -> u64 {
    30_000
}
fn default_upstream_token_ttl() -> u64 {
    30_000
}

/// auth-service's `UpstreamConnect` gRPC service (connect URLs). Defaults to the introspection
/// address, credential and TLS of `[verifier.grpc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectConfig {
    pub addr: String,
    pub credential: Secret,
    /// How long a `connect_<provider>` call waits for the client to answer a URL-mode
    /// elicitation before it returns the URL as text anyway.
    #[serde(default = "default_elicitation_timeout")]
    pub elicitation_timeout_secs: u64,
    /// `[connect.tls]`: CA (and client certificate for mTLS) for an `https://` addr.
    #[serde(default)]
    pub tls: Option<mcpauth_runtime::GrpcClientTls>,
}

fn default_elicitation_timeout() -> u64 {
    120
}

/// An upstream provider as users see it (the names match token-vault's and auth-service's).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub display_name: String,
    /// What connecting it gives, for the authorize tool's description.
    #[serde(default)]
    pub description: String,
}

/// Arguments mapped to query parameters or JSON body fields: a list of argument names (the
/// parameter is named like the argument) or a table `parameter = "argument"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
pub enum Mapping {
    #[default]
    None,
    Same(Vec<String>),
    Renamed(BTreeMap<String, String>),
}

impl Mapping {
    /// `(parameter, argument)` pairs.
    pub fn pairs(&self) -> Vec<(String, String)> {
        match self {
            Mapping::None => vec![],
            Mapping::Same(v) => v.iter().map(|a| (a.clone(), a.clone())).collect(),
            Mapping::Renamed(m) => m.iter().map(|(p, a)| (p.clone(), a.clone())).collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.pairs().is_empty()
    }
}

/// One declarative HTTP tool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Tool name (`[A-Za-z0-9_.-]`, at most 64 characters).
    pub name: String,
    pub description: String,
    /// A provider from `[providers.<name>]`: whose upstream token the call uses.
    pub provider: String,
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    #[serde(default = "default_method")]
    pub method: String,
    /// `https://api.example/repos/{owner}/{repo}`: placeholders name required string, number or
    /// boolean arguments and may appear in the path only; each is percent-encoded as one path
    /// segment. A fixed query string is allowed.
    pub url: String,
    /// JSON Schema of the arguments (an inline table, or a JSON string). Default: no arguments.
    #[serde(default, deserialize_with = "schema_source")]
    pub input_schema: Option<Value>,
    #[serde(default)]
    pub query: Mapping,
    /// Arguments sent as the fields of a JSON object body.
    #[serde(default)]
    pub body: Mapping,
    /// Static request headers (never credentials: the upstream token is added by the service).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// MCP scopes a caller needs (403 step-up when missing). Default: `scopes_supported`.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Larger upstream responses are refused (a tool error), never truncated silently.
    #[serde(default = "default_max_response")]
    pub max_response_bytes: usize,
}

fn default_method() -> String {
    "GET".into()
}
fn default_timeout() -> u64 {
    15_000
}
fn default_max_response() -> usize {
    1024 * 1024
}

fn schema_source<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("input_schema: invalid JSON: {e}"))),
        other => Ok(other),
    }
}

/// HTTP methods a connector may use.
pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Headers a connector may not set: the service sets them, or they would smuggle credentials or
/// break the framing.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "cookie",
];

/// Tool names the service itself uses.
pub const BUILT_IN_TOOLS: &[&str] = &["whoami"];

/// Names of the generated tools for a provider.
pub fn connect_tool_name(provider: &str) -> String {
    format!("connect_{provider}")
}
pub fn disconnect_tool_name(provider: &str) -> String {
    format!("disconnect_{provider}")
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// JSON Schema `type` names the argument checker understands.
const TYPES: &[&str] = &[
    "string", "number", "integer", "boolean", "array", "object", "null",
];

fn property_types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

/// The normalized input schema: an object schema with `properties` and `required`.
pub fn normalized_schema(schema: Option<&Value>) -> Map<String, Value> {
    let mut m = match schema {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    m.entry("type").or_insert_with(|| "object".into());
    m.entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    m
}

/// Validates the connector sections. `scopes_supported` is the default scope set; `vault` tells
/// whether token-vault is configured. Returns the first problem as one line naming the key.
pub fn validate(
    connectors: &[ConnectorConfig],
    providers: &BTreeMap<String, ProviderConfig>,
    vault: Option<&VaultConfig>,
) -> Result<(), String> {
    for (name, p) in providers {
        if !valid_name(name, 40) {
            return Err(format!(
                "providers.{name}: a provider name uses letters, digits, '_', '-' or '.' (at most 40)"
            ));
        }
        if p.display_name.trim().is_empty() {
            return Err(format!("providers.{name}.display_name: must not be empty"));
        }
    }
    if let Some(v) = vault {
        if url::Url::parse(&v.addr).is_err() {
            return Err(format!(
                "vault.addr: {:?} is not a URL (e.g. http://127.0.0.1:9091)",
                v.addr
            ));
        }
        if v.credential.expose().is_empty() {
            return Err("vault.credential: must not be empty".into());
        }
    }
    if connectors.is_empty() {
        return Ok(());
    }
    if vault.is_none() {
        return Err(
            "connectors: connector tools need a [vault] section (addr, credential) for the users' upstream tokens"
                .into(),
        );
    }
    let mut names = BTreeSet::new();
    for (i, c) in connectors.iter().enumerate() {
        let key = format!("connectors[{i}]");
        validate_one(c, &key, providers)?;
        if !names.insert(c.name.as_str()) {
            return Err(format!("{key}.name: {:?} is used twice", c.name));
        }
    }
    let generated: BTreeSet<String> = connectors
        .iter()
        .flat_map(|c| {
            [
                connect_tool_name(&c.provider),
                disconnect_tool_name(&c.provider),
            ]
        })
        .collect();
    for (i, c) in connectors.iter().enumerate() {
        if BUILT_IN_TOOLS.contains(&c.name.as_str()) || generated.contains(&c.name) {
            return Err(format!(
                "connectors[{i}].name: {:?} is the name of a built-in or connect/disconnect tool",
                c.name
            ));
        }
    }
    Ok(())
}

fn validate_one(
    c: &ConnectorConfig,
    key: &str,
    providers: &BTreeMap<String, ProviderConfig>,
) -> Result<(), String> {
    if !valid_name(&c.name, 64) {
        return Err(format!(
            "{key}.name: {:?} must be 1-64 letters, digits, '_', '-' or '.'",
            c.name
        ));
    }
    let key = format!("{key} ({})", c.name);
    if c.description.trim().is_empty() {
        return Err(format!("{key}.description: must not be empty"));
    }
    if !providers.contains_key(&c.provider) {
        return Err(format!(
            "{key}.provider: unknown provider {:?} (add a [providers.{}] section)",
            c.provider, c.provider
        ));
    }
    if !METHODS.contains(&c.method.as_str()) {
        return Err(format!(
            "{key}.method: {:?} is not one of {}",
            c.method,
            METHODS.join(", ")
        ));
    }
    if c.timeout_ms == 0 || c.timeout_ms > 300_000 {
        return Err(format!("{key}.timeout_ms: must be between 1 and 300000"));
    }
    if c.max_response_bytes == 0 || c.max_response_bytes > 64 * 1024 * 1024 {
        return Err(format!(
            "{key}.max_response_bytes: must be between 1 and 67108864"
        ));
    }
    // The schema.
    if let Some(s) = &c.input_schema
        && !s.is_object()
    {
        return Err(format!("{key}.input_schema: must be a JSON object"));
    }
    let schema = normalized_schema(c.input_schema.as_ref());
    if schema.get("type") != Some(&Value::String("object".into())) {
        return Err(format!("{key}.input_schema.type: must be \"object\""));
    }
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Err(format!("{key}.input_schema.properties: must be an object"));
    };
    for (name, p) in props {
        if !p.is_object() {
            return Err(format!(
                "{key}.input_schema.properties.{name}: must be an object"
            ));
        }
        if let Some(bad) = property_types(p).into_iter().find(|t| !TYPES.contains(t)) {
            return Err(format!(
                "{key}.input_schema.properties.{name}.type: unknown type {bad:?}"
            ));
        }
    }
    let required: Vec<&str> = match schema.get("required") {
        None => vec![],
        Some(Value::Array(r)) => {
            let mut out = vec![];
            for v in r {
                let Some(n) = v.as_str() else {
                    return Err(format!(
                        "{key}.input_schema.required: must list property names"
                    ));
                };
                if !props.contains_key(n) {
                    return Err(format!(
                        "{key}.input_schema.required: {n:?} is not a property"
                    ));
                }
                out.push(n);
            }
            out
        }
        Some(_) => {
            return Err(format!("{key}.input_schema.required: must be an array"));
        }
    };
    // The URL template.
    let template = UrlTemplate::parse(&c.url).map_err(|e| format!("{key}.url: {e}"))?;
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for ph in template.placeholders() {
        let Some(p) = props.get(ph) else {
            return Err(format!(
                "{key}.url: placeholder {{{ph}}} is not a property of input_schema"
            ));
        };
        if !required.contains(&ph) {
            return Err(format!(
                "{key}.url: placeholder {{{ph}}} must be a required property"
            ));
        }
        let types = property_types(p);
        if types.is_empty()
            || types
                .iter()
                .any(|t| !matches!(*t, "string" | "number" | "integer" | "boolean"))
        {
            return Err(format!(
                "{key}.url: placeholder {{{ph}}} must be a string, number, integer or boolean property"
            ));
        }
        used.insert(ph);
    }
    // Query and body.
    if !c.body.is_empty() && c.method == "GET" {
        return Err(format!("{key}.body: a GET request has no body"));
    }
    for (what, mapping) in [("query", &c.query), ("body", &c.body)] {
        let mut params = BTreeSet::new();
        for (param, arg) in mapping.pairs() {
            if param.is_empty() {
                return Err(format!("{key}.{what}: an empty parameter name"));
            }
            if !params.insert(param.clone()) {
                return Err(format!("{key}.{what}: parameter {param:?} is mapped twice"));
            }
            let Some(p) = props.get(&arg) else {
                return Err(format!(
                    "{key}.{what}: argument {arg:?} is not a property of input_schema"
                ));
            };
            if what == "query" && property_types(p).contains(&"object") {
                return Err(format!(
                    "{key}.query: argument {arg:?} is an object and cannot be a query parameter"
                ));
            }
        }
        for (_, arg) in mapping.pairs() {
            if let Some((k, _)) = props.get_key_value(&arg) {
                used.insert(k.as_str());
            }
        }
    }
    if let Some(unused) = props.keys().find(|p| !used.contains(p.as_str())) {
        return Err(format!(
            "{key}.input_schema: property {unused:?} is used in neither url, query nor body"
        ));
    }
    // Headers.
    for (name, value) in &c.headers {
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{key}.headers: {name} is set by the service and cannot be configured"
            ));
        }
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("{key}.headers: {name:?} is not a header name"));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(format!("{key}.headers.{name}: not a valid header value"));
        }
    }
    if let Some(scopes) = &c.scopes
        && scopes.iter().any(|s| s.is_empty() || s.contains(' '))
    {
        return Err(format!(
            "{key}.scopes: scopes are non-empty and contain no spaces"
        ));
    }
    Ok(())
}
