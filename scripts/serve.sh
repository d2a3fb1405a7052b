#!/usr/bin/env bash
# Start the CodeBeaker server (README command 1).
#
# Installs the build dependencies if needed, then runs `codebeaker-server` in release
# mode with any arguments given (see `scripts/serve.sh --help`). Deno sessions are always
# available; Docker languages are enabled when a Docker engine answers (start one with
# scripts/docker-engine.sh and build the images with scripts/build-images.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-build.sh
# CODEBEAKER_PROFILE=dev reuses a debug build (the test suite starts the server this way).
exec cargo run --profile "${CODEBEAKER_PROFILE:-release}" --quiet -p codebeaker-server -- "$@"
