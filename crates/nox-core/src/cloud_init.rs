//! cloud-init NoCloud seed documents, from typed structs.
//!
//! Both backends provision guests with the same three documents: `user-data`, `meta-data`
//! and `network-config` (v2). They are rendered as JSON, which is valid YAML, so there is no
//! YAML emitter to trust; `user-data` starts with the `#cloud-config` line cloud-init needs.
//!
//! Security: a password only ever appears as a SHA-512 crypt hash (`$6$…`); keys are public.

use serde::Serialize;

/// What the guest should look like after first boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioning {
    /// Unique per instance, so a restored or cloned disk re-runs cloud-init.
    pub instance_id: String,
    pub hostname: String,
    pub user: String,
    pub ssh_keys: Vec<String>,
    /// A SHA-512 crypt hash (`$6$…`), never a clear password.
    pub password_hash: Option<String>,
    /// The NIC's MAC, matched by network-config; `None` leaves networking to the image.
    pub mac: Option<String>,
    /// VM shares (virtiofs) the guest mounts: an fstab line each (so later boots mount them
    /// too), mounted at first boot. Containers leave this empty: LXC mounts their shares.
    pub mounts: Vec<crate::mounts::Mount>,
}

#[derive(Serialize)]
struct UserData<'a> {
    hostname: &'a str,
    manage_etc_hosts: bool,
    users: Vec<User<'a>>,
    /// Password logins over SSH stay off even when a password is set: keys only.
    ssh_pwauth: bool,
    disable_root: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    write_files: Vec<WriteFile>,
    /// argv lists, never shell strings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    runcmd: Vec<Vec<String>>,
}

/// A file cloud-init writes (or appends to) at first boot.
#[derive(Serialize)]
struct WriteFile {
    path: &'static str,
    content: String,
    append: bool,
}

#[derive(Serialize)]
struct User<'a> {
    name: &'a str,
    groups: &'a [&'a str],
    shell: &'a str,
    sudo: &'a str,
    lock_passwd: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    passwd: Option<&'a str>,
    ssh_authorized_keys: &'a [String],
}

#[derive(Serialize)]
struct MetaData<'a> {
    #[serde(rename = "instance-id")]
    instance_id: &'a str,
    #[serde(rename = "local-hostname")]
    local_hostname: &'a str,
}

#[derive(Serialize)]
struct NetworkConfig<'a> {
    version: u8,
    ethernets: std::collections::BTreeMap<&'a str, Ethernet<'a>>,
}

#[derive(Serialize)]
struct Ethernet<'a> {
    #[serde(rename = "match")]
    matches: MacMatch<'a>,
    dhcp4: bool,
}

#[derive(Serialize)]
struct MacMatch<'a> {
    macaddress: &'a str,
}

impl Provisioning {
    pub fn user_data(&self) -> String {
        let doc = UserData {
            hostname: &self.hostname,
            manage_etc_hosts: true,
            users: vec![User {
                name: &self.user,
                groups: &["sudo"],
                shell: "/bin/bash",
                sudo: "ALL=(ALL) NOPASSWD:ALL",
                lock_passwd: self.password_hash.is_none(),
                passwd: self.password_hash.as_deref(),
                ssh_authorized_keys: &self.ssh_keys,
            }],
            ssh_pwauth: false,
            disable_root: true,
            // cloud-init 22.4's `mounts` module takes a virtiofs tag for a /dev name, so
            // the fstab lines are appended and mounted here instead.
            write_files: if self.mounts.is_empty() {
                Vec::new()
            } else {
                vec![WriteFile {
                    path: "/etc/fstab",
                    content: self
                        .mounts
                        .iter()
                        .map(|m| crate::mounts::fstab_line(m) + "\n")
                        .collect(),
                    append: true,
                }]
            },
            runcmd: self
                .mounts
                .iter()
                .flat_map(|m| {
                    let g = m.guest.display().to_string();
                    [
                        vec!["mkdir".into(), "-p".into(), g.clone()],
                        vec!["mount".into(), g],
                    ]
                })
                .collect(),
        };
        format!("#cloud-config\n{}\n", to_json(&doc))
    }

