# syntax=docker/dockerfile:1
# The operator: reconciles lmi.dev resources into NodeClaims and EE pods.
# Build from the repository root:
#   docker build -f images/operator.Dockerfile -t REGISTRY/lmi-operator:VERSION .
# The chart's image.registry and image.tag name REGISTRY and VERSION (charts/lmi/values.yaml).

# --- build: the workspace, release profile, only this binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target folders between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p lmi-operator --bin lmi-operator \
    && install -D -m 0755 target/release/lmi-operator /out/lmi-operator

# --- runtime: glibc and nothing else (no shell, no package manager); TLS is rustls, no OpenSSL.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/lmi-operator /usr/local/bin/lmi-operator
# distroless' nonroot user; the chart and the operator set the same (or their own) non-root ids.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/lmi-operator"]
