#!/usr/bin/env bash
# Run the whole CodeBeaker test suite on this machine (README command 2).
#
# Prepares everything the tests need, skipping what is already there:
#   1. build dependencies (cmake, libsimde-dev)          scripts/setup-build.sh
#   2. a Docker engine                                   scripts/docker-engine.sh
#   3. the runtime images, built without a registry      scripts/build-images.sh
#   4. the client libraries of the cross-language tests  (pip websockets, mcp,
#      prometheus-client, kubernetes-validate; the TypeScript SDK's npm packages; Debian python3-matplotlib,
#      redis-server)
#   5. the in-container agent, a static binary          scripts/build-agent.sh
# then runs every test of the workspace with Docker and the clients required, so
# nothing is skipped, and every example as written (scripts/examples.sh). Images build in the background while the tests compile.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test] %s\n' "$*" >&2; }
SECONDS=0
# One build per run: incremental caches would only add gigabytes to target/.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

scripts/setup-build.sh
scripts/docker-engine.sh

mkdir -p target
images_log=target/build-images.log
log "building runtime images in the background (log: $images_log)"
scripts/build-images.sh >"$images_log" 2>&1 &
images_pid=$!

log "installing client libraries for the cross-language tests"
# websockets: the Python WebSocket client; mcp: the official MCP client SDK;
# prometheus-client: the exposition-format parser the /metrics tests use;
# opentelemetry-proto: the official OTLP messages the trace tests' receiver decodes;
# pytest, jsonschema: the Python SDK's suite (clients/python/tests), whose messages are
# checked against docs/schema/.
# kubernetes-validate: the Kubernetes API schemas deploy/kubernetes/ is validated against, offline.
python3 -m pip install --quiet --disable-pip-version-check 'websockets>=12' 'mcp>=1.9' 'prometheus-client>=0.20' \
    'opentelemetry-proto>=1.20' 'pytest>=7' 'jsonschema>=4.18' 'kubernetes-validate>=1.30' >&2
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
    # The agent's notebook tests draw a figure with the system python3 (as the images do).
    log "installing python3-matplotlib for the agent's rich-output tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-matplotlib >/dev/null
fi
if ! command -v redis-server >/dev/null 2>&1; then
    # The cluster tests and bench start a real Redis of their own (Debian's redis-server).
    log "installing redis-server for the cluster tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
if [ ! -d clients/typescript/node_modules/typescript ]; then
    # The TypeScript SDK's dependencies (ws; typescript and types to build it).
    (cd clients/typescript && npm install --no-audit --no-fund --silent --ignore-scripts) >&2
fi

log "building the in-container agent (static release binary)"
scripts/build-agent.sh >&2

log "compiling the test suite"
cargo test --workspace --no-run --quiet

if ! wait "$images_pid"; then
    log "building the runtime images failed; last lines of $images_log:"
    tail -n 40 "$images_log" >&2
    exit 1
fi
log "runtime images ready ($(grep -c . "$images_log" || true) log lines); ${SECONDS}s so far"

export CODEBEAKER_REQUIRE_DOCKER=1
export CODEBEAKER_REQUIRE_CLIENTS=1
export RUST_BACKTRACE=1
log "running every test"
cargo test --workspace --no-fail-fast
log "running every example as written"
scripts/examples.sh
log "all tests passed in ${SECONDS}s"
