#!/usr/bin/env bash
# A local Debian bookworm base image for machines that reach no container registry:
# debootstrap --variant=minbase from the host's Debian mirror, imported as IMAGE
# (default localhost/debian:bookworm). Does nothing when the image exists already.
set -euo pipefail
IMAGE=${1:-localhost/debian:bookworm}
if podman image exists "$IMAGE"; then
    exit 0
fi
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
mirror=${mirror:-http://deb.debian.org/debian}
rootfs=$(mktemp -d /var/tmp/otphsm-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "base-image: debootstrap bookworm from $mirror (about half a minute)"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
tar -C "$rootfs" -c . | podman import --quiet - "$IMAGE" >/dev/null
echo "base-image: $IMAGE"
