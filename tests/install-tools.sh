#!/usr/bin/env bash
# Builds the tools modelgate's tests need and prints the directory holding them.
#
#   tests/install-tools.sh            # build what is missing; last stdout line = bin dir
#
# kube-apiserver, kube-controller-manager, kubectl, etcd and helm are compiled
# from source through the Go module proxy (no Docker, no downloads from GitHub
# or dl.k8s.io), using the versions pinned in tests/controlplane/go.mod. They
# land in a cache outside the work tree, one file per tool and version:
#
#   $MODELGATE_CACHE/bin/kube-apiserver-v1.36.3   (real binaries, never rebuilt)
#   $MODELGATE_CACHE/bin/kubectl -> kubectl-v1.36.3  (symlinks to this checkout's versions)
#   $MODELGATE_CACHE/go/{mod,build}                (GOMODCACHE and GOCACHE for these builds)
#   $MODELGATE_CACHE/logs/<tool>-<version>.log     (output of the last build of each)
#
# A binary already present is never rebuilt, so a second run takes milliseconds
# and needs neither Go nor the network. A cold build takes several minutes on
# two cores and about 4 GB of disk. Also installs Debian's redis-server, musl-tools and
# buildah when they are missing (the Redis and image tests need them).
#
# Environment:
#   MODELGATE_CACHE       cache root (default: $HOME/.cache/modelgate)
#   MODELGATE_SKIP_REDIS  set to 1 to skip the redis-server check/installation
#   MODELGATE_SKIP_IMAGE  set to 1 to skip musl-tools and buildah (no image test)
#   GOPROXY, GONOSUMDB... honoured as usual; GOFLAGS, GOCACHE, GOMODCACHE,
#                         GOTOOLCHAIN and CGO_ENABLED are overridden (see below).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mod_dir=$here/controlplane
cache=${MODELGATE_CACHE:-$HOME/.cache/modelgate}
bin_dir=$cache/bin
log_dir=$cache/logs

log() { printf '[install-tools] %s\n' "$*" >&2; }
die() { printf '[install-tools] ERROR: %s\n' "$*" >&2; exit 1; }

# loud_log FILE: dump a build/install log to stderr, framed so it stands out.
loud_log() {
  {
    printf '\n======================= %s (last 200 lines) =======================\n' "$1"
    tail -n 200 "$1"
    printf '======================= end of %s =======================\n\n' "$1"
  } >&2
}

# modver MODULE: the version tests/controlplane/go.mod requires for MODULE.
modver() {
  local pat=${1//./\\.}
  sed -n "s#^[[:space:]]*${pat} \(v[^ ]*\).*#\1#p" "$mod_dir/go.mod" | head -n 1
}

k8s_version=$(modver k8s.io/kubernetes)
etcd_version=$(modver go.etcd.io/etcd/server/v3)
helm_version=$(modver helm.sh/helm/v3)
[[ -n $k8s_version && -n $etcd_version && -n $helm_version ]] ||
  die "could not read k8s.io/kubernetes, go.etcd.io/etcd/server/v3 and helm.sh/helm/v3 versions from $mod_dir/go.mod"

k8s_minor=${k8s_version#v1.}; k8s_minor=${k8s_minor%%.*}

# Upstream stamps the version with -X flags (hack/lib/version.sh); without them
# /version says v0.0.0-master, kubectl warns about skew and Helm's
# .Capabilities.KubeVersion is wrong. Both copies of the variables are set:
# component-base for the servers, client-go for kubectl's client side.
k8s_ldflags="-s -w"
for kv in "gitVersion=$k8s_version" gitMajor=1 "gitMinor=$k8s_minor"; do
  k8s_ldflags+=" -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
done
# Helm's Makefile sets its own version and the Kubernetes version it renders
# charts for (otherwise v1.20 is assumed and `kubeVersion: >=1.3x` charts fail).
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

# name | version | package | ldflags   (kube-apiserver first: the others reuse
# most of the packages it compiles)
tools=(
  "kube-apiserver|$k8s_version|k8s.io/kubernetes/cmd/kube-apiserver|$k8s_ldflags"
  "etcd|$etcd_version|go.etcd.io/etcd/server/v3|-s -w"
  "kube-controller-manager|$k8s_version|k8s.io/kubernetes/cmd/kube-controller-manager|$k8s_ldflags"
  "kubectl|$k8s_version|k8s.io/kubernetes/cmd/kubectl|$k8s_ldflags"
  "helm|$helm_version|helm.sh/helm/v3/cmd/helm|$helm_ldflags"
)

# ensure_deb COMMAND PACKAGE WHY: installs Debian's PACKAGE when COMMAND is not on PATH.
ensure_deb() {
  local cmd=$1 pkg=$2 why=$3
  if command -v "$cmd" >/dev/null 2>&1; then
    log "$cmd: $(command -v "$cmd")"
    return
  fi
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      die "$cmd ($why) is not installed and this user cannot run apt-get; install it (Debian/Ubuntu: apt-get install $pkg)"
    fi
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "$cmd ($why) is not installed and there is no apt-get; install $pkg yourself"
  local apt_log=$log_dir/apt-$pkg.log
  log "$cmd: not found, installing Debian package $pkg (log: $apt_log)"
  # Try without `apt-get update` first: it is slow and usually not needed.
  # (Where policy-rc.d does not forbid it, Debian starts the packaged redis service on
  # 127.0.0.1:6379; the tests start their own servers on free ports anyway.)
  if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" ||
         { "${sudo[@]}" apt-get update &&
           "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg"; }
       } >"$apt_log" 2>&1; then
    loud_log "$apt_log"
    die "installing $pkg failed (full log: $apt_log)"
  fi
  log "$cmd: installed $(command -v "$cmd")"
}

ensure_debs() {
  if [[ ${MODELGATE_SKIP_REDIS:-0} == 1 ]]; then
    log "redis-server: skipped (MODELGATE_SKIP_REDIS=1)"
  else
    ensure_deb redis-server redis-server "shared limits tests"
  fi
  if [[ ${MODELGATE_SKIP_IMAGE:-0} == 1 ]]; then
    log "buildah, musl-gcc: skipped (MODELGATE_SKIP_IMAGE=1)"
  else
    # The container image is built without a container engine (tests/build-image.sh):
    # static musl binaries (musl-gcc for the C in ring and mimalloc) put on `scratch` by buildah.
    ensure_deb musl-gcc musl-tools "static binaries for the image"
    ensure_deb buildah buildah "building the image without a container engine"
  fi
}

# build NAME VERSION PACKAGE LDFLAGS: build into $bin_dir/NAME-VERSION, atomically.
build() {
  local name=$1 version=$2 pkg=$3 ldflags=$4
  local out=$bin_dir/$name-$version build_log=$log_dir/$name-$version.log
  local tmp=$bin_dir/.$name-$version.tmp.$$ start=$SECONDS
  log "building $name $version ($pkg); log: $build_log"
  if ! (cd "$mod_dir" && go build -ldflags "$ldflags" -o "$tmp" "$pkg") >"$build_log" 2>&1; then
    rm -f "$tmp"
    loud_log "$build_log"
    die "building $name $version failed (full log: $build_log)"
  fi
  # Smoke test: the binary runs and reports a version.
  local ver_args=(--version) ver_out
  case $name in
    kubectl) ver_args=(version --client) ;;
    helm) ver_args=(version --short) ;;
  esac
  if ! ver_out=$("$tmp" "${ver_args[@]}" 2>&1); then
    rm -f "$tmp"
    die "$name $version was built but '$name ${ver_args[*]}' failed: $ver_out"
  fi
  ver_out=${ver_out%%$'\n'*}
  mv -f "$tmp" "$out"
  log "built $name in $((SECONDS - start)) s: $ver_out"
}

