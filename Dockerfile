# syntax=docker/dockerfile:1
# Capstan's image for the DaemonSets: built from source, every feature (`full`).
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg CAPSTAN_REVISION="$(git rev-parse --short=12 HEAD)" \
#     -t <registry>/capstan:0.1.0 --push .
#
# The build stage runs scripts/build-release.sh, the same script the .deb is built with
# and that the test suite runs on the host. The runtime stage is distroless: the C
# library, CA certificates and the binary, run as the non-root user 65532.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# protoc and the well-known protos (google/protobuf/descriptor.proto): the etcd feature
# compiles etcd's protobuf definitions. valgrind: the build profiles the agent to lay
# out its code (scripts/build-release.sh; skipped where it cannot run, e.g. under
# emulation; curl scrapes it meanwhile). git is not needed: the revision comes as an arg.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev valgrind curl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG CAPSTAN_REVISION=unknown
ENV CAPSTAN_REVISION=${CAPSTAN_REVISION} CARGO_TARGET_DIR=/src/target
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=capstan-target \
    scripts/build-release.sh \
 && install -D -m 0755 /src/target/release/capstan /out/capstan

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/capstan /usr/bin/capstan
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/bin/capstan"]
CMD ["run", "--config", "/etc/capstan/capstan.toml"]
