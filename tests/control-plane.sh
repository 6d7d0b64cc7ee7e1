#!/usr/bin/env bash
# A real, local Kubernetes control plane for modelgate's tests: etcd,
# kube-apiserver and kube-controller-manager as plain processes on 127.0.0.1.
# No Docker, no kubelet, no scheduler (Pods are stored but never run).
#
#   tests/control-plane.sh up       # start; the LAST line of stdout is the kubeconfig path
#   tests/control-plane.sh down     # stop what `up` started and delete its state dir
#   tests/control-plane.sh env      # print `export KUBECONFIG=... PATH=...` for eval
#   tests/control-plane.sh status   # show the processes and endpoints of a plane
#   tests/control-plane.sh restart-apiserver [SECONDS]  # stop the apiserver for SECONDS, start it again
#
#   tests/control-plane.sh up              # first run builds the tools (~15 min), then ~5 s
#   eval "$(tests/control-plane.sh env)"   # KUBECONFIG, and PATH with kubectl/helm of the same version
#   kubectl get ns
#   tests/control-plane.sh down
#
# From a script or test harness:  kubeconfig=$(tests/control-plane.sh up | tail -n 1)
#
# What you get:
#   - kube-apiserver with --authorization-mode=RBAC. The kubeconfig's user is a
#     client certificate in group system:masters (cluster admin); every other
#     identity is subject to RBAC, so `kubectl auth can-i --as=...` and
#     ServiceAccount tokens (`kubectl create token`) behave as on a real cluster.
#   - kube-controller-manager running only the controllers tests need (garbage
#     collection through ownerReferences, namespace deletion, ServiceAccounts
#     and their tokens, kube-root-ca.crt, aggregated ClusterRoles).
#   - etcd (the version Kubernetes pins), data under the state dir, no fsync.
#   - a state dir with certificates (pki/; pki/ca.key can mint more client
#     certs), logs (*.log), pid files, the kubeconfig and an `env` file.
#
# Environment:
#   MODELGATE_CP_DIR          state dir (default: a new mktemp dir for `up`; for
#                             down/env/status, the one the last `up` recorded)
#   MODELGATE_CACHE           cache root shared with install-tools.sh
#                             (default: $HOME/.cache/modelgate); holds the
#                             binaries and the pointer to the last state dir
#   MODELGATE_CP_TIMEOUT      seconds each component may take to get ready (default 120)
#   MODELGATE_CP_CONTROLLERS  kube-controller-manager --controllers list
#   MODELGATE_SKIP_REDIS      passed on to install-tools.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${MODELGATE_CACHE:-$HOME/.cache/modelgate}
pointer=$cache/control-plane.current
marker=.modelgate-control-plane
timeout=${MODELGATE_CP_TIMEOUT:-120}
controllers=${MODELGATE_CP_CONTROLLERS:-garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,clusterrole-aggregation-controller}
# Stop order matters: the apiserver does not exit while etcd is gone, and it
# keeps serving the controller manager's watches until they end.
components=(kube-controller-manager kube-apiserver etcd)

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() { printf '[control-plane] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

loud_log() {
  {
    printf '\n======================= %s (last 100 lines) =======================\n' "$1"
    tail -n 100 "$1" 2>/dev/null || echo "(no log)"
    printf '======================= end of %s =======================\n\n' "$1"
  } >&2
}

# --- processes -----------------------------------------------------------------

# is_ours PID DIR: PID is alive (not a zombie) and its command line mentions
# a path under DIR (every component gets files from DIR as arguments).
# The check keeps `down` from signalling an unrelated process that reused a
# recorded PID (e.g. after a reboot left a stale state dir behind).
is_ours() {
  local pid=$1 dir=$2 stat
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r /proc/$pid/stat ]]; then
    # A killed process whose parent is gone can linger as a zombie until the
    # reaper gets to it; it is no longer running.
    stat=$(<"/proc/$pid/stat") || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir/"
  else
    ps -o args= -p "$pid" | grep -qF -- "$dir/"
  fi
}

