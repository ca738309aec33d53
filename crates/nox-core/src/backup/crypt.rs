//! Client-side encryption of backups with age (age-encryption.org/v1, X25519 recipients): a
//! backup is sealed (each file encrypted to `NAME.age`, a manifest recording to whom) before
//! it goes to S3, and unsealed after a download, before it enters the local store. The local
//! store keeps backups in clear: it is root's, mode 0700, on the host that holds the
//! instances' disks in clear anyway, and incremental VM backups need their parent in clear.
//!
//! The key files are the `age`/`rage` CLIs' formats: a recipients file holds public keys
//! (`age1...`, one a line, `#` comments), an identity file secret keys (`AGE-SECRET-KEY-1...`,
//! as `age-keygen -o FILE` writes it).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use age::secrecy::{ExposeSecret, SecretString};

use super::hash::HashingWriter;
use super::manifest::{Encryption, FileEntry, Manifest, MANIFEST};
use super::store::{private_file, LocalBackup};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// The scheme an [`Encryption`] names.
pub const SCHEME: &str = "age";
/// What an encrypted file's object name ends with.
pub const SUFFIX: &str = ".age";

/// The public keys uploads are encrypted to (`[backup] recipients_file`).
pub struct Recipients {
    keys: Vec<age::x25519::Recipient>,
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.public_keys()).finish()
    }
}

impl Recipients {
    /// Reads a recipients file. Public keys are not secrets: any mode is fine.
    pub fn load(path: &Path) -> Result<Recipients> {
        let what = format!("[backup] recipients_file {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Usage(format!(
                "{what}: {e}; write the age public keys (age1...) to encrypt uploads to there, one a line"
            ))
        })?;
        let mut keys = Vec::new();
        for (n, line) in lines(&text) {
            let key = line.parse::<age::x25519::Recipient>().map_err(|_| {
                Error::Usage(format!(
                    "{what}, line {n}: not an age X25519 public key (age1...); `age-keygen -y IDENTITY` prints one"
                ))
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(Error::Usage(format!(
                "{what} holds no public key: add one (age1...), or set recipients_file = \"\" to upload in clear"
            )));
        }
        Ok(Recipients { keys })
    }

    /// `age1...`, as written in manifests and messages.
    pub fn public_keys(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.to_string()).collect()
    }
}

/// The secret keys that decrypt backups (`[backup] identity_file`). `Debug` shows the public
/// keys only; the secret keys are zeroed when dropped (age's own types).
pub struct Identity {
    keys: Vec<age::x25519::Identity>,
    file: PathBuf,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("file", &self.file)
            .field("public_keys", &self.public_keys())
            .finish()
    }
}

impl Identity {
    /// Reads an identity file, refusing one its group or others may read (a leaked key). A
    /// line that is not a key is reported by number, never quoted.
    pub fn load(path: &Path) -> Result<Identity> {
        let what = format!("[backup] identity_file {}", path.display());
        let meta = std::fs::metadata(path).map_err(|e| Error::Usage(format!("{what}: {e}")))?;
        if !meta.is_file() {
            return Err(Error::Usage(format!("{what} is not a regular file")));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(Error::Refused {
                message: format!(
                    "{what} is readable by others (mode {:04o}); refusing to use a leaked key",
                    meta.mode() & 0o777
                ),
                hint: format!("chmod 600 {}", path.display()),
            });
        }
        let text = SecretString::from(
            std::fs::read_to_string(path)
                .map_err(|e| Error::Usage(format!("reading {what}: {e}")))?,
        );
        let mut keys = Vec::new();
        for (n, line) in lines(text.expose_secret()) {
            keys.push(line.parse::<age::x25519::Identity>().map_err(|_| {
                Error::Usage(format!(
                    "{what}, line {n}: not an age X25519 secret key (AGE-SECRET-KEY-1...)"
                ))
            })?);
        }
        if keys.is_empty() {
            return Err(Error::Usage(format!(
                "{what} holds no secret key (AGE-SECRET-KEY-1...)"
            )));
        }
        Ok(Identity {
            keys,
            file: path.to_path_buf(),
        })
    }