main() {
  mkdir -p "$bin_dir" "$log_dir"
  # A build interrupted half-way leaves no binary under its final name.
  trap 'rm -f "$bin_dir"/.*.tmp.$$' EXIT
  ensure_debs

  local entry name version pkg ldflags missing=()
  for entry in "${tools[@]}"; do
    IFS='|' read -r name version pkg ldflags <<<"$entry"
    [[ -x $bin_dir/$name-$version ]] || missing+=("$entry")
  done

  if ((${#missing[@]})); then
    command -v go >/dev/null 2>&1 ||
      die "Go (>= $(sed -n 's/^go //p' "$mod_dir/go.mod")) is needed to build: ${missing[*]%%|*}"
    # One build at a time per cache: concurrent runs would compete for the CPU
    # and the Go caches; the second one finds the binaries built when it gets the lock.
    exec 9>"$cache/.install.lock"
    if command -v flock >/dev/null 2>&1; then
      flock -n 9 || { log "another install-tools.sh is building; waiting for it"; flock 9; }
    fi

    # Builds are isolated from the user's Go settings: a private module and
    # build cache under $cache; GOTOOLCHAIN=local so a too-old Go fails loudly
    # instead of fetching a toolchain; static binaries (CGO_ENABLED=0, as
    # upstream ships them); -mod=readonly so go.sum is never rewritten;
    # -modcacherw so `rm -rf $cache` works (module files are read-only otherwise);
    # -trimpath for reproducible output (same binary from any checkout path).
    export GOCACHE=$cache/go/build GOMODCACHE=$cache/go/mod GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off
    export GOFLAGS="-mod=readonly -modcacherw -trimpath -buildvcs=false"
    GOOS=$(go env GOHOSTOS) GOARCH=$(go env GOHOSTARCH); export GOOS GOARCH
    log "$(go version); GOPROXY=$(go env GOPROXY)"

    local t0=$SECONDS
    for entry in "${missing[@]}"; do
      IFS='|' read -r name version pkg ldflags <<<"$entry"
      # Re-check: another run may have built it while we waited for the lock.
      [[ -x $bin_dir/$name-$version ]] && continue
      build "$name" "$version" "$pkg" "$ldflags"
    done
    log "all builds done in $((SECONDS - t0)) s"
  fi

  # Unversioned names for people and scripts that want `kubectl`/`helm` on PATH;
  # they follow whichever checkout ran this script last.
  for entry in "${tools[@]}"; do
    IFS='|' read -r name version pkg ldflags <<<"$entry"
    ln -sfn "$name-$version" "$bin_dir/$name"
  done
  log "tools: kube-apiserver/kube-controller-manager/kubectl $k8s_version, etcd $etcd_version, helm $helm_version"
  printf '%s\n' "$bin_dir"
}

main "$@"
