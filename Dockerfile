# syntax=docker/dockerfile:1
#
# The Catalog service image: built in a full Rust image, run in a slim Debian
# with nothing but the binary, CA certificates (for rediss:// and TLS
# PostgreSQL) and curl (for the health check). See docs/operations.md.
#
#   docker build -t strata-catalog .
#   docker run -p 8080:8080 strata-catalog          # SQLite + in-process cache

# ---- build ------------------------------------------------------------------
# The workspace's minimum Rust version (rust-version in Cargo.toml).
FROM rust:1.94-bookworm AS build
WORKDIR /src

# Only what the build needs: a context's target/ must never reach the image.
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY apps apps

# The cache mounts keep the registry and the target directory between builds;
# the binary is copied out because a cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p catalog \
    && cp target/release/catalog /usr/local/bin/catalog

# ---- run --------------------------------------------------------------------
FROM debian:bookworm-slim AS run
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /data catalog

COPY --from=build /usr/local/bin/catalog /usr/local/bin/catalog

# The working directory is where the default SQLite file (catalog.db) lives:
# mount a volume here to keep it, or set DATABASE_URL to PostgreSQL.
WORKDIR /data
USER catalog

ENV PORT=8080 \
    LOG=info
EXPOSE 8080

# The service drains in-flight requests on SIGTERM (docker stop).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${PORT}/health/ready" > /dev/null || exit 1

ENTRYPOINT ["/usr/local/bin/catalog"]
