#!/usr/bin/env bash
# Run every example as written (called by scripts/test.sh after the test suite).
#
# The SDK examples run in-process; the clients (Rust, Python, Node) run against a real
# codebeaker-server started here on a free loopback port and stopped with SIGTERM,
# which must exit 0 after closing every session. With CODEBEAKER_REQUIRE_DOCKER=1 the
# clients also drive Docker python sessions.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[examples] %s\n' "$*" >&2; }
target=${CARGO_TARGET_DIR:-target}
passed=0
failed=0
run() {
    log "running: $*"
    if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); log "FAILED: $*"; fi
}

cargo build --quiet --examples
cargo build --quiet -p codebeaker-server

for example in quickstart permissions agent_loop; do
    run cargo run --quiet --example "$example"
done

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="ws://127.0.0.1:$port/ws/jsonrpc"
server_log="$target/examples-server.log"
CODEBEAKER_PROFILE=dev run scripts/serve.sh --help
# README command 1, on the debug build the tests already made (serve.sh execs the server).
log "starting the server with scripts/serve.sh on 127.0.0.1:$port (log: $server_log)"
CODEBEAKER_PROFILE=dev scripts/serve.sh --listen "127.0.0.1:$port" >"$server_log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=1)" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { log "the server exited at start-up:"; cat "$server_log" >&2; exit 1; }
    sleep 0.3
done
log "health: $(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/health').read().decode())")"

languages=(deno)
if [ "${CODEBEAKER_REQUIRE_DOCKER:-0}" = 1 ]; then languages+=(python); fi
run cargo run --quiet --example server_client -- "$url"
# The README's python blocks, each run on its own: the SDK's (Docker python sessions,
# the package from the repository) and the raw WebSocket one.
python_block() { awk -v n="$1" '/^```python$/ { k++; inside = (k == n); next } /^```$/ { inside = 0 } inside' README.md; }
if [ "${CODEBEAKER_REQUIRE_DOCKER:-0}" = 1 ]; then
    run env PYTHONPATH=clients/python python3 -c "$(python_block 1 | sed "s#ws://127.0.0.1:5000#ws://127.0.0.1:$port#")"
fi
run python3 -c "$(python_block 2 | sed "s#ws://127.0.0.1:5000/ws/jsonrpc#$url#")"
# The example clients run on the SDKs: the Python package from the repository, the
# TypeScript one built here.
(cd clients/typescript && npx tsc -p tsconfig.json)
for language in "${languages[@]}"; do
    run env PYTHONPATH=clients/python python3 examples/clients/python_client.py "$url" "$language"
    run node examples/clients/node_client.mjs "$url" "$language"
done

log "stopping the server with SIGTERM"
kill -TERM "$server"
if wait "$server"; then passed=$((passed + 1)); else failed=$((failed + 1)); log "FAILED: the server did not exit 0 on SIGTERM"; tail -20 "$server_log" >&2; fi
trap - EXIT

echo "examples: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
