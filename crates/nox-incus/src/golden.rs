//! Golden files for request bodies and generated files: `NOX_UPDATE_GOLDEN=1` rewrites them
//! instead of comparing (the convention of nox's other crates); review the diff.

use std::path::Path;

pub(crate) fn assert_golden(name: &str, actual: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
    let path = dir.join(name);
    if std::env::var_os("NOX_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(&dir).expect("creating the golden directory");
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
