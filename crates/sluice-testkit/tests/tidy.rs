//! Tidy checks over the workspace's own sources: every Rust file under
//! `crates/` and `bench/` (build output in `target/` aside) opens with a
//! `//!` doc saying what the module is for.

use std::path::{Path, PathBuf};

/// The workspace root, two levels above this crate.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file below `dir`, skipping `target` directories.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
            .path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name != "target") {
                rust_files(&path, found);
            }
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_module_opens_with_its_doc() {
    let root = root();
    let mut files = Vec::new();
    for dir in ["crates", "bench"] {
        rust_files(&root.join(dir), &mut files);
    }
    // The walk found the workspace, this file among it.
    assert!(
        files
            .iter()
            .any(|file| file.ends_with("sluice-testkit/tests/tidy.rs")),
        "the walk of {} found no sources",
        root.display()
    );
    let mut undocumented: Vec<String> = files
        .iter()
        .filter(|file| {
            let text = std::fs::read_to_string(file)
                .unwrap_or_else(|error| panic!("reading {}: {error}", file.display()));
            !text.starts_with("//!")
        })
        .map(|file| {
            file.strip_prefix(&root)
                .unwrap_or(file)
                .display()
                .to_string()
        })
        .collect();
    undocumented.sort();
    assert!(
        undocumented.is_empty(),
        "every module opens with a `//!` doc saying what it is for; these do not:\n{}",
        undocumented.join("\n")
    );
}
