//! Tests of the GeoJSON loader: accepted shapes, every refusal with its feature and reason.

use super::*;

fn one(json: &str) -> Result<RawTerritory, Vec<TerritoryFileError>> {
    let (mut t, p) = parse(json);
    if p.is_empty() {
        Ok(t.remove(0))
    } else {
        Err(p)
    }
}

#[test]
fn reads_polygon_and_multipolygon_with_altitude() {
    let t = one(r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"id":"X"},
        "geometry":{"type":"MultiPolygon","coordinates":[[[[0,0,5],[1,0,5],[1,1,5],[0,0,5]]],[[[2,2],[3,2],[3,3],[2,2]]]]}}]}"#)
    .expect("valid");
    assert_eq!(&*t.id, "X");
    assert_eq!(t.rings.len(), 2);
    assert_eq!(t.rings[0][1], [1.0, 0.0]);
}

#[test]
fn feature_member_id_is_a_fallback() {
    let t = one(
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","id":"Y","properties":null,
        "geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}}]}"#,
    )
    .expect("valid");
    assert_eq!(&*t.id, "Y");
}

#[test]
fn names_each_problem() {
    let (t, p) = parse(
        r#"{"type":"FeatureCollection","features":[
        {"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}},
        {"type":"Feature","properties":{"id":"A"},"geometry":{"type":"Point","coordinates":[0,0]}},
        {"type":"Feature","properties":{"id":"B"},"geometry":{"type":"Polygon","coordinates":[]}},
        {"type":"Feature","properties":{"id":"C"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,91],[0,0]]]}},
        {"type":"Feature","properties":{"id":"D"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1]]]}},
        {"type":"Feature","properties":{"id":"E"},"geometry":{"type":"Polygon","coordinates":[[[179,0],[-179,0],[-179,1],[179,0]]]}},
        {"type":"Feature","properties":{"id":"F"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}},
        {"type":"Feature","properties":{"id":"F"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}},
        {"type":"Feature","properties":{"id":"G"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],["x",1],[0,0]]]}}
        ]}"#,
    );
    assert_eq!(t.len(), 1, "only the first F is good");
    let text: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert!(text[0].contains("feature #0") && text[0].contains("no territory id"));
    assert!(text[1].contains("\"A\"") && text[1].contains("Point"));
    assert!(text[2].contains("\"B\"") && text[2].contains("empty polygon"));
    assert!(text[3].contains("\"C\"") && text[3].contains("out of range"));
    assert!(text[4].contains("\"D\"") && text[4].contains("fewer than 4"));
    assert!(text[5].contains("\"E\"") && text[5].contains("±180"));
    assert!(text[6].contains("\"F\"") && text[6].contains("duplicate"));
    assert!(text[7].contains("\"G\"") && text[7].contains("bad coordinates"));
    assert_eq!(p.len(), 8);
}

fn feature(id: &str, coordinates: &str) -> String {
    format!(
        r#"{{"type":"Feature","properties":{{"id":"{id}"}},"geometry":{{"type":"Polygon","coordinates":{coordinates}}}}}"#
    )
}

fn collection(features: &[String]) -> String {
    format!(
        r#"{{"type":"FeatureCollection","features":[{}]}}"#,
        features.join(",")
    )
}

const SQUARE: &str = "[[[0,0],[1,0],[1,1],[0,0]]]";

#[test]
fn size_limits_name_the_feature_and_the_limit() {
    let small = Limits {
        file_bytes: 10_000,
        vertices_per_feature: 5,
        vertices_per_file: 9,
    };
    let (t, p) = parse_with(&collection(&[feature("A", SQUARE)]), &small);
    assert_eq!((t.len(), p.len()), (1, 0));

    let six = "[[[0,0],[1,0],[1,1],[0.5,1.5],[0,1],[0,0]]]";
    let (t, p) = parse_with(
        &collection(&[feature("A", six), feature("B", SQUARE)]),
        &small,
    );
    assert_eq!(&*t[0].id, "B", "only the feature over the limit is refused");
    assert_eq!(
        p,
        [TerritoryFileError::TooManyVertices {
            id: "A".into(),
            count: 6,
            limit: 5
        }]
    );
    assert_eq!(
        p[0].to_string(),
        "feature \"A\": 6 vertices, more than the limit of 5"
    );

    let three = ["A", "B", "C"].map(|id| feature(id, SQUARE));
    let (t, p) = parse_with(&collection(&three), &small);
    assert!(t.is_empty());
    assert_eq!(
        p,
        [TerritoryFileError::TooManyVerticesInFile {
            count: 12,
            limit: 9
        }]
    );
    assert_eq!(
        p[0].to_string(),
        "12 vertices in the file, more than the limit of 9"
    );

    let padded = format!("{}{}", collection(&[]), " ".repeat(10_000));
    let (_, p) = parse_with(&padded, &small);
    assert_eq!(
        p[0].to_string(),
        format!(
            "{} bytes of GeoJSON, more than the limit of 10000",
            padded.len()
        )
    );
}

