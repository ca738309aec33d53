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
use nox_core::Error;
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::{LineEnding, PrivateKey};
use virt::domain::Domain;

use crate::agent::GuestAgent;

/// The account the template is built with; every clone removes it.
pub const TEMPLATE_USER: &str = "noxtemplate";

/// The identity script. `$1` hostname, `$2` user, `$3` machine-id, `$4` cloud-init
/// instance-id, `$5` the template's MAC, `$6` the clone's MAC, `$7` the template's user, `$8`
/// the host's clock (seconds.nanoseconds since the epoch), `$9` a free address to ask the DHCP
/// server for first, or empty.
/// Then the byte lengths of the files on its stdin, in order: the host key, its public half,
/// `authorized_keys`, and host randomness. It keeps them in a root-only directory it removes.
const SCRIPT: &str = r#"set -eu
dir=/run/nox-identity
hostname=$1 user=$2 machine_id=$3 instance_id=$4 old_mac=$5 new_mac=$6 template_user=$7 now=$8
want=$9
shift 9

date -u -s "@$now" > /dev/null
printf '%s\n' "$hostname" > /etc/hostname
hostname "$hostname"
# The files arrive on stdin, one after another; their lengths are the remaining arguments.
umask 077
mkdir -p "$dir"
dd bs="$1" count=1 iflag=fullblock status=none of="$dir/ssh_host_ed25519_key"
dd bs="$2" count=1 iflag=fullblock status=none of="$dir/ssh_host_ed25519_key.pub"
dd bs="$3" count=1 iflag=fullblock status=none of="$dir/authorized_keys"
dd bs="$4" count=1 iflag=fullblock status=none of=/dev/urandom
umask 022

