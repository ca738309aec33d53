//! A clone's own identity, given through the guest agent before `create` returns.
//!
//! A clone wakes up as the template: same machine-id, host keys, hostname, MAC, cloud-init
//! instance, clock and random pool. nox changes each of them:
//! - the random pool through the domain's VM generation ID (the restore XML carries a new
//!   one, QEMU tells the guest, and the kernel reseeds), and host randomness written to
//!   `/dev/urandom` as well;
//! - the clock, from the host's, first thing in the script;
//! - everything else with one fixed shell script run by `/bin/sh` (no Python in the guest).
//!   The script is a constant: every value reaches it as an argument, or on its stdin (the
//!   private host key among them, so no process list ever shows it), never inside a shell
//!   string.
//!
//! SSH host keys are made on the host (ed25519, in-process): an emulated guest takes about
//! ten seconds for the RSA key `ssh-keygen -A` would make.

use std::time::Duration;

use nox_core::host::HostFacts;
use nox_core::wait::wait_until;
use nox_core::Error;
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::{LineEnding, PrivateKey};
use virt::domain::Domain;

use crate::agent::{AgentError, GuestAgent};
use crate::clone_account::{self, AccountFile};

/// The account the template is built with; every clone removes it.
pub const TEMPLATE_USER: &str = "noxtemplate";

/// The identity script. `$1` hostname, `$2` user, `$3` machine-id, `$4` cloud-init
/// instance-id, `$5` the host's clock (seconds.nanoseconds since the epoch), `$6` the user's
/// home, `$7` the placeholder's home to move there (or empty), `$8` `yes` if the user's account
/// already existed, `$9` the template's MAC; then the clone's MAC, a free address to ask the
/// DHCP server for first (or empty), its boot_id, and the line counts of what arrives on stdin, in order:
/// the host key, its public half, host randomness (hex) and `authorized_keys`; last, PATH
/// COUNT pairs for the files written back whole (the account files, /etc/hosts), in stdin's
/// order too.
///
/// Every program the script starts costs 0.02 to 0.3 s on an emulated vCPU, so it starts
/// few: files are written with the shell's own redirections, stdin is read with its `read`,
/// and the account files come edited from the host (clone_account.rs) instead of through
/// `userdel` and `useradd`. On the usual path it starts `date`, `mount`, `mv` (twice), `ln`
/// and `systemctl`, and `grep`, `tr` and `ip` for the NIC; [`NETWORK`] then asks for a lease.
const SCRIPT: &str = r#"set -eu
hostname=$1 user=$2 machine_id=$3 instance_id=$4 now=$5 home=$6 old_home=$7 existing=$8
old_mac=$9
shift 9
new_mac=$1 want=$2 boot_id=$3 key_lines=$4 pub_lines=$5 random_lines=$6 keys_lines=$7
shift 7

# Reads the next $1 lines of stdin into $text. Files are then written whole with one printf:
# an account file is never seen half-written by a program reading it meanwhile.
lines() {
    i=0 text=
    while [ "$i" -lt "$1" ]; do
        IFS= read -r line
        text="$text$line
"
        i=$((i + 1))
    done
}

date -u -s "@$now" > /dev/null
printf '%s\n' "$hostname" > /etc/hostname
printf '%s' "$hostname" > /proc/sys/kernel/hostname
umask 077
lines "$key_lines"
printf '%s' "$text" > /etc/ssh/ssh_host_ed25519_key
umask 022
lines "$pub_lines"
printf '%s' "$text" > /etc/ssh/ssh_host_ed25519_key.pub
lines "$random_lines"
printf '%s' "$text" > /dev/urandom
lines "$keys_lines"
keys=$text
printf '%s\n' "$machine_id" > /etc/machine-id
if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then
    printf '%s\n' "$machine_id" > /var/lib/dbus/machine-id
fi
# systemd's boot_id: Linux makes one per boot and keeps it read-only, and the clone's kernel
# booted as the template. As LXC and Incus do for containers, a file of the clone's own is
# mounted over it, before journald is restarted and reads it; the next boot makes a real one.
printf '%s\n' "$boot_id" > /run/nox-boot-id
mount -o bind,ro /run/nox-boot-id /proc/sys/kernel/random/boot_id

