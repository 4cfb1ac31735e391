# syntax=docker/dockerfile:1
# Multi-stage build: cargo-chef caches the dependency layer, the runtime image is a small
# non-root Debian with CA certificates, and the binary is PID 1 (exec form) so it gets SIGTERM.

FROM rust:1.95-slim-bookworm AS chef
RUN cargo install --locked cargo-chef
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin mcss

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin mcss \
 && mkdir -p /app/data && chown mcss /app/data
WORKDIR /app
COPY --from=builder /app/target/release/mcss /usr/local/bin/mcss
USER mcss
ENV LOG_FORMAT=json \
    DATABASE_URL=sqlite:///app/data/mcss.db?mode=rwc
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/mcss"]
CMD ["serve"]
