#!/bin/sh
# `nox check`: probes what this instance can do, from the inside, and prints key=value lines
# that nox turns into the report and its verdicts (nox-core's compat.rs). Every probe undoes
# what it made. Runs as root; needs only what a Debian/Ubuntu base system has.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LC_ALL=C
export PATH LC_ALL

# One line per fact; an error keeps its first line only.
say() { printf '%s=%s\n' "$1" "$(printf '%s\n' "$2" | head -n 1)"; }

say kernel "$(uname -r)"
say arch "$(uname -m)"
say virt "$(systemd-detect-virt 2>/dev/null || echo none)"
say uid_map "$(awk '{ printf "%s %s %s;", $1, $2, $3 }' /proc/self/uid_map)"
say gid_map "$(awk '{ printf "%s %s %s;", $1, $2, $3 }' /proc/self/gid_map)"

# TUN: can a device actually be created (the node exists in --no-tun containers' minds only
# if the host passed it through, and the cgroup must allow opening it)?
if [ -c /dev/net/tun ]; then say tun_node yes; else say tun_node no; fi
if err=$(ip tuntap add dev nox-check-tun mode tun 2>&1); then
    ip link delete nox-check-tun 2>/dev/null
    say tun yes
else
    say tun no
    say tun_error "$err"
fi

# Outbound route: Tailscale in any mode needs to reach its coordination server. A guest just
# booted may still be asking DHCP for one: give it 10 s.
tries=0
while ! ip -4 route show default 2>/dev/null | grep -q . && [ "$tries" -lt 20 ]; do
    sleep 0.5
    tries=$((tries + 1))
done
if ip -4 route show default 2>/dev/null | grep -q .; then say default_route yes; else say default_route no; fi

# Nesting: runc creates mount, PID and network namespaces and mounts a fresh proc and sysfs.
if err=$(unshare --mount --pid --fork --mount-proc true 2>&1); then say nesting_proc yes; else say nesting_proc no; say nesting_proc_error "$err"; fi
if err=$(unshare --mount --net sh -c 'mount -t sysfs sysfs /sys' 2>&1); then say nesting_sys yes; else say nesting_sys no; say nesting_sys_error "$err"; fi

# overlayfs where Docker keeps its layers: /var/lib/docker (in a nox container with nesting, a
# host directory bound there, off the overlay root), or /var/lib where Docker would create it.
# Mounted as Docker's overlay2 driver does: plainly, and in a user namespace, where trusted.*
# xattrs are out of reach, with userxattr when the plain mount fails.
base=/var/lib/docker
[ -d "$base" ] || base=/var/lib
say overlayfs_dir "$base"
dir=$(mktemp -d "$base/nox-check.XXXXXX" 2>/dev/null)
if [ -n "$dir" ]; then
    mkdir -p "$dir/lower" "$dir/upper" "$dir/work" "$dir/merged"
    opts="lowerdir=$dir/lower,upperdir=$dir/upper,workdir=$dir/work"
    if err=$(mount -t overlay overlay -o "$opts" "$dir/merged" 2>&1) ||
        err=$(mount -t overlay overlay -o "$opts,userxattr" "$dir/merged" 2>&1); then
        umount "$dir/merged"
        say overlayfs yes
    else
        say overlayfs no
        say overlayfs_error "$err"
    fi
    rm -rf "$dir"
else
    say overlayfs no
    say overlayfs_error "cannot create a directory under $base"
fi

# cgroups: which version, and whether this instance may make cgroups below its own, as
# dockerd does (delegation). On v1, the memory controller's hierarchy stands for the rest.
if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
    say cgroup v2
    own=$(sed -n 's/^0:://p' /proc/self/cgroup)
    probe=/sys/fs/cgroup${own%/}/nox-check.$$
else
    say cgroup v1
    own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' /proc/self/cgroup)
    probe=/sys/fs/cgroup/memory${own%/}/nox-check.$$
fi
if err=$(mkdir "$probe" 2>&1); then
    rmdir "$probe"
    say cgroup_delegated yes
else
    say cgroup_delegated no
    say cgroup_delegated_error "$err"
fi