# The account files, edited on the host, and /etc/hosts, before any service restarts and
# reads them. Redirection keeps each file's owner and mode (/etc/shadow stays root:shadow 0640).
while [ $# -gt 0 ]; do
    lines "$2"
    printf '%s' "$text" > "$1"
    shift 2
done

# The NIC, in the background. The restored device still has the template's MAC. It gets the
# clone's, which libvirt already uses, in the device and in every file naming the old one.
# The template's DHCP client is stopped without a release (the lease belongs to no running
# machine); NETWORK starts it again, with the same command line, once the host forwards the
# NIC's frames. /run/nox-network.ready tells NETWORK what to do: `dhclient`, `networkd`,
# `none` (no NIC had the template's MAC) or `failed`. Its log stays in /run until the next
# boot, for diagnosis.
(
    iface=
    for d in /sys/class/net/*; do
        a=
        read -r a < "$d/address" || true
        if [ "$a" = "$old_mac" ]; then iface=${d##*/}; fi
    done
    set --
    for f in /etc/udev/rules.d/*.rules /etc/network/interfaces /etc/network/interfaces.d/* \
             /etc/netplan/*.yaml /etc/systemd/network/*; do
        if [ -f "$f" ]; then set -- "$@" "$f"; fi
    done
    if [ $# -gt 0 ] && grep -qis -- "$old_mac" "$@"; then
        sed -i "s/$old_mac/$new_mac/gI" -- "$@"
    fi
    if [ -z "$iface" ]; then
        method=none
    elif [ -f "/run/dhclient.$iface.pid" ]; then
        # ifupdown's dhclient, or ifup itself if that client is gone.
        pid=
        read -r pid < "/run/dhclient.$iface.pid" || true
        if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ]; then
            tr '\0' '\n' < "/proc/$pid/cmdline" > /run/nox-network.argv
            kill "$pid" 2> /dev/null || true
        else
            printf 'ifup\n--force\n%s\n' "$iface" > /run/nox-network.argv
        fi
        printf 'addr flush dev %s\nlink set dev %s address %s\n' "$iface" "$iface" "$new_mac" |
            ip -batch -
        for f in /var/lib/dhcp/dhclient*.leases; do
            if [ -f "$f" ]; then : > "$f"; fi
        done
        if [ -n "$want" ]; then
            # A free address nox found (network.rs, free_address), asked for at once
            # (INIT-REBOOT): the server acknowledges it, or refuses and the client starts over.
            printf 'lease {\n  interface "%s";\n  fixed-address %s;\n  renew 4 2037/12/31 00:00:00;\n  rebind 4 2037/12/31 00:00:00;\n  expire 4 2037/12/31 00:00:00;\n}\n' \
                "$iface" "$want" > "/var/lib/dhcp/dhclient.$iface.leases"
        fi
        method=dhclient
    else
        printf 'link set dev %s down\nlink set dev %s address %s\nlink set dev %s up\n' \
            "$iface" "$iface" "$new_mac" "$iface" | ip -batch -
        method=networkd
    fi
    printf '%s\n' "$method" > /run/nox-network.ready
) < /dev/null > /run/nox-identity-nic.log 2>&1 &
nic=$!

# sshd still holds the template's host keys in memory, and journald writes under the old
# machine-id: both restarted, beside the rest.
systemctl try-restart ssh.service systemd-journald.service < /dev/null \
    > /run/nox-identity-services.log 2>&1 &
services=$!

if [ "$existing" = yes ]; then
    [ -z "$old_home" ] || rm -rf -- "$old_home"
elif [ -n "$old_home" ]; then
    mv -- "$old_home" "$home"
fi
# The template's placeholder has an empty authorized_keys, owned and moded for it; an account
# that already existed may have none.
if [ ! -f "$home/.ssh/authorized_keys" ]; then
    umask 077
    mkdir -p -- "$home/.ssh"
    : > "$home/.ssh/authorized_keys"
    chown -R -- "$user:" "$home/.ssh"
    umask 022
fi
printf '%s' "$keys" > "$home/.ssh/authorized_keys"
umask 337
printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user" > /etc/sudoers.d/90-cloud-init-users
umask 022

# cloud-init: the clone's seed names this instance, and the template's first-boot work counts
# as done for it, so a reboot does not provision the clone again. (The template dropped its
# cached datasource, obj.pkl, before it was saved.)
if [ -f /var/lib/cloud/data/instance-id ]; then
    old=
    read -r old < /var/lib/cloud/data/instance-id || true
    if [ -n "$old" ] && [ -d "/var/lib/cloud/instances/$old" ]; then
        mv -- "/var/lib/cloud/instances/$old" "/var/lib/cloud/instances/$instance_id"
    fi
    ln -sfn -- "/var/lib/cloud/instances/$instance_id" /var/lib/cloud/instance
    printf '%s\n' "$instance_id" > /var/lib/cloud/data/instance-id
    printf '%s\n' "$instance_id" > /var/lib/cloud/data/previous-instance-id
fi

# Prints a log to stderr, with the shell's own read.
show() {
    while IFS= read -r l; do printf '%s\n' "$l" >&2; done < "$1"
}
if ! wait "$nic"; then
    printf 'failed\n' > /run/nox-network.ready
    show /run/nox-identity-nic.log
    exit 1
fi
if ! wait "$services"; then
    show /run/nox-identity-services.log
    exit 1
fi
"#;

/// The clone's DHCP, run once its NIC's frames reach the DHCP server (see [`apply`]), and once
/// the identity script has readied the NIC.
const NETWORK: &str = r#"set -eu
until { read -r method < /run/nox-network.ready; } 2> /dev/null; do
    sleep 0.05
done
case $method in
dhclient)
    # The template's client, started again as it was (by ifupdown, with its pid and lease
    # files): in the foreground until it holds a lease. (Or `ifup`, which starts it so.)
    set --
    while IFS= read -r a; do set -- "$@" "$a"; done < /run/nox-network.argv
    "$@"
    ;;
networkd) systemctl try-restart systemd-networkd.service ;;
none) ;;
*)
    echo "the identity script failed to ready the NIC" >&2
    exit 1
    ;;
esac
"#;

/// What a template's guest does last before it is saved (`$1` is [`TEMPLATE_USER`]): nothing
/// is left that clones must not share, the placeholder account is made ready to be handed
/// over by the identity script without programs, and free memory is returned to the host so
/// the saved state, which every clone reads, holds only what the guest uses.
pub const PREPARE: &str = r#"set -eu
user=$1
# Host keys: every clone gets its own. The datasource cache: a clone's seed names another
# instance, and cloud-init must read it rather than the template's pickle at the next boot.
rm -f /etc/ssh/ssh_host_* /var/lib/cloud/instance/obj.pkl
home=$(getent passwd "$user" | cut -d: -f6)
install -d -m 700 -o "$user" -g "$user" "$home/.ssh"
install -m 600 -o "$user" -g "$user" /dev/null "$home/.ssh/authorized_keys"
sync
# Dropped caches become free pages, which the balloon's free page reporting hands back to the
# host: QEMU then saves them as zero pages, which take no room in the state.
echo 3 > /proc/sys/vm/drop_caches
echo 1 > /proc/sys/vm/compact_memory
"#;

/// Who the clone becomes.
pub struct Identity<'a> {
    pub hostname: &'a str,
    pub user: &'a str,
    pub ssh_keys: &'a [String],
    pub instance_id: &'a str,
    pub template_mac: &'a str,
    pub mac: &'a str,
    /// A free address of the clone's DHCP network to ask for first (`None`: ask as usual).
    pub dhcp_hint: Option<std::net::Ipv4Addr>,
}

/// Gives the running clone `dom` its identity, and its network once `nic_ready` returns.
/// Fails naming the step that failed.
pub fn apply(
    dom: &Domain,
    facts: &dyn HostFacts,
    id: &Identity<'_>,
    nic_ready: &dyn Fn(),
    timeout: Duration,
) -> Result<(), Error> {
    let agent = GuestAgent::new(dom);
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Error::failed(
            format!("giving {} its identity: {what}: {e}", id.hostname),
            "`nox create --cold-boot` boots it without a template",
        )
    };
    // No ping first: the agent was answering when the template was saved, and the first
    // call (which libvirt precedes with a sync) fails plainly if it is not.

    // The files edited here rather than by programs in the guest, read as they are.
    let mut accounts = Vec::new();
    for path in clone_account::FILES {
        if let Some(text) = read_text(&agent, path).map_err(|e| fail(path, &e))? {
            accounts.push(AccountFile { path, text });
        }
    }
    let hosts = read_text(&agent, HOSTS).map_err(|e| fail(HOSTS, &e))?;
    let handover = clone_account::hand_over(&accounts, TEMPLATE_USER, id.user)
        .map_err(|e| fail("the template's account", &e))?;
    let mut files = handover.files;
    // An image without /etc/hosts gets one naming the clone, as the script always wrote it.
    files.push(AccountFile {
        path: HOSTS,
        text: hosts_for(hosts.as_deref().unwrap_or(""), id.hostname),
    });

    let mut machine_id = [0u8; 16];
    facts.fill_random(&mut machine_id)?;
    let machine_id = hex::encode(machine_id);
    let boot_id = facts.random_uuid()?;
    // Written to /dev/urandom as text: the pool mixes in every byte, and the shell reads
    // only text.
    let mut random = vec![0u8; 512];
    facts.fill_random(&mut random)?;
    let random = hex::encode(&random) + "\n";
    let (private, public) = host_key(facts, id.hostname)?;
    let keys: String = id.ssh_keys.iter().map(|k| format!("{k}\n")).collect();

    // The clock is set by the script: `guest-set-time` also writes the emulated RTC, which takes
    // a second here, and QEMU keeps the RTC on the host's time anyway.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let now = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
    let want = id.dhcp_hint.map(|a| a.to_string()).unwrap_or_default();
    let mut stdin = String::new();
    let mut counts = Vec::new();
    for part in [&private, &public, &random, &keys]
        .into_iter()
        .chain(files.iter().map(|f| &f.text))
    {
        let part = as_lines(part);
        counts.push(part.lines().count().to_string());
        stdin.push_str(&part);
    }
    let old_home = handover.old_home.unwrap_or_default();
    let mut argv = vec![
        "/bin/sh",
        "-c",
        SCRIPT,
        "nox-identity",
        id.hostname,
        id.user,
        &machine_id,
        id.instance_id,
        &now,
        &handover.home,
        &old_home,
        if handover.existing { "yes" } else { "no" },
        id.template_mac,
        id.mac,
        &want,
        &boot_id,
    ];
    argv.extend(counts[..4].iter().map(String::as_str));
    for (f, n) in files.iter().zip(&counts[4..]) {
        argv.extend([f.path, n.as_str()]);
    }
    let started = std::time::Instant::now();
    let identity = agent
        .spawn(&argv, Some(stdin.as_bytes()), true)
        .map_err(|e| fail("the identity script", &e))?;
    // The network waits for the NIC: a DHCP request sent before the host's bridge forwards
    // the clone's new port is lost, and the client asks again only seconds later.
    nic_ready();
    let network = agent
        .spawn(&["/bin/sh", "-c", NETWORK, "nox-network"], None, true)
        .map_err(|e| fail("the network script", &e))?;
    let mut running = vec![
        (identity, "the identity script"),
        (network, "the network script"),
    ];
    let left = timeout.saturating_sub(started.elapsed());
    let finished = wait_until(left, SCRIPT_POLL, |_| {
        let mut still = Vec::new();
        for (pid, what) in running.drain(..) {
            match agent.exec_status(pid).map_err(|e| fail(what, &e))? {
                None => still.push((pid, what)),
                Some(out) if out.code != 0 => {
                    let err = String::from_utf8_lossy(&out.stderr);
                    return Err(fail(
                        &format!("{what} exited with {}", out.code),
                        &err.trim(),
                    ));
                }
                Some(_) => {}
            }
        }
        running = still;
        Ok(running.is_empty().then_some(()))
    })?;
    finished.ok_or_else(|| fail("the guest", &format!("did not finish within {timeout:?}")))
}

/// How often the scripts are asked whether they are done. Each question costs the guest's
/// agent a little of the one emulated vCPU the scripts run on.
const SCRIPT_POLL: Duration = Duration::from_millis(50);

const HOSTS: &str = "/etc/hosts";

/// A small text file of the guest, or `None` if it does not exist.
fn read_text(agent: &GuestAgent<'_>, path: &str) -> Result<Option<String>, AgentError> {
    agent
        .read_small(path)?
        .map(|bytes| {
            String::from_utf8(bytes)
                .map_err(|_| AgentError::Protocol(format!("{path} is not UTF-8 text")))
        })
        .transpose()
}

/// /etc/hosts naming `hostname` at 127.0.1.1, as Debian's installer and cloud-init write it,
/// instead of whatever name was there.
fn hosts_for(hosts: &str, hostname: &str) -> String {
    let mut out: String = hosts
        .lines()
        .filter(|l| {
            !l.strip_prefix("127.0.1.1")
                .is_some_and(|rest| rest.starts_with([' ', '\t']))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("127.0.1.1 {hostname}\n"));
    out
}

/// `text` with every line ending in a newline: the script reads its stdin by line counts.
fn as_lines(text: &str) -> String {
    text.lines().map(|l| format!("{l}\n")).collect()
}

/// A new ed25519 host key pair in OpenSSH's formats.
fn host_key(facts: &dyn HostFacts, hostname: &str) -> Result<(String, String), Error> {
    let mut seed = [0u8; 32];
    facts.fill_random(&mut seed)?;
    let pair = Ed25519Keypair::from_seed(&seed);
    let key = PrivateKey::new(KeypairData::Ed25519(pair), format!("root@{hostname}"))
        .map_err(|e| Error::failed(format!("making a host key: {e}"), "report this as a bug"))?;
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| Error::failed(format!("making a host key: {e}"), "report this as a bug"))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| Error::failed(format!("making a host key: {e}"), "report this as a bug"))?;
    Ok((private.to_string(), public + "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_takes_every_value_as_an_argument() {
        // Nothing is ever formatted into the script: it is a constant, and its inputs are
        // positional parameters or files.
        for n in 1..=9 {
            assert!(SCRIPT.contains(&format!("${n}")), "${n} unused");
        }
        assert!(SCRIPT.starts_with("set -eu\n"));
        for script in [SCRIPT, NETWORK, PREPARE] {
            let parsed = std::process::Command::new("/bin/sh")
                .args(["-n", "-c", script])
                .status()
                .unwrap();
            assert!(
                parsed.success(),
                "the guest's /bin/sh cannot parse a script"
            );
        }
    }

    #[test]
    fn hosts_name_the_clone_at_127_0_1_1_only() {
        let hosts = "127.0.0.1\tlocalhost\n127.0.1.1 nox-template\n127.0.1.10 other\n\
                     127.0.1.1\tnox-template.lan nox-template\n::1 localhost\n";
        assert_eq!(
            hosts_for(hosts, "web"),
            "127.0.0.1\tlocalhost\n127.0.1.10 other\n::1 localhost\n127.0.1.1 web\n"
        );
        assert_eq!(hosts_for("", "web"), "127.0.1.1 web\n");
    }

    #[test]
    fn every_part_of_stdin_ends_its_last_line() {
        assert_eq!(as_lines("a\nb"), "a\nb\n");
        assert_eq!(as_lines("a\r\nb\n"), "a\nb\n");
        assert_eq!(as_lines(""), "");
    }

    #[test]
    fn host_keys_differ_per_call_and_are_openssh_ed25519() {
        let host = nox_core::host::fake::FakeHost::default();
        let (a, a_pub) = host_key(&host, "web").unwrap();
        let (b, _) = host_key(&host, "web").unwrap();
        assert!(a.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert!(a_pub.starts_with("ssh-ed25519 ") && a_pub.ends_with(" root@web\n"));
        assert_ne!(a, b);
    }
}
