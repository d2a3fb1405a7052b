#!/usr/bin/env bash
# Build CodeBeaker's runtime images with no container registry (idempotent).
#
#   scripts/build-images.sh [--force] [--no-verify|--verify-new] [python|javascript|go|csharp ...]
#
# Each image is a Debian 12 `debootstrap --variant=minbase` root filesystem with the
# language's Debian packages, imported with `docker import` (which drops USER, ENV,
# WORKDIR and CMD unless given as --change lines). Each image carries a hash of its
# recipe (packages, environment, the build steps, the baked agent) as the label
# org.codebeaker.recipe: an image whose label matches is skipped, one whose recipe
# changed is rebuilt, --force rebuilds regardless. Downloaded .debs are cached under
# $CODEBEAKER_CACHE_DIR (default /var/cache/codebeaker) so rebuilds are quick.
# Every image is then verified the way the Docker backend runs it: no network,
# read-only root, init, uid 1000, a tmpfs-backed named volume at /workspace, tmpfs /tmp
# (--verify-new: only the images built by this run; scripts/serve.sh starts that way).
#
# Package managers install into the session, never into the read-only root: pip
# defaults to a user install under /workspace/.local (PYTHONUSERBASE; a venv under
# /workspace works as usual), npm installs into /workspace/node_modules, Go modules go
# to the writable GOPATH. Their caches live on /tmp. Network access for them comes
# from the session (the agent's egress proxy); the images only hold the tools.
#
# The in-container agent (codebeaker-agent, a static binary) is baked in at
# /opt/codebeaker/agent when $CODEBEAKER_AGENT names it (e.g. the static release build,
# target/x86_64-unknown-linux-gnu/release/codebeaker-agent): engines that cannot
# bind-mount it from the host still run sessions.
#
# images/<lang>/Dockerfile build equivalent images from official base images for
# users who have a registry.
set -euo pipefail

SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE_DIR=${CODEBEAKER_CACHE_DIR:-/var/cache/codebeaker}
ALL_LANGS=(python javascript go csharp)
# Bump to force a rebuild everywhere for a reason the recipe hash cannot see.
RECIPE_VERSION=2
# Only when asked: the agent changes with every build of it, and each change would
# rebuild all four images. The backend bind-mounts it from the host anyway.
AGENT=${CODEBEAKER_AGENT:-}
AGENT_PATH_IN_IMAGE=/opt/codebeaker/agent

# Tools the backend relies on inside every image: `timeout` (coreutils), `setsid`
# (util-linux), `ps`/`pkill` (procps) to find and kill a command's process group.
COMMON_PKGS=procps

packages_for() {
    case "$1" in
        python) echo "python3" ;;
        javascript) echo "nodejs" ;;
        go) echo "golang-go" ;;
        csharp) echo "mono-mcs,mono-runtime" ;;
        *) return 1 ;;
    esac
}

# Packages installed with apt inside the new root after debootstrap: debootstrap's own
# dependency resolution cannot configure npm's (virtual packages), and apt leaves out
# Recommends, which keeps the images small.
extra_packages_for() {
    case "$1" in
        python) echo "python3-pip python3-venv python3-matplotlib" ;;
        javascript) echo "npm" ;;
        *) echo "" ;;
    esac
}

# apt-get install PACKAGES inside ROOT, with .debs cached across builds.
apt_in_root() {
    local root=$1; shift
    [ $# -gt 0 ] || return 0
    mkdir -p "$CACHE_DIR/apt"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    find "$CACHE_DIR/apt" -maxdepth 1 -name '*.deb' -exec cp -n {} "$root/var/cache/apt/archives/" \;
    local apt=(chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -qq -o Dpkg::Use-Pty=0)
    "${apt[@]}" update >/dev/null
    "${apt[@]}" install -y --no-install-recommends "$@" >/dev/null
    find "$root/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -n {} "$CACHE_DIR/apt/" \;
    : >"$root/etc/resolv.conf"
}

# Extra ENV lines (one per line) for each language.
env_for() {
    case "$1" in
        # pip: PEP 668 would refuse every install; as uid 1000 it then falls back to a
        # user install, into the session's workspace. Matplotlib draws off-screen.
        python) printf '%s\n' PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONUSERBASE=/workspace/.local \
            PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
            MPLBACKEND=Agg MPLCONFIGDIR=/tmp/matplotlib \
            PATH=/workspace/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin ;;
        # npm installs into ./node_modules of the working directory (/workspace); global
        # installs go to the workspace too; the cache stays on /tmp.
        javascript) printf '%s\n' NODE_ENV=production npm_config_cache=/tmp/npm-cache \
            npm_config_prefix=/workspace/.npm-global npm_config_update_notifier=false npm_config_fund=false \
            npm_config_audit=false \
            PATH=/workspace/.npm-global/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin ;;
        # The cache and GOPATH live on the writable /tmp; there is no C compiler (cgo
        # off). GOPROXY is off until the session's environment points it at the egress
        # proxy's registry access.
        go) printf '%s\n' GOCACHE=/tmp/go-cache GOPATH=/tmp/go CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=mod GOTELEMETRY=off ;;
        csharp) printf '%s\n' MONO_GC_PARAMS=nursery-size=8m ;;
    esac
}

