#!/usr/bin/env bash
# Builds modelgate's container image without a container engine or a registry, as an OCI
# archive: the same image the Dockerfile describes (both binaries, static against musl, on
# `scratch`, the CA bundle, user 65532, the proxy as entrypoint), put together by buildah.
#
#   tests/build-image.sh [ARCHIVE]     # default $MODELGATE_CACHE/image/modelgate.oci.tar
#                                      # last stdout line: the archive's path
#   skopeo copy oci-archive:ARCHIVE docker://registry.example.com/modelgate:0.1.0  # to push
#
# Needs the Rust target x86_64-unknown-linux-musl (added with rustup when missing),
# musl-gcc and buildah (tests/install-tools.sh installs both from Debian). Where Docker
# runs, `docker build .` gives the same image from the Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${MODELGATE_CACHE:-$HOME/.cache/modelgate}
# Its own target directory: the release musl build shares nothing with the debug one.
target_dir=$cache/target-image
archive=${1:-$cache/image/modelgate.oci.tar}
target=x86_64-unknown-linux-musl
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
log() { printf '[build-image] %s\n' "$*" >&2; }

[[ $(uname -m) == x86_64 ]] || { log "only x86_64 hosts are supported here; use the Dockerfile"; exit 1; }
for cmd in musl-gcc buildah; do
  command -v "$cmd" >/dev/null || { log "$cmd is missing: run tests/install-tools.sh"; exit 1; }
done
if ! rustup target list --installed | grep -qx "$target"; then
  log "adding the Rust target $target"
  rustup target add "$target" >&2
fi

log "building static release binaries for $target"
# The musl target links statically by default; musl-gcc compiles ring's and mimalloc's C.
CC_x86_64_unknown_linux_musl=musl-gcc CARGO_PROFILE_RELEASE_STRIP=debuginfo \
  CARGO_TARGET_DIR=$target_dir \
  cargo build --release --locked --target "$target" -p modelgate-proxy -p modelgate-operator >&2
bin=$target_dir/$target/release

# buildah's own storage, under the cache: no daemon, no system-wide state.
store=$cache/buildah
bh() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }
ctr=$(bh from scratch)
trap 'bh rm "$ctr" >/dev/null 2>&1 || true' EXIT
bh copy --chmod 0644 "$ctr" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
bh copy --chmod 0755 "$ctr" "$bin/modelgate-proxy" "$bin/modelgate-operator" /usr/local/bin/ >/dev/null
bh config \
  --user 65532:65532 \
  --entrypoint '["/usr/local/bin/modelgate-proxy"]' --cmd '' \
  --port 4000/tcp --port 4001/tcp --port 8080/tcp \
  --label org.opencontainers.image.title=modelgate \
  --label "org.opencontainers.image.description=Kubernetes-native, LiteLLM-compatible LLM gateway: proxy and operator" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  --label "org.opencontainers.image.version=$version" \
  "$ctr"
mkdir -p "$(dirname "$archive")"
rm -f "$archive"
bh commit --quiet --format oci "$ctr" "oci-archive:$archive:modelgate:$version" >/dev/null
log "image modelgate:$version written to $archive ($(du -h "$archive" | cut -f1))"
printf '%s\n' "$archive"
