//! Instance names, remote names, `REMOTE:NAME` references, interface names and `--network`
//! values: whatever the user types is either refused or reads back as exactly what was typed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nox_core::instance::{is_interface_name, NetworkSpec};
use nox_core::{InstanceName, InstanceRef, RemoteName};

/// The hostname rule, written out separately from nox's: 1 to 63 of [a-z0-9-], a letter
/// first, no '-' last.
fn hostname_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fuzz_target!(|s: &str| {
    let name = InstanceName::new(s);
    assert_eq!(name.is_ok(), hostname_label(s), "{s:?}");
    if let Ok(n) = &name {
        assert_eq!(n.to_string(), s);
        assert!(InstanceName::from_record(s).is_ok());
    } else {
        assert!(name.unwrap_err().is_bad_input());
    }
    if let Ok(n) = InstanceName::from_record(s) {
        // An older record may end in '-', never anything a path or domain name cannot take.
        assert!(hostname_label(s.trim_end_matches('-')), "{s:?}");
        assert_eq!(n.as_str(), s);
    }

    match RemoteName::new(s) {
        Ok(r) => {
            assert!(hostname_label(s) && s != "s3", "{s:?}");
            assert_eq!(r.as_str(), s);
        }
        Err(e) => assert!(e.is_bad_input()),
    }

    match s.parse::<InstanceRef>() {
        Ok(r) => {
            assert_eq!(r.to_string(), s);
            assert_eq!(r.to_string().parse::<InstanceRef>().ok(), Some(r));
        }
        Err(e) => assert!(e.is_bad_input()),
    }

    if is_interface_name(s) {
        // The kernel's dev_valid_name, which nox's rule narrows.
        assert!(
            !s.is_empty() && s.len() <= 15 && s != "." && s != "..",
            "{s:?}"
        );
        assert!(!s.contains(|c: char| c == '/' || c == ':' || c.is_whitespace() || c == '\0'));
    }

    match s.parse::<NetworkSpec>() {
        Ok(n) => {
            assert_eq!(n.to_string(), s);
            assert_eq!(n.to_string().parse::<NetworkSpec>().ok(), Some(n));
        }
        Err(e) => assert!(e.is_bad_input()),
    }
});
