#!/usr/bin/env bash
# `make kube-up` / `kube-down`: otphsm.yaml under `podman kube play`, beside the compose
# deployment (its network, database, dev PKI, card CA and SoftHSM2 token): single-node
# evaluation of the Pod spec, not a cluster.
#
#   deploy/kube/play.sh up [HOST_PORT]    one replica, gRPC on 127.0.0.1:HOST_PORT (50061)
#   deploy/kube/play.sh down
#
# What differs from a cluster, written into a copy of otphsm.yaml (the lines must exist):
# replicas 1 (two pods would share the host port); a hostPort for the host's clients; the
# Secrets and the card-trust ConfigMap are the compose volume's directories (hostPath):
# podman 4.3 mounts a Secret's data still base64-encoded; the SoftHSM volume is that volume.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
action=${1:?up or down}
port=${2:-50061}
state=$(podman volume inspect --format '{{.Mountpoint}}' otphsm_state)
played=$(mktemp /tmp/otphsm-kube.XXXXXX.yaml)
trap 'rm -f "$played"' EXIT

replace() {  # replace OLD NEW: exactly once, or fail
    python3 - "$played" "$1" "$2" <<'PY'
import sys
path, old, new = sys.argv[1:]
text = open(path).read()
if text.count(old) != 1:
    sys.exit(f"play.sh: expected once in otphsm.yaml: {old!r}")
open(path, "w").write(text.replace(old, new))
PY
}

cp "$here/otphsm.yaml" "$played"
replace "replicas: 2" "replicas: 1"
replace "containerPort: 50051" "containerPort: 50051
              hostIP: 127.0.0.1
              hostPort: $port"
replace "secret: {secretName: otphsm-tls, optional: false, defaultMode: 0440}" \
    "hostPath: {path: $state/pki, type: Directory}"
replace "secret: {secretName: otphsm-hsm-pin, optional: false, defaultMode: 0440}" \
    "hostPath: {path: $state/hsm, type: Directory}"
replace "configMap: {name: otphsm-card-trust}" "hostPath: {path: $state/card-ca, type: Directory}"
replace "claimName: otphsm-softhsm" "claimName: otphsm_state"
replace "otphsm-postgres:5432" "postgres:5432"

# podman keeps a ConfigMap in a volume of its name after `kube down`: removed, so that the
# next play mounts the ConfigMap as otphsm.yaml has it now.
case "$action" in
    up)
        podman kube down "$played" >/dev/null 2>&1 || true
        podman volume rm --force otphsm-config >/dev/null
        podman kube play --network otphsm_default "$played"
        ;;
    down)
        podman kube down "$played"
        podman volume rm --force otphsm-config >/dev/null
        ;;
    *) echo "play.sh: up or down, not $action" >&2; exit 2 ;;
esac
