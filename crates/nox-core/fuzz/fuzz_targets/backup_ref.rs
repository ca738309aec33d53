//! What the user types to name a backup (`[s3:][REMOTE:]NAME[/ID]`): bad input, or a
//! reference that prints as exactly what was typed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nox_core::backup::{is_id, BackupRef};

fuzz_target!(|s: &str| {
    match s.parse::<BackupRef>() {
        Ok(r) => {
            assert_eq!(r.to_string(), s);
            assert_eq!(s.parse::<BackupRef>().ok(), Some(r.clone()));
            assert!(r.id.as_deref().is_none_or(is_id));
            // An id is safe as a path component and an S3 key part.
            assert!(!r.id.as_deref().unwrap_or("").contains(['/', '.']));
        }
        Err(e) => assert!(e.is_bad_input(), "{s:?}: {e}"),
    }
});
