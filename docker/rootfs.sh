#!/usr/bin/env bash
# A Debian bookworm root filesystem as a tarball, made with mmdebstrap from the
# Debian mirror apt is configured with, and cached by content:
#   docker/rootfs.sh FLAVOR          prints the path of the cached tarball
# FLAVOR is python, java or postgres (the packages below). The tarball lives in
# ${STREAMAPP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamapp}/rootfs/, named by a
# hash of everything that decides its content; a missing one is built (needs root
# and mmdebstrap: apt-get install mmdebstrap).
set -euo pipefail

flavor="${1:?usage: docker/rootfs.sh python|java|postgres}"
cache="${STREAMAPP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamapp}"
suite=bookworm

case "$flavor" in
    # what python:3.11-slim-bookworm offers: python with venv and ensurepip, CA certificates
    python) packages="python3.11,python3.11-venv,ca-certificates,netbase,tzdata" ;;
    # one JRE for ZooKeeper and Kafka (the jars come from Maven, not from here)
    java) packages="openjdk-17-jre-headless,netbase,procps" ;;
    # PostgreSQL 15 server and client (initdb, postgres, pg_isready, psql)
    postgres) packages="postgresql-15,postgresql-client-15,netbase,tzdata" ;;
    *) echo "docker/rootfs.sh: unknown flavor '$flavor' (python, java or postgres)" >&2; exit 2 ;;
esac

# The mirrors apt uses here (deb822 .sources or sources.list); deb.debian.org else.
mirror_lines() {
    local main="" security=""
    local files=(/etc/apt/sources.list.d/*.sources /etc/apt/sources.list)
    for f in "${files[@]}"; do
        [ -f "$f" ] || continue
        while read -r key value _; do
            case "$key" in
                URIs:) case "$value" in *security*) security="${security:-$value}" ;; *) main="${main:-$value}" ;; esac ;;
                deb) case "$value" in *security*) security="${security:-$value}" ;; *) main="${main:-$value}" ;; esac ;;
            esac
        done < "$f"
    done
    main="${DEBIAN_MIRROR:-${main:-http://deb.debian.org/debian}}"
    security="${DEBIAN_SECURITY_MIRROR:-${security:-http://deb.debian.org/debian-security}}"
    printf '%s\n' "deb $main $suite main" "deb $main $suite-updates main" \
        "deb $security $suite-security main"
}

mapfile -t mirrors < <(mirror_lines)
options=(
    --variant=minbase
    --format=tar
    --include="$packages"
    --skip=output/dev
    --aptopt='Acquire::Retries "3"'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin'
)
# PostgreSQL's package makes a "main" cluster; the stand-in's entrypoint makes its own.
# The JRE's postinst links its man pages: their directory must exist.
if [ "$flavor" = java ]; then
    options+=(--essential-hook='mkdir -p "$1"/usr/share/man/man1')
fi
if [ "$flavor" = postgres ]; then
    options+=(--customize-hook='rm -rf "$1"/var/lib/postgresql/15/main "$1"/etc/postgresql/15/main')
fi

key="$(printf '%s\n' "$suite" "${options[@]}" "${mirrors[@]}" | sha256sum | cut -c1-16)"
tarball="$cache/rootfs/$flavor-$suite-$key.tar"
if [ ! -s "$tarball" ]; then
    command -v mmdebstrap >/dev/null || {
        echo "docker/rootfs.sh: mmdebstrap missing (apt-get install mmdebstrap)" >&2
        exit 1
    }
    mkdir -p "$cache/rootfs"
    echo "docker/rootfs.sh: building $tarball (Debian $suite: $packages)" >&2
    trap 'rm -f "$tarball.part"' EXIT
    mmdebstrap --quiet "${options[@]}" "$suite" "$tarball.part" "${mirrors[@]}" >&2
    mv "$tarball.part" "$tarball"
fi
echo "$tarball"
