//! `nox cp`'s vocabulary: which side of a copy is in an instance, and how a guest path is
//! written on the command line.
//!
//! Syntax: `[REMOTE:]NAME:/ABSOLUTE/PATH` is a path in an instance; anything else is a host
//! path. The instance part is everything before the first `/`, and it must end in `:`, so a
//! host path with a colon stays a host path when written with a `/` in front of the colon
//! (`./a:b`, `/tmp/a:b`). Guest paths must be absolute: `web:etc/x` is refused, which also
//! catches a relative host path with a colon (`a:b`) instead of guessing.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::name::InstanceRef;

/// One side of `nox cp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyEnd {
    Host(PathBuf),
    Guest { at: InstanceRef, path: String },
}

impl CopyEnd {
    pub fn parse(arg: &str) -> Result<CopyEnd> {
        if arg.is_empty() {
            return Err(Error::Usage(
                "an empty path: give a host path or NAME:/PATH".into(),
            ));
        }
        let head = arg.split('/').next().unwrap_or_default();
        if !head.contains(':') {
            return Ok(CopyEnd::Host(PathBuf::from(arg)));
        }
        let Some(colon) = head.rfind(':') else {
            return Ok(CopyEnd::Host(PathBuf::from(arg)));
        };
        let (instance, path) = (&arg[..colon], &arg[colon + 1..]);
        if !path.starts_with('/') {
            return Err(Error::Usage(format!(
                "{arg:?}: a path in an instance must be absolute (NAME:/path); a host path with a ':' is written ./{arg}"
            )));
        }
        if path.contains('\0') {
            return Err(Error::Usage(format!(
                "{arg:?}: a path cannot hold a NUL byte"
            )));
        }
        let at: InstanceRef = instance.parse()?;
        Ok(CopyEnd::Guest {
            at,
            path: path.to_string(),
        })
    }
}

/// What a file or directory is, as `nox cp` copies it (symlinks are copied as links, never
/// followed inside a tree, like `cp -a`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Devices, sockets, fifos: skipped with a warning.
    Other,
}

/// What a backend without file copy says: one line, and what to do instead.
pub fn unsupported(remote: Option<&str>, name: &crate::name::InstanceName) -> Error {
    let at = match remote {
        Some(r) => format!("{r}:{name}"),
        None => name.to_string(),
    };
    Error::Refused {
        message: format!("nox cp does not reach {at}: remote instances cannot copy files yet"),
        hint: format!("pipe through exec instead: nox exec {at} -- cat /path > file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(s: &str) -> (Option<String>, String, String) {
        match CopyEnd::parse(s).unwrap() {
            CopyEnd::Guest { at, path } => {
                (at.remote().map(str::to_string), at.name.to_string(), path)
            }
            CopyEnd::Host(p) => panic!("{s} parsed as host path {p:?}"),
        }
    }

    #[test]
    fn instance_paths_are_name_colon_absolute_path() {
        assert_eq!(guest("web:/etc/x"), (None, "web".into(), "/etc/x".into()));
        assert_eq!(
            guest("lab:web:/a:b/c"),
            (Some("lab".into()), "web".into(), "/a:b/c".into())
        );
        assert_eq!(guest("web:/"), (None, "web".into(), "/".into()));
    }

    #[test]
    fn anything_else_is_a_host_path() {
        for s in ["/etc/x", "./a:b", "x", "dir/a:b", "/tmp/a:b", "../w:/x"] {
            assert_eq!(CopyEnd::parse(s).unwrap(), CopyEnd::Host(s.into()), "{s}");
        }
    }

    #[test]
    fn relative_guest_paths_and_bad_names_are_usage_errors() {
        for s in [
            "web:etc",
            "a:b",
            "Web:/x",
            ":/x",
            "",
            "a:b:c:/x",
            "web:/a\0b",
        ] {
            let e = CopyEnd::parse(s).unwrap_err();
            assert!(e.is_bad_input(), "{s}: {e}");
        }
        let e = CopyEnd::parse("a:b").unwrap_err();
        assert!(e.to_string().contains("./a:b"), "{e}");
    }
}
