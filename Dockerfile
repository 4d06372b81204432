# mcpauth images: one target per service, all from this file (docs/operations.md "Images").
#
#   docker build --target auth-service -t mcpauth/auth-service .     # likewise token-vault, mcp-service
#   make images                                                      # all three, host-built binaries
#
# BINARIES=build (the default) compiles the three service binaries in the rust stage below.
# BINARIES=prebuilt takes them from target/docker-bin/ of the build context instead (built by the
# host's cargo: `make images` and CI do this, where no rust image can be pulled). Both need
# BuildKit (DOCKER_BUILDKIT=1 or Docker 23+): it builds only the stages the target needs.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG BINARIES=build

# --- binaries, compiled here (what users run) -------------------------------------------------
FROM ${RUST_IMAGE} AS binaries-build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p auth-service -p token-vault -p mcp-service \
 && mkdir -p /out \
 && for b in auth-service token-vault mcp-service; do strip --strip-debug -o /out/$b target/release/$b; done

# --- binaries, built by the host's cargo (`make images`, CI): scripts/images.sh puts them, without
# their debug line tables, in target/docker-bin/ ---------------------------------------------------
FROM scratch AS binaries-prebuilt
COPY target/docker-bin/auth-service target/docker-bin/token-vault target/docker-bin/mcp-service /out/

FROM binaries-${BINARIES} AS binaries

# --- the shared runtime: CA bundle, tini, a numeric non-root user ------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
# ca-certificates: outbound HTTPS (identity providers, CIMD, connectors). tini as PID 1 passes
# SIGTERM to the service and reaps. Nothing else: no shell is run (the binary is the
# entrypoint, `healthcheck` is a subcommand).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 mcpauth \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin mcpauth \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/mcpauth/secrets \
 && install -d -m 0755 /etc/mcpauth
# A named volume mounted on /var/lib/mcpauth/secrets starts with this owner and mode.
USER 10001:10001
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://example.invalid/mcpauth
LABEL org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="mcpauth"
STOPSIGNAL SIGTERM

# --- one image per service ---------------------------------------------------------------------
FROM runtime AS auth-service
LABEL org.opencontainers.image.title="mcpauth auth-service" \
      org.opencontainers.image.description="OAuth 2.1 authorization server for MCP"
COPY --from=binaries /out/auth-service /usr/local/bin/auth-service
# HTTP (issuer, /authorize, /token…), gRPC (introspection), admin listener (CONTRACT item 1).
EXPOSE 8080 9090 8180
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/auth-service"]
CMD ["serve"]

FROM runtime AS token-vault
LABEL org.opencontainers.image.title="mcpauth token-vault" \
      org.opencontainers.image.description="Users' upstream credentials, encrypted and refreshed"
COPY --from=binaries /out/token-vault /usr/local/bin/token-vault
# gRPC, and the HTTP listener for /metrics /healthz /readyz (http.addr; the admin port).
EXPOSE 9091 8182
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/token-vault"]
CMD ["serve"]

FROM runtime AS mcp-service
LABEL org.opencontainers.image.title="mcpauth mcp-service" \
      org.opencontainers.image.description="MCP Streamable HTTP endpoint, an OAuth protected resource"
COPY --from=binaries /out/mcp-service /usr/local/bin/mcp-service
# HTTP (/mcp, protected resource metadata), admin listener (CONTRACT item 1).
EXPOSE 8081 8181
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/mcp-service"]
CMD ["serve"]
