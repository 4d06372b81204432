use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::*;

/// Two services with different keys, as auth-service and token-vault are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Auth {
    rate_limit: RateLimit,
    log: Log,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimit {
    token: u64,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Log {
    format: String,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vault {
    grpc: Grpc,
    log: Log,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Grpc {
    addr: String,
}

const AUTH_DEFAULTS: &str = "[rate_limit]\ntoken = 6000\n[log]\nformat = \"json\"\n";
const VAULT_DEFAULTS: &str = "[grpc]\naddr = \"127.0.0.1:9091\"\n[log]\nformat = \"json\"\n";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn one_environment_configures_every_service_by_its_own_prefix() {
    let shared = env(&[
        ("MCPAUTH_AUTH__RATE_LIMIT__TOKEN", "10"),
        ("MCPAUTH_AUTH__LOG__FORMAT", "pretty"),
        ("MCPAUTH_VAULT__GRPC__ADDR", "127.0.0.1:19091"),
        ("MCPAUTH_MCP__HTTP__ADDR", "127.0.0.1:18081"),
    ]);
    let (a, report): (Auth, _) = AUTH.load(AUTH_DEFAULTS, None, &shared).unwrap();
    assert_eq!((a.rate_limit.token, a.log.format.as_str()), (10, "pretty"));
    assert_eq!(report.legacy_applied, Vec::<String>::new());
    assert_eq!(report.legacy_ignored, Vec::<String>::new());
    let (v, _): (Vault, _) = VAULT.load(VAULT_DEFAULTS, None, &shared).unwrap();
    assert_eq!(
        (v.grpc.addr.as_str(), v.log.format.as_str()),
        ("127.0.0.1:19091", "json")
    );
}

#[test]
fn an_unknown_key_under_the_own_prefix_is_refused_in_one_line() {
    let e = AUTH
        .load::<Auth>(
            AUTH_DEFAULTS,
            None,
            &env(&[("MCPAUTH_AUTH__RATE_LIMIT__TOKNE", "10")]),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `tokne`"), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn the_older_prefix_applies_where_the_service_knows_the_key() {
    // `make run` with MCPAUTH__RATE_LIMIT__TOKEN: auth-service takes it, token-vault skips it.
    let shared = env(&[
        ("MCPAUTH__RATE_LIMIT__TOKEN", "10"),
        ("MCPAUTH__LOG__FORMAT", "pretty"),
    ]);
    let (a, report): (Auth, _) = AUTH.load(AUTH_DEFAULTS, None, &shared).unwrap();
    assert_eq!((a.rate_limit.token, a.log.format.as_str()), (10, "pretty"));
    assert_eq!(
        report.legacy_applied,
        vec!["MCPAUTH__LOG__FORMAT", "MCPAUTH__RATE_LIMIT__TOKEN"]
    );
    let (v, report): (Vault, _) = VAULT.load(VAULT_DEFAULTS, None, &shared).unwrap();
    assert_eq!(v.log.format, "pretty");
    assert_eq!(report.legacy_applied, vec!["MCPAUTH__LOG__FORMAT"]);
    assert_eq!(report.legacy_ignored, vec!["MCPAUTH__RATE_LIMIT__TOKEN"]);
    assert_eq!(report.prefix, "MCPAUTH_VAULT");
}

#[test]
fn the_own_prefix_wins_over_the_older_one_and_bad_values_still_fail() {
    let (a, _): (Auth, _) = AUTH
        .load(
            AUTH_DEFAULTS,
            None,
            &env(&[
                ("MCPAUTH__RATE_LIMIT__TOKEN", "10"),
                ("MCPAUTH_AUTH__RATE_LIMIT__TOKEN", "20"),
            ]),
        )
        .unwrap();
    assert_eq!(a.rate_limit.token, 20);
    // A key the service knows, with a bad value, is an error under either prefix.
    let e = AUTH
        .load::<Auth>(
            AUTH_DEFAULTS,
            None,
            &env(&[("MCPAUTH__RATE_LIMIT__TOKEN", "many")]),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("rate_limit.token"), "{e}");
}

#[test]
fn the_config_file_comes_from_the_flag_then_the_own_variable_then_the_older_one() {
    let flag = Path::new("/etc/flag.toml");
    let both = env(&[
        ("MCPAUTH_AUTH_CONFIG", "/etc/auth.toml"),
        ("MCPAUTH_CONFIG", "/etc/old.toml"),
    ]);
    assert_eq!(
        AUTH.config_file(Some(flag), &both),
        (Some(flag.to_owned()), false)
    );
    assert_eq!(
        AUTH.config_file(None, &both),
        (Some("/etc/auth.toml".into()), false)
    );
    assert_eq!(
        VAULT.config_file(None, &both),
        (Some("/etc/old.toml".into()), true)
    );
    assert_eq!(MCP.config_var(), "MCPAUTH_MCP_CONFIG");
    assert_eq!(MCP.config_file(None, &env(&[])), (None, false));
}

#[test]
fn a_missing_file_is_one_line() {
    let e = AUTH
        .load::<Auth>(
            AUTH_DEFAULTS,
            Some(Path::new("/nonexistent/x.toml")),
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "configuration error: config file /nonexistent/x.toml does not exist"
    );
}

#[test]
fn a_part_of_the_configuration_reports_by_the_whole() {
    // What `migrate` reads (no deny_unknown_fields: the rest of the file is not looked at); the
    // report still says which older-prefix variables are another service's.
    #[derive(Debug, Deserialize)]
    struct LogOnly {
        log: Log,
    }
    let shared = env(&[
        ("MCPAUTH__RATE_LIMIT__TOKEN", "10"),
        ("MCPAUTH__LOG__FORMAT", "pretty"),
    ]);
    let (part, report): (LogOnly, _) = VAULT
        .load_part::<LogOnly, Vault>(VAULT_DEFAULTS, None, &shared)
        .unwrap();
    assert_eq!(part.log.format, "pretty");
    assert_eq!(report.legacy_applied, vec!["MCPAUTH__LOG__FORMAT"]);
    assert_eq!(report.legacy_ignored, vec!["MCPAUTH__RATE_LIMIT__TOKEN"]);
}