#[test]
fn a_feature_over_the_vertex_limit_is_not_held_while_reading() {
    // One ring of MAX_VERTICES_PER_FEATURE + 1 positions (30 MB of text).
    let n = MAX_VERTICES_PER_FEATURE + 1;
    let mut ring = String::with_capacity(6 * n + 16);
    ring.push_str("[[");
    for _ in 0..n {
        ring.push_str("[0,0],");
    }
    ring.pop();
    ring.push_str("]]");
    let (t, p) = parse(&collection(&[feature("HUGE", &ring)]));
    assert!(t.is_empty());
    assert_eq!(
        p,
        [TerritoryFileError::TooManyVertices {
            id: "HUGE".into(),
            count: n,
            limit: MAX_VERTICES_PER_FEATURE
        }]
    );
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let n = 1_000_000;
    let deep = format!("{}{}", "[".repeat(n), "]".repeat(n));
    // A bare `[[…]]` is refused as not a FeatureCollection before it gets deep.
    let (_, p) = parse(&deep);
    assert!(
        matches!(&p[..], [TerritoryFileError::NotFeatureCollection(_)]),
        "{p:?}"
    );
    let too_deep = [
        format!(r#"{{"type":"FeatureCollection","features":{deep}}}"#),
        format!(
            r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","properties":{{"id":"A","x":{deep}}},"geometry":null}}]}}"#
        ),
    ];
    let coordinates = collection(&[feature("A", &deep), feature("B", SQUARE)]);
    // A small stack (a quarter of a tokio blocking thread's): serde_json's depth limit, and
    // skipping what is deeper than a MultiPolygon without recursion, keep this safe, not a
    // big main-thread stack.
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            for c in &too_deep {
                let (t, p) = parse(c);
                assert!(t.is_empty());
                assert!(
                    matches!(&p[..], [TerritoryFileError::TooDeep { .. }]),
                    "{p:?}"
                );
                assert!(p[0].to_string().contains("limit of 128 levels"), "{}", p[0]);
            }
            // Inside coordinates only that feature is refused.
            let (t, p) = parse(&coordinates);
            assert_eq!(t.len(), 1);
            assert_eq!(
                p[0].to_string(),
                "feature \"A\": bad coordinates: arrays nested deeper than a MultiPolygon"
            );
        })
        .expect("thread")
        .join()
        .expect("no stack overflow");
    // Unclosed: a syntax error, found without recursing either.
    let (_, p) = parse(&format!(
        r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","properties":{{"id":"A"}},"geometry":{{"type":"Polygon","coordinates":{}"#,
        "[".repeat(n)
    ));
    assert!(
        matches!(&p[..], [TerritoryFileError::NotFeatureCollection(_)]),
        "{p:?}"
    );
}

#[test]
fn long_ids_are_refused_without_repeating_them() {
    let long = "X".repeat(MAX_ID_LEN + 1);
    let (t, p) = parse(&collection(&[
        feature(&long, SQUARE),
        feature(&"Y".repeat(MAX_ID_LEN), SQUARE),
    ]));
    assert_eq!(t.len(), 1);
    assert_eq!(
        p,
        [TerritoryFileError::IdTooLong {
            index: 0,
            len: MAX_ID_LEN + 1
        }]
    );
    assert!(!p[0].to_string().contains(&long));
}

#[test]
fn every_coordinate_breakage_is_named() {
    let cases = [
        ("[[[0,0],[1,0],[1,1],[0,1]]]", "ring 0: not closed"),
        (
            "[[[0,0],[0,0],[0,0],[0,0]]]",
            "ring 0: all positions are the same point",
        ),
        (
            "[[[0,0],[1,0],[1,1],[0,0]],[0,0]]",
            "arrays of different nesting side by side",
        ),
        ("[[[0,0],[1,0],null,[0,0]]]", "a coordinate is null"),
        (
            "[[[0,0],[1,0],[true,1],[0,0]]]",
            "a coordinate is a boolean",
        ),
        (
            "[[[0,0],[1,0],{\"x\":1},[0,0]]]",
            "an object inside coordinates",
        ),
        (
            "[[[0,0],[1],[1,1],[0,0]]]",
            "a position needs a longitude and a latitude",
        ),
        (
            "[[[[0,0],[1,0],[1,1],[0,0]]]]",
            "nesting depth 4 does not fit Polygon",
        ),
        ("[0,0]", "coordinates must be an array of rings"),
        ("null", "no coordinates member"),
        (
            "[[[0,0],[1,0],[1,1e400],[0,0]]]",
            "not a GeoJSON FeatureCollection",
        ),
    ];
    for (coordinates, want) in cases {
        let (t, p) = parse(&collection(&[feature("A", coordinates)]));
        assert!(t.is_empty(), "{coordinates}");
        assert_eq!(p.len(), 1, "{coordinates}: {p:?}");
        assert!(p[0].to_string().contains(want), "{coordinates}: {}", p[0]);
    }
}

#[test]
fn quoted_text_is_shortened() {
    let long = "Q".repeat(10_000);
    let (_, p) = parse(&format!(r#"{{"type":"{long}","features":[]}}"#));
    assert_eq!(
        p[0].to_string(),
        format!(
            "not a GeoJSON FeatureCollection: type is \"{}… (10000 bytes)\"",
            "Q".repeat(80)
        )
    );
    let (_, p) = parse(&format!(
        r#"{{"type":"FeatureCollection","features":"{long}"}}"#
    ));
    let msg = p[0].to_string();
    assert!(
        msg.len() < 250 && msg.ends_with("at line 1 column 10041"),
        "{msg}"
    );
    let (_, p) = parse(&collection(&[format!(
        r#"{{"type":"Feature","properties":{{"id":"A"}},"geometry":{{"type":"{long}"}}}}"#
    )]));
    assert!(p[0].to_string().len() < 250, "{}", p[0]);
}

#[test]
fn not_a_feature_collection() {
    let (_, p) = parse(r#"{"type":"Feature","features":[]}"#);
    assert!(matches!(p[0], TerritoryFileError::NotFeatureCollection(_)));
    let (_, p) = parse("{");
    assert!(matches!(p[0], TerritoryFileError::NotFeatureCollection(_)));
}
