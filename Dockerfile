# Release image: build with cargo-leptos, ship the server binary and the site folder.
#   docker build -t saved-cards .
#   docker run --rm -p 3000:3000 -v saved-cards-data:/data --env-file .env.production saved-cards
# The versions are the ones toolchain.md verified together (see dev.sh).

FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
RUN rustup target add wasm32-unknown-unknown \
    && cargo install cargo-leptos --locked --version 0.3.10 --features no_downloads \
    && cargo install wasm-bindgen-cli --version 0.2.130 \
    && npm install --prefix /opt/tools binaryen@132.0.0
ENV PATH="/opt/tools/node_modules/.bin:${PATH}"
WORKDIR /src
COPY . .
# The release build leaves the embedded sandbox out (bin-default-features = false).
RUN cargo leptos build --release

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /data --create-home saved-cards
WORKDIR /app
COPY --from=build /src/target/release/server /app/server
COPY --from=build /src/target/site /app/site
ENV LEPTOS_ENV=PROD \
    LEPTOS_SITE_ADDR=0.0.0.0:3000 \
    LEPTOS_SITE_ROOT=/app/site \
    DATABASE_URL=sqlite:///data/saved-cards.db \
    LOG_FORMAT=json \
    RUST_LOG=info
USER saved-cards
VOLUME ["/data"]
EXPOSE 3000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/3000 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ok <&3"]
CMD ["/app/server"]