log() { printf '[build-images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

FORCE=0
VERIFY=1
LANGS=()
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        --no-verify) VERIFY=0 ;;
        --verify-new) VERIFY=new ;;
        -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
        python|javascript|go|csharp) LANGS+=("$arg") ;;
        *) die "unknown argument: $arg (expected --force, --no-verify or a language)" ;;
    esac
done
[ ${#LANGS[@]} -gt 0 ] || LANGS=("${ALL_LANGS[@]}")

docker info >/dev/null 2>&1 || die "no Docker engine answers; run scripts/docker-engine.sh first"

ensure_debootstrap() {
    command -v debootstrap >/dev/null 2>&1 && return 0
    [ "$(id -u)" -eq 0 ] || die "debootstrap is missing and this script is not root"
    log "installing debootstrap via apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq debootstrap >/dev/null
}

# The agent binary baked into images, if one is built.
agent_file() {
    [ -n "$AGENT" ] || return 0
    [ -f "$AGENT" ] && [ -x "$AGENT" ] || die "CODEBEAKER_AGENT=$AGENT is not an executable file"
    echo "$AGENT"
}

# A hash of everything that makes LANG's image: its packages and environment, the
# build steps (the functions' own text), the suite, and the baked agent's bytes.
recipe_hash() {
    local lang=$1 agent
    agent=$(agent_file)
    {
        echo "version=$RECIPE_VERSION suite=$SUITE lang=$lang"
        packages_for "$lang"
        extra_packages_for "$lang"
        echo "$COMMON_PKGS"
        env_for "$lang"
        declare -f build_one strip_rootfs add_sandbox_user apt_in_root
        if [ -n "$agent" ]; then sha256sum <"$agent"; else echo "no agent"; fi
    } | sha256sum | cut -c1-16
}

image_is_current() {
    local v
    v=$(docker image inspect --format '{{ index .Config.Labels "org.codebeaker.recipe" }}' "codebeaker-$1:latest" 2>/dev/null) \
        || return 1
    [ "$v" = "$(recipe_hash "$1")" ]
}

strip_rootfs() {
    local root=$1
    rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/usr/share/lintian "$root"/usr/share/linda \
        "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
        "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/log/apt/*
    # Keep only English message catalogues' absence: no locale is needed (C.UTF-8 is built in).
    find "$root"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
    # Derived images (FROM codebeaker-*) keep docs out too.
    mkdir -p "$root"/etc/dpkg/dpkg.cfg.d
    cat >"$root"/etc/dpkg/dpkg.cfg.d/01-codebeaker-nodoc <<'NODOC'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
NODOC
}

add_sandbox_user() {
    local root=$1
    # Written directly: minbase may lack useradd, and the ids must be exactly 1000.
    grep -q '^sandbox:' "$root"/etc/passwd || echo 'sandbox:x:1000:1000:CodeBeaker sandbox:/tmp:/bin/sh' >>"$root"/etc/passwd
    grep -q '^sandbox:' "$root"/etc/group || echo 'sandbox:x:1000:' >>"$root"/etc/group
    grep -q '^sandbox:' "$root"/etc/shadow 2>/dev/null || echo 'sandbox:!:19000:0:99999:7:::' >>"$root"/etc/shadow
    mkdir -p "$root"/workspace
    chown 1000:1000 "$root"/workspace
    chmod 0755 "$root"/workspace
}

build_one() {
    local lang=$1 image="codebeaker-$1:latest" pkgs root t0
    pkgs="$(packages_for "$lang"),$COMMON_PKGS"
    t0=$(date +%s)
    root=$(mktemp -d /var/tmp/codebeaker-rootfs-"$lang".XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$root'" RETURN
    mkdir -p "$CACHE_DIR/debs"
    log "$lang: debootstrap $SUITE minbase + [$pkgs]"
    if ! debootstrap --variant=minbase --include="$pkgs" --cache-dir="$CACHE_DIR/debs" \
        "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1; then
        tail -n 30 "$root.log" >&2
        die "$lang: debootstrap failed (full log: $root.log)"
    fi
    rm -f "$root.log"
    local extra
    extra=$(extra_packages_for "$lang")
    if [ -n "$extra" ]; then
        log "$lang: apt-get install $extra"
        # shellcheck disable=SC2086
        apt_in_root "$root" $extra || die "$lang: apt-get install $extra failed"
    fi
    log "$lang: rootfs ready after $(( $(date +%s) - t0 ))s ($(du -sh "$root" | cut -f1) before stripping)"
    strip_rootfs "$root"
    add_sandbox_user "$root"
    local agent
    agent=$(agent_file)
    if [ -n "$agent" ]; then
        install -D -m 0755 -o 0 -g 0 "$agent" "$root$AGENT_PATH_IN_IMAGE"
        log "$lang: baked the agent in at $AGENT_PATH_IN_IMAGE"
    fi

    local changes=(
        --change "USER 1000:1000"
        --change "WORKDIR /workspace"
        --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        --change "ENV HOME=/tmp"
        --change "ENV LANG=C.UTF-8"
        --change "LABEL org.codebeaker.runtime=$lang"
        --change "LABEL org.codebeaker.recipe=$(recipe_hash "$lang")"
        --change 'CMD ["sleep", "infinity"]'
    )
    local e
    while IFS= read -r e; do
        [ -n "$e" ] && changes+=(--change "ENV $e")
    done < <(env_for "$lang")

    tar --numeric-owner -C "$root" -c \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./run/*' --exclude='./tmp/*' . \
        | docker import "${changes[@]}" --message "codebeaker $lang runtime (debootstrap $SUITE)" - "$image" >/dev/null
    log "$lang: imported $image in $(( $(date +%s) - t0 ))s, $(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"
}

# Runs `sh -c SCRIPT` in IMAGE the way the backend does and checks the output.
verify_one() {
    local lang=$1 image="codebeaker-$1:latest" vol script expected out t0
    t0=$(date +%s)
    case "$lang" in
        python)
            script='python3 -c "import matplotlib, venv" && pip --version >/dev/null && printf "print(\"hello from \" + \"python\")\n" > hello.py && python3 hello.py' ;;
        javascript)
            script='npm --version >/dev/null && printf "console.log(\"hello from \" + \"javascript\")\n" > hello.js && node hello.js' ;;
        go)
            script='printf "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"hello from go\") }\n" > hello.go && go run hello.go' ;;
        csharp)
            script='printf "class H { static void Main() { System.Console.WriteLine(\"hello from csharp\"); } }\n" > hello.cs && mcs -nologo -out:/tmp/hello.exe hello.cs && mono /tmp/hello.exe' ;;
    esac
    expected="hello from $lang"
    # Tools the backend needs, the non-root user, and a read-only root.
    script="command -v timeout setsid ps pkill >/dev/null || { echo missing tools; exit 3; }; \
[ \"\$(id -u)\" = 1000 ] || { echo not uid 1000; exit 4; }; \
if touch /usr/x 2>/dev/null; then echo root is writable; exit 5; fi; $script"
    vol="codebeaker-verify-$lang-$$"
    docker volume create --driver local --opt type=tmpfs --opt device=tmpfs \
        --opt o=size=64m,uid=1000,gid=1000,mode=0755 "$vol" >/dev/null
    set +e
    out=$(docker run --rm --network none --read-only --init --user 1000:1000 \
        --cap-drop ALL --security-opt no-new-privileges --pids-limit 256 --memory 512m \
        --tmpfs /tmp:rw,exec,nosuid,nodev,size=256m,mode=1777 -v "$vol":/workspace \
        "$image" sh -c "$script" 2>&1)
    local rc=$?
    set -e
    docker volume rm -f "$vol" >/dev/null
    if [ $rc -ne 0 ] || [ "$(printf '%s' "$out" | tail -n 1)" != "$expected" ]; then
        log "$lang: verification FAILED (exit $rc): $out"
        return 1
    fi
    log "$lang: verified ($expected) in $(( $(date +%s) - t0 ))s"
}

status=0
for lang in "${LANGS[@]}"; do
    image="codebeaker-$lang:latest"
    if [ $FORCE -eq 0 ] && image_is_current "$lang"; then
        log "$lang: $image is current (recipe $(recipe_hash "$lang")), skipping build (use --force to rebuild)"
        built=0
    else
        ensure_debootstrap
        build_one "$lang"
        built=1
    fi
    if [ "$VERIFY" = 1 ] || { [ "$VERIFY" = new ] && [ $built -eq 1 ]; }; then
        verify_one "$lang" || status=1
    fi
done
[ $status -eq 0 ] || die "some images failed verification"
log "done: ${LANGS[*]}"
