//! The library's modules form layers along the request's path, and a module uses only its own
//! layer's neighbours and the layers below it: no import upwards, so no circle. Read from the
//! sources: every `crate::NAME` outside comments in `src/` (the binary, `src/main.rs` and
//! `src/cli/`, sits on top and may use anything).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bottom to top. Modules in one layer may use each other.
const LAYERS: &[&[&str]] = &[
    &["privacy", "problem", "headers", "filemap", "progress"],
    &["territory"],
    &["license"],
    &["locate"],
    &["snapshot"],
    &["decide", "diff"],
    &["ddex", "map", "grant"],
    &["route"],
    &["config"],
    &["gate"],
    &["server"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/locate/ip.rs` -> `locate`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_owned()
}

/// The `crate::NAME` references of a source text, comments (`//`) left out.
fn crate_refs(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // A grouped `crate::{a, b}` would hide its names from this check.
            assert!(
                !after.starts_with('{'),
                "line {}: use crate::{{...}} groups: name each module on its own",
                n + 1
            );
            out.push((n + 1, name));
            rest = after;
        }
    }
    out
}

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut upward = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for f in &files {
        let module = module_of(&src, f);
        // The binary (`main.rs` and its `cli/` modules) sits on top and may use anything.
        if module == "main" || module == "lib" || module == "cli" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            panic!("{}: module {module} is in no layer of LAYERS", f.display());
        };
        let text = std::fs::read_to_string(f).expect("source");
        for (line, used) in crate_refs(&text) {
            if used == module {
                continue;
            }
            *seen.entry(used.clone()).or_default() += 1;
            let Some(theirs) = layer_of(&used) else {
                panic!("{}:{line}: crate::{used} is in no layer", f.display());
            };
            if theirs > own {
                upward.push(format!(
                    "{}:{line}: {module} (layer {own}) uses {used} (layer {theirs})",
                    f.display()
                ));
            }
        }
    }
    assert!(upward.is_empty(), "imports upwards:\n{}", upward.join("\n"));
    // The check saw the imports it is about (a parser that finds nothing passes anything).
    for m in [
        "snapshot", "decide", "gate", "config", "locate", "filemap", "route",
    ] {
        assert!(seen.contains_key(m), "no crate::{m} found: {seen:?}");
    }
}

#[test]
fn the_reader_sees_what_it_should() {
    let text = "use crate::snapshot::Snapshot;\n// crate::server in a comment\n\
                let x = crate::gate::gather(a, crate::decide::X);\n";
    let refs = crate_refs(text);
    assert_eq!(
        refs,
        vec![
            (1, "snapshot".to_owned()),
            (3, "gate".to_owned()),
            (3, "decide".to_owned())
        ]
    );
}

/// The longest a source file of the library, the binary or the benches may be without a
/// reason written in its first ten lines (the integration tests are not held to it).
const MAX_LINES: usize = 800;

#[test]
fn no_source_file_is_over_800_lines_without_a_reason() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut long = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("source");
        let lines = text.lines().count();
        let reason = text
            .lines()
            .take(10)
            .any(|l| l.contains("over 800 lines because"));
        if lines > MAX_LINES && !reason {
            long.push(format!("{}: {lines} lines", f.display()));
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines with no \"over 800 lines because\" in the first ten:\n{}",
        long.join("\n")
    );
    assert!(files.len() > 40, "found only {} files", files.len());
    assert!(
        files.iter().any(|f| f.ends_with("src/gate.rs")),
        "the walk missed src/gate.rs"
    );
}
