#!/usr/bin/env bash
# modelgate's whole test suite, as CI runs it:
#   1. format and lint (cargo fmt, cargo clippy -D warnings)
#   2. unit and in-process tests (cargo test: config, router, listings, HTTP against real
#      mock upstreams on 127.0.0.1, the real binary reloading its config under load)
#   3. the openai Python SDK against a running proxy
#   4. cluster tests against a real kube-apiserver + etcd that tests/control-plane.sh builds
#      and starts (or against the cluster KUBECONFIG names when MODELGATE_USE_KUBECONFIG=1)
# Tools are installed idempotently into ${MODELGATE_CACHE:-~/.cache/modelgate}.
set -euo pipefail
cd "$(dirname "$0")/.."
export MODELGATE_CACHE=${MODELGATE_CACHE:-$HOME/.cache/modelgate}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$MODELGATE_CACHE/target}
mkdir -p "$MODELGATE_CACHE"
step() { printf '\n==> %s\n' "$*" >&2; }

step "tools (kube-apiserver, etcd, kubectl, helm, redis-server; cached)"
tools=$(tests/install-tools.sh)
MODELGATE_TOOLS_BIN=$(tail -n 1 <<<"$tools")
export MODELGATE_TOOLS_BIN

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo build"
cargo build --workspace --bins --locked

step "unit and in-process tests"
cargo test --workspace --locked --exclude modelgate-tests

step "openai Python SDK tests"
py=$(tests/python-env.sh)
py=$(tail -n 1 <<<"$py")
MODELGATE_BIN_DIR="$CARGO_TARGET_DIR/debug" "$py" -m pytest -q tests/python

step "cluster tests"
if [ "${MODELGATE_USE_KUBECONFIG:-0}" = 1 ]; then
  : "${KUBECONFIG:?MODELGATE_USE_KUBECONFIG=1 needs KUBECONFIG}"
else
  MODELGATE_CP_DIR=$(mktemp -d /tmp/modelgate-cp.XXXXXX)
  export MODELGATE_CP_DIR
  trap 'tests/control-plane.sh down >&2 || true' EXIT
  # Assigned before export so a failed `up` stops the script.
  kubeconfig=$(tests/control-plane.sh up)
  KUBECONFIG=$(tail -n 1 <<<"$kubeconfig")
  export KUBECONFIG
fi
export PATH="$MODELGATE_TOOLS_BIN:$PATH"
MODELGATE_BIN_DIR="$CARGO_TARGET_DIR/debug" cargo test -p modelgate-tests --locked -- --test-threads=1

step "all tests passed"
