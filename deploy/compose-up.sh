#!/usr/bin/env bash
# `make compose-up`: the compose deployment in order, each one-shot job run once. podman-compose
# starts a service's dependencies again for every dependant (the jobs would run three times,
# the last ones beside a running replica), so the replicas come up with --no-deps after the
# jobs have exited 0. (docker compose honours compose.yaml's depends_on conditions:
# `docker compose up -d` does the same.)
set -euo pipefail
cd "$(dirname "$0")"
COMPOSE=${COMPOSE:-podman-compose}
$COMPOSE up -d --no-deps postgres dev-pki hsm-init
for job in otphsm-dev-pki otphsm-hsm-init; do
    status=$(podman wait "$job")
    if [ "$status" != 0 ]; then
        echo "compose-up: the job $job failed (exit $status):" >&2
        podman logs "$job" >&2
        exit 1
    fi
done
$COMPOSE up -d --no-deps otphsm-1 otphsm-2
