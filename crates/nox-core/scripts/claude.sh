#!/bin/sh
# nox launch script `claude`: Claude Code through Anthropic's official installer, for the
# instance's login user (NOX_USER), who is the one to run it. The installer verifies the
# checksum of the binary it downloads.
set -eu
export DEBIAN_FRONTEND=noninteractive
if ! command -v curl >/dev/null 2>&1; then
    apt-get update -q
    apt-get install -y -q ca-certificates curl
fi
user=${NOX_USER:-root}
if ! id "$user" >/dev/null 2>&1; then
    user=root
fi
echo "installing Claude Code for $user"
# The installer is a bash script read from stdin of `bash`, as Anthropic documents it.
runuser -u "$user" -- sh -c 'cd && curl -fsSL https://claude.ai/install.sh | bash'
runuser -u "$user" -- sh -c 'cd && "$HOME/.local/bin/claude" --version'
