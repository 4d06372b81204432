//! Declarative HTTP connector tools: configured `[[connectors]]` call upstream APIs (GitHub,
//! ServiceNow...) as the user, with the user's upstream token from token-vault. While a
//! provider is not connected, its tools are replaced by a `connect_<provider>` tool; token-vault's
//! connection events refresh the user's tool list.

pub mod config;
pub mod connections;
pub mod exchange;
pub mod spec;
pub mod template;
pub mod tools;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ring::rand::SecureRandom;

use self::config::{connect_tool_name, disconnect_tool_name};
use self::connections::ConnectionCache;
use self::spec::ConnectorSpec;
use self::tools::{ConnectTool, ConnectorTool, Deps, DisconnectTool};
use crate::config::Config;
use crate::tools::ToolRegistry;

/// The connector machinery of a running service.
#[derive(Clone)]
pub struct Installed {
    pub cache: ConnectionCache,
    /// Event bus channel of token-vault's connection events.
    pub channel: String,
}

/// Registers the configured connector tools (and each provider's connect/disconnect tools) and
/// makes `tools/list` per user. `None` when no connector is configured.
pub fn install(config: &Config, registry: &ToolRegistry) -> anyhow::Result<Option<Installed>> {
    if config.connectors.is_empty() {
        return Ok(None);
    }
    let vault_cfg = config
        .vault
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("connectors: need a [vault] section"))?;
    let vault = crate::vault::VaultClient::new(vault_cfg)?;
    let (connect_credential, elicitation_timeout) = match &config.connect {
        Some(c) => (c.credential.expose(), c.elicitation_timeout_secs),
        None => (config.verifier.grpc.credential.expose(), 120),
    };
    let (section, connect_addr, connect_tls) = config.connect_target();
    let connect =
        crate::connect::ConnectClient::new(section, connect_addr, connect_tls, connect_credential)?;
    let upstream_client = || {
        reqwest::Client::builder()
            // A redirect would need the upstream token re-sent somewhere else: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("mcpauth-mcp-service/", env!("CARGO_PKG_VERSION")))
            .build()
    };
    // Built once here so that a bad build fails at start; then one per thread, so that each
    // actix worker's upstream connections are driven on that worker (mcpauth_runtime::per_thread).
    upstream_client()?;
    let http = mcpauth_runtime::PerThread::new(move || {
        upstream_client().expect("the same builder succeeded at start")
    });
    let cache = ConnectionCache::new(
        vault.clone(),
        Duration::from_millis(vault_cfg.connections_cache_ttl_ms),
        Duration::from_millis(vault_cfg.upstream_token_cache_ttl_ms),
    );
    let mut specs = vec![];
    let mut unlocks: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, c) in config.connectors.iter().enumerate() {
        let spec = ConnectorSpec::compile(c, &config.scopes_supported)
            .map_err(|e| anyhow::anyhow!("connectors[{i}]: {e}"))?;
        unlocks
            .entry(spec.provider.clone())
            .or_default()
            .push(spec.name.clone());
        specs.push(spec);
    }
    let deps = Arc::new(Deps {
        vault,
        connect,
        http,
        providers: config.providers.clone(),
        cache: cache.clone(),
        elicitation_timeout: Duration::from_secs(elicitation_timeout),
        unlocks: unlocks.clone(),
    });
    for spec in specs {
        registry.register(Arc::new(ConnectorTool {
            spec,
            deps: deps.clone(),
        }));
    }
    for provider in unlocks.keys() {
        registry.register(Arc::new(ConnectTool {
            provider: provider.clone(),
            name: connect_tool_name(provider),
            scopes: config.scopes_supported.clone(),
            deps: deps.clone(),
        }));
        registry.register(Arc::new(DisconnectTool {
            provider: provider.clone(),
            name: disconnect_tool_name(provider),
            scopes: config.scopes_supported.clone(),
            deps: deps.clone(),
        }));
    }
    registry.set_connections(Arc::new(cache.clone()));
    Ok(Some(Installed {
        cache,
        channel: format!("{}:connections", vault_cfg.key_prefix),
    }))
}

/// The one call site that tells a user's sessions (on every replica) that their tool list
/// changed.
pub fn tools_changed(state: &crate::app::AppState) -> connections::ToolsChanged {
    let hub = state.sessions.clone();
    Arc::new(move |subject: &str| hub.notify_tools_changed(subject))
}

