#!/bin/sh
# nox launch script `tailscale`: Tailscale from its official package repository, after checking
# the repository's signing key against the fingerprint Tailscale publishes.
#
# With an auth key ([tailscale] authkey_file or TS_AUTHKEY on the host), nox puts the key in a
# root-only file under /run (never argv, a seed or a log), names it in
# NOX_TAILSCALE_AUTHKEY_FILE, and removes it afterwards. The join is then
#     tailscale up --authkey=file:KEYFILE --hostname NAME
# so the key is not on a command line that any user of the guest could read with ps.
set -eu
# The key file goes when this script ends, however it ends: nox removes it too, but nox may
# be killed while the script runs.
if [ -n "${NOX_TAILSCALE_AUTHKEY_FILE:-}" ]; then
    trap 'rm -f "$NOX_TAILSCALE_AUTHKEY_FILE"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
TAILSCALE_KEY_FINGERPRINT=2596A99EAAB33821893C0A79458CA832957F5868

if command -v tailscale >/dev/null 2>&1; then
    echo "tailscale is already installed"
else
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "the tailscale script supports Debian and Ubuntu guests (no apt-get here)" >&2
        exit 1
    fi
    apt-get update -q
    apt-get install -y -q ca-certificates curl gnupg
    . /etc/os-release
    key=/usr/share/keyrings/tailscale-archive-keyring.gpg
    curl -fsSL "https://pkgs.tailscale.com/stable/$ID/$VERSION_CODENAME.noarmor.gpg" -o "$key.new"
    fingerprint=$(gpg --show-keys --with-colons "$key.new" | awk -F: '$1 == "fpr" { print $10; exit }')
    if [ "$fingerprint" != "$TAILSCALE_KEY_FINGERPRINT" ]; then
        rm -f "$key.new"
        echo "Tailscale's signing key has fingerprint '$fingerprint', not $TAILSCALE_KEY_FINGERPRINT: refusing it" >&2
        exit 1
    fi
    mv "$key.new" "$key"
    chmod 0644 "$key"
    echo "deb [signed-by=$key] https://pkgs.tailscale.com/stable/$ID $VERSION_CODENAME main" \
        >/etc/apt/sources.list.d/tailscale.list
    apt-get update -q
    apt-get install -y -q tailscale
fi

# Without a usable TUN device (a container created with --no-tun), tailscaled can still run in
# userspace-networking mode: the node joins, but the guest's own traffic does not route over it.
if ip tuntap add dev nox-ts-probe mode tun 2>/dev/null; then
    ip link delete nox-ts-probe
elif [ -f /etc/default/tailscaled ]; then
    echo "no TUN device here: tailscaled runs in userspace-networking mode"
    sed -i 's/^FLAGS=.*/FLAGS="--tun=userspace-networking"/' /etc/default/tailscaled
fi
if systemctl list-unit-files tailscaled.service 2>/dev/null | grep -q '^tailscaled'; then
    systemctl enable tailscaled
    systemctl restart tailscaled
fi

if [ -n "${NOX_TAILSCALE_AUTHKEY_FILE:-}" ]; then
    echo "joining the tailnet as $NOX_HOSTNAME"
    tailscale up --authkey="file:$NOX_TAILSCALE_AUTHKEY_FILE" --hostname "$NOX_HOSTNAME"
    echo "tailnet address: $(tailscale ip -4 2>/dev/null || echo unknown)"
else
    echo "no auth key given: join with 'sudo tailscale up' in the instance"
fi
