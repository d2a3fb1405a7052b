#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine (idempotent).
#
# CI machines ship only the docker CLI: install Debian's engine if it is missing and
# start it without a bridge or iptables rules (sandboxes run with network mode `none`,
# so no container networking is needed). See ../shared/ENVIRONMENT.md.
set -euo pipefail

LOG=/var/log/dockerd.log
WAIT_SECS=${DOCKER_ENGINE_WAIT_SECS:-60}

log() { printf '[docker-engine] %s\n' "$*" >&2; }

engine_answers() { docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && engine_answers; then
    log "engine already answers: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null || echo '?')"
    exit 0
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
    log "dockerd is already running (pid $(pgrep -x dockerd | head -1)); waiting for it"
else
    # A stale pid file from a killed daemon makes dockerd refuse to start.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    log "starting dockerd --bridge=none --iptables=false (log: $LOG)"
    setsid nohup dockerd --bridge=none --iptables=false >>"$LOG" 2>&1 </dev/null &
    disown || true
fi

start=$(date +%s)
while ! engine_answers; do
    if [ $(( $(date +%s) - start )) -ge "$WAIT_SECS" ]; then
        log "ERROR: docker engine did not answer within ${WAIT_SECS}s; last lines of $LOG:"
        tail -n 40 "$LOG" >&2 || true
        exit 1
    fi
    sleep 0.5
done
log "engine answers after $(( $(date +%s) - start ))s: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"
