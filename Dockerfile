# The example jobs in a small runtime image.
#
#   docker build -t ferroflow/examples:0.1.0 .
#   docker run --rm -p 9249:9249 ferroflow/examples:0.1.0            # the UV dashboard on its generator
#   docker run --rm ferroflow/examples:0.1.0 dimension_join --help
#
# Build stage: the stable Rust toolchain (1.90 or newer), a C/C++ compiler and libclang
# (RocksDB, librdkafka).
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake libclang-dev pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The features the example jobs use; `--build-arg FEATURES=...` trims them.
ARG FEATURES=rocksdb,kafka,object-store,redis,sql,parquet,orc,hdfs
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --features "$FEATURES" \
      --example uv_dashboard --example hourly_uv --example dimension_join --example kafka_to_hive \
 && mkdir -p /out \
 && cp target/release/examples/uv_dashboard target/release/examples/hourly_uv \
       target/release/examples/dimension_join target/release/examples/kafka_to_hive /out/

# Runtime stage: the binaries, CA certificates (S3, HTTPS) and tini as PID 1, which passes
# SIGTERM to the job (it stops with a savepoint when started with --savepoint-on-stop).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home --home-dir /var/lib/ferroflow ferroflow
COPY --from=build /out/ /usr/local/bin/
USER 10001
WORKDIR /var/lib/ferroflow
EXPOSE 9249
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["uv_dashboard", "--http", "0.0.0.0:9249"]
