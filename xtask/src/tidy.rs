//! Tidy tests over nox's sources (ordinary `#[test]`s, as rust-analyzer keeps its own): rules
//! a reviewer would otherwise have to check by eye on every change.
//!
//! Bad input never panics (docs/testing.md): outside tests, no `.unwrap()`, and an
//! `.expect("...")` only where the message states an invariant nothing a user gives or the
//! host reports can break, listed below with its file. The scan is textual: a file's code
//! ends at its first `#[cfg(test)]` (every crate keeps its unit tests last), and files that
//! exist only for tests are skipped. Other panics (indexing, `panic!`) are not matched here;
//! docs/testing.md says how they were audited.

use std::path::{Path, PathBuf};

use crate::util::project_root;

/// `.expect` messages that state invariants, by file (relative to the repository root).
const INVARIANT_EXPECTS: &[(&str, &str)] = &[
    // serde_json and toml serialize these types for any value they hold: string keys, no
    // NaN, no None inside an array.
    (
        "crates/nox-core/src/backup/manifest.rs",
        "manifest serializes",
    ),
    (
        "crates/nox-core/src/cloud_init.rs",
        "cloud-init documents serialize",
    ),
    ("crates/nox-core/src/config.rs", "config serializes"),
    ("crates/nox-core/src/config.rs", "defaults serialize"),
    ("crates/nox-core/src/config.rs", "valid built-in"),
    ("crates/nox-libvirt/src/record.rs", "record serializes"),
    ("crates/nox-libvirt/src/template.rs", "note serializes"),
    ("crates/nox-lxc/src/record.rs", "serializes"),
    ("crates/nox-incus/src/images.rs", "strings serialize"),
    ("crates/nox-incus/src/token.rs", "a token serializes"),
    (
        "crates/nox-incus/src/transport.rs",
        "request bodies serialize",
    ),
    ("crates/nox-cli/src/commands/config.rs", "origin serializes"),
    // A tar of one fixed name written into a Vec cannot fail.
    (
        "crates/nox-incus/src/images.rs",
        "writing a tar into memory",
    ),
    // The only constructor, TrustToken::decode, parses the fingerprint before returning.
    (
        "crates/nox-incus/src/token.rs",
        "decode() checked the fingerprint",
    ),
    // Joining threads whose bodies return errors instead of panicking.
    (
        "crates/nox-libvirt/src/list.rs",
        "listing a domain does not panic",
    ),
    (
        "crates/nox-lxc/src/exec_io.rs",
        "the output pump does not panic",
    ),
    (
        "crates/nox-s3/src/lib.rs",
        "the download thread does not panic",
    ),
    // Test helpers compiled into the library for other crates' tests (`golden`).
    (
        "crates/nox-core/src/golden.rs",
        "creating the golden directory",
    ),
    ("crates/nox-core/src/golden.rs", "writing a golden file"),
    // `nox cp` for containers: threads that copy between pipes and return their errors.
    (
        "crates/nox-lxc/src/file_copy.rs",
        "the copier does not panic",
    ),
    (
        "crates/nox-lxc/src/file_copy.rs",
        "the feeder does not panic",
    ),
    (
        "crates/nox-lxc/src/file_copy.rs",
        "the stderr reader does not panic",
    ),
];

/// Files that exist only for tests (declared under `#[cfg(test)]` or a test feature).
fn test_only(rel: &str) -> bool {
    rel.ends_with("tests.rs")
        || rel.ends_with("/testing.rs")
        || rel.ends_with("/strategies.rs")
        || rel == "crates/nox-core/src/host/fake.rs"
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `.unwrap()` and `.expect(` in non-test code: (file, line number, line).
fn panicking_calls() -> Vec<(String, usize, String)> {
    let root = project_root();
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        sources(&krate.path().join("src"), &mut files);
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut found = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if test_only(&rel) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start() == "#[cfg(test)]" {
                // `#[cfg(test)] mod x;` declares a test file (skipped above); a test module
                // inline is the end of the file's code.
                if text
                    .lines()
                    .nth(n + 1)
                    .is_some_and(|l| l.trim_end().ends_with('{'))
                {
                    break;
                }
                continue;
            }
            // Whole-line comments (docs) may name these; code after a `//` inside a string
            // literal (a URL) must still be seen, so trailing comments are not cut.
            if line.trim_start().starts_with("//") {
                continue;
            }
            if line.contains(".unwrap()") || line.contains(".expect(") {
                found.push((rel.clone(), n + 1, line.trim().to_string()));
            }
        }
    }
    found
}

#[test]
fn no_unwrap_and_only_invariant_expects_outside_tests() {
    let mut used = vec![false; INVARIANT_EXPECTS.len()];
    let mut bad = Vec::new();
    for (file, n, line) in panicking_calls() {
        let allowed = INVARIANT_EXPECTS
            .iter()
            .position(|(f, msg)| *f == file && line.contains(&format!(".expect(\"{msg}\")")));
        match allowed {
            Some(i) if !line.contains(".unwrap()") => used[i] = true,
            _ => bad.push(format!("{file}:{n}: {line}")),
        }
    }
    assert!(
        bad.is_empty(),
        "input or the host could reach these panics; return an error instead (or, for a true \
         invariant, an .expect whose message states it, listed in xtask/src/tidy.rs):\n{}",
        bad.join("\n")
    );
    let stale: Vec<_> = INVARIANT_EXPECTS
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|((f, m), _)| format!("{f}: {m:?}"))
        .collect();
    assert!(stale.is_empty(), "listed but gone, remove them: {stale:?}");
}
