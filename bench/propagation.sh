#!/usr/bin/env bash
# Propagation in the cluster: kubectl-apply-to-every-replica times with 1 and 2,000
# ModelDeployments (operator + two proxies on a real kube-apiserver started here).
# Writes docs/bench/propagation.md, which docs/benchmarks.md includes.
set -euo pipefail
cd "$(dirname "$0")/.."
export MODELGATE_CACHE=${MODELGATE_CACHE:-$HOME/.cache/modelgate}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$MODELGATE_CACHE/target}
tools=$(tests/install-tools.sh)
export MODELGATE_TOOLS_BIN=${tools##*$'\n'}
export PATH="$MODELGATE_TOOLS_BIN:$PATH"
cargo build --release --locked -p modelgate-proxy -p modelgate-operator
MODELGATE_CP_DIR=$(mktemp -d /tmp/modelgate-prop.XXXXXX)
export MODELGATE_CP_DIR
trap 'tests/control-plane.sh down >&2 || true' EXIT
kubeconfig=$(tests/control-plane.sh up)
export KUBECONFIG=${kubeconfig##*$'\n'}
BENCH_OUT="$PWD/docs/bench/propagation.md" MODELGATE_BIN_DIR="$CARGO_TARGET_DIR/release" RUST_LOG=warn \
  cargo test -p modelgate-tests --locked --test propagation -- --ignored --nocapture
