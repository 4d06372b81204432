//! Property tests of connector URL templates (bounded; well under a second in a debug build).
//! A failure prints the shrunk input: pin it as a plain test when fixing the parser.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const NAMES: [&str; 3] = ["a", "owner", "x_1"];

/// Argument values a caller might send: traversal attempts, separators, encodings, unicode.
fn arg_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            ".",
            "..",
            "...",
            "%2e%2e",
            "%2E",
            "/",
            "../x",
            "a/b",
            "?q=1",
            "#f",
            "@evil.example",
            "//evil.example",
            "\\..\\",
            "%",
            "%00",
            "\u{0}",
            " ",
            "x",
            "ü",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        any::<String>().prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
        Just(serde_json::json!({"a": 1})),
        Just(serde_json::json!(["x"])),
    ]
}

fn args() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(prop::sample::select(NAMES.to_vec()), arg_value(), 0..4)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// One path segment of a template: literal text, a placeholder, or both.
fn segment() -> impl Strategy<Value = String> {
    let name = prop::sample::select(NAMES.to_vec());
    prop_oneof![
        "[a-z0-9._~-]{1,6}",
        name.clone().prop_map(|n| format!("{{{n}}}")),
        ("[a-z0-9]{0,3}", name, "[a-z0-9.]{0,3}").prop_map(|(a, n, b)| format!("{a}{{{n}}}{b}")),
        prop::sample::select(vec![".", "..", "%2e", ""]).prop_map(str::to_owned),
    ]
}

/// Templates that are mostly valid: an allowed origin, generated segments, maybe a query.
fn template() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "https://api.example",
            "https://api.example:8443",
            "http://127.0.0.1:9",
            "http://[::1]",
            "http://localhost",
        ]),
        prop::collection::vec(segment(), 0..5),
        prop::option::of("[a-z]{1,3}=[a-z0-9]{0,3}"),
    )
        .prop_map(|(origin, segs, q)| {
            let mut t = origin.to_owned();
            for s in segs {
                t.push('/');
                t.push_str(&s);
            }
            if let Some(q) = q {
                t.push('?');
                t.push_str(&q);
            }
            t
        })
}

/// Anything template-shaped, including placeholders in the wrong places.
fn junk_template() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        prop::sample::select(vec![
            "https://",
            "http://",
            "ftp://",
            "://",
            "{a}",
            "{",
            "}",
            "{}",
            "{a-b}",
            "/",
            "?",
            "#",
            "@",
            ":",
            "api.example",
            "127.0.0.1",
            "evil.example",
            "user:pw@",
            "\\",
            "%2F",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9./]{0,6}",
        any::<String>(),
    ];
    prop::collection::vec(part, 1..8).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn generated_templates_keep_arguments_in_their_segments(t in template(), a in args()) {
        connector_template(&t, &a);
    }

    #[test]
    fn junk_templates(t in junk_template(), a in args()) {
        connector_template(&t, &a);
    }

    #[test]
    fn the_libfuzzer_entry_point_on_bytes(data in prop::collection::vec(any::<u8>(), 0..160)) {
        connector_template_bytes(&data);
    }

    #[test]
    fn a_whole_segment_placeholder_decodes_to_the_value(
        value in any::<String>().prop_filter("refusable", |s| !s.is_empty() && s != "." && s != ".."),
        prefix in prop::collection::vec("[a-z]{1,4}", 0..3),
    ) {
        let mut t = String::from("https://api.example");
        for p in &prefix {
            t.push('/');
            t.push_str(p);
        }
        t.push_str("/{a}/tail");
        let template = UrlTemplate::parse(&t).unwrap();
        let mut a = Map::new();
        a.insert("a".into(), Value::String(value.clone()));
        let url = template.render(&a).unwrap();
        let segs: Vec<&str> = url.path_segments().unwrap().collect();
        prop_assert_eq!(segs.len(), prefix.len() + 2);
        let got = url::form_urlencoded::parse(format!("v={}", segs[prefix.len()].replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned());
        prop_assert_eq!(got, Some(value));
    }
}
