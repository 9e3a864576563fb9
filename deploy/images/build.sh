#!/usr/bin/env bash
# Builds local stand-ins for the public base images, for machines that cannot
# reach a container registry (CI runners behind an air gap, for instance).
# Each stand-in is tagged with the exact name the Dockerfiles and compose files
# use by default, or with a localhost/ name that compose picks up through its
# image variables (POSTGRES_IMAGE, MINIO_IMAGE). Production never needs this:
# it pulls the official, version-pinned images.
#
# Usage: deploy/images/build.sh [base|golang|postgres|minio|pebble|all]...
#   base      Debian bookworm minbase rootfs (debootstrap), localhost/debian-base:bookworm
#   golang    Go builder: base + this host's Go toolchain, tagged $GO_IMAGE
#   postgres  PostgreSQL 15 from Debian packages, official-image entrypoint contract
#   minio     MinIO server built from source (install-tools.sh base), official-image contract
#   pebble    Let's Encrypt's Pebble ACME test server (for test-containers only)
# Idempotent: an image that exists with the same inputs is kept.
# Needs root (debootstrap) and podman or docker (ENGINE=podman|docker).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
TOOLS_DIR=${TOOLS_DIR:-$HOME/.cache/finetune-studio/tools}
ENGINE=${ENGINE:-$(command -v podman >/dev/null 2>&1 && echo podman || echo docker)}
BASE_IMAGE=localhost/debian-base:bookworm
GO_IMAGE=${GO_IMAGE:-docker.io/library/golang:1.26-bookworm}
POSTGRES_STANDIN=${POSTGRES_STANDIN:-localhost/finetune-studio/postgres:15-standin}
MINIO_STANDIN=${MINIO_STANDIN:-localhost/finetune-studio/minio:standin}
PEBBLE_STANDIN=${PEBBLE_STANDIN:-localhost/finetune-studio/pebble:standin}
PEBBLE_VERSION=${PEBBLE_VERSION:-v2.10.3}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
log() { printf 'images: %s\n' "$*" >&2; }

# label_of IMAGE KEY prints a label of a local image, or nothing.
label_of() {
  "$ENGINE" image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# inputs_hash FILE... hashes build inputs, so a changed Dockerfile or binary
# rebuilds its stand-in and an unchanged one is left alone.
inputs_hash() { cat "$@" | sha256sum | cut -c1-16; }

# build_standin IMAGE CONTEXT HASH builds CONTEXT as IMAGE unless an image
# with the same input hash is already there.
build_standin() {
  local image=$1 context=$2 hash=$3
  if [ "$(label_of "$image" org.finetune-studio.standin-inputs)" = "$hash" ]; then
    log "$image is up to date"
    return 0
  fi
  log "building $image"
  "$ENGINE" build --quiet --label "org.finetune-studio.standin-inputs=$hash" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$image" "$context" >/dev/null
}

build_base() {
  if "$ENGINE" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "$BASE_IMAGE exists"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || { log "debootstrap needs root"; exit 1; }
  local root
  root=$(mktemp -d)
  log "debootstrap bookworm into $root (about two minutes)"
  debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >/dev/null
  # Keep the image small: package lists and caches are fetched again by
  # whoever installs on top.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" -c . | "$ENGINE" import \
    --change 'CMD ["/bin/bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$BASE_IMAGE" >/dev/null
  rm -rf "$root"
}

build_golang() {
  build_base
  local goroot version ctx hash
  goroot=$(go env GOROOT)
  version=$(go env GOVERSION)
  hash=$(printf '%s\n' "$version" | cat - "$here/golang/Dockerfile" /etc/ssl/certs/ca-certificates.crt | sha256sum | cut -c1-16)
  if [ "$(label_of "$GO_IMAGE" org.finetune-studio.standin-inputs)" = "$hash" ]; then
    log "$GO_IMAGE is up to date"
    return 0
  fi
  ctx=$(mktemp -d)
  cp "$here/golang/Dockerfile" "$ctx/"
  # The builder stand-in (never a runtime image) trusts this host's CA bundle,
  # so module downloads work behind a TLS-inspecting proxy.
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca-certificates.crt"
  cp -a "$goroot" "$ctx/go"
  rm -rf "$ctx/go/pkg/obj" "$ctx/go/.git"
  build_standin "$GO_IMAGE" "$ctx" "$hash"
  rm -rf "$ctx"
}

build_postgres() {
  build_base
  build_standin "$POSTGRES_STANDIN" "$here/postgres" \
    "$(inputs_hash "$here/postgres/Dockerfile" "$here/postgres/docker-entrypoint.sh")"
}

# copy_tool NAME CTX copies an installed tool binary into a build context.
copy_tool() {
  local bin="$TOOLS_DIR/bin/$1"
  [ -x "$bin" ] || { log "$bin missing: run deploy/scripts/install-tools.sh"; exit 1; }
  cp "$bin" "$2/"
}

build_minio() {
  build_base
  local ctx
  ctx=$(mktemp -d)
  cp "$here/minio/Dockerfile" "$ctx/"
  copy_tool minio "$ctx"
  build_standin "$MINIO_STANDIN" "$ctx" "$(inputs_hash "$ctx/Dockerfile" "$ctx/minio")"
  rm -rf "$ctx"
}

build_pebble() {
  build_base
  local ctx
  ctx=$(mktemp -d)
  cp "$here/pebble/Dockerfile" "$here/pebble/pebble-config.json" "$ctx/"
  copy_tool pebble "$ctx"
  # Pebble's own test certificates (its HTTPS listener presents them; they
  # are public and only ever used against this throwaway CA).
  cp -r "$(go env GOMODCACHE)/github.com/letsencrypt/pebble/v2@$PEBBLE_VERSION/test/certs" "$ctx/certs"
  chmod -R u+w "$ctx/certs"
  build_standin "$PEBBLE_STANDIN" "$ctx" \
    "$(inputs_hash "$ctx/Dockerfile" "$ctx/pebble-config.json" "$ctx/pebble" "$ctx/certs/localhost/cert.pem")"
  rm -rf "$ctx"
}

[ $# -gt 0 ] || usage
for what in "$@"; do
  case $what in
    base) build_base ;;
    golang) build_golang ;;
    postgres) build_postgres ;;
    minio) build_minio ;;
    pebble) build_pebble ;;
    all) build_golang; build_postgres; build_minio; build_pebble ;;
    -h|--help) usage ;;
    *) log "unknown image: $what"; usage ;;
  esac
done
