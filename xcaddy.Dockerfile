# syntax=docker/dockerfile:1
# The edge image: Caddy with the project's modules and caddy-ratelimit,
# plus the web UI's static assets, precompressed, running as a numeric
# non-root user that may write only /data and /config.
#
#   docker build -f xcaddy.Dockerfile -t finetune-studio/edge:dev .
#
# Why `go build ./edge` and not `xcaddy build`: the edge is a package of
# this module, so the build uses exactly the versions go.mod and go.sum
# pin (the same binary `go build ./edge` gives on a laptop, same
# `caddy list-modules`), with no network resolution at build time beyond
# `go mod download`.
ARG GO_IMAGE=docker.io/library/golang:1.26-bookworm
ARG RUNTIME_IMAGE=scratch

FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY edge ./edge
COPY caddy-modules ./caddy-modules
# No defaults: a default would override the value the builder sets from
# --platform (docker/buildx#510).
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -ldflags "-s -w" -o /out/caddy ./edge

# The UI's built assets with .gz siblings, which Caddy's
# `file_server { precompressed ... }` serves without compressing per request.
# edge/scripts/build-ui.sh already writes .gz and .zst; whatever lacks a .gz
# (an asset added without rerunning it) gets one here.
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS ui
COPY edge/ui /ui
RUN find /ui -type f \( -name '*.html' -o -name '*.css' -o -name '*.js' -o -name '*.mjs' \
      -o -name '*.json' -o -name '*.svg' -o -name '*.txt' -o -name '*.map' \) \
      -exec sh -c 'for f; do [ -e "$f.gz" ] || gzip -9 -k -n "$f"; done' sh {} +

# Same minimal filesystem as the app image, plus /data and /config owned by
# the edge's user: Caddy keeps certificates and ACME accounts in /data and
# its autosaved config in /config, and may write nowhere else.
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS rootfs
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/etc/caddy /rootfs/usr/share /rootfs/tmp \
      /rootfs/data /rootfs/config \
 && chmod 1777 /rootfs/tmp \
 && chown 65532:65532 /rootfs/data /rootfs/config \
 && echo 'root:x:0:0:root:/root:/sbin/nologin' >/rootfs/etc/passwd \
 && echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >>/rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' >/rootfs/etc/group \
 && cat /usr/share/ca-certificates/mozilla/*.crt >/rootfs/etc/ssl/certs/ca-certificates.crt \
 && cp "$(go env GOROOT)/lib/time/zoneinfo.zip" /rootfs/usr/share/zoneinfo.zip

FROM ${RUNTIME_IMAGE}
COPY --from=rootfs /rootfs/ /
COPY --from=build /out/caddy /usr/bin/caddy
COPY --from=ui /ui /srv/ui
# Caddyfile (own certificates) and Caddyfile.railway (behind a platform's
# TLS proxy) both import Caddyfile.snippets from their own directory.
COPY Caddyfile Caddyfile.snippets Caddyfile.railway /etc/caddy/
# GOGC=400: a few MB more heap for far fewer GC cycles under load
# (docs/benchmarks.md); Caddy still sets GOMEMLIMIT from the cgroup limit.
ENV GOGC=400 \
    ZONEINFO=/usr/share/zoneinfo.zip \
    XDG_DATA_HOME=/data \
    XDG_CONFIG_HOME=/config \
    EDGE_UI_DIR=/srv/ui
USER 65532:65532
# 80 and 443 need net.ipv4.ip_unprivileged_port_start=0 for a non-root
# process (Docker sets it by default; the compose file sets it explicitly).
EXPOSE 80 443 443/udp
# Liveness: the edge itself answers on its internal listener (/livez). The
# app's and the certificates' state is readiness (`caddy healthcheck --ready`).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/bin/caddy", "healthcheck"]
ENTRYPOINT ["/usr/bin/caddy"]
CMD ["run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
# Labels last: they change with every revision, and anything after them
# would be rebuilt. So a release whose edge sources did not change has
# exactly the layers of the one before, and `deploy/studio deploy` keeps the
# running edge instead of replacing it.
ARG VERSION=dev REVISION=unknown
LABEL org.opencontainers.image.title="finetune-studio-edge" \
      org.opencontainers.image.description="Finetune Studio edge: Caddy with rate limiting and the web UI" \
      org.opencontainers.image.source="https://github.com/finetune-studio/finetune-studio" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION"
