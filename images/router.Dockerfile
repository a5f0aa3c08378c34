# syntax=docker/dockerfile:1
# The router: the Lambda Invoke API.
# Build from the repository root:
#   docker build -f images/router.Dockerfile -t REGISTRY/lmi-router:VERSION .
# The chart's image.registry and image.tag name REGISTRY and VERSION (charts/lmi/values.yaml).

# --- build: the workspace, release profile, only this binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target folders between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p lmi-router --bin lmi-router \
    && install -D -m 0755 target/release/lmi-router /out/lmi-router

# --- runtime: glibc and nothing else (no shell, no package manager); TLS is rustls, no OpenSSL.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/lmi-router /usr/local/bin/lmi-router
# distroless' nonroot user; the chart and the operator set the same (or their own) non-root ids.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/lmi-router"]
