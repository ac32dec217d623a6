use proptest::prelude::*;
use serde_json::{json, Value};
use strangler_config::CompareRules;

use super::*;

fn resp(body: Value) -> Response {
    Response::new(
        200,
        vec![("content-type".into(), "application/json".into())],
        body.to_string().into_bytes(),
    )
}

fn diffs(rules: &Rules, a: Value, b: Value) -> Vec<(String, Kind)> {
    compare(rules, &resp(a), &resp(b))
        .differences
        .into_iter()
        .map(|d| (d.path, d.kind))
        .collect()
}

fn rules(f: impl FnOnce(&mut CompareRules)) -> Rules {
    let mut r = CompareRules::default();
    f(&mut r);
    Rules::new(&r)
}

#[test]
fn each_kind_is_found_with_its_pointer() {
    let r = Rules::new(&CompareRules::default());
    let a = json!({"id": 1, "name": "kettle", "tags": ["a", "b"], "price": 10, "desc": "", "gone": true, "items": [{"n": 1}, {"n": 2}], "s": [1, 2, 3]});
    let b = json!({"id": 1, "name": "Kettle", "tags": ["b", "a"], "price": "10", "desc": null, "new": 1, "items": [{"n": 1}, {"n": 3}, {"n": 4}], "s": [1, 2, 3]});
    let mut got = diffs(&r, a, b);
    got.sort();
    let mut want = vec![
        ("/name".to_string(), Kind::Value),
        ("/tags".to_string(), Kind::ArrayOrder),
        ("/price".to_string(), Kind::Type),
        ("/desc".to_string(), Kind::Type),
        ("/gone".to_string(), Kind::Missing),
        ("/new".to_string(), Kind::Extra),
        ("/items/1/n".to_string(), Kind::Value),
        ("/items".to_string(), Kind::ArrayLength),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn fields_count_array_elements_together() {
    let r = Rules::new(&CompareRules::default());
    let c = compare(
        &r,
        &resp(json!({"items": [{"p": 1}, {"p": 2}]})),
        &resp(json!({"items": [{"p": 1}, {"p": 5}]})),
    );
    assert_eq!(c.differences[0].path, "/items/1/p");
    assert_eq!(c.differences[0].field, "/items/*/p");
    assert_eq!(c.differences[0].legacy.as_deref(), Some("2"));
    assert_eq!(c.differences[0].candidate.as_deref(), Some("5"));
}

#[test]
fn pointer_segments_are_escaped() {
    let r = Rules::new(&CompareRules::default());
    let got = diffs(&r, json!({"a/b": 1, "c~d": 1}), json!({"a/b": 2, "c~d": 2}));
    assert!(
        got.contains(&("/a~1b".to_string(), Kind::Value))
            && got.contains(&("/c~0d".to_string(), Kind::Value)),
        "{got:?}"
    );
}

#[test]
fn ignore_rules_remove_fields_and_subtrees() {
    let r = rules(|c| {
        c.ignore = vec![
            "/generated_at".into(),
            "/items/*/etag".into(),
            "/meta".into(),
        ]
    });
    let a = json!({"generated_at": "t1", "items": [{"etag": "x", "n": 1}], "meta": {"a": 1}});
    let b =
        json!({"generated_at": "t2", "items": [{"etag": "y", "n": 1}], "meta": {"a": 2, "b": 3}});
    assert!(diffs(&r, a, b).is_empty());
}

#[test]
fn unordered_arrays_compare_as_multisets() {
    let r = rules(|c| c.unordered_arrays = vec!["/tags".into()]);
    assert!(diffs(
        &r,
        json!({"tags": ["a", "b", "b"]}),
        json!({"tags": ["b", "a", "b"]})
    )
    .is_empty());
    let got = diffs(
        &r,
        json!({"tags": ["a", "b", "b"]}),
        json!({"tags": ["b", "a", "c"]}),
    );
    assert_eq!(
        got,
        vec![
            ("/tags".to_string(), Kind::Missing),
            ("/tags".to_string(), Kind::Extra)
        ]
    );
}

#[test]
fn numeric_tolerance_and_integer_float_equality() {
    let exact = Rules::new(&CompareRules::default());
    assert!(
        diffs(&exact, json!({"p": 1}), json!({"p": 1.0})).is_empty(),
        "1 and 1.0 are the same number"
    );
    assert_eq!(
        diffs(&exact, json!({"p": 1.0}), json!({"p": 1.001})).len(),
        1
    );
    let tol = rules(|c| c.numeric_tolerance = 0.01);
    assert!(diffs(&tol, json!({"p": 1.0}), json!({"p": 1.001})).is_empty());
    assert_eq!(diffs(&tol, json!({"p": 1.0}), json!({"p": 1.1})).len(), 1);
}

#[test]
fn status_and_headers() {
    let r = rules(|c| c.ignore_headers = vec!["x-cache".into()]);
    let a = Response::new(
        200,
        vec![
            ("Date".into(), "x".into()),
            ("X-Cache".into(), "HIT".into()),
            ("ETag".into(), "1".into()),
        ],
        b"{}".to_vec(),
    );
    let b = Response::new(
        404,
        vec![
            ("date".into(), "y".into()),
            ("x-cache".into(), "MISS".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        b"{}".to_vec(),
    );
    let got: Vec<(String, Kind)> = compare(&r, &a, &b)
        .differences
        .into_iter()
        .map(|d| (d.path, d.kind))
        .collect();
    assert_eq!(
        got,
        vec![
            ("status".to_string(), Kind::Status),
            ("header:cache-control".to_string(), Kind::Header),
            ("header:etag".to_string(), Kind::Header),
        ]
    );
}

#[test]
fn text_and_binary_bodies() {
    let r = Rules::new(&CompareRules::default());
    let text = |s: &str| {
        Response::new(
            200,
            vec![("content-type".into(), "text/plain".into())],
            s.as_bytes().to_vec(),
        )
    };
    let c = compare(&r, &text("a\nb\nc\n"), &text("a\nB\nc\n"));
    assert_eq!(c.differences[0].kind, Kind::Text);
    let u = c.unified_diff.expect("unified diff");
    assert!(u.contains("-b") && u.contains("+B"), "{u}");
    let bin = |b: &[u8]| Response::new(200, vec![], b.to_vec());
    let c = compare(&r, &bin(&[0xff, 0x00]), &bin(&[0xff, 0x01]));
    assert_eq!(c.differences[0].kind, Kind::Binary);
    assert!(compare(&r, &bin(&[0xff]), &bin(&[0xff])).is_match());
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        (-1000.0f64..1000.0).prop_map(Value::from),
        "[a-z]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-d]{1,2}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_rules() -> impl Strategy<Value = Rules> {
    let ptr = prop::collection::vec(
        prop_oneof![Just("*".to_string()), "[a-d]{1,2}", "[0-4]"],
        0..3,
    )
    .prop_map(|s| s.iter().map(|x| format!("/{x}")).collect::<String>());
    (
        prop::collection::vec(ptr.clone(), 0..3),
        prop::collection::vec(ptr, 0..3),
        0.0f64..5.0,
    )
        .prop_map(|(ignore, unordered, tol)| {
            rules(|c| {
                c.ignore = ignore;
                c.unordered_arrays = unordered;
                c.numeric_tolerance = tol;
            })
        })
}

/// Whether a difference found under rules is also found without them, at
/// the same place or below it.
fn covered(d: &Difference, without: &[Difference]) -> bool {
    without.iter().any(|w| {
        w.path == d.path || w.path.starts_with(&format!("{}/", d.path)) || (d.path.is_empty())
    })
}

proptest! {
    #[test]
    fn a_response_never_differs_from_itself(v in arb_json(), r in arb_rules()) {
        prop_assert!(compare(&r, &resp(v.clone()), &resp(v)).is_match());
        prop_assert!(compare(&Rules::none(), &resp(Value::Null), &resp(Value::Null)).is_match());
    }

    #[test]
    fn rules_only_ever_remove_differences(a in arb_json(), b in arb_json(), r in arb_rules()) {
        let without = compare(&Rules::none(), &resp(a.clone()), &resp(b.clone())).differences;
        let with = compare(&r, &resp(a), &resp(b)).differences;
        if without.is_empty() {
            prop_assert!(with.is_empty(), "rules added {with:?}");
        }
        for d in &with {
            prop_assert!(covered(d, &without), "{d:?} not among {without:?}");
        }
    }
}
