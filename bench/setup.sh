#!/usr/bin/env bash
# Installs (idempotently) everything the benchmark needs and prints nothing on stdout but
# `KEY=VALUE` lines for run.sh: wrk and nginx from Debian, a virtualenv with the LiteLLM
# proxy and matplotlib, and the release binaries of modelgate-proxy and the mock upstream.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cache=${MODELGATE_CACHE:-$HOME/.cache/modelgate}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
venv=${BENCH_VENV:-$cache/bench-venv}
# Never 1.82.7 or 1.82.8 (compromised releases); 1.106.0 is the one the baseline measured.
litellm_version=1.106.0
log() { echo "[bench/setup] $*" >&2; }

# --- Debian packages: wrk (load generator), nginx-light (the "plain proxy" floor row) ------
need=()
command -v wrk >/dev/null || need+=(wrk)
if [ "${BENCH_NGINX:-1}" = 1 ] && ! command -v nginx >/dev/null; then need+=(nginx-light); fi
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  # Keep the package's init script from starting a system nginx on port 80.
  guard=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
  fi
  apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  if [ "$guard" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# --- Python virtualenv: LiteLLM proxy + matplotlib -------------------------------------------
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.complete" 2>/dev/null)" != "$litellm_version" ]; then
  log "creating $venv (litellm[proxy]==$litellm_version, matplotlib); this takes a few minutes"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "litellm[proxy]==$litellm_version" matplotlib >&2
  echo "$litellm_version" > "$venv/.complete"
fi

# --- Release binaries ------------------------------------------------------------------------
# Built from the work tree, or with BENCH_REV=<git rev> from a clean snapshot of that commit
# (for when the work tree is mid-edit). Copied to $cache/bench-bin so that another build
# into the shared target dir cannot swap a binary in the middle of a run.
src=$root
if [ -n "${BENCH_REV:-}" ]; then
  rev=$(git -C "$root" rev-parse --verify "$BENCH_REV^{commit}")
  src=$cache/bench-src
  if [ "$(cat "$src/.rev" 2>/dev/null)" != "$rev" ]; then
    log "snapshot of $rev in $src"
    rm -rf "$src" && mkdir -p "$src"
    git -C "$root" archive "$rev" | tar -x -C "$src"
    echo "$rev" > "$src/.rev"
  fi
fi
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "cargo build --release -p modelgate-proxy -p modelgate-mock-upstream (in $src)"
  (cd "$src" && cargo build --release --quiet -p modelgate-proxy -p modelgate-mock-upstream >&2)
  mkdir -p "$cache/bench-bin"
  for b in modelgate-proxy mock-upstream; do
    cp -f "$CARGO_TARGET_DIR/release/$b" "$cache/bench-bin/$b.tmp"
    mv -f "$cache/bench-bin/$b.tmp" "$cache/bench-bin/$b"
  done
  if [ -n "${BENCH_REV:-}" ]; then echo "$rev" > "$cache/bench-bin/REV"; else
    echo "$(git -C "$root" rev-parse HEAD)+worktree" > "$cache/bench-bin/REV"; fi
fi
bin=$cache/bench-bin
for b in modelgate-proxy mock-upstream; do
  [ -x "$bin/$b" ] || { log "missing $bin/$b (run without BENCH_SKIP_BUILD=1)"; exit 1; }
done

echo "VENV=$venv"
echo "BIN=$bin"
