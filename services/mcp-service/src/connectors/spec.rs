//! A validated connector, ready to turn a tool call's arguments into an upstream request.

use std::time::Duration;

use serde_json::{Map, Value};

use super::config::{ConnectorConfig, normalized_schema};
use super::template::UrlTemplate;

/// A connector compiled from its (already validated) configuration.
#[derive(Debug, Clone)]
pub struct ConnectorSpec {
    pub name: String,
    pub description: String,
    pub provider: String,
    pub method: reqwest::Method,
    pub template: UrlTemplate,
    pub schema: Map<String, Value>,
    /// `(parameter, argument)`.
    pub query: Vec<(String, String)>,
    /// `(field, argument)`; `None` when the request has no body.
    pub body: Option<Vec<(String, String)>>,
    pub headers: reqwest::header::HeaderMap,
    pub scopes: Vec<String>,
    pub timeout: Duration,
    pub max_response_bytes: usize,
}

/// What a tool call sends upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub url: url::Url,
    pub body: Option<Value>,
}

impl ConnectorSpec {
    pub fn compile(c: &ConnectorConfig, default_scopes: &[String]) -> Result<Self, String> {
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &c.headers {
            headers.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| format!("{k:?} is not a header name"))?,
                reqwest::header::HeaderValue::from_str(v)
                    .map_err(|_| format!("{k}: not a header value"))?,
            );
        }
        let body = c.body.pairs();
        Ok(Self {
            name: c.name.clone(),
            description: c.description.clone(),
            provider: c.provider.clone(),
            method: reqwest::Method::from_bytes(c.method.as_bytes())
                .map_err(|_| format!("method {:?}", c.method))?,
            template: UrlTemplate::parse(&c.url)?,
            schema: normalized_schema(c.input_schema.as_ref()),
            query: c.query.pairs(),
            body: (!body.is_empty()).then_some(body),
            headers,
            scopes: c.scopes.clone().unwrap_or_else(|| default_scopes.to_vec()),
            timeout: Duration::from_millis(c.timeout_ms),
            max_response_bytes: c.max_response_bytes,
        })
    }

    /// Checks `args` against the input schema, then builds the URL and body.
    pub fn plan(&self, args: &Map<String, Value>) -> Result<Planned, String> {
        check_arguments(&self.schema, args)?;
        let mut url = self.template.render(args)?;
        let mut pairs: Vec<(String, String)> = vec![];
        for (param, arg) in &self.query {
            match args.get(arg) {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for item in items {
                        pairs.push((param.clone(), query_value(arg, item)?));
                    }
                }
                Some(v) => pairs.push((param.clone(), query_value(arg, v)?)),
            }
        }
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        let body = self.body.as_ref().map(|fields| {
            Value::Object(
                fields
                    .iter()
                    .filter_map(|(field, arg)| args.get(arg).map(|v| (field.clone(), v.clone())))
                    .collect(),
            )
        });
        Ok(Planned { url, body })
    }
}

fn query_value(arg: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(_) | Value::Bool(_) => Ok(v.to_string()),
        _ => Err(format!(
            "argument `{arg}` cannot be sent as a query parameter (use strings, numbers or booleans)"
        )),
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => {
            v.is_i64()
                || v.is_u64()
                || v.as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
        }
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => true,
    }
}

