//! Golden-file assertions for generated artefacts (domain XML, LXC config, cloud-init), shared
//! by every crate's unit tests. `NOX_UPDATE_GOLDEN=1` rewrites the files instead of comparing;
//! review the diff before committing it.

use std::path::Path;

/// Asserts `actual` equals `dir/name`.
pub fn assert_golden(dir: &Path, name: &str, actual: &str) {
    let path = dir.join(name);
    if std::env::var_os("NOX_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(dir).expect("creating the golden directory");
        std::fs::write(&path, actual).expect("writing a golden file");
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing golden file {}; run with NOX_UPDATE_GOLDEN=1",
            path.display()
        )
    });
    assert_eq!(actual, expected, "golden file {} differs", path.display());
}