# The NIC first, in the background: its DHCP exchange is the longest step. The restored device
# still has the template's MAC. It gets the clone's, which libvirt already uses, in the device
# and in every file naming the old one, and asks for a lease with a new DHCP identity. The
# template's lease is not released: it belongs to no running machine.
(
    set -eu
    iface=
    for d in /sys/class/net/*; do
        if [ "$(cat "$d/address" 2> /dev/null)" = "$old_mac" ]; then iface=$(basename "$d"); fi
    done
    for f in /etc/udev/rules.d/*.rules /etc/network/interfaces /etc/network/interfaces.d/* \
             /etc/netplan/*.yaml /etc/systemd/network/*; do
        if [ -f "$f" ] && grep -qi "$old_mac" "$f"; then sed -i "s/$old_mac/$new_mac/gI" "$f"; fi
    done
    [ -n "$iface" ] || exit 0
    if [ -f "/run/dhclient.$iface.pid" ]; then
        # ifupdown's dhclient: stopped without a release, then started again by ifup.
        kill "$(cat "/run/dhclient.$iface.pid")" 2> /dev/null || true
        ip addr flush dev "$iface"
        ip link set dev "$iface" address "$new_mac"
        rm -f /var/lib/dhcp/dhclient*.leases
        if [ -n "$want" ]; then
            # A free address nox found (network.rs, free_address), asked for at once
            # (INIT-REBOOT): the server acknowledges it, or refuses and the client starts over.
            printf 'lease {\n  interface "%s";\n  fixed-address %s;\n  renew 4 2037/12/31 00:00:00;\n  rebind 4 2037/12/31 00:00:00;\n  expire 4 2037/12/31 00:00:00;\n}\n' \
                "$iface" "$want" > "/var/lib/dhcp/dhclient.$iface.leases"
        fi
        ifup --force "$iface"
    else
        ip link set dev "$iface" down
        ip link set dev "$iface" address "$new_mac"
        ip link set dev "$iface" up
        systemctl try-restart systemd-networkd.service
    fi
) > "$dir/network.log" 2>&1 &
network=$!

# sshd still holds the template's host keys in memory: restarted on the new ones, beside the
# rest (an emulated guest takes a second for it).
rm -f /etc/ssh/ssh_host_*
mv "$dir/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
install -m 644 "$dir/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
systemctl try-restart ssh.service > "$dir/ssh.log" 2>&1 &
ssh=$!

printf '%s\n' "$machine_id" > /etc/machine-id
if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then
    printf '%s\n' "$machine_id" > /var/lib/dbus/machine-id
fi
systemctl --no-block restart systemd-journald.service
sed -i '/^127\.0\.1\.1[[:space:]]/d' /etc/hosts
printf '127.0.1.1 %s\n' "$hostname" >> /etc/hosts

if [ "$user" != "$template_user" ] && getent passwd "$template_user" > /dev/null; then
    userdel --force --remove "$template_user" 2> /dev/null || userdel --force "$template_user"
fi
if ! getent passwd "$user" > /dev/null; then
    useradd --create-home --shell /bin/bash --groups sudo -- "$user"
fi
home=$(getent passwd "$user" | cut -d: -f6)
install -d -m 700 -o "$user" -g "$user" "$home/.ssh"
install -m 600 -o "$user" -g "$user" "$dir/authorized_keys" "$home/.ssh/authorized_keys"
printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user" > "$dir/sudoers"
install -m 440 "$dir/sudoers" /etc/sudoers.d/90-cloud-init-users

# cloud-init: the clone's seed names this instance, and the template's first-boot work counts
# as done for it, so a reboot does not provision the clone again.
if [ -f /var/lib/cloud/data/instance-id ]; then
    old=$(cat /var/lib/cloud/data/instance-id)
    if [ -n "$old" ] && [ -d "/var/lib/cloud/instances/$old" ]; then
        mv "/var/lib/cloud/instances/$old" "/var/lib/cloud/instances/$instance_id"
    fi
    rm -f "/var/lib/cloud/instances/$instance_id/obj.pkl"
    ln -sfn "/var/lib/cloud/instances/$instance_id" /var/lib/cloud/instance
    printf '%s\n' "$instance_id" > /var/lib/cloud/data/instance-id
    printf '%s\n' "$instance_id" > /var/lib/cloud/data/previous-instance-id
fi

if ! wait "$ssh"; then
    cat "$dir/ssh.log" >&2
    exit 1
fi
if ! wait "$network"; then
    cat "$dir/network.log" >&2
    exit 1
fi
rm -rf "$dir"
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

/// Gives the running clone `dom` its identity. Fails naming the step that failed.
pub fn apply(
    dom: &Domain,
    facts: &dyn HostFacts,
    id: &Identity<'_>,
    timeout: Duration,
) -> Result<(), Error> {
    let agent = GuestAgent::new(dom);
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Error::failed(
            format!("giving {} its identity: {what}: {e}", id.hostname),
            "`nox create --cold-boot` boots it without a template",
        )
    };
    // No ping first: the agent was answering when the template was saved, and the script's
    // own call (which libvirt precedes with a sync) fails plainly if it is not.

    let mut machine_id = [0u8; 16];
    facts.fill_random(&mut machine_id)?;
    let machine_id: String = machine_id.iter().map(|b| format!("{b:02x}")).collect();
    let mut random = vec![0u8; 512];
    facts.fill_random(&mut random)?;
    let (private, public) = host_key(facts, id.hostname)?;
    let mut keys = id.ssh_keys.join("\n");
    keys.push('\n');

    let run = |argv: &[&str], stdin: Option<&[u8]>| -> Result<(), Error> {
        let out = agent
            .run(argv, stdin, timeout)
            .map_err(|e| fail(argv[0], &e))?;
        if out.code != 0 {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(fail(
                &format!("{} exited with {}", argv[0], out.code),
                &err.trim(),
            ));
        }
        Ok(())
    };
    // The clock is set by the script: `guest-set-time` also writes the emulated RTC, which takes
    // a second here, and QEMU keeps the RTC on the host's time anyway.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let now = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
    let want = id.dhcp_hint.map(|a| a.to_string()).unwrap_or_default();
    let parts = [
        private.as_bytes(),
        public.as_bytes(),
        keys.as_bytes(),
        &random[..],
    ];
    let lengths: Vec<String> = parts.iter().map(|p| p.len().to_string()).collect();
    let mut argv = vec![
        "/bin/sh",
        "-c",
        SCRIPT,
        "nox-identity",
        id.hostname,
        id.user,
        &machine_id,
        id.instance_id,
        id.template_mac,
        id.mac,
        TEMPLATE_USER,
        &now,
        &want,
    ];
    argv.extend(lengths.iter().map(String::as_str));
    run(&argv, Some(&parts.concat()))
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
