//! Entry points for property tests and fuzz targets (as in auth-service's `fuzzing`): each feeds
//! attacker- or operator-controlled input to a parser and panics when an invariant breaks.
//! Not an API: hidden from the docs and free to change with the parsers.

use serde_json::{Map, Value};

use crate::connectors::template::UrlTemplate;

/// Connector URL templates and the tool arguments filled into them. Tool arguments come from
/// whoever holds an access token; they may choose path segments and nothing else: the rendered
/// URL keeps the template's origin and query, gets no fragment, and has the template's number
/// of path segments. A value is refused only when it is missing, empty, `.`/`..` or not a
/// scalar.
pub fn connector_template(template: &str, args: &Map<String, Value>) {
    let Ok(t) = UrlTemplate::parse(template) else {
        return;
    };
    let names: Vec<String> = t.placeholders().map(str::to_owned).collect();
    let sample_args: Map<String, Value> = names
        .iter()
        .map(|n| (n.clone(), Value::String("x".into())))
        .collect();
    let sample = t
        .render(&sample_args)
        .expect("a parsed template renders with plain values");
    let refusable = names.iter().any(|n| match args.get(n) {
        Some(Value::String(s)) => s.is_empty() || s == "." || s == "..",
        Some(Value::Number(_) | Value::Bool(_)) => false,
        _ => true,
    });
    match t.render(args) {
        Ok(url) => {
            assert!(!refusable, "{template:?} rendered a refusable value: {url}");
            assert_eq!(url.origin(), sample.origin(), "{url}");
            assert_eq!(url.query(), sample.query(), "{url}");
            assert_eq!(url.fragment(), None, "{url}");
            assert_eq!(
                url.path_segments().map(Iterator::count),
                sample.path_segments().map(Iterator::count),
                "{template:?} → {url}"
            );
        }
        Err(e) => assert!(refusable, "{template:?} refused {args:?}: {e}"),
    }
}

/// libFuzzer's form: the template, a NUL byte, then the arguments as a JSON object (anything
/// else counts as no arguments).
pub fn connector_template_bytes(data: &[u8]) {
    let (template, args) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let args = serde_json::from_slice::<Map<String, Value>>(args).unwrap_or_default();
    connector_template(&String::from_utf8_lossy(template), &args);
}

#[cfg(test)]
mod tests;
