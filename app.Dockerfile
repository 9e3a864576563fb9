# syntax=docker/dockerfile:1
# The API server image: a static Go binary on an empty base with CA
# certificates and time zones, running as a numeric non-root user.
#
#   docker build -f app.Dockerfile -t finetune-studio/app:dev .
#   docker buildx build -f app.Dockerfile --platform linux/amd64,linux/arm64 .
#
# Base images are arguments so a mirror or an air-gapped registry works
# without editing this file.
ARG GO_IMAGE=docker.io/library/golang:1.26-bookworm
ARG RUNTIME_IMAGE=scratch

# Compiles on the build machine's platform and cross-compiles to the
# target's: no emulation, so arm64 images build as fast as amd64 ones.
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local
# Modules in their own layer: it is reused until go.mod or go.sum changes.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY app ./app
COPY migrations ./migrations
# No defaults for the platform arguments: a default would override the
# value the builder sets from --platform (docker/buildx#510).
ARG TARGETOS TARGETARCH
ARG VERSION=dev REVISION=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build \
      -ldflags "-s -w -X main.version=$VERSION -X main.revision=$REVISION" \
      -o /out/app ./app

# The runtime's whole filesystem, assembled here because the final stage
# has no shell: a passwd naming the non-root user, the object mirror's
# default directory (owned by that user, so a new volume there is writable),
# the mount point of the Postgres dumps (owned by the backup service's
# 999:999, 0750: a backups volume first mounted here, e.g. by a
# `compose run app`, takes that owner and stays writable for the backup
# service; the app reads it through group 999), Mozilla's CA bundle
# (rebuilt from the package's sources, so no trust added to the build
# machine ever leaks in), Go's time zone database and a sticky /tmp.
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS rootfs
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/usr/share /rootfs/tmp /rootfs/backups/objects \
 && chmod 1777 /rootfs/tmp \
 && chown -R 65532:65532 /rootfs/backups \
 && mkdir -m 0750 /rootfs/backups/postgres && chown 999:999 /rootfs/backups/postgres \
 && echo 'root:x:0:0:root:/root:/sbin/nologin' >/rootfs/etc/passwd \
 && echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >>/rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' >/rootfs/etc/group \
 && cat /usr/share/ca-certificates/mozilla/*.crt >/rootfs/etc/ssl/certs/ca-certificates.crt \
 && cp "$(go env GOROOT)/lib/time/zoneinfo.zip" /rootfs/usr/share/zoneinfo.zip

FROM ${RUNTIME_IMAGE}
COPY --from=rootfs /rootfs/ /
COPY --from=build /out/app /usr/bin/app
ENV ZONEINFO=/usr/share/zoneinfo.zip \
    APP_ADDR=:8080 \
    APP_METRICS_ADDR=:9090
USER 65532:65532
EXPOSE 8080 9090
# The binary checks itself: there is no shell or curl to do it.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/bin/app", "healthcheck"]
ENTRYPOINT ["/usr/bin/app"]
CMD ["serve"]
# Labels last: they change with every revision, and the layers after them
# would be rebuilt (the binary layer changes anyway: it carries the revision).
ARG VERSION=dev REVISION=unknown
LABEL org.opencontainers.image.title="finetune-studio-app" \
      org.opencontainers.image.description="Finetune Studio API server and workers" \
      org.opencontainers.image.source="https://github.com/finetune-studio/finetune-studio" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION"
