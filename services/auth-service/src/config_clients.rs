//! Configuration checks of who may do what: configured clients are held to the rules of
//! registered ones (docs/configuration.md), and the introspection and registration policies
//! name well-formed clients and hashes. Each error is one line naming the key.

use mcpauth_runtime::ConfigError;

use crate::config::Config;
use crate::domain::client_metadata as limits;
use crate::domain::redirect_uri::validate_for_registration;
use crate::domain::scope::ScopeSet;

/// Checks `clients`, `introspection.clients`, `resources[].introspection_clients` and
/// `registration.initial_access_tokens_sha256`.
pub fn validate(cfg: &Config) -> Result<(), ConfigError> {
    let err = |m: String| Err(ConfigError::new(m));
    let supported = ScopeSet::from_strings(cfg.resources.iter().flat_map(|r| r.scopes.clone()));
    let mut seen = std::collections::HashSet::new();
    for (i, c) in cfg.clients.iter().enumerate() {
        let key = format!("clients[{i}]");
        if let Err(e) = client_id(&c.client_id) {
            return err(format!("{key}.client_id: {e}"));
        }
        if !seen.insert(c.client_id.as_str()) {
            return err(format!(
                "{key}.client_id: {:?} is configured twice",
                c.client_id
            ));
        }
        if let Some(n) = &c.client_name
            && let Err(e) = limits::check_text("client_name", n, limits::MAX_NAME_CHARS)
        {
            return err(format!("{key}.{e}"));
        }
        if c.grant_types.is_empty() {
            return err(format!("{key}.grant_types: must not be empty"));
        }
        // Configured clients are privileged: any grant this deployment offers.
        if let Err(e) = crate::http::grants::registry().check_client_grants(
            cfg,
            &c.grant_types,
            true,
            c.token_endpoint_auth_method == "none",
        ) {
            return err(format!("{key}.grant_types: {e}"));
        }
        let uses_code = c.grant_types.iter().any(|g| g == "authorization_code");
        if uses_code && c.redirect_uris.is_empty() {
            return err(format!(
                "{key}.redirect_uris: required for the authorization_code grant"
            ));
        }
        if c.redirect_uris.len() > limits::MAX_REDIRECT_URIS {
            return err(format!(
                "{key}.redirect_uris: at most {}",
                limits::MAX_REDIRECT_URIS
            ));
        }
        for u in &c.redirect_uris {
            if let Err(e) = limits::check_uri_len("redirect_uris", u) {
                return err(format!("{key}.{e}"));
            }
            if let Err(e) = validate_for_registration(u, &[]) {
                return err(format!("{key}.redirect_uris: {u:?}: {e}"));
            }
        }
        if let Some(s) = &c.scope {
            let set =
                ScopeSet::parse(s).map_err(|e| ConfigError::new(format!("{key}.scope: {e}")))?;
            let unknown = set.difference(&supported);
            if !unknown.is_empty() {
                return err(format!(
                    "{key}.scope: {unknown} is not a scope of any configured resource"
                ));
            }
        }
    }
    let lists = std::iter::once((
        "introspection.clients".to_owned(),
        &cfg.introspection.clients,
    ))
    .chain(cfg.resources.iter().enumerate().map(|(i, r)| {
        (
            format!("resources[{i}].introspection_clients"),
            &r.introspection_clients,
        )
    }));
    for (key, ids) in lists {
        for id in ids {
            if let Err(e) = client_id(id) {
                return err(format!("{key}: {id:?}: {e}"));
            }
            if let Some(c) = cfg.clients.iter().find(|c| &c.client_id == id)
                && c.token_endpoint_auth_method == "none"
            {
                return err(format!(
                    "{key}: {id:?} is a public client; introspection needs client authentication"
                ));
            }
        }
    }
    for (i, h) in cfg
        .registration
        .initial_access_tokens_sha256
        .iter()
        .enumerate()
    {
        if crate::domain::token::unhex(&h.0).is_none_or(|h| h.len() != 32) {
            return err(format!(
                "registration.initial_access_tokens_sha256[{i}]: must be 64 hex characters (auth-service hash-secret)"
            ));
        }
    }
    Ok(())
}

