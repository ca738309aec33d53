#!/bin/sh
# A three-layer `docker build` from an image imported from a local rootfs tarball (nothing can
# be pulled): the live test (tests/src/docker.rs, run by tests/live/scripts.rs) and `cargo xtask bench docker` both run it,
# as root in the instance. Usage: docker-three-layer-build.sh TAG PAYLOAD_MIB
# Prints key=value lines: build_seconds, and the bytes under Docker's data root (du) before
# the build (after the import) and after it.
set -eu
tag=$1
payload_mib=$2
root=$(docker info --format '{{.DockerRootDir}}')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The base: dash and the libraries it links, plus a payload file so that a driver that copies
# every layer whole (vfs) shows it.
mkdir -p "$work/rootfs/tmp"
for f in /bin/dash $(ldd /bin/dash | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'); do
    cp -L --parents "$f" "$work/rootfs"
done
ln -s dash "$work/rootfs/bin/sh"
head -c "$((payload_mib * 1048576))" /dev/urandom > "$work/rootfs/payload"
tar -C "$work/rootfs" -cf "$work/base.tar" .
docker import "$work/base.tar" "nox-base-$tag" >/dev/null
rm -rf "$work/rootfs" "$work/base.tar"

mkdir "$work/ctx"
echo layer-two > "$work/ctx/two.txt"
cat > "$work/ctx/Dockerfile" <<DOCKERFILE
FROM nox-base-$tag
RUN echo layer-one > /one
COPY two.txt /two
RUN echo layer-three > /three && echo extra >> /payload
DOCKERFILE
sync
echo "disk_before=$(du -sxb "$root" | cut -f1)"
start=$(date +%s.%N)
DOCKER_BUILDKIT=0 docker build -q -t "nox-three-layers-$tag" "$work/ctx" >/dev/null
end=$(date +%s.%N)
sync
echo "disk_after=$(du -sxb "$root" | cut -f1)"
echo "build_seconds=$(awk "BEGIN { printf \"%.3f\", $end - $start }")"
