# syntax=docker/dockerfile:1
#
# One image with both binaries, statically linked against musl, on `scratch`, running as
# the unprivileged user 65532. The Helm chart (charts/modelgate) runs
# /usr/local/bin/modelgate-operator and /usr/local/bin/modelgate-proxy from it.
#
#   docker build -t modelgate:dev .
#   docker run --rm modelgate:dev --help                                  # the proxy
#   docker run --rm --entrypoint /usr/local/bin/modelgate-operator modelgate:dev --help
#
# The build is native to the build platform's architecture: for arm64 build on arm64 (or
# under emulation with `docker buildx build --platform linux/arm64`).

ARG RUST_VERSION=1.95

# --- build ---------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-alpine AS build
# gcc and musl-dev: ring's C and assembly; ca-certificates: copied into the runtime image.
RUN apk add --no-cache gcc musl-dev ca-certificates
WORKDIR /src
COPY . .
# The musl host target links statically by default (no RUSTFLAGS: `+crt-static` set there
# would also apply to proc-macro crates, which cannot be static). Symbols are kept for
# readable backtraces, debug info is dropped.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    CARGO_TERM_COLOR=never
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p modelgate-proxy -p modelgate-operator \
 && mkdir -p /out \
 && cp target/release/modelgate-proxy target/release/modelgate-operator /out/

# --- runtime -------------------------------------------------------------------------------
FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="modelgate" \
      org.opencontainers.image.description="Kubernetes-native, LiteLLM-compatible LLM gateway: proxy and operator" \
      org.opencontainers.image.source="https://github.com/modelgate/modelgate" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
# Root CAs for upstream providers (reqwest's native roots) beside the built-in webpki roots.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/modelgate-proxy /out/modelgate-operator /usr/local/bin/
# Numeric, so that `runAsNonRoot` can verify it without an /etc/passwd.
USER 65532:65532
# proxy API, proxy admin (metrics, probes), operator admin
EXPOSE 4000 4001 8080
ENTRYPOINT ["/usr/local/bin/modelgate-proxy"]
