#!/usr/bin/env bash
# Make a Docker Engine ready for the compose and swarm tests, and do nothing that is
# already done: install the engine and Compose from Debian when missing, start dockerd
# when none answers, make this node a single-node swarm manager and build the test
# image from the static busybox on this machine (no image registry is reachable here).
#
# Networking is kept to the loopback: the daemon gets no default bridge and writes no
# iptables rules, the swarm listens and advertises on 127.0.0.1, and the swarm's
# ingress overlay is removed so no overlay network or gateway bridge is ever created.
# Test containers use host networking on 127.0.0.x ports.
#
# Environment:
#   NSELF_TEST_IMAGE             image to build (default nself/busybox:test)
#   NSELF_DOCKERD_LOG            daemon log (default /var/log/nself-dockerd.log)
#   NSELF_DOCKER_STORAGE_DRIVER  force a storage driver (default: overlay2, then vfs)
#   NSELF_DOCKER_WAIT            seconds to wait for the daemon (default 60)
set -euo pipefail

IMAGE="${NSELF_TEST_IMAGE:-nself/busybox:test}"
DOCKERD_LOG="${NSELF_DOCKERD_LOG:-/var/log/nself-dockerd.log}"
WAIT="${NSELF_DOCKER_WAIT:-60}"
SOCKET=/var/run/docker.sock

say() { printf 'docker-engine: %s\n' "$*"; }
fail() {
    printf 'docker-engine: FAILED: %s\n' "$*" >&2
    exit 1
}

is_root() { [ "$(id -u)" = 0 ]; }

engine_answers() { docker info >/dev/null 2>&1; }

# -- packages ---------------------------------------------------------------------

apt_install() {
    is_root || fail "need root to install $* (run make test as root)"
    # A fresh machine has no package lists; refresh them only when a package is
    # not known yet, so a machine that has them installs offline-fast.
    local pkg
    for pkg in "$@"; do
        if ! apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            say "refreshing the package lists (apt-get update)"
            apt-get update -qq || fail "apt-get update failed"
            break
        fi
    done
    say "installing $*"
    # The package must not start a system dockerd of its own: one with the default
    # bridge and iptables rules is what this script avoids.
    local policy=/usr/sbin/policy-rc.d own_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq \
        --no-install-recommends "$@" >/dev/null || rc=$?
    [ -z "$own_policy" ] || rm -f "$policy"
    [ "$rc" = 0 ] || fail "apt-get install $* failed (exit $rc)"
}

ensure_packages() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v docker >/dev/null 2>&1 || missing+=(docker.io)
    if ! command -v docker-compose >/dev/null 2>&1 &&
        ! docker compose version >/dev/null 2>&1; then
        missing+=(docker-compose)
    fi
    # The test image is a static busybox; Debian's dynamic busybox would need a libc
    # inside the image.
    if ! [ -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
        missing+=(busybox-static)
    fi
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    if [ "${#missing[@]}" -gt 0 ]; then
        # shellcheck disable=SC2207
        missing=($(printf '%s\n' "${missing[@]}" | sort -u))
        apt_install "${missing[@]}"
    else
        say "docker.io, Compose and busybox-static are installed"
    fi
}

# -- the daemon -------------------------------------------------------------------

storage_drivers() {
    if [ -n "${NSELF_DOCKER_STORAGE_DRIVER:-}" ]; then
        echo "$NSELF_DOCKER_STORAGE_DRIVER"
        return
    fi
    # overlay2 cannot stack on an overlay root (as in some containers); vfs always
    # works, only slower and bigger.
    mkdir -p /var/lib/docker
    if [ "$(stat -f -c %T /var/lib/docker)" = overlayfs ]; then
        echo vfs
    else
        echo overlay2 vfs
    fi
}

