#!/usr/bin/env bash
# Generate the Python code for proto/otphsm/v1/*.proto (messages, .pyi stubs, gRPC stubs and
# their typed .pyi) with grpcio-tools and mypy-protobuf.
#   scripts/proto.sh            regenerate otphsm/v1/ in place (what `make proto` runs)
#   scripts/proto.sh --check    regenerate into a temporary directory and fail if the committed
#                               files differ (what `make proto-check` and CI run)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PATH="$(dirname "$PY"):$PATH"  # protoc-gen-mypy_grpc lives beside the venv's python

# google/api/annotations.proto and http.proto (the HTTP routes) ship with googleapis-common-protos
GOOGLEAPIS=$("$PY" -c 'import os, google.api.annotations_pb2 as a; print(os.path.dirname(os.path.dirname(os.path.dirname(a.__file__))))')

generate() {  # generate OUTPUT_ROOT
    mkdir -p "$1/otphsm/v1"
    "$PY" -m grpc_tools.protoc -I proto -I "$GOOGLEAPIS" \
        --python_out="$1" --pyi_out="$1" --grpc_python_out="$1" --mypy_grpc_out="$1" \
        proto/otphsm/v1/*.proto 2> >(grep -v '^Writing mypy to' >&2)
}

if [ "${1:-}" = "--check" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    generate "$tmp"
    if ! diff -r -x __init__.py -x __pycache__ "$tmp/otphsm/v1" otphsm/v1; then
        echo "proto-check: otphsm/v1 is stale: run \`make proto\` and commit the result" >&2
        exit 1
    fi
    echo "proto-check: otphsm/v1 matches proto/"
else
    find otphsm/v1 -maxdepth 1 \( -name '*_pb2*.py' -o -name '*_pb2*.pyi' \) -delete 2>/dev/null || true
    generate .
fi
