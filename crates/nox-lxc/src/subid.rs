//! root's subordinate uid/gid ranges (`/etc/subuid`, `/etc/subgid`), which unprivileged
//! containers are mapped into.

/// One `user:start:count` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIdRange {
    pub start: u32,
    pub count: u32,
}

/// An unprivileged container maps 65536 ids (uid 0..65535 in the guest), as LXC and Incus do.
pub const NEEDED: u32 = 65536;

/// The first range of `user` (by name or uid) that is big enough, from file text.
pub fn find_range(text: &str, user: &str, uid: u32) -> Option<SubIdRange> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.trim().split(':');
            let (who, start, count) = (parts.next()?, parts.next()?, parts.next()?);
            if who != user && who.parse::<u32>().ok() != Some(uid) {
                return None;
            }
            Some(SubIdRange {
                start: start.parse().ok()?,
                count: count.parse().ok()?,
            })
        })
        .find(|r| r.count >= NEEDED)
}

/// Reads root's range from `path`.
pub fn root_range(path: &str) -> Option<SubIdRange> {
    let text = std::fs::read_to_string(path).ok()?;
    find_range(&text, "root", 0)
}

/// root's uid and gid ranges, which every unprivileged container is mapped into, or the
/// error that says how to add them.
pub fn root_ranges() -> Result<(SubIdRange, SubIdRange), nox_core::Error> {
    match (root_range("/etc/subuid"), root_range("/etc/subgid")) {
        (Some(uid), Some(gid)) => Ok((uid, gid)),
        _ => Err(nox_core::Error::failed(
            "root has no subordinate id range of 65536 in /etc/subuid and /etc/subgid, which unprivileged containers need",
            "add the line `root:100000:65536` to both /etc/subuid and /etc/subgid",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_roots_range() {
        let cases: &[(&str, Option<(u32, u32)>)] = &[
            ("root:100000:65536\n", Some((100000, 65536))),
            (
                "alice:100000:65536\nroot:165536:65536\n",
                Some((165536, 65536)),
            ),
            ("0:200000:1000000\n", Some((200000, 1000000))),
            ("root:100000:1000\n", None),
            (
                "root:100000:1000\nroot:300000:65536\n",
                Some((300000, 65536)),
            ),
            ("alice:100000:65536\n", None),
            ("root:x:65536\n", None),
            ("", None),
        ];
        for (text, want) in cases {
            let got = find_range(text, "root", 0).map(|r| (r.start, r.count));
            assert_eq!(got, *want, "{text:?}");
        }
    }
}