    /// The public keys of the secret keys held.
    pub fn public_keys(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.to_public().to_string())
            .collect()
    }

    /// Whether one of the keys held is one `e` was encrypted to.
    pub fn opens(&self, e: &Encryption) -> bool {
        self.public_keys().iter().any(|k| e.recipients.contains(k))
    }
}

/// The lines of a key file that hold a key, numbered from 1: blank lines and `#` comments
/// (age-keygen writes `# created:` and `# public key:`) are skipped.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// The identity that decrypts every encrypted backup of `chain` (none when none is
/// encrypted), checked before anything is downloaded or created: without it, or with
/// another key, the restore is refused (exit 2) saying which key it needs and where.
pub fn identity_for(chain: &[&Manifest], identity_file: &Path) -> Result<Option<Identity>> {
    let Some((m, e)) = chain
        .iter()
        .find_map(|m| m.encryption.as_ref().map(|e| (*m, e)))
    else {
        return Ok(None);
    };
    let needed = || {
        format!(
            "put the age secret key of one of them in {} ([backup] identity_file), mode 0600",
            identity_file.display()
        )
    };
    if !identity_file.exists() {
        return Err(Error::Refused {
            message: format!(
                "backup {}/{} is encrypted to {}, and {} does not exist",
                m.instance,
                m.id,
                e.recipients.join(", "),
                identity_file.display()
            ),
            hint: needed(),
        });
    }
    let identity = Identity::load(identity_file)?;
    for m in chain {
        if let Some(e) = m.encryption.as_ref().filter(|e| !identity.opens(e)) {
            return Err(Error::Refused {
                message: format!(
                    "backup {}/{} is encrypted to {}, not to the key in {} ({})",
                    m.instance,
                    m.id,
                    e.recipients.join(", "),
                    identity_file.display(),
                    identity.public_keys().join(", ")
                ),
                hint: needed(),
            });
        }
    }
    Ok(Some(identity))
}

