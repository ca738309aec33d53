//! The config loader: TOML text, one file or two layered (split at a 0xFF byte, which UTF-8
//! never holds), is refused with a config error or loads into a config that writes out as
//! TOML and loads back as itself.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use nox_core::config::{load_texts, parse_file};

fuzz_target!(|bytes: &[u8]| {
    let mut texts = Vec::new();
    for (i, part) in bytes.splitn(2, |b| *b == 0xff).enumerate() {
        let Ok(text) = std::str::from_utf8(part) else {
            return;
        };
        texts.push((
            PathBuf::from(format!("/fuzz/layer{i}.toml")),
            text.to_string(),
        ));
    }
    let each_ok = texts.iter().all(|(p, t)| parse_file(p, t).is_ok());
    let loaded = match load_texts(texts, &[]) {
        Ok(l) => l,
        Err(e) => {
            assert!(e.is_bad_input(), "{e}");
            // Files that pass on their own must layer: no error may appear only once merged.
            assert!(!each_ok, "every layer parses, the merge does not: {e}");
            return;
        }
    };
    let _ = loaded.leaves();
    let written = toml::to_string(&loaded.config).expect("a config writes as TOML");
    let back = load_texts(
        vec![(PathBuf::from("/fuzz/written.toml"), written.clone())],
        &[],
    )
    .unwrap_or_else(|e| panic!("a written config loads: {e}\n{written}"));
    assert_eq!(back.config, loaded.config, "{written}");
});
