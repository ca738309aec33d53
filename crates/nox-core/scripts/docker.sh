#!/bin/sh
# nox launch script `docker`: Docker Engine, running, with `docker info` answering.
#
# The distribution's own docker.io when it has one (Debian, Ubuntu); otherwise Docker's apt
# repository, after checking its signing key against the fingerprint Docker publishes.
# Containers need nesting for Docker: nox enables it before this script runs.
set -eu
export DEBIAN_FRONTEND=noninteractive
DOCKER_KEY_FINGERPRINT=9DC858229FC7DD38854AE2D88D81803C0EBFCD88

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo "docker is already installed and running: $(docker --version)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "the docker script supports Debian and Ubuntu guests (no apt-get here)" >&2
    exit 1
fi

apt-get update -q
candidate=$(apt-cache policy docker.io 2>/dev/null | sed -n 's/^ *Candidate: *//p')
if [ -n "$candidate" ] && [ "$candidate" != "(none)" ]; then
    echo "installing docker.io $candidate from the distribution"
    apt-get install -y -q docker.io
else
    echo "the distribution has no docker.io: using Docker's apt repository"
    apt-get install -y -q ca-certificates curl gnupg
    . /etc/os-release
    install -d -m 0755 /etc/apt/keyrings
    key=/etc/apt/keyrings/docker.asc
    curl -fsSL "https://download.docker.com/linux/$ID/gpg" -o "$key.new"
    fingerprint=$(gpg --show-keys --with-colons "$key.new" | awk -F: '$1 == "fpr" { print $10; exit }')
    if [ "$fingerprint" != "$DOCKER_KEY_FINGERPRINT" ]; then
        rm -f "$key.new"
        echo "Docker's signing key has fingerprint '$fingerprint', not $DOCKER_KEY_FINGERPRINT: refusing it" >&2
        exit 1
    fi
    mv "$key.new" "$key"
    chmod 0644 "$key"
    echo "deb [arch=$(dpkg --print-architecture) signed-by=$key] https://download.docker.com/linux/$ID $VERSION_CODENAME stable" \
        >/etc/apt/sources.list.d/docker.list
    apt-get update -q
    apt-get install -y -q docker-ce docker-ce-cli containerd.io
fi

systemctl enable --now docker
tries=0
until docker info >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 60 ]; then
        echo "dockerd did not answer within 60 s" >&2
        systemctl status docker --no-pager >&2 || true
        exit 1
    fi
    sleep 1
done
echo "docker is running: $(docker --version)"