/// The schema's `required`, `type`, `enum` and `additionalProperties: false`, for the top-level
/// arguments. All problems are reported together, in one sentence.
pub fn check_arguments(
    schema: &Map<String, Value>,
    args: &Map<String, Value>,
) -> Result<(), String> {
    let empty = Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut problems = vec![];
    if let Some(Value::Array(required)) = schema.get("required") {
        for r in required.iter().filter_map(Value::as_str) {
            if args.get(r).is_none_or(Value::is_null) {
                problems.push(format!("`{r}` is required"));
            }
        }
    }
    for (name, value) in args {
        let Some(p) = props.get(name) else {
            if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
                problems.push(format!("`{name}` is not an accepted argument"));
            }
            continue;
        };
        let types: Vec<&str> = match p.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if value.is_null() && !types.contains(&"null") {
            // An explicit null is "not given" for optional arguments.
            continue;
        }
        if !types.is_empty() && !types.iter().any(|t| type_matches(t, value)) {
            problems.push(format!("`{name}` must be of type {}", types.join(" or ")));
            continue;
        }
        if let Some(Value::Array(allowed)) = p.get("enum")
            && !allowed.contains(value)
        {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            problems.push(format!("`{name}` must be one of {}", list.join(", ")));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("invalid arguments: {}", problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::config::Mapping;
    use serde_json::json;

    fn connector(v: Value) -> ConnectorConfig {
        serde_json::from_value(v).unwrap()
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn issues() -> ConnectorSpec {
        let c = connector(json!({
            "name": "create_issue", "description": "d", "provider": "github", "method": "POST",
            "url": "https://api.example/repos/{owner}/{repo}/issues",
            "input_schema": {"type": "object", "properties": {
                "owner": {"type": "string"}, "repo": {"type": "string"},
                "title": {"type": "string"}, "labels": {"type": "array"},
                "state": {"type": "string", "enum": ["open", "closed"]},
                "per_page": {"type": "integer"}},
                "required": ["owner", "repo", "title"], "additionalProperties": false},
            "query": ["per_page", "state"],
            "body": {"title": "title", "labels": "labels"},
        }));
        assert!(matches!(c.body, Mapping::Renamed(_)));
        ConnectorSpec::compile(&c, &["mcp:tools.read".into()]).unwrap()
    }

    #[test]
    fn arguments_go_to_path_query_and_body() {
        let s = issues();
        assert_eq!(s.scopes, ["mcp:tools.read"]);
        let p = s
            .plan(&args(
                json!({"owner": "o", "repo": "r", "title": "Hi & bye", "per_page": 5,
                                "state": "open", "labels": ["a", "b"]}),
            ))
            .unwrap();
        assert_eq!(
            p.url.as_str(),
            "https://api.example/repos/o/r/issues?per_page=5&state=open"
        );
        assert_eq!(
            p.body,
            Some(json!({"title": "Hi & bye", "labels": ["a", "b"]}))
        );
        // Optional arguments that are absent are left out.
        let p = s
            .plan(&args(json!({"owner": "o", "repo": "r", "title": "t"})))
            .unwrap();
        assert_eq!(p.url.query(), None);
        assert_eq!(p.body, Some(json!({"title": "t"})));
    }

    #[test]
    fn arguments_are_checked_against_the_schema() {
        let s = issues();
        let e = s.plan(&args(json!({"owner": "o"}))).unwrap_err();
        assert!(
            e.contains("`repo` is required") && e.contains("`title` is required"),
            "{e}"
        );
        let e = s
            .plan(&args(json!({"owner": "o", "repo": "r", "title": 3})))
            .unwrap_err();
        assert!(e.contains("`title` must be of type string"), "{e}");
        let e = s
            .plan(&args(
                json!({"owner": "o", "repo": "r", "title": "t", "per_page": 1.5}),
            ))
            .unwrap_err();
        assert!(e.contains("`per_page` must be of type integer"), "{e}");
        let e = s
            .plan(&args(
                json!({"owner": "o", "repo": "r", "title": "t", "state": "merged"}),
            ))
            .unwrap_err();
        assert!(e.contains("`state` must be one of"), "{e}");
        let e = s
            .plan(&args(
                json!({"owner": "o", "repo": "r", "title": "t", "extra": 1}),
            ))
            .unwrap_err();
        assert!(e.contains("`extra` is not an accepted argument"), "{e}");
        assert!(
            s.plan(&args(
                json!({"owner": "o", "repo": "r", "title": "t", "per_page": 2.0})
            ))
            .is_ok()
        );
    }
}
