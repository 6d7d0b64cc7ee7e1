#!/usr/bin/env bash
# The modelgate benchmark, in one command:
#
#   bash bench/run.sh                 # full run (~25 min + the wait for an idle machine)
#   BENCH_QUICK=1 bash bench/run.sh   # smoke run: 2 s per measurement (~7 min); its report goes
#                                     # to ~/.cache/modelgate/bench-quick/, not docs/
#
# It installs what it needs (bench/setup.sh: wrk and nginx from Debian, a virtualenv with
# litellm[proxy]==1.106.0 and matplotlib, the release binaries), starts the mock upstream,
# modelgate, LiteLLM and nginx, measures (bench/bench.py), stops everything it started, and
# writes docs/bench/results.json, docs/bench/*.png and docs/benchmarks.md (bench/report.py).
# The full run takes about 19 minutes on the project machine once the machine is idle.
#
# Knobs: BENCH_DURATION (s per run), BENCH_REPS (repetitions, default 3), BENCH_WAIT_IDLE=0
# (do not wait for the 1-minute load average to drop under 1), BENCH_LITELLM=0, BENCH_NGINX=0,
# BENCH_PROFILE=0, BENCH_PHASES=pinned,unpinned,startup,deployments,profile,
# BENCH_OUT=path/results.json, BENCH_SKIP_BUILD=1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cache=${MODELGATE_CACHE:-$HOME/.cache/modelgate}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
quick=${BENCH_QUICK:-0}
# A quick run must not overwrite the recorded report: it writes next to the cache instead.
if [ "$quick" = 1 ]; then default_out=$cache/bench-quick/results.json
else default_out=$root/docs/bench/results.json; fi
out=${BENCH_OUT:-$default_out}
export BENCH_OUT=$out BENCH_QUICK=$quick

started=$(date +%s)
eval "$(bash "$here/setup.sh")"   # sets VENV and BIN
export BENCH_VENV=$VENV BENCH_BIN=$BIN

# Logs of every server stay here after the run, for a look when something is off.
export BENCH_TMP=${BENCH_TMP:-$cache/bench-tmp}
rm -rf "$BENCH_TMP"
mkdir -p "$BENCH_TMP"

py=
cleanup() {
  if [ -n "$py" ] && kill -0 "$py" 2>/dev/null; then
    kill -TERM "$py" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$py" 2>/dev/null || break; sleep 0.2; done
  fi
  # Whatever bench.py started and did not stop (each in its own process group).
  if [ -f "$BENCH_TMP/pids" ]; then
    while read -r pgid; do
      [ -n "$pgid" ] && kill -KILL -- "-$pgid" 2>/dev/null || true
    done < "$BENCH_TMP/pids"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Other load distorts every figure (see the report): wait for the machine to calm down.
waited=""
if [ "$quick" != 1 ] && [ "${BENCH_WAIT_IDLE:-1}" = 1 ]; then
  deadline=$(( $(date +%s) + ${BENCH_IDLE_TIMEOUT:-1200} ))
  while :; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk -v l="$load" 'BEGIN { exit !(l < 1.0) }'; then waited="idle (load $load)"; break; fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      waited="gave up waiting: load $load after ${BENCH_IDLE_TIMEOUT:-1200} s"
      echo "[bench] $waited; running anyway" >&2
      break
    fi
    echo "[bench] 1-minute load average $load >= 1.0; waiting (up to ${BENCH_IDLE_TIMEOUT:-1200} s)" >&2
    sleep 30
  done
fi
export BENCH_WAITED=$waited

rc=0
"$VENV/bin/python" "$here/bench.py" &
py=$!
wait "$py" || rc=$?
py=
"$VENV/bin/python" "$here/report.py" "$out" || rc=$?
echo "[bench] done in $(( $(date +%s) - started )) s (exit $rc); results in $out, report in $(
  if [ "$(dirname "$out")" = "$root/docs/bench" ]; then echo "$root/docs/benchmarks.md"; else echo "$(dirname "$out")/benchmarks.md"; fi)" >&2
exit "$rc"
