#!/usr/bin/env bash
# Regenerates python/featcodec/serving/inference_pb2.py from inference.proto.
# Needs grpcio-tools (which bundles protoc).  Only the message classes are
# generated: the service is wired by featcodec.serving with grpc's generic
# handlers, so no grpcio version is baked into generated code.
set -euo pipefail
cd "$(dirname "$0")/../python"
python=${PYTHON:-python3}
"$python" -m grpc_tools.protoc -I . --python_out=. --pyi_out=. featcodec/serving/inference.proto
echo "wrote featcodec/serving/inference_pb2.py and .pyi"
