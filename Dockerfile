# Builds every binary of the workspace once; each compose service runs one of them.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --workspace --bins \
 && mkdir -p /out \
 && for bin in users expenses budgets analytics notifications router; do \
      cp "target/release/$bin" /out/; \
    done

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 tracker
COPY --from=build /out/ /usr/local/bin/
COPY schema/ /app/schema/
COPY router/docker.toml /app/router.toml
WORKDIR /app
USER tracker
