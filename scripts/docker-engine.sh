#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine (idempotent), or stop/restart it.
#
#   scripts/docker-engine.sh [start|stop|restart]     (default: start)
#
# CI machines ship only the docker CLI: install Debian's engine if it is missing and
# start it without a bridge or iptables rules (sandboxes run with network mode `none`,
# so no container networking is needed).
#
# The engine runs with --live-restore: stopping or restarting it leaves the session
# containers (and the agents and interpreters in them) running, and the Docker backend
# re-attaches to them when the engine answers again. `start` on an engine that answers
# but runs without live restore leaves it alone and says so (restart it to change that).
#
# A quick stop/start used to fail while the previous containerd was still exiting: `stop`
# waits until both dockerd and its containerd are gone, and `start` waits for a dockerd
# or containerd that is still going away before it starts a new one.
set -euo pipefail

LOG=/var/log/dockerd.log
WAIT_SECS=${DOCKER_ENGINE_WAIT_SECS:-60}
DOCKERD_FLAGS=(--bridge=none --iptables=false --live-restore)

log() { printf '[docker-engine] %s\n' "$*" >&2; }

engine_answers() { docker info >/dev/null 2>&1; }

# Pids of the engine's own daemons: dockerd, and the containerd it started (its config
# lives under /var/run/docker). Container shims outlive both on purpose (live restore).
engine_pids() {
    pgrep -x dockerd || true
    pgrep -f '^containerd --config /var/run/docker/containerd/containerd.toml' || true
}

wait_until_gone() {
    local start
    start=$(date +%s)
    while [ -n "$(engine_pids)" ]; do
        if [ $(( $(date +%s) - start )) -ge "$WAIT_SECS" ]; then
            log "ERROR: engine processes still running after ${WAIT_SECS}s: $(engine_pids | tr '\n' ' ')"
            return 1
        fi
        sleep 0.2
    done
}

stop_engine() {
    local pid
    pid=$(pgrep -x dockerd || true)
    if [ -n "$pid" ]; then
        log "stopping dockerd (pid $pid)"
        kill -TERM $pid 2>/dev/null || true
    fi
    wait_until_gone
    # A stale pid file from a killed daemon makes dockerd refuse to start.
    rm -f /var/run/docker.pid
    log "engine stopped"
}

start_engine() {
    if command -v docker >/dev/null 2>&1 && engine_answers; then
        local live
        live=$(docker info --format '{{.LiveRestoreEnabled}}' 2>/dev/null || echo '?')
        log "engine already answers: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null || echo '?'), live restore: $live"
        [ "$live" = true ] || log "note: live restore is off; run '$0 restart' to turn it on"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        log "no engine answers and this script is not root: cannot install or start dockerd"
        exit 1
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        log "dockerd missing: installing docker.io via apt"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq docker.io >/dev/null
        log "docker.io installed"
    fi
    if pgrep -x dockerd >/dev/null 2>&1; then
        # Starting, or still stopping: give it the time to do either.
        log "dockerd is already running (pid $(pgrep -x dockerd | head -1)); waiting for it"
        local start
        start=$(date +%s)
        while ! engine_answers && pgrep -x dockerd >/dev/null 2>&1; do
            [ $(( $(date +%s) - start )) -lt "$WAIT_SECS" ] || break
            sleep 0.2
        done
        engine_answers && { log "engine answers"; return 0; }
    fi
    # The previous engine (or its containerd) may still be going away.
    wait_until_gone
    rm -f /var/run/docker.pid
    log "starting dockerd ${DOCKERD_FLAGS[*]} (log: $LOG)"
    setsid nohup dockerd "${DOCKERD_FLAGS[@]}" >>"$LOG" 2>&1 </dev/null &
    disown || true

    local start
    start=$(date +%s)
    while ! engine_answers; do
        if [ $(( $(date +%s) - start )) -ge "$WAIT_SECS" ]; then
            log "ERROR: docker engine did not answer within ${WAIT_SECS}s; last lines of $LOG:"
            tail -n 40 "$LOG" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
    log "engine answers after $(( $(date +%s) - start ))s: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"
}

case "${1:-start}" in
    start) start_engine ;;
    stop) stop_engine ;;
    restart) stop_engine; start_engine ;;
    -h|--help) sed -n '2,17p' "$0" ;;
    *) log "unknown command: $1 (expected start, stop or restart)"; exit 2 ;;
esac
