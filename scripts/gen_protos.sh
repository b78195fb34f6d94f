#!/usr/bin/env bash
# Regenerates shared/proto/ (the package latentlink.shared.proto) from protos/.
# Usage: scripts/gen_protos.sh [OUT_DIR]   (default: shared/proto; tests write elsewhere and compare)
# Requires the exact grpcio-tools pinned in pyproject.toml's "dev" extra; $PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-shared/proto}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The include-path mapping makes protoc write absolute imports (from latentlink.shared.proto import ...).
"${PYTHON:-python}" -m grpc_tools.protoc -Ilatentlink/shared/proto=protos \
  --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" \
  protos/model.proto protos/latentlink.proto protos/container.proto
mkdir -p "$out"
cp "$tmp"/latentlink/shared/proto/*.py "$tmp"/latentlink/shared/proto/*.pyi "$out"/