wait_for_engine() {
    local pid=$1 deadline=$((SECONDS + WAIT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        engine_answers && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}

alive() {
    # A process that runs, not a zombie left unreaped when a daemon was killed.
    local pid=$1 state
    [ -n "$pid" ] && [ -r "/proc/$pid/status" ] || return 1
    state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$state" ] && [ "$state" != Z ]
}

clear_stale_pid_files() {
    # A daemon that was killed leaves its pid file behind, and dockerd refuses to
    # start while the pid in it exists, even as a zombie.
    local file pid
    for file in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
        [ -f "$file" ] || continue
        pid=$(tr -dc 0-9 <"$file" 2>/dev/null || true)
        if alive "$pid"; then
            if [ "$file" = /var/run/docker.pid ]; then
                fail "a dockerd (pid $pid) runs but does not answer on $SOCKET; see $DOCKERD_LOG"
            fi
            continue
        fi
        say "removing the stale pid file $file (process ${pid:-?} is gone)"
        rm -f "$file"
    done
}

start_dockerd() {
    if engine_answers; then
        say "a Docker Engine answers on $SOCKET ($(docker info --format '{{.ServerVersion}}, {{.Driver}}'))"
        return
    fi
    is_root || fail "no Docker Engine answers and starting one needs root"
    clear_stale_pid_files
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    local driver pid start
    for driver in $(storage_drivers); do
        say "starting dockerd (storage driver $driver), log in $DOCKERD_LOG"
        start=$(($(wc -l <"$DOCKERD_LOG" 2>/dev/null || echo 0) + 1))
        # No default bridge, no iptables rules, no forwarding or masquerading: the
        # tests only ever use host networking on the loopback.
        setsid dockerd \
            --storage-driver "$driver" \
            --bridge=none \
            --iptables=false \
            --ip6tables=false \
            --ip-forward=false \
            --ip-masq=false \
            >>"$DOCKERD_LOG" 2>&1 </dev/null &
        pid=$!
        if wait_for_engine "$pid"; then
            say "dockerd is up (pid $pid, storage driver $driver)"
            return
        fi
        say "dockerd with $driver did not come up; last log lines:"
        tail -n +"$start" "$DOCKERD_LOG" | tail -n 15 >&2 || true
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        # Only a storage driver this kernel or filesystem lacks is worth another try
        # with the next driver; any other failure would only repeat.
        if ! tail -n +"$start" "$DOCKERD_LOG" |
            grep -qiE 'graphdriver|storage.driver|overlay|driver not supported'; then
            break
        fi
    done
    fail "no Docker Engine could be started here (see $DOCKERD_LOG)"
}

# -- the swarm --------------------------------------------------------------------

engine_api() {
    # Talk to the engine's API over its socket where the CLI would ask for
    # confirmation (removing the ingress network).
    curl -fsS --unix-socket "$SOCKET" -X "$1" "http://localhost$2" >/dev/null
}

ensure_swarm() {
    local state control
    state=$(docker info --format '{{.Swarm.LocalNodeState}}')
    if [ "$state" != active ]; then
        say "initializing a single-node swarm on 127.0.0.1"
        docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 \
            >/dev/null || fail "docker swarm init failed"
    fi
    control=$(docker info --format '{{.Swarm.ControlAvailable}}')
    [ "$control" = true ] || fail "this node is in a swarm but is not a manager"
    # The ingress overlay and the gateway bridge swarm init makes for it would give
    # this machine addresses outside the loopback; host-networked services need
    # neither, so both go while nothing uses them.
    # The engine removes the ingress network and its sandbox in the background, and
    # the bridge can only go once nothing is attached to it any more.
    local deadline=$((SECONDS + 15))
    if docker network inspect ingress >/dev/null 2>&1 &&
        [ -z "$(docker service ls -q)" ]; then
        say "removing the swarm's ingress overlay (tests use host networking)"
        if engine_api DELETE /networks/ingress; then
            while docker network inspect ingress >/dev/null 2>&1 &&
                [ "$SECONDS" -lt "$deadline" ]; do
                sleep 0.5
            done
        else
            say "could not remove ingress; continuing"
        fi
    fi
    while docker network inspect docker_gwbridge >/dev/null 2>&1 &&
        ! docker network inspect ingress >/dev/null 2>&1; do
        if [ "$(docker network inspect docker_gwbridge --format '{{len .Containers}}')" = 0 ] &&
            engine_api DELETE /networks/docker_gwbridge; then
            say "removed the unused docker_gwbridge bridge"
            break
        fi
        [ "$SECONDS" -lt "$deadline" ] || {
            say "docker_gwbridge is still in use; leaving it"
            break
        }
        sleep 0.5
    done
    say "swarm: this node is an active manager"
}

# -- the test image ---------------------------------------------------------------

ensure_image() {
    if docker image inspect "$IMAGE" >/dev/null 2>&1; then
        say "image $IMAGE exists"
        return
    fi
    say "building $IMAGE from /bin/busybox with docker import (no registry needed)"
    local root
    root=$(mktemp -d)
    mkdir -p "$root/bin" "$root/tmp" "$root/www" "$root/etc"
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    local applet
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' \
        >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    printf 'nself test image\n' >"$root/www/index.html"
    tar -C "$root" -c . | docker import \
        -c 'ENV PATH=/bin' \
        -c 'CMD ["/bin/sh"]' \
        -c 'LABEL org.nself.test-image=busybox' \
        - "$IMAGE" >/dev/null || {
        rm -rf "$root"
        fail "docker import of $IMAGE failed"
    }
    rm -rf "$root"
    say "built $IMAGE"
}

smoke_test() {
    local out
    out=$(docker run --rm --network none "$IMAGE" /bin/busybox echo ok 2>&1) ||
        fail "a container of $IMAGE does not run: $out"
    [ "$out" = ok ] || fail "a container of $IMAGE printed '$out' instead of 'ok'"
    say "a container of $IMAGE runs; the engine is ready"
}

ensure_packages
start_dockerd
ensure_swarm
ensure_image
smoke_test