# stop NAME DIR: SIGTERM, wait, then escalate. The apiserver exits at once on a
# second SIGTERM; anything still alive after that gets SIGKILL.
stop() {
  local name=$1 dir=$2 pidfile=$2/$1.pid pid i
  [[ -f $pidfile ]] || return 0
  pid=$(<"$pidfile")
  if is_ours "$pid" "$dir"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do is_ours "$pid" "$dir" || break; sleep 0.1; done
    if is_ours "$pid" "$dir"; then
      log "$name ($pid) still running 15 s after SIGTERM; sending SIGTERM again"
      kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < 30; i++)); do is_ours "$pid" "$dir" || break; sleep 0.1; done
    fi
    if is_ours "$pid" "$dir"; then
      log "$name ($pid) still running; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do is_ours "$pid" "$dir" || break; sleep 0.1; done
    fi
    is_ours "$pid" "$dir" && die "could not stop $name (pid $pid)"
    log "stopped $name ($pid)"
  fi
  rm -f "$pidfile"
}

stop_all() {
  local dir=$1 name
  for name in "${components[@]}"; do stop "$name" "$dir"; done
}

# start NAME CMD...: run CMD in the background, detached from the terminal
# (so Ctrl-C or a closed terminal later does not take the plane down), with
# its output in $dir/NAME.log and its PID in $dir/NAME.pid.
start() {
  local name=$1; shift
  log "starting $name"
  printf '%s\0' "$@" >"$dir/$name.cmd"   # for restart-apiserver
  setsid "$@" </dev/null >>"$dir/$name.log" 2>&1 &
  echo "$!" >"$dir/$name.pid"
}

