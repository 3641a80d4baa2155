# syntax=docker/dockerfile:1
#
# policyctl: a static-enough binary on a distroless runtime (glibc + libgcc, no shell, no package manager),
# running as a numeric non-root user.
#
#   docker build -t policyctl:0.1.0 .
#   docker run --rm -p 8443:8443 -p 9090:9090 policyctl:0.1.0 serve   # throwaway localhost certificate
#
# The builder and the runtime are both Debian 12 (bookworm), so the glibc the binary links against is the one it runs
# with. Pin the builder to the toolchain CI uses.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The build context is filtered by .dockerignore (no target/, .git/, keys, deploy/ or docs/).
COPY . .
# Cache mounts keep the registry and the target dir between builds; the binary is copied out of the cached dir.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin policyctl \
    && install -D -m 0755 target/release/policyctl /out/policyctl

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/policyctl /usr/local/bin/policyctl
# The bundled policies: `serve` without --policies (and without --configmap-selector) reads `policies` relative to
# the working directory. Kubernetes mounts the policies ConfigMap and passes --policies instead.
COPY policies /etc/policyctl/policies
WORKDIR /etc/policyctl
# distroless "nonroot" is 65532; numeric so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/policyctl"]
CMD ["serve"]
