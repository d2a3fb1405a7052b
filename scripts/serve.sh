#!/usr/bin/env bash
# Start the CodeBeaker server (README command 1): one command, on a fresh machine too.
#
#   scripts/serve.sh [--no-docker] [server flags...]      (server flags: scripts/serve.sh --help)
#
# Prepares what the server needs, skipping what is already there, then runs
# `codebeaker-server` (release build) with the other arguments:
#   1. build dependencies (cmake, libsimde-dev)                 scripts/setup-build.sh
#   2. a Docker engine (installs Debian's docker.io if missing)  scripts/docker-engine.sh
#   3. the runtime images python, javascript, go and csharp      scripts/build-images.sh
#      (~7 minutes the first time; built while the server compiles)
#   4. the in-container agent, a static binary (rebuilt when its sources changed)
#                                                                scripts/build-agent.sh
# and serves python, javascript, go and csharp in containers, TypeScript/JavaScript on
# Deno. --no-docker skips steps 2-4 and serves Deno only (`--backends deno`).
# /health says what is missing and which of these scripts fixes it.
#
# CODEBEAKER_PROFILE=dev builds and runs the debug build; CODEBEAKER_SERVER_BIN=PATH runs
# that server binary instead of building one (the tests start the server this way).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[serve] %s\n' "$*" >&2; }

docker=1
help=0
args=()
for arg in "$@"; do
    case "$arg" in
        --no-docker) docker=0 ;;
        -h|--help) help=1; args+=("$arg") ;;
        *) args+=("$arg") ;;
    esac
done
[ $docker -eq 1 ] || args+=(--backends deno)

profile=${CODEBEAKER_PROFILE:-release}
server() {
    if [ -n "${CODEBEAKER_SERVER_BIN:-}" ]; then
        exec "$CODEBEAKER_SERVER_BIN" "${args[@]}"
    fi
    exec cargo run --profile "$profile" --quiet -p codebeaker-server -- "${args[@]}"
}
[ $help -eq 0 ] || server

SECONDS=0
[ -n "${CODEBEAKER_SERVER_BIN:-}" ] || scripts/setup-build.sh

images_pid=
if [ $docker -eq 1 ]; then
    if ! scripts/docker-engine.sh; then
        log "ERROR: no Docker engine; fix the above or run '$0 --no-docker' (Deno only)"
        exit 1
    fi
    # Images build in the background while the agent and the server compile; current
    # images are skipped (and their verification with them).
    scripts/build-images.sh --verify-new &
    images_pid=$!

    target_dir=${CARGO_TARGET_DIR:-$PWD/target}
    if [ -n "${CODEBEAKER_AGENT:-}" ]; then
        log "agent: $CODEBEAKER_AGENT (from CODEBEAKER_AGENT, not rebuilt)"
    else
        agent=$target_dir/x86_64-unknown-linux-gnu/release/codebeaker-agent
        changed=
        if [ -x "$agent" ]; then
            changed=$(find codebeaker-agent Cargo.lock -type f -newer "$agent" -print -quit)
        fi
        if [ -x "$agent" ] && [ -z "$changed" ]; then
            log "agent: $agent is up to date"
        else
            log "building the in-container agent (static release binary; a few minutes the first time)"
            scripts/build-agent.sh >/dev/null
            log "agent built: $agent"
        fi
        export CODEBEAKER_AGENT=$agent
    fi
fi

if [ -z "${CODEBEAKER_SERVER_BIN:-}" ]; then
    log "building the server ($profile profile; several minutes the first time)"
    cargo build --profile "$profile" --quiet -p codebeaker-server
fi

if [ -n "$images_pid" ]; then
    if ! wait "$images_pid"; then
        log "ERROR: building the runtime images failed (see the [build-images] lines above); rerun $0, or $0 --no-docker"
        exit 1
    fi
fi
# Egress refuses documentation ranges (192.0.2/24, 198.51.100/24, 203.0.113/24,
# 2001:db8::/32) as not public. Some networks route the package registries through them:
# say so, and how to allow exactly those addresses.
if [ $docker -eq 1 ] && [ -z "${CODEBEAKER_ALLOWED_PRIVATE:-}" ] && [[ " ${args[*]} " != *" --allowed-private"* ]]; then
    for host in pypi.org files.pythonhosted.org registry.npmjs.org proxy.golang.org api.nuget.org; do
        for address in $(getent ahosts "$host" 2>/dev/null | awk '{print $1}' | sort -u); do
            case "$address" in
                192.0.2.*|198.51.100.*|203.0.113.*|2001:db8:*|2001:DB8:*)
                    log "NOTE: $host resolves to $address, a documentation address that egress refuses;" \
                        "to allow it: --allowed-private $address (or CODEBEAKER_ALLOWED_PRIVATE)" ;;
            esac
        done
    done
fi
log "ready after ${SECONDS}s; starting the server"
server
