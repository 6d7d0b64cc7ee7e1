#!/usr/bin/env bash
# Creates (once) the virtualenv the Python client tests use, keyed by the requirements'
# hash and kept outside the work tree. Prints the venv's python as its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${MODELGATE_CACHE:-$HOME/.cache/modelgate}
req="$here/python/requirements.txt"
key=$(sha256sum "$req" | cut -c1-16)
venv="$cache/venv-$key"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