/// A configured client id: 1-255 bytes of visible ASCII.
fn client_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > limits::MAX_CLIENT_ID_BYTES
        || !id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(format!(
            "must be 1-{} visible ASCII characters",
            limits::MAX_CLIENT_ID_BYTES
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::Config;

    /// Loads `toml` in dev mode; "ok" or the one-line error.
    fn load(toml: &str) -> String {
        let path = std::env::temp_dir().join(format!("mcpauth-clients-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, toml).unwrap();
        let env: HashMap<String, String> =
            [("MCPAUTH__DEV_MODE".to_owned(), "true".to_owned())].into();
        let r = Config::load(Some(&path), &env);
        let _ = std::fs::remove_file(&path);
        match r {
            Ok(_) => "ok".into(),
            Err(e) => {
                let e = e.to_string();
                assert!(!e.contains('\n'), "one line: {e}");
                e
            }
        }
    }

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn client(fields: &str) -> String {
        format!(
            "[[clients]]\nclient_id = \"backend\"\nclient_secret_sha256 = \"{HASH}\"\n\
             token_endpoint_auth_method = \"client_secret_basic\"\n{fields}"
        )
    }

    #[test]
    fn configured_clients_are_held_to_the_registration_rules() {
        assert_eq!(
            load(&client("grant_types = [\"client_credentials\"]\n")),
            "ok"
        );
        let cases = [
            (
                "grant_types = []\n",
                "clients[0].grant_types: must not be empty",
            ),
            (
                "grant_types = [\"password\"]\n",
                "clients[0].grant_types: grant type \"password\" is not supported",
            ),
            (
                "grant_types = [\"authorization_code\"]\n",
                "clients[0].redirect_uris: required for the authorization_code grant",
            ),
            (
                "grant_types = [\"authorization_code\"]\nredirect_uris = [\"http://app.example/cb\"]\n",
                "clients[0].redirect_uris: \"http://app.example/cb\": redirect_uri must use https",
            ),
            (
                "grant_types = [\"client_credentials\"]\nscope = \"mcp:tools.read nope\"\n",
                "clients[0].scope: nope is not a scope of any configured resource",
            ),
            (
                "grant_types = [\"client_credentials\"]\nclient_name = \"bad\\u0007name\"\n",
                "clients[0].client_name must be at most 200 printable characters",
            ),
        ];
        for (fields, want) in cases {
            let e = load(&client(fields));
            assert!(e.contains(want), "{fields}: {e}");
        }
        let e = load(
            &client("grant_types = [\"client_credentials\"]\n").replace("backend", "back end"),
        );
        assert!(
            e.contains("clients[0].client_id: must be 1-255 visible ASCII"),
            "{e}"
        );
        let twice = format!(
            "{}{}",
            client("grant_types = [\"client_credentials\"]\n"),
            client("grant_types = [\"client_credentials\"]\n")
        );
        assert!(load(&twice).contains("clients[1].client_id: \"backend\" is configured twice"));
        let public = "[[clients]]\nclient_id = \"cli\"\ntoken_endpoint_auth_method = \"none\"\n\
                      grant_types = [\"client_credentials\"]\n";
        assert!(load(public).contains("client_credentials requires a confidential client"));
    }

    #[test]
    fn introspection_clients_and_initial_access_tokens_are_checked() {
        let ok = format!(
            "[introspection]\nclients = [\"backend\"]\n[registration]\ninitial_access_tokens_sha256 = [\"{HASH}\"]\n\
             [[resources]]\nuri = \"https://mcp.example/mcp\"\nscopes = [\"a\"]\nintrospection_clients = [\"rs\"]\n"
        );
        assert_eq!(load(&ok), "ok");
        let e = load("[registration]\ninitial_access_tokens_sha256 = [\"abc\"]\n");
        assert!(
            e.contains("registration.initial_access_tokens_sha256[0]: must be 64 hex characters"),
            "{e}"
        );
        let e = load("[introspection]\nclients = [\"\"]\n");
        assert!(
            e.contains("introspection.clients: \"\": must be 1-255"),
            "{e}"
        );
        let e = load(
            "[[resources]]\nuri = \"https://mcp.example/mcp\"\nscopes = [\"a\"]\nintrospection_clients = [\"cli\"]\n\
             [[clients]]\nclient_id = \"cli\"\ntoken_endpoint_auth_method = \"none\"\ngrant_types = [\"authorization_code\"]\n\
             redirect_uris = [\"http://127.0.0.1/cb\"]\n",
        );
        assert!(
            e.contains("resources[0].introspection_clients: \"cli\" is a public client"),
            "{e}"
        );
        // A hash may come from a file, as init-secrets writes it.
        let file = std::env::temp_dir().join(format!("mcpauth-iat-{}", uuid::Uuid::new_v4()));
        std::fs::write(&file, format!("{HASH}\n")).unwrap();
        let from_file = format!(
            "[registration]\ninitial_access_tokens_sha256 = [\"file:{}\"]\n",
            file.display()
        );
        assert_eq!(load(&from_file), "ok");
        let _ = std::fs::remove_file(&file);
    }
}
