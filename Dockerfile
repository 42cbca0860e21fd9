# Multi-stage build: a small final image with only the binary and its libc.
#   docker build -t grace . && docker run --rm -p 8080:8080 grace
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p grace-server \
 && strip target/release/grace

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/grace /usr/local/bin/grace
# distroless' nonroot user.
USER 65532:65532
EXPOSE 8080
# grace drains on SIGTERM, also as PID 1 (it installs its own handlers).
# An in-place `grace upgrade` is refused as PID 1, since the container would
# end with the old process: roll the Deployment instead, or add --init.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/grace"]