/// Encrypts every file of `b` into `dir` (an empty private directory) as `NAME.age`, and
/// writes there the manifest that goes to S3: the encrypted files with their sizes and
/// SHA-256 (so a flipped byte is found before decryption), and in `encryption`, the
/// recipients and the files in clear. Returns the sealed backup, ready to upload.
pub fn seal(
    b: &LocalBackup,
    recipients: &Recipients,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<LocalBackup> {
    let m = &b.manifest;
    let mut files = Vec::new();
    for f in &m.files {
        let name = format!("{}{SUFFIX}", f.name);
        progress.step(&format!("encrypting {}/{}/{}", m.instance, m.id, f.name));
        let from = b.file(&f.name);
        let to = dir.join(&name);
        let out = HashingWriter::new(BufWriter::new(private_file(&to)?));
        let encryptor = age::Encryptor::with_recipients(
            recipients.keys.iter().map(|k| k as &dyn age::Recipient),
        )
        .map_err(|e| Error::failure(format!("age: {e}")))?;
        let io = |e| {
            Error::io(
                format!("encrypting {} into {}", from.display(), to.display()),
                e,
            )
        };
        let mut w = encryptor.wrap_output(out).map_err(io)?;
        copy(&from, &mut w, progress)?;
        let out = w.finish().map_err(io)?;
        let (buf, size, sha256) = out.finish();
        buf.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(io)?;
        files.push(FileEntry { name, size, sha256 });
        progress.done();
    }
    let sealed = Manifest {
        files,
        encryption: Some(Encryption {
            scheme: SCHEME.into(),
            recipients: recipients.public_keys(),
            plaintext: m.files.clone(),
        }),
        ..m.clone()
    };
    let path = dir.join(MANIFEST);
    private_file(&path)?
        .write_all(sealed.to_json().as_bytes())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(LocalBackup {
        dir: dir.to_path_buf(),
        manifest: sealed,
    })
}

/// In `dir` (a download's staging directory, holding the files `m` lists), checks each
/// encrypted file's size and SHA-256, decrypts it to its name in clear, checks that against
/// the clear size and SHA-256, and removes the encrypted file. Returns the manifest in clear,
/// as the local store keeps it. Anything refused names the file.
pub fn unseal(
    dir: &Path,
    m: &Manifest,
    identity: &Identity,
    progress: &dyn Progress,
) -> Result<Manifest> {
    let Some(e) = &m.encryption else {
        return Ok(m.clone());
    };
    let tampered = |why: String| {
        Error::failed(
            format!("backup {}/{} in S3: {why}", m.instance, m.id),
            "the manifest was tampered with; do not restore this backup",
        )
    };
    if e.scheme != SCHEME {
        return Err(tampered(format!(
            "encrypted with {:?}, this nox knows {SCHEME:?}",
            e.scheme
        )));
    }
    let pairs: Vec<(&FileEntry, &FileEntry)> = e.plaintext.iter().zip(&m.files).collect();
    if e.plaintext.len() != m.files.len()
        || pairs
            .iter()
            .any(|(p, s)| s.name != format!("{}{SUFFIX}", p.name))
    {
        return Err(tampered(
            "its encrypted files do not match its files in clear".into(),
        ));
    }
    for (clear, sealed) in pairs {
        if clear.name.contains('/') || clear.name.starts_with('.') {
            return Err(tampered(format!(
                "it lists a file outside it: {:?}",
                clear.name
            )));
        }
        let from = dir.join(&sealed.name);
        let to = dir.join(&clear.name);
        let corrupt = |path: &Path, why: String| Error::Failed {
            message: format!("backup file {} is corrupt: {why}", path.display()),
            hint: Some("restore another backup (`nox backups`); nothing was changed".into()),
        };
        progress.step(&format!(
            "verifying {}/{}/{}",
            m.instance, m.id, sealed.name
        ));
        let (size, sum) = super::hash::hash_file(&from, progress)?;
        if (size, &sum) != (sealed.size, &sealed.sha256) {
            return Err(corrupt(
                &from,
                format!(
                    "{size} bytes, SHA-256 {sum}; the manifest says {} bytes, {}",
                    sealed.size, sealed.sha256
                ),
            ));
        }
        progress.step(&format!(
            "decrypting {}/{}/{}",
            m.instance, m.id, clear.name
        ));
        let reader =
            File::open(&from).map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
        let decrypt_error = |e: age::DecryptError| {
            Error::failed(
                format!("decrypting {}: {e}", from.display()),
                format!(
                    "it was encrypted to {}; the key in {} is not one of them, or the file was altered",
                    e_recipients(m),
                    identity.file.display()
                ),
            )
        };
        let decryptor =
            age::Decryptor::new(std::io::BufReader::new(reader)).map_err(decrypt_error)?;
        let mut r = decryptor
            .decrypt(identity.keys.iter().map(|k| k as &dyn age::Identity))
            .map_err(decrypt_error)?;
        let mut out = HashingWriter::new(BufWriter::new(private_file(&to)?));
        copy_reader(&mut r, &from, &mut out, progress)?;
        let (buf, size, sum) = out.finish();
        let io = |e| Error::io(format!("writing {}", to.display()), e);
        buf.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(io)?;
        if (size, &sum) != (clear.size, &clear.sha256) {
            return Err(corrupt(
                &to,
                format!(
                    "decrypted to {size} bytes, SHA-256 {sum}; the manifest says {} bytes, {}",
                    clear.size, clear.sha256
                ),
            ));
        }
        std::fs::remove_file(&from)
            .map_err(|e| Error::io(format!("removing {}", from.display()), e))?;
        progress.done();
    }
    Ok(Manifest {
        files: e.plaintext.clone(),
        encryption: None,
        ..m.clone()
    })
}

fn e_recipients(m: &Manifest) -> String {
    m.encryption
        .as_ref()
        .map(|e| e.recipients.join(", "))
        .unwrap_or_default()
}

/// Copies the file at `from` into `out`, with progress; Ctrl-C stops it.
fn copy(from: &Path, out: &mut dyn Write, progress: &dyn Progress) -> Result<()> {
    let mut f =
        File::open(from).map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
    copy_reader(&mut f, from, out, progress)
}

fn copy_reader(
    r: &mut dyn Read,
    from: &Path,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])
            .map_err(|e| Error::io(format!("writing what {} becomes", from.display()), e))?;
        done += n as u64;
        progress.bytes(done, None);
        crate::interrupt::check()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::file_entry;
    use crate::backup::testing::{id, manifest};
    use crate::progress::Quiet;
    use std::os::unix::fs::PermissionsExt;

    /// A backup of one file holding `content`, in `dir/b`.
    fn backup(dir: &Path, content: &[u8]) -> LocalBackup {
        let b = dir.join("b");
        std::fs::create_dir(&b).unwrap();
        std::fs::write(b.join("rootfs.tar.zst"), content).unwrap();
        let mut m = manifest(&id(0), None);
        m.files = vec![file_entry(&b, "rootfs.tar.zst", &Quiet).unwrap()];
        LocalBackup {
            dir: b,
            manifest: m,
        }
    }

    /// A new key pair: the identity file (mode 0600) and the recipients file.
    fn keys(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
        let id = age::x25519::Identity::generate();
        let public = id.to_public().to_string();
        let idf = dir.join(format!("{name}.key"));
        std::fs::write(
            &idf,
            format!(
                "# created: 2026-11-26T13:00:00Z\n# public key: {public}\n{}\n",
                id.to_string().expose_secret()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&idf, std::fs::Permissions::from_mode(0o600)).unwrap();
        let rf = dir.join(format!("{name}.pub"));
        std::fs::write(&rf, format!("# {name}\n\n{public}\n")).unwrap();
        (idf, rf, public)
    }

    #[test]
    fn sealed_files_are_ciphertext_and_unseal_back_to_the_backup_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let secret = b"MARKER-in-clear-".repeat(4096);
        let b = backup(dir.path(), &secret);
        let (idf, rf, public) = keys(dir.path(), "a");
        let out = dir.path().join("sealed");
        std::fs::create_dir(&out).unwrap();
        let sealed = seal(&b, &Recipients::load(&rf).unwrap(), &out, &Quiet).unwrap();

        // The S3 manifest: encrypted objects, to whom, and the files in clear.
        let e = sealed.manifest.encryption.clone().unwrap();
        assert_eq!(e.recipients, vec![public]);
        assert_eq!(e.plaintext, b.manifest.files);
        assert_eq!(sealed.manifest.files[0].name, "rootfs.tar.zst.age");
        let on_disk = Manifest::read(&out).unwrap();
        assert_eq!(on_disk, sealed.manifest);
        let json = std::fs::read_to_string(out.join(MANIFEST)).unwrap();
        assert!(!json.contains("AGE-SECRET-KEY"), "{json}");
        let cipher = std::fs::read(out.join("rootfs.tar.zst.age")).unwrap();
        assert!(!cipher.windows(16).any(|w| w == b"MARKER-in-clear-"));

        // Downloaded into a staging dir: unsealed with the identity, in clear again.
        let staging = dir.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        std::fs::copy(
            out.join("rootfs.tar.zst.age"),
            staging.join("rootfs.tar.zst.age"),
        )
        .unwrap();
        let m = sealed.manifest.clone();
        let identity = identity_for(&[&m], &idf).unwrap().unwrap();
        let clear = unseal(&staging, &m, &identity, &Quiet).unwrap();
        assert_eq!(clear, b.manifest);
        assert_eq!(
            std::fs::read(staging.join("rootfs.tar.zst")).unwrap(),
            secret
        );
        assert!(!staging.join("rootfs.tar.zst.age").exists());
    }

    #[test]
    fn a_flipped_byte_in_an_encrypted_object_is_found_by_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let b = backup(dir.path(), b"some data");
        let (idf, rf, _) = keys(dir.path(), "a");
        let out = dir.path().join("sealed");
        std::fs::create_dir(&out).unwrap();
        let sealed = seal(&b, &Recipients::load(&rf).unwrap(), &out, &Quiet).unwrap();
        let f = out.join("rootfs.tar.zst.age");
        let mut bytes = std::fs::read(&f).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&f, bytes).unwrap();
        let identity = Identity::load(&idf).unwrap();
        let e = unseal(&out, &sealed.manifest, &identity, &Quiet).unwrap_err();
        assert!(
            e.to_string().contains("rootfs.tar.zst.age is corrupt"),
            "{e}"
        );
        assert!(e.to_string().contains("SHA-256"), "{e}");
        assert!(!out.join("rootfs.tar.zst").exists());
    }

    #[test]
    fn a_restore_without_the_identity_or_with_another_is_refused_saying_which_key() {
        let dir = tempfile::tempdir().unwrap();
        let b = backup(dir.path(), b"data");
        let (_, rf, public) = keys(dir.path(), "a");
        let (other, _, other_public) = keys(dir.path(), "b");
        let out = dir.path().join("sealed");
        std::fs::create_dir(&out).unwrap();
        let m = seal(&b, &Recipients::load(&rf).unwrap(), &out, &Quiet)
            .unwrap()
            .manifest;

        let missing = dir.path().join("nope.key");
        let e = identity_for(&[&m], &missing).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(e.to_string().contains(&public), "{e}");
        assert!(e.hint().unwrap().contains("nope.key"), "{e:?}");

        let e = identity_for(&[&m], &other).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(e.to_string().contains(&public) && e.to_string().contains(&other_public));

        // A chain in clear needs no identity at all.
        assert!(identity_for(&[&b.manifest], &missing).unwrap().is_none());

        // A wrong key that a tampered manifest claims is right: age refuses it, by file.
        let mut lying = m.clone();
        lying.encryption.as_mut().unwrap().recipients = vec![other_public];
        let identity = identity_for(&[&lying], &other).unwrap().unwrap();
        let e = unseal(&out, &lying, &identity, &Quiet).unwrap_err();
        assert!(e.to_string().contains("decrypting"), "{e}");
        assert!(!out.join("rootfs.tar.zst").exists());
    }

    #[test]
    fn key_files_are_checked_and_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let (idf, rf, _) = keys(dir.path(), "a");
        std::fs::set_permissions(&idf, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = Identity::load(&idf).unwrap_err();
        assert!(
            e.is_bad_input() && e.to_string().contains("readable by others"),
            "{e}"
        );
        assert!(e.hint().unwrap().contains("chmod 600"));

        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, "# fine\nAGE-SECRET-KEY-1NOTAKEYATALLSECRETSTUFF\n").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = Identity::load(&bad).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("line 2"), "{e}");
        assert!(!e.to_string().contains("SECRETSTUFF"), "{e}");

        std::fs::write(&rf, "age1notakey\n").unwrap();
        let e = Recipients::load(&rf).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("line 1"), "{e}");
        std::fs::write(&rf, "# nobody\n").unwrap();
        assert!(Recipients::load(&rf).unwrap_err().is_bad_input());
        let e = Recipients::load(&dir.path().join("missing.pub")).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
    }

    #[test]
    fn a_manifest_whose_files_do_not_pair_up_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = backup(dir.path(), b"data");
        let (idf, rf, _) = keys(dir.path(), "a");
        let out = dir.path().join("sealed");
        std::fs::create_dir(&out).unwrap();
        let mut m = seal(&b, &Recipients::load(&rf).unwrap(), &out, &Quiet)
            .unwrap()
            .manifest;
        m.files[0].name = "../../etc/passwd.age".into();
        let identity = Identity::load(&idf).unwrap();
        let e = unseal(&out, &m, &identity, &Quiet).unwrap_err();
        assert!(
            e.to_string().contains("tampered") || e.to_string().contains("do not match"),
            "{e}"
        );
    }
}
