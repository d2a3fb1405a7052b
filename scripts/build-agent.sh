#!/usr/bin/env bash
# Build the in-container agent as a static binary (no musl toolchain needed: glibc's
# static link, `-C target-feature=+crt-static`) and print its path.
#
#   scripts/build-agent.sh            # -> target/x86_64-unknown-linux-gnu/release/codebeaker-agent
#
# The Docker backend finds it there (or next to its own executable, or at
# $CODEBEAKER_AGENT) and bind-mounts it read-only into every sandbox container.
# scripts/build-images.sh bakes it into the images when CODEBEAKER_AGENT names it.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-gnu
export CMAKE_TOOLCHAIN_FILE=${CMAKE_TOOLCHAIN_FILE:-$PWD/build-support/offline.cmake}
RUSTFLAGS="-C target-feature=+crt-static" cargo build -q -p codebeaker-agent --release --target "$TARGET"
agent="${CARGO_TARGET_DIR:-$PWD/target}/$TARGET/release/codebeaker-agent"
# A static binary has no interpreter: it runs in any image with a Linux kernel.
if file "$agent" 2>/dev/null | grep -q 'dynamically linked'; then
    echo "[build-agent] ERROR: $agent is dynamically linked" >&2
    exit 1
fi
echo "$agent"
