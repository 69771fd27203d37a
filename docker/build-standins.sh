#!/usr/bin/env bash
# Build the stand-in images that replace the third-party images where no registry
# answers (CI): docker-compose.standins.yml names them.
#   docker/build-standins.sh            # all of them
#   docker/build-standins.sh python     # or any of: python kafka postgres
# Each is a Debian bookworm rootfs (docker/rootfs.sh, cached by content) imported
# with `docker import`, plus the small build context under docker/<name>/. The Kafka
# stand-in also gets the jars `make jars` resolved into stack/lib.
# A stand-in is never tagged with an official image's name.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

declare -A flavor=([python]=python [kafka]=java [postgres]=postgres)
declare -A tags=(
    [python]="streamapp-standin/python:3.11-slim-bookworm"
    [kafka]="streamapp-standin/kafka:3.9 streamapp-standin/zookeeper:3.8"
    [postgres]="streamapp-standin/postgres:15"
)
names=("$@")
[ "${#names[@]}" -gt 0 ] || names=(python kafka postgres)

for name in "${names[@]}"; do
    [ -n "${flavor[$name]:-}" ] || { echo "build-standins: unknown stand-in '$name'" >&2; exit 2; }
    tarball="$(docker/rootfs.sh "${flavor[$name]}")"
    base="streamapp-standin/rootfs-${flavor[$name]}:$(basename "$tarball" .tar | sed 's/.*-//')"
    if ! docker image inspect "$base" >/dev/null 2>&1; then
        echo "build-standins: docker import $tarball -> $base" >&2
        docker import "$tarball" "$base" >/dev/null
    fi
    context="$(mktemp -d)"
    trap 'rm -rf "$context"' EXIT
    cp -r "docker/$name/." "$context/"
    if [ "$name" = kafka ]; then
        compgen -G 'stack/lib/kafka_2.13-*.jar' >/dev/null \
            || { echo "build-standins: no Kafka jars in stack/lib: run make jars" >&2; exit 1; }
        mkdir -p "$context/libs"
        cp stack/lib/*.jar "$context/libs/"
    fi
    tag_args=()
    for tag in ${tags[$name]}; do tag_args+=(-t "$tag"); done
    echo "build-standins: ${tags[$name]}" >&2
    docker build -q --build-arg "ROOTFS=$base" "${tag_args[@]}" "$context" >/dev/null
    rm -rf "$context"
    trap - EXIT
done
