//! Incremental chains: which backups a backup needs, how long the newest chain is, and what
//! retention may remove. Pure functions over manifests.

use super::manifest::Manifest;
use super::store::LocalBackup;
use crate::error::{Error, Result};

/// The parent walk every chain function shares: `start`, its parent, its parent's parent...
/// up to a full backup, or up to a parent `all` does not hold (`Err(missing id)`). Manifests
/// are files anybody with access to the store (or a bucket) could edit, so a parent link that
/// comes back to a backup already walked is refused rather than followed forever.
fn walk<'a>(all: &'a [Manifest], start: &'a Manifest) -> Result<Vec<&'a Manifest>, Walk> {
    let mut chain = vec![start];
    let mut cur = start;
    while let Some(p) = &cur.parent {
        if chain.iter().any(|m| &m.id == p) {
            return Err(Walk::Cycle(p.clone()));
        }
        cur = all
            .iter()
            .find(|m| &m.id == p)
            .ok_or_else(|| Walk::Missing(p.clone()))?;
        chain.push(cur);
    }
    Ok(chain)
}

enum Walk {
    Missing(String),
    Cycle(String),
}

/// `b`'s chain among `all` (one instance's backups): its full backup first, `b` last.
pub fn chain_of(all: &[LocalBackup], b: &LocalBackup) -> Result<Vec<LocalBackup>> {
    let manifests: Vec<Manifest> = all.iter().map(|x| x.manifest.clone()).collect();
    let m = &b.manifest;
    let ids: Vec<String> = match walk(&manifests, m) {
        Ok(chain) => chain.iter().map(|x| x.id.clone()).collect(),
        Err(Walk::Missing(parent)) => {
            return Err(Error::failed(
                format!(
                    "backup {}/{} needs {}/{parent}, which is missing",
                    m.instance, m.id, m.instance
                ),
                "an incremental backup restores only with every backup before it back to its full backup",
            ))
        }
        Err(Walk::Cycle(at)) => return Err(cycle(m, &at)),
    };
    let mut chain: Vec<LocalBackup> = ids
        .iter()
        .skip(1)
        .filter_map(|id| all.iter().find(|x| &x.manifest.id == id).cloned())
        .collect();
    chain.reverse();
    chain.push(b.clone());
    Ok(chain)
}

/// The refusal of a chain whose parent links loop back at `at`.
pub fn cycle(m: &Manifest, at: &str) -> Error {
    Error::failed(
        format!(
            "backup {}/{} has a parent cycle (at {at}): its manifests were tampered with",
            m.instance, m.id
        ),
        "do not restore from these backups; remove them from the store",
    )
}

/// How many backups the chain ending at the newest of `all` has (1 for a full backup, 0 for
/// none). A chain with a missing parent counts up to the gap. A looping chain is refused.
pub fn chain_len(all: &[Manifest]) -> Result<usize> {
    let Some(last) = all.last() else {
        return Ok(0);
    };
    match walk(all, last) {
        Ok(chain) => Ok(chain.len()),
        Err(Walk::Missing(_)) => {
            let mut n = 1;
            let mut cur = last;
            while let Some(m) = cur
                .parent
                .as_ref()
                .and_then(|p| all.iter().find(|m| &m.id == p))
            {
                n += 1;
                cur = m;
            }
            Ok(n)
        }
        Err(Walk::Cycle(at)) => Err(cycle(last, &at)),
    }
}

/// The ids of the backups (oldest first in `all`) that retention removes: all but the newest
/// `keep`, except those a kept backup's chain needs. A kept backup whose chain loops keeps
/// everything (nothing is removed on the word of a tampered manifest) and is refused.
pub fn prunable(all: &[Manifest], keep: usize) -> Result<Vec<String>> {
    let keep = keep.max(1);
    if all.len() <= keep {
        return Ok(Vec::new());
    }
    let kept = &all[all.len() - keep..];
    let mut needed: std::collections::BTreeSet<&str> = kept.iter().map(|m| m.id.as_str()).collect();
    for m in kept {
        match walk(all, m) {
            Ok(chain) => needed.extend(chain.iter().map(|x| x.id.as_str())),
            // What the gap's backups needed is gone already; the rest of the chain is kept.
            Err(Walk::Missing(_)) => {
                let mut cur = m;
                while let Some(p) = cur
                    .parent
                    .as_ref()
                    .and_then(|p| all.iter().find(|x| &x.id == p))
                {
                    needed.insert(p.id.as_str());
                    cur = p;
                }
            }
            Err(Walk::Cycle(at)) => return Err(cycle(m, &at)),
        }
    }
    Ok(all
        .iter()
        .filter(|m| !needed.contains(m.id.as_str()))
        .map(|m| m.id.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::testing::{id, manifest};

    #[test]
    fn retention_keeps_what_kept_backups_need() {
        // full 0, inc 1 (of 0), inc 2 (of 1), full 3, inc 4 (of 3)
        let all = vec![
            manifest(&id(0), None),
            manifest(&id(1), Some(&id(0))),
            manifest(&id(2), Some(&id(1))),
            manifest(&id(3), None),
            manifest(&id(4), Some(&id(3))),
        ];
        assert_eq!(prunable(&all, 5).unwrap(), Vec::<String>::new());
        assert_eq!(prunable(&all, 2).unwrap(), vec![id(0), id(1), id(2)]);
        // Keeping 3 keeps inc 2, which needs 1 and 0.
        assert_eq!(prunable(&all, 3).unwrap(), Vec::<String>::new());
        assert_eq!(prunable(&all, 1).unwrap(), vec![id(0), id(1), id(2)]);
        assert_eq!(prunable(&all, 0).unwrap(), vec![id(0), id(1), id(2)]);
        assert_eq!(chain_len(&all).unwrap(), 2);
        assert_eq!(chain_len(&all[..3]).unwrap(), 3);
        assert_eq!(chain_len(&[]).unwrap(), 0);
    }

    #[test]
    fn a_parent_cycle_is_refused_everywhere() {
        // 1 -> 2 -> 1: a tampered manifest.
        let all = vec![
            manifest(&id(0), None),
            manifest(&id(1), Some(&id(2))),
            manifest(&id(2), Some(&id(1))),
        ];
        assert!(chain_len(&all).unwrap_err().to_string().contains("cycle"));
        assert!(prunable(&all, 1).unwrap_err().to_string().contains("cycle"));
        let local = |m: &Manifest| LocalBackup {
            dir: std::path::PathBuf::from("/nonexistent"),
            manifest: m.clone(),
        };
        let locals: Vec<_> = all.iter().map(local).collect();
        let e = chain_of(&locals, &locals[2]).unwrap_err();
        assert!(e.to_string().contains("cycle"), "{e}");
        // Self-parent, too.
        let own = vec![manifest(&id(5), Some(&id(5)))];
        assert!(chain_len(&own).is_err());
    }

    #[test]
    fn chains_come_full_backup_first() {
        let all: Vec<LocalBackup> = [
            manifest(&id(0), None),
            manifest(&id(1), Some(&id(0))),
            manifest(&id(2), Some(&id(1))),
        ]
        .into_iter()
        .map(|m| LocalBackup {
            dir: std::path::PathBuf::from("/x"),
            manifest: m,
        })
        .collect();
        let ids: Vec<String> = chain_of(&all, &all[2])
            .unwrap()
            .into_iter()
            .map(|b| b.manifest.id)
            .collect();
        assert_eq!(ids, vec![id(0), id(1), id(2)]);
        let e = chain_of(&all[1..], &all[2]).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