/// A random identifier (elicitation ids).
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("system randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::Config;

    const VAULT: &str = "[vault]\naddr = \"http://127.0.0.1:9091\"\ncredential = \"c\"\n\
                         [providers.github]\ndisplay_name = \"GitHub\"\n";

    const GOOD: &str = r#"
[[connectors]]
name = "github_get_repo"
description = "A repository"
provider = "github"
url = "https://api.github.com/repos/{owner}/{repo}"
input_schema = { type = "object", properties = { owner = { type = "string" }, repo = { type = "string" }, perPage = { type = "integer" } }, required = ["owner", "repo"] }
query = { per_page = "perPage" }
headers = { Accept = "application/vnd.github+json" }
scopes = ["mcp:tools.read", "github:read"]
"#;

    fn load(toml: &str) -> Result<Config, String> {
        let path = std::env::temp_dir().join(format!("mcp-conn-{}.toml", super::random_id()));
        // Dev mode: the built-in verifier credential (connect's default) is the dev one.
        std::fs::write(&path, format!("dev_mode = true\n{toml}")).unwrap();
        let r = Config::load(Some(&path), &HashMap::new()).map_err(|e| e.to_string());
        let _ = std::fs::remove_file(&path);
        r
    }

    #[test]
    fn a_good_connector_loads_with_its_schema_intact() {
        let c = load(&format!("{VAULT}{GOOD}")).unwrap();
        assert_eq!(c.connectors.len(), 1);
        let s = c.connectors[0].input_schema.as_ref().unwrap();
        // Keys keep their case (camelCase property names).
        assert!(s["properties"]["perPage"].is_object(), "{s}");
        // A JSON string works as well as a table.
        let json = GOOD.replace(
            "input_schema = { type = \"object\", properties = { owner = { type = \"string\" }, repo = { type = \"string\" }, perPage = { type = \"integer\" } }, required = [\"owner\", \"repo\"] }",
            "input_schema = '{\"type\":\"object\",\"properties\":{\"owner\":{\"type\":\"string\"},\"repo\":{\"type\":\"string\"},\"perPage\":{\"type\":\"integer\"}},\"required\":[\"owner\",\"repo\"]}'",
        );
        assert_ne!(json, GOOD);
        let c2 = load(&format!("{VAULT}{json}")).unwrap();
        assert_eq!(c2.connectors[0].input_schema, c.connectors[0].input_schema);
    }

    #[test]
    fn config_mistakes_fail_with_one_line_naming_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "provider = \"github\"",
                "provider = \"gitlab\"",
                "unknown provider \"gitlab\"",
            ),
            (
                "url = \"https://api.github.com/repos/{owner}/{repo}\"",
                "url = \"https://api.github.com/repos/{owner}/{name}\"",
                "placeholder {name} is not a property",
            ),
            (
                "url = \"https://api.github.com/repos/{owner}/{repo}\"",
                "url = \"https://{owner}.github.com/{repo}\"",
                "must be in the path",
            ),
            (
                "url = \"https://api.github.com/repos/{owner}/{repo}\"",
                "url = \"http://api.github.com/repos/{owner}/{repo}\"",
                "must be https",
            ),
            (
                "provider = \"github\"",
                "provider = \"github\"\nmethod = \"FETCH\"",
                "method: \"FETCH\"",
            ),
            (
                "query = { per_page = \"perPage\" }",
                "query = { per_page = \"size\" }",
                "argument \"size\" is not a property",
            ),
            (
                "query = { per_page = \"perPage\" }",
                "",
                "property \"perPage\" is used in neither",
            ),
            (
                "headers = { Accept = \"application/vnd.github+json\" }",
                "headers = { Authorization = \"token x\" }",
                "Authorization is set by the service",
            ),
            (
                "provider = \"github\"",
                "provider = \"github\"\nbody = [\"perPage\"]",
                "a GET request has no body",
            ),
            (
                "required = [\"owner\", \"repo\"]",
                "required = [\"owner\"]",
                "placeholder {repo} must be a required property",
            ),
        ];
        for (from, to, expected) in cases {
            let toml = format!("{VAULT}{}", GOOD.replace(from, to));
            assert_ne!(toml, format!("{VAULT}{GOOD}"), "{from}");
            let e = load(&toml).unwrap_err();
            assert!(e.contains(expected), "{expected:?} not in {e:?}");
            assert!(!e.contains('\n'), "{e}");
            assert!(e.contains("connectors[0]"), "{e}");
        }
        // Two connectors with one name.
        let e = load(&format!("{VAULT}{GOOD}{GOOD}")).unwrap_err();
        assert!(
            e.contains("connectors[1].name: \"github_get_repo\" is used twice"),
            "{e}"
        );
        // A connector named like a generated tool.
        let e = load(&format!(
            "{VAULT}{}",
            GOOD.replace("name = \"github_get_repo\"", "name = \"connect_github\"")
        ))
        .unwrap_err();
        assert!(e.contains("connect/disconnect tool"), "{e}");
    }

    #[test]
    fn the_examples_in_the_docs_load() {
        let doc = include_str!("../../../../docs/connectors.md");
        let examples: Vec<&str> = doc
            .split("```toml")
            .skip(1)
            .map(|b| b.split("```").next().unwrap())
            .filter(|b| b.contains("[[connectors]]"))
            .collect();
        assert_eq!(examples.len(), 2);
        for ex in examples {
            let c = load(&format!(
                "[vault]\naddr = \"http://127.0.0.1:9091\"\ncredential = \"c\"\n{ex}"
            ))
            .unwrap_or_else(|e| panic!("{e}\n{ex}"));
            assert_eq!(c.connectors.len(), 3);
        }
    }

    #[test]
    fn connectors_need_a_vault() {
        let e = load(&format!(
            "[providers.github]\ndisplay_name = \"GitHub\"\n{GOOD}"
        ))
        .unwrap_err();
        assert!(
            e.contains("connectors: connector tools need a [vault] section"),
            "{e}"
        );
        // No connectors, no vault: the built-in tools only.
        assert!(load("").unwrap().connectors.is_empty());
    }
}
