//! Tests of the licence file readers: nesting depth and size limits per format.

use super::*;

#[test]
fn deeply_nested_toml_is_refused_without_overflowing_the_stack() {
    let n = 100_000;
    let cases = [
        format!("x = {}{}\n", "[".repeat(n), "]".repeat(n)),
        format!("x = {}{}\n", "{a = ".repeat(n), "}".repeat(n)),
        format!("{} = 1\n", vec!["a"; n].join(".")),
    ];
    // A small stack (a quarter of a tokio blocking thread's): toml's own depth limit keeps
    // this safe.
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            for c in &cases {
                let p = toml_format::parse("licenses/deep.toml", c).err();
                assert_eq!(p.map(|p| p.file).as_deref(), Some("licenses/deep.toml"));
            }
        })
        .expect("thread")
        .join()
        .expect("no stack overflow");
}

#[test]
fn file_size_limits_by_format() {
    assert_eq!(
        LimitError::check_file_size("licenses/a.csv", MAX_BULK_FILE_BYTES),
        Ok(())
    );
    assert_eq!(
        LimitError::check_file_size("licenses/a.toml", MAX_TOML_FILE_BYTES),
        Ok(())
    );
    let e =
        LimitError::check_file_size("licenses/a.csv", MAX_BULK_FILE_BYTES + 1).expect_err("over");
    assert_eq!(
        e.to_string(),
        "licenses/a.csv: 536870913 bytes, more than the limit of 536870912 for a bulk CSV licence file"
    );
    assert_eq!(
        Problem::from(e).to_string(),
        "licenses/a.csv: 536870913 bytes, more than the limit of 536870912 for a bulk CSV licence file"
    );
    let e =
        LimitError::check_file_size("licenses/a.toml", MAX_TOML_FILE_BYTES + 1).expect_err("over");
    assert_eq!(
        Problem::from(e.clone()).to_string(),
        e.to_string(),
        "the problem reads like the error"
    );
    let e = LimitError::TerritoriesPerDeal {
        file: "licenses/a.toml".into(),
        deal: "d".into(),
        count: 5001,
    };
    assert_eq!(
        e.to_string(),
        "licenses/a.toml: deal \"d\": 5001 territories, more than the limit of 5000"
    );
    assert_eq!(Problem::from(e.clone()).to_string(), e.to_string());
}
