//! Golden files of this crate (`golden/`), through nox-core's assertion: `NOX_UPDATE_GOLDEN=1`
//! rewrites them instead of comparing; review the diff.

pub(crate) fn assert_golden(name: &str, actual: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
    nox_core::golden::assert_golden(&dir, name, actual);
}