    pub fn meta_data(&self) -> String {
        to_json(&MetaData {
            instance_id: &self.instance_id,
            local_hostname: &self.hostname,
        }) + "\n"
    }

    /// network-config v2 matching the NIC by MAC, or `None` without a MAC.
    pub fn network_config(&self) -> Option<String> {
        let mac = self.mac.as_deref()?;
        let doc = NetworkConfig {
            version: 2,
            ethernets: [(
                "nic0",
                Ethernet {
                    matches: MacMatch { macaddress: mac },
                    dhcp4: true,
                },
            )]
            .into(),
        };
        Some(to_json(&doc) + "\n")
    }
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("cloud-init documents serialize")
}

/// `None` when result.json lists no errors; else the errors, joined. cloud-init writes the
/// file atomically, so one that does not parse is itself an error.
pub fn result_errors(result: &[u8]) -> Option<String> {
    let Some(errors) = serde_json::from_slice::<serde_json::Value>(result)
        .ok()
        .and_then(|v| v["v1"]["errors"].as_array().cloned())
    else {
        return Some("unreadable /run/cloud-init/result.json".into());
    };
    if errors.is_empty() {
        return None;
    }
    Some(
        errors
            .iter()
            .map(|e| {
                e.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| e.to_string())
            })
            .collect::<Vec<_>>()
            .join("; "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provisioning(password: bool) -> Provisioning {
        Provisioning {
            instance_id: "6b1c1a0e-6f5e-4c1b-9d0f-3a7e2b9c4d11".into(),
            hostname: "web".into(),
            user: "nox".into(),
            ssh_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample me@host".into()],
            password_hash: password.then(|| "$6$saltsalt$hash".into()),
            mac: Some("52:54:00:12:34:56".into()),
            mounts: Vec::new(),
        }
    }

    fn golden(name: &str, actual: &str) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
        crate::golden::assert_golden(&dir, name, actual);
    }

    #[test]
    fn golden_seed_documents() {
        let p = provisioning(false);
        golden("cloud-init-user-data", &p.user_data());
        golden(
            "cloud-init-user-data-password",
            &provisioning(true).user_data(),
        );
        golden("cloud-init-meta-data", &p.meta_data());
        golden("cloud-init-network-config", &p.network_config().unwrap());
        // VM shares: fstab lines appended, mount points made and mounted at first boot.
        let mut shared = provisioning(false);
        shared.mounts = vec![
            "/srv/code:/home/nox/code".parse().unwrap(),
            "/srv/data:/mnt/data:ro".parse().unwrap(),
        ];
        golden("cloud-init-user-data-mounts", &shared.user_data());
    }

    #[test]
    fn user_data_is_cloud_config_and_valid_json_after_the_header() {
        let ud = provisioning(true).user_data();
        let body = ud.strip_prefix("#cloud-config\n").unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["users"][0]["passwd"], "$6$saltsalt$hash");
        assert_eq!(v["users"][0]["lock_passwd"], false);
        assert_eq!(v["ssh_pwauth"], false);
    }

    #[test]
    fn result_json_errors() {
        assert_eq!(
            result_errors(br#"{"v1": {"datasource": "DataSourceNoCloud", "errors": []}}"#),
            None
        );
        assert_eq!(
            result_errors(br#"{"v1": {"errors": ["('ssh', KeyError())"]}}"#).as_deref(),
            Some("('ssh', KeyError())")
        );
        assert!(result_errors(b"not json").unwrap().contains("unreadable"));
    }

    #[test]
    fn no_password_means_locked_and_absent() {
        let ud = provisioning(false).user_data();
        assert!(!ud.contains("\"passwd\":"), "{ud}");
        assert!(ud.contains("\"lock_passwd\": true"));
    }
}
