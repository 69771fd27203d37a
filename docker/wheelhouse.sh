#!/usr/bin/env bash
# make wheelhouse: every wheel the image installs (install_requires + the notebook
# extra, under constraints.txt, plus the build backend of pyproject.toml) in
# ./wheelhouse, so `docker build --build-arg OFFLINE=1` needs no package index.
# The wheels are built once per content (requirements, constraints, pip's Python)
# in ${STREAMAPP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamapp}/wheelhouse/ and
# copied from there.
#   docker/wheelhouse.sh [PYTHON]     PYTHON: a Python 3.11 with pip (.venv/bin/python)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python="${1:-.venv/bin/python}"
cache="${STREAMAPP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamapp}"
out="${WHEELHOUSE:-wheelhouse}"

requirements="$(mktemp)"
trap 'rm -f "$requirements"' EXIT
"$python" - > "$requirements" <<'PY'
import configparser
import tomllib

c = configparser.ConfigParser(interpolation=None)
c.read("setup.cfg")
print(c["options"]["install_requires"])
print(c["options.extras_require"]["notebook"])
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))
PY
constraints=()
[ -f constraints.txt ] && constraints=(--constraint constraints.txt)

key="$({ cat "$requirements"; cat constraints.txt 2>/dev/null || true
         "$python" -c 'import sys; print(sys.version_info[:2])'; } | sha256sum | cut -c1-16)"
dir="$cache/wheelhouse/$key"
if [ ! -f "$dir/.complete" ]; then
    echo "wheelhouse: building $dir" >&2
    rm -rf "$dir"
    mkdir -p "$dir"
    "$python" -m pip wheel --quiet --wheel-dir "$dir" --requirement "$requirements" \
        "${constraints[@]}"
    touch "$dir/.complete"
fi
rm -rf "$out"
mkdir -p "$out"
cp "$dir"/*.whl "$out/"
echo "wheelhouse: $(ls "$out" | wc -l) wheels in $out (from $dir)" >&2