# running PID: PID is alive and not a zombie. During start-up this, not is_ours,
# decides whether a component died: we started PID a moment ago, so it cannot be
# a reused PID, and its command line is unreliable while it execs (setsid, then the
# component; /proc/PID/cmdline reads empty for a moment inside execve).
running() {
  local stat
  kill -0 "$1" 2>/dev/null || return 1
  stat=$(<"/proc/$1/stat") 2>/dev/null || return 0
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# exit_status PID: how a background child of this script ended ("status N",
# "signal NAME"), for the error message.
exit_status() {
  local rc=0
  wait "$1" 2>/dev/null || rc=$?
  if ((rc > 128)); then echo "signal $(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"; else echo "status $rc"; fi
}

# wait_for NAME CMD...: poll CMD until it succeeds. If NAME exits first, print its
# log and exit status and return 1 (the caller may start it again); if it is not
# ready within $timeout seconds, fail.
wait_for() {
  local name=$1 pid deadline=$((SECONDS + timeout)); shift
  pid=$(<"$dir/$name.pid")
  until "$@" >/dev/null 2>&1; do
    if ! running "$pid"; then
      loud_log "$dir/$name.log"
      log "ERROR: $name ($pid) exited during startup with $(exit_status "$pid") (log above; full log: $dir/$name.log)"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      loud_log "$dir/$name.log"
      die "$name not ready after $timeout s (log above; full log: $dir/$name.log)"
    fi
    sleep 0.2
  done
}

# launch NAME READY-FN CMD...: start NAME and wait until the function READY-FN succeeds. A component that dies during start-up is started once
# more: a single crash at boot (a port taken between free_ports and bind, the
# machine under load) should not fail a whole test run, and the log above says why.
launch() {
  local name=$1 check=$2 attempt; shift 2
  for attempt in 1 2; do
    start "$name" "$@"
    if wait_for "$name" "$check"; then return 0; fi
    ((attempt < 2)) && log "starting $name again"
  done
  die "$name exited during startup twice"
}

# free_ports N: N distinct TCP ports free on 127.0.0.1 right now.
free_ports() {
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))  # all bound at once, so the ports differ
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
  else
    # No python3: random ports nobody answers on (a small race either way).
    local ports=() p
    while ((${#ports[@]} < $1)); do
      p=$((20000 + RANDOM % 12000))
      [[ " ${ports[*]} " == *" $p "* ]] && continue
      (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
      ports+=("$p")
    done
    echo "${ports[*]}"
  fi
}

# --- certificates and kubeconfigs ------------------------------------------------

# ECDSA P-256 keys (PKCS#8) as envtest uses: instant to generate, and accepted
# by Go clients, rustls and OpenSSL alike. One CA signs the serving cert and
# the client certs; the extended key usages keep their roles apart.
ec_key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
cert_days=30

make_pki() {
  local pki=$dir/pki
  mkdir -p "$pki"
  cat >"$pki/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
# 127.0.0.1 is what kubeconfigs use; the others are the in-cluster names of
# the `kubernetes` Service (first IP of --service-cluster-ip-range).
subjectAltName = IP:127.0.0.1, DNS:localhost, IP:10.0.0.1, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  run_openssl req -x509 -config "$pki/openssl.cnf" -extensions ca "${ec_key[@]}" -sha256 -days "$cert_days" \
    -subj /CN=modelgate-test-ca -keyout "$pki/ca.key" -out "$pki/ca.crt"
  issue apiserver /CN=kube-apiserver server
  # Group (O) system:masters is bound to cluster-admin and bypasses RBAC.
  issue admin /O=system:masters/CN=modelgate-admin client
  # The controller manager runs every controller under its own identity
  # (--use-service-account-credentials=false), and the garbage collector and
  # namespace controller must be able to delete anything, so it is a master too.
  issue kube-controller-manager /O=system:masters/CN=system:kube-controller-manager client
  # Signs ServiceAccount tokens (apiserver: TokenRequest; controller manager:
  # legacy token Secrets); the apiserver verifies them with the public half.
  run_openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/sa.key"
  run_openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
  chmod 600 "$pki"/*.key
}

# issue NAME SUBJECT EXTENSIONS: a key and a certificate signed by the CA.
issue() {
  local pki=$dir/pki
  run_openssl req -new -config "$pki/openssl.cnf" "${ec_key[@]}" -subj "$2" \
    -keyout "$pki/$1.key" -out "$pki/$1.csr"
  run_openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -sha256 -days "$cert_days" \
    -extfile "$pki/openssl.cnf" -extensions "$3" -out "$pki/$1.crt"
  rm -f "$pki/$1.csr"
}

run_openssl() {
  openssl "$@" >>"$dir/pki.log" 2>&1 ||
    { loud_log "$dir/pki.log"; die "openssl $1 failed (log: $dir/pki.log)"; }
}

b64() { base64 <"$1" | tr -d '\n'; }

# write_kubeconfig FILE USER: a self-contained kubeconfig (certificates embedded).
write_kubeconfig() {
  local file=$1 user=$2 pki=$dir/pki
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: modelgate-test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(b64 "$pki/$user.crt")
    client-key-data: $(b64 "$pki/$user.key")
contexts:
- name: modelgate-test
  context:
    cluster: modelgate-test
    user: $user
current-context: modelgate-test
EOF
  chmod 600 "$file"
}

# --- state dir -----------------------------------------------------------------

# The state dir of down/env/status: $MODELGATE_CP_DIR, else the last `up`'s.
current_dir() {
  if [[ -n ${MODELGATE_CP_DIR:-} ]]; then
    printf '%s\n' "$MODELGATE_CP_DIR"
  elif [[ -f $pointer ]]; then
    cat "$pointer"
  fi
}

running_components() {
  local d=$1 name out=()
  for name in "${components[@]}"; do
    [[ -f $d/$name.pid ]] && is_ours "$(<"$d/$name.pid")" "$d" && out+=("$name")
  done
  echo "${out[*]}"
}

# --- commands ------------------------------------------------------------------

cmd_up() {
  local t0 bin
  t0=$(now)
  bin=$("$here/install-tools.sh")
  bin=${bin##*$'\n'}
  local k8s_ver etcd_ver
  k8s_ver=$(readlink "$bin/kube-apiserver"); k8s_ver=${k8s_ver#kube-apiserver-}
  etcd_ver=$(readlink "$bin/etcd"); etcd_ver=${etcd_ver#etcd-}
  local apiserver=$bin/kube-apiserver-$k8s_ver kcm=$bin/kube-controller-manager-$k8s_ver
  local etcd=$bin/etcd-$etcd_ver
  local t_tools; t_tools=$(elapsed "$t0")

  if [[ -f $pointer ]]; then
    local old; old=$(<"$pointer")
    if [[ -d $old && $old != "${MODELGATE_CP_DIR:-}" && -n $(running_components "$old") ]]; then
      log "note: the control plane in $old is still running; stop it with: MODELGATE_CP_DIR=$old $0 down"
    fi
  fi

  # dir is global: start/wait_for and the EXIT trap use it.
  if [[ -n ${MODELGATE_CP_DIR:-} ]]; then
    dir=$MODELGATE_CP_DIR
    if [[ -e $dir ]]; then
      [[ -d $dir ]] || die "MODELGATE_CP_DIR=$dir is not a directory"
      if [[ -f $dir/$marker ]]; then
        local running; running=$(running_components "$dir")
        [[ -z $running ]] || die "a control plane is already running in $dir ($running); run '$0 down' first"
        find "$dir" -mindepth 1 -delete   # stale state of an earlier run
      elif [[ -n $(ls -A "$dir") ]]; then
        die "MODELGATE_CP_DIR=$dir exists, is not empty and was not made by this script"
      fi
    fi
    mkdir -p "$dir"
  else
    dir=$(mktemp -d "${TMPDIR:-/tmp}/modelgate-cp.XXXXXX")
  fi
  dir=$(cd "$dir" && pwd)
  echo "modelgate control plane state dir; removed by tests/control-plane.sh down" >"$dir/$marker"
  mkdir -p "$cache"
  printf '%s\n' "$dir" >"$pointer.tmp.$$" && mv -f "$pointer.tmp.$$" "$pointer"

  # On any failure from here on, stop what was started; keep the state dir
  # (logs!) for inspection; `down` removes it.
  trap 'rc=$?; if ((rc != 0)); then log "startup failed; stopping what was started"; stop_all "$dir"; log "state dir kept for inspection: $dir (remove it with: $0 down)"; fi' EXIT
  trap 'exit 130' INT TERM

  local ports etcd_port peer_port api_port kcm_port
  ports=$(free_ports 4)
  read -r etcd_port peer_port api_port kcm_port <<<"$ports"

  make_pki
  local pki=$dir/pki t_pki; t_pki=$(elapsed "$t0")

  # --unsafe-no-fsync: a throwaway test database, and fsync is what makes
  # etcd slow on shared disks (envtest sets it too).
  etcd_ready() { curl -sf "http://127.0.0.1:$etcd_port/health"; }
  launch etcd etcd_ready "$etcd" --name=modelgate-test --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="modelgate-test=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync=true --logger=zap --log-outputs=stderr
  local t_etcd; t_etcd=$(elapsed "$t0")

  # Flags as envtest's, plus:
  #   --advertise-address: sandboxes often have no default route, and the
  #     apiserver refuses to start when it cannot pick an address;
  #   --endpoint-reconciler-type=none: a loopback address may not be an
  #     Endpoints address, so maintaining the `kubernetes` Endpoints only
  #     logs errors;
  #   --shutdown-send-retry-after: without it the apiserver waits up to 60 s
  #     for open watches (the controller manager's) before exiting.
  #   ServiceAccount admission is off as in envtest: Pods never run here, and
  #     it would reject Pods in a namespace whose `default` SA is not made yet.
  local admin_curl=(curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key")
  apiserver_ready() {
    "${admin_curl[@]}" "https://127.0.0.1:$api_port/readyz" &&
      "${admin_curl[@]}" "https://127.0.0.1:$api_port/api/v1/namespaces/default"
  }
  launch kube-apiserver apiserver_ready "$apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --authorization-mode=RBAC \
    --service-account-issuer="https://127.0.0.1:$api_port" \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --disable-admission-plugins=ServiceAccount --allow-privileged=true \
    --endpoint-reconciler-type=none --shutdown-send-retry-after=true
  local t_api; t_api=$(elapsed "$t0")

  write_kubeconfig "$dir/kubeconfig" admin
  write_kubeconfig "$dir/kube-controller-manager.kubeconfig" kube-controller-manager

  kcm_ready() { curl -sfk "https://127.0.0.1:$kcm_port/healthz"; }
  launch kube-controller-manager kcm_ready "$kcm" \
    --kubeconfig="$dir/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$dir/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$dir/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$kcm_port" --cert-dir="$dir/kcm-certs" \
    --leader-elect=false --controllers="$controllers" --use-service-account-credentials=false \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt"
  # Proof that the controllers reach the apiserver and may write: the
  # ServiceAccount controller creates `default` in every namespace.
  if [[ ,$controllers, == *,serviceaccount-controller,* ]]; then
    wait_for kube-controller-manager "${admin_curl[@]}" \
      "https://127.0.0.1:$api_port/api/v1/namespaces/default/serviceaccounts/default" ||
      die "kube-controller-manager exited during startup"
  fi

  cat >"$dir/env" <<EOF
MODELGATE_CP_DIR=$dir
KUBECONFIG=$dir/kubeconfig
MODELGATE_BIN=$bin
MODELGATE_APISERVER=https://127.0.0.1:$api_port
MODELGATE_ETCD=http://127.0.0.1:$etcd_port
EOF
  trap - EXIT INT TERM
  log "ready in $(elapsed "$t0") s (tools checked at ${t_tools} s, certs at ${t_pki} s, etcd at ${t_etcd} s, apiserver at ${t_api} s)"
  log "  kube-apiserver $k8s_ver  https://127.0.0.1:$api_port   etcd $etcd_ver  http://127.0.0.1:$etcd_port"
  log "  state dir $dir (logs: *.log)"
  log "  use:  export KUBECONFIG=$dir/kubeconfig PATH=$bin:\$PATH   (or: eval \"\$($0 env)\")"
  log "  stop: $0 down"
  printf '%s\n' "$dir/kubeconfig"
}

cmd_down() {
  local d; d=$(current_dir)
  if [[ -z $d || ! -d $d ]]; then
    log "no control plane state dir found${d:+ ($d is gone)}; nothing to stop"
    [[ -n ${MODELGATE_CP_DIR:-} || ! -f $pointer ]] || rm -f "$pointer"
    return 0
  fi
  [[ -f $d/$marker ]] || die "$d was not made by this script (no $marker); refusing to touch it"
  stop_all "$d"
  rm -rf "$d"
  if [[ -f $pointer && $(<"$pointer") == "$d" ]]; then rm -f "$pointer"; fi
  log "control plane in $d stopped and removed"
}

cmd_env() {
  local d; d=$(current_dir)
  [[ -n $d && -f $d/env ]] || die "no running control plane found (run: $0 up)"
  local line
  while IFS= read -r line; do
    # shellcheck disable=SC2016 # "$PATH" is left for the caller's eval to expand
    case $line in
      MODELGATE_CP_DIR=* | KUBECONFIG=*) printf 'export %s=%q\n' "${line%%=*}" "${line#*=}" ;;
      MODELGATE_BIN=*) printf 'export PATH=%q:"$PATH"\n' "${line#*=}" ;;
    esac
  done <"$d/env"
}

cmd_status() {
  local d; d=$(current_dir)
  [[ -n $d && -d $d ]] || { log "no control plane state dir found"; return 1; }
  echo "state dir: $d"
  [[ -f $d/env ]] && sed 's/^/  /' "$d/env"
  local name pid
  for name in "${components[@]}"; do
    pid=$(cat "$d/$name.pid" 2>/dev/null || true)
    if is_ours "$pid" "$d"; then echo "  $name: running (pid $pid)"; else echo "  $name: not running"; fi
  done
  [[ -z $(running_components "$d") ]] && return 1
  return 0
}

# restart-apiserver [SECONDS]: stop the kube-apiserver, leave it down for SECONDS
# (default 3), start it again with the same flags and wait until it is ready. For
# tests of what clients do while the API server is gone.
cmd_restart_apiserver() {
  local pause=${1:-3} cmd=()
  dir=$(current_dir)
  [[ -n $dir && -f $dir/kube-apiserver.cmd ]] || die "no running control plane found (run: $0 up)"
  mapfile -d '' cmd <"$dir/kube-apiserver.cmd"
  local api; api=$(sed -n 's/^MODELGATE_APISERVER=//p' "$dir/env")
  local pki=$dir/pki
  stop kube-apiserver "$dir"
  sleep "$pause"
  apiserver_ready() { curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "$api/readyz"; }
  launch kube-apiserver apiserver_ready "${cmd[@]}"
  log "kube-apiserver restarted"
}

case ${1:-} in
  up) cmd_up ;;
  restart-apiserver) cmd_restart_apiserver "${2:-3}" ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  *) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2 ;;
esac
