//! Which environment variables configure which service. One environment (a shell running
//! `make run`, a compose env file) may configure all three services at once, so each reads its
//! own prefix: `MCPAUTH_AUTH__…`, `MCPAUTH_VAULT__…`, `MCPAUTH_MCP__…`, strictly (an unknown key
//! is a configuration error, as in a file).
//!
//! The older shared prefix `MCPAUTH__…` is still read, below the service's own prefix. Since one
//! such variable may be meant for another service, a service skips the ones it does not know
//! (and names them in a warning) instead of refusing to start; the ones it knows apply as
//! before. The configuration file follows the same rule: `--config`, else `MCPAUTH_AUTH_CONFIG`
//! (…`_VAULT_`, …`_MCP_`), else the older `MCPAUTH_CONFIG`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::ConfigError;

/// The older prefix every service read (`MCPAUTH__HTTP__ADDR`).
pub const LEGACY_PREFIX: &str = "MCPAUTH";

/// The environment of one service: its prefix, from which its variables and the variable naming
/// its configuration file follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceEnv {
    /// Prefix of its variables, without the `__` separator (`MCPAUTH_AUTH`).
    pub prefix: &'static str,
}

/// auth-service: `MCPAUTH_AUTH__…`, `MCPAUTH_AUTH_CONFIG`.
pub const AUTH: ServiceEnv = ServiceEnv {
    prefix: "MCPAUTH_AUTH",
};
/// token-vault: `MCPAUTH_VAULT__…`, `MCPAUTH_VAULT_CONFIG`.
pub const VAULT: ServiceEnv = ServiceEnv {
    prefix: "MCPAUTH_VAULT",
};
/// mcp-service: `MCPAUTH_MCP__…`, `MCPAUTH_MCP_CONFIG`.
pub const MCP: ServiceEnv = ServiceEnv {
    prefix: "MCPAUTH_MCP",
};

/// What the environment contributed beyond the service's own prefix, for a warning once logs
/// are up. Variable names only: values may be secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvReport {
    /// The service's own prefix (`MCPAUTH_AUTH`), for the messages.
    pub prefix: String,
    /// `MCPAUTH__…` variables applied (the older spelling).
    pub legacy_applied: Vec<String>,
    /// `MCPAUTH__…` variables skipped: keys this service does not have.
    pub legacy_ignored: Vec<String>,
    /// Where the configuration file came from, when it was the older `MCPAUTH_CONFIG`.
    pub legacy_config_file: bool,
}

impl EnvReport {
    /// Logs what an operator should change (a warning per kind), nothing when all is current.
    pub fn warn(&self) {
        let own = &self.prefix;
        if !self.legacy_applied.is_empty() {
            tracing::warn!(
                variables = %self.legacy_applied.join(","),
                "MCPAUTH__ is the older shared prefix; rename these to {own}__… (docs/configuration.md)"
            );
        }
        if !self.legacy_ignored.is_empty() {
            tracing::warn!(
                variables = %self.legacy_ignored.join(","),
                "ignored: MCPAUTH__ variables naming keys this service does not have (another service's?); use {own}__… for this service"
            );
        }
        if self.legacy_config_file {
            tracing::warn!(
                "MCPAUTH_CONFIG is the older shared variable; use --config or {own}_CONFIG"
            );
        }
    }
}

impl ServiceEnv {
    /// The variable naming the configuration file (`MCPAUTH_AUTH_CONFIG`).
    pub fn config_var(&self) -> String {
        format!("{}_CONFIG", self.prefix)
    }

    /// The configuration file: the `--config` flag, else `<PREFIX>_CONFIG`, else the older
    /// `MCPAUTH_CONFIG`. The flag `true` says the older variable gave it.
    pub fn config_file(
        &self,
        flag: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> (Option<PathBuf>, bool) {
        if let Some(p) = flag {
            return (Some(p.to_owned()), false);
        }
        let non_empty = |k: &str| env.get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(p) = non_empty(&self.config_var()) {
            return (Some(p), false);
        }
        match non_empty("MCPAUTH_CONFIG") {
            Some(p) => (Some(p), true),
            None => (None, false),
        }
    }

    /// Loads a typed configuration: built-in `defaults` (TOML) → optional `file` (TOML) →
    /// `MCPAUTH__…` variables this service knows → its own `<PREFIX>__…` variables. The
    /// environment is passed in so that tests never mutate the process environment.
    pub fn load<T: DeserializeOwned>(
        &self,
        defaults: &str,
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<(T, EnvReport), ConfigError> {
        self.load_part::<T, T>(defaults, file, env)
    }

    /// [`ServiceEnv::load`] of a part `T` of the service's configuration (what one command
    /// reads), deciding which `MCPAUTH__…` keys the service has by its whole configuration `K`.
    pub fn load_part<T: DeserializeOwned, K: DeserializeOwned>(
        &self,
        defaults: &str,
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<(T, EnvReport), ConfigError> {
        if let Some(path) = file
            && !path.exists()
        {
            return Err(ConfigError(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        let own_start = format!("{}__", self.prefix);
        let legacy_start = format!("{LEGACY_PREFIX}__");
        let own: HashMap<String, String> = select(env, &own_start);
        let mut report = EnvReport {
            prefix: self.prefix.to_owned(),
            ..Default::default()
        };
        let mut legacy = HashMap::new();
        let mut names: Vec<&String> = env
            .keys()
            .filter(|k| k.starts_with(&legacy_start))
            .collect();
        names.sort();
        for name in names {
            let one = HashMap::from([(name.clone(), env[name].clone())]);
            let probe = build(
                defaults,
                None,
                LEGACY_PREFIX,
                &one,
                self.prefix,
                &HashMap::new(),
            )
            .and_then(|c| c.try_deserialize::<K>().map(|_| ()));
            match probe {
                // serde's message for a key the type does not have; every other error (a bad
                // value, a section still missing fields) belongs to a key the service knows.
                Err(e) if e.to_string().contains("unknown field") => {
                    report.legacy_ignored.push(name.clone());
                }
                _ => {
                    report.legacy_applied.push(name.clone());
                    legacy.insert(name.clone(), env[name].clone());
                }
            }
        }
        let cfg = build(defaults, file, LEGACY_PREFIX, &legacy, self.prefix, &own)
            .map_err(|e| ConfigError(one_line(&e.to_string())))?;
        let value = cfg
            .try_deserialize::<T>()
            .map_err(|e| ConfigError(one_line(&e.to_string())))?;
        Ok((value, report))
    }
}

fn select(env: &HashMap<String, String>, start: &str) -> HashMap<String, String> {
    env.iter()
        .filter(|(k, _)| k.starts_with(start))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn environment(prefix: &str, vars: &HashMap<String, String>) -> config::Environment {
    config::Environment::with_prefix(prefix)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .source(Some(vars.clone()))
}

/// defaults → file → the older prefix's variables → the service's own (later sources win).
fn build(
    defaults: &str,
    file: Option<&Path>,
    legacy_prefix: &str,
    legacy: &HashMap<String, String>,
    own_prefix: &str,
    own: &HashMap<String, String>,
) -> Result<config::Config, config::ConfigError> {
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(defaults, config::FileFormat::Toml));
    if let Some(path) = file {
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    builder
        .add_source(environment(legacy_prefix, legacy))
        .add_source(environment(own_prefix, own))
        .build()
}

pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
