#!/usr/bin/env bash
# Regenerates shared/proto/ from protos/ (run from the repository root).
# Requires the exact grpcio-tools pinned in pyproject.toml's "dev" extra; $PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.}
"${PYTHON:-python}" -m grpc_tools.protoc -Ishared/proto=protos \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  protos/model.proto protos/latentlink.proto
