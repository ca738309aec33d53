//! Backup manifests as read from a store or a bucket (anybody could have edited them):
//! refused, or a manifest whose ids are ids and that writes and reads back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nox_core::backup::{is_id, Manifest};

fuzz_target!(|bytes: &[u8]| {
    let Ok(m) = Manifest::parse(bytes, "fuzz/manifest.json") else {
        return;
    };
    assert!(is_id(&m.id));
    assert!(m.parent.as_deref().is_none_or(is_id));
    let json = m.to_json();
    let back = Manifest::parse(json.as_bytes(), "written").expect("a written manifest reads");
    assert_eq!(back, m);
    assert_eq!(back.to_json(), json);
});
