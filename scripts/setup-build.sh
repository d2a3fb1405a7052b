#!/usr/bin/env bash
# Install what building CodeBeaker needs on a fresh Debian machine (idempotent).
#
# deno_core's QuickJS engine is built from source with CMake, and offline it needs
# Debian's SIMDe headers (see build-support/offline.cmake).
set -euo pipefail

log() { printf '[setup-build] %s\n' "$*" >&2; }

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
[ -f /usr/include/simde/simde-common.h ] || missing+=(libsimde-dev)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)

if [ ${#missing[@]} -eq 0 ]; then
    log "build dependencies present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    log "missing ${missing[*]}; run as root or install them: apt-get install -y ${missing[*]}"
    exit 1
fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
log "installed ${missing[*]}"
