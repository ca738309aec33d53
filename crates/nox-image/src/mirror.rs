//! Which archive to build from: the host's own apt source for that distribution when it has
//! one (an air-gapped host reaches only its mirror), else the distribution's default.

use std::path::PathBuf;

use nox_core::config::BuildConfig;
use nox_core::image_build::{Distribution, Release};

/// The archive URI for `release`: `[build]`'s key if set, else the host's apt source that
/// serves the suite, else the distribution's public archive.
pub fn archive_for(release: Release, config: &BuildConfig) -> String {
    let configured = match release.distribution {
        Distribution::Debian => &config.debian_mirror,
        Distribution::Ubuntu => &config.ubuntu_mirror,
    };
    if !configured.is_empty() {
        return configured.clone();
    }
    let host = host_sources();
    // A host mirror serves any suite of its distribution, not only the host's own release.
    let host_suite = match release.distribution {
        Distribution::Debian => "bookworm",
        Distribution::Ubuntu => release.suite,
    };
    if let Some((uri, _)) = apt_source(&host, release.suite).or_else(|| {
        (release.distribution == Distribution::Debian)
            .then(|| apt_source(&host, host_suite))
            .flatten()
    }) {
        return uri;
    }
    match release.distribution {
        Distribution::Debian => "http://deb.debian.org/debian".into(),
        Distribution::Ubuntu if nox_core::fetch::debian_arch() == "amd64" => {
            "http://archive.ubuntu.com/ubuntu".into()
        }
        Distribution::Ubuntu => "http://ports.ubuntu.com/ubuntu-ports".into(),
    }
}

/// The text of every apt source file of this host, one-line and deb822 alike.
pub fn host_sources() -> String {
    let mut text = String::new();
    for path in apt_source_files() {
        text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        text.push_str("\n\n");
    }
    text
}

fn apt_source_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<_> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files.into_iter().filter(|p| p.is_file()).collect()
}

/// The URI (and keyring, for deb822 stanzas) of the source that serves `suite`, from either
/// the one-line or the deb822 format.
pub fn apt_source(sources: &str, suite: &str) -> Option<(String, Option<String>)> {
    // deb822: stanzas separated by blank lines.
    for stanza in sources.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(|v| v.trim().to_string())
            })
        };
        if let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) {
            if suites.split_whitespace().any(|s| s == suite) {
                let uri = uris.split_whitespace().next()?.to_string();
                return Some((uri, field("Signed-By")));
            }
        }
    }
    // One-line format: deb [options] URI SUITE COMPONENTS...
    for line in sources.lines() {
        let Some(rest) = line.trim().strip_prefix("deb ") else {
            continue;
        };
        let rest = match rest.trim_start().strip_prefix('[') {
            Some(r) => r.split_once(']').map(|(_, r)| r).unwrap_or(""),
            None => rest,
        };
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(s)) = (words.next(), words.next()) {
            if s == suite {
                return Some((uri.to_string(), None));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::apt_source;

    #[test]
    fn finds_the_source_in_deb822() {
        let src = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
                   Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                   Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            apt_source(src, "bookworm"),
            Some((
                "http://mirror.example/debian".into(),
                Some("/usr/share/keyrings/debian-archive-keyring.gpg".into())
            ))
        );
        assert_eq!(
            apt_source(src, "bookworm-security").unwrap().0,
            "http://mirror.example/debian-security"
        );
    }

    #[test]
    fn finds_the_source_in_one_line_format() {
        let src = "deb [arch=amd64] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            apt_source(src, "bookworm"),
            Some(("http://mirror.example/debian".into(), None))
        );
    }

    #[test]
    fn another_suite_is_none() {
        assert_eq!(
            apt_source("deb http://x/debian trixie main\n", "bookworm"),
            None
        );
    }
}
