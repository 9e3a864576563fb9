#!/usr/bin/env bash
# Installs what `make run`, `make test` and `make bench` need on a fresh
# Debian 12 machine: Debian packages and pinned Go tools (MinIO server,
# Pebble, gitleaks, ...). Idempotent: anything already present is left alone.
#
# Usage: deploy/scripts/install-tools.sh [base|test|bench|containers|all]...
#   base        Postgres, MinIO server (what `make run` needs)
#   test        base + Pebble, pebble-challtestsrv, gitleaks, shellcheck,
#               python3, python3-nbformat, zstd, brotli
#   bench       test + wrk, vegeta, nginx (stock Caddy is built from
#               edge/internal/stockcaddy by the benchmark itself)
#   containers  podman, buildah, debootstrap, docker-compose, gitleaks, Pebble
# Tools go to TOOLS_DIR (default ~/.cache/finetune-studio/tools/bin), keyed by
# version so a version bump installs the new one beside the old.
set -euo pipefail

TOOLS_DIR=${TOOLS_DIR:-$HOME/.cache/finetune-studio/tools}
BIN="$TOOLS_DIR/bin"
mkdir -p "$BIN"

# Pinned versions. Bumping one here is the whole upgrade.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
PEBBLE_VERSION=v2.10.3
VEGETA_VERSION=v12.13.0
COMPOSE_VERSION=v2.40.3
GITLEAKS_VERSION=v8.30.1
# Seconds apt-get waits for another process's dpkg lock before giving up.
APT_LOCK_TIMEOUT=${APT_LOCK_TIMEOUT:-300}

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
log() { printf 'install-tools: %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ $apt_updated -eq 0 ]; then
    log "apt-get update"
    $sudo apt-get -o DPkg::Lock::Timeout="$APT_LOCK_TIMEOUT" update -qq
    apt_updated=1
  fi
  log "apt-get install ${missing[*]}"
  # A fresh machine often runs unattended upgrades at boot: wait for the dpkg
  # lock (bounded) instead of failing at once.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout="$APT_LOCK_TIMEOUT" \
    install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# go_tool NAME PACKAGE VERSION: installs PACKAGE@VERSION as $BIN/NAME, once.
go_tool() {
  local name=$1 pkg=$2 version=$3
  local stamp="$TOOLS_DIR/versions/$name"
  if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
    return 0
  fi
  log "go install $pkg@$version (cached afterwards)"
  mkdir -p "$TOOLS_DIR/versions"
  GOBIN="$BIN" GOFLAGS=-trimpath go install "$pkg@$version"
  echo "$version" >"$stamp"
}

install_base() {
  # iproute2 (ss, ip), openssl and curl: deploy/studio preflight and status.
  apt_install postgresql-15 ca-certificates openssl curl iproute2
  go_tool minio github.com/minio/minio "$MINIO_VERSION"
}

install_test() {
  install_base
  # python3 parses and runs the generated training notebook's code in tests,
  # and python3-nbformat validates the notebook against Jupyter's schema.
  # zstd and brotli rebuild the edge's precompressed UI assets (make lint
  # checks them).
  apt_install shellcheck python3 python3-nbformat zstd brotli
  # The web UI's browser tests drive headless Chromium (chromedp talks to
  # it directly; the driver package comes along for WebDriver users).
  apt_install chromium chromium-driver fonts-dejavu-core
  go_tool pebble github.com/letsencrypt/pebble/v2/cmd/pebble "$PEBBLE_VERSION"
  go_tool pebble-challtestsrv github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv "$PEBBLE_VERSION"
  go_tool gitleaks github.com/zricethezav/gitleaks/v8 "$GITLEAKS_VERSION"
}

install_bench() {
  install_test
  apt_install wrk nginx-light
  go_tool vegeta github.com/tsenart/vegeta/v12 "$VEGETA_VERSION"
}

install_containers() {
  # netavark (podman's network backend) calls iptables to set up every
  # network, build networks included, and Debian's netavark package does not
  # depend on it: without it the first RUN fails with "netavark: No such file
  # or directory".
  apt_install podman buildah runc debootstrap uidmap slirp4netns fuse-overlayfs \
    netavark aardvark-dns iptables openssl curl python3 postgresql-client
  go_tool gitleaks github.com/zricethezav/gitleaks/v8 "$GITLEAKS_VERSION"
  go_tool pebble github.com/letsencrypt/pebble/v2/cmd/pebble "$PEBBLE_VERSION"
  if [ ! -x "$BIN/docker-compose" ] || [ "$(cat "$TOOLS_DIR/versions/docker-compose" 2>/dev/null)" != "$COMPOSE_VERSION" ]; then
    # The compose module carries exclude directives, so `go install` refuses
    # it; it builds fine inside a throwaway module. The blank import keeps
    # `go mod tidy` from dropping the requirement it is there to resolve.
    log "building docker-compose $COMPOSE_VERSION (a few minutes, once)"
    local dir
    dir=$(mktemp -d)
    printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/docker/compose/v2/cmd"\n' >"$dir/tools.go"
    (cd "$dir" && go mod init composebuild >/dev/null 2>&1 &&
      go get "github.com/docker/compose/v2/cmd@$COMPOSE_VERSION" >/dev/null 2>&1 &&
      go mod tidy >/dev/null 2>&1 &&
      go build -trimpath -o "$BIN/docker-compose" github.com/docker/compose/v2/cmd)
    rm -rf "$dir"
    mkdir -p "$TOOLS_DIR/versions"
    echo "$COMPOSE_VERSION" >"$TOOLS_DIR/versions/docker-compose"
  fi
  configure_podman
}

# configure_podman applies what podman needs on hosts that lack
# CAP_SYS_RESOURCE and run hybrid cgroups (crun refuses both), and picks
# netavark so compose service names resolve. It only acts when podman is the
# container engine (no Docker daemon answering) and never overwrites a
# containers.conf it did not write.
configure_podman() {
  command -v podman >/dev/null 2>&1 || return 0
  if command -v docker >/dev/null 2>&1 && [ -z "${DOCKER_HOST:-}" ] && docker info >/dev/null 2>&1; then
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || { log "not root: leaving /etc/containers/containers.conf alone"; return 0; }
  local conf=/etc/containers/containers.conf marker="# written by finetune-studio install-tools.sh"
  if [ -e "$conf" ] && ! grep -qF "$marker" "$conf"; then
    log "$conf exists and is not ours: leaving it alone"
    return 0
  fi
  local want
  want=$(printf '%s\n[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n[network]\nnetwork_backend = "netavark"\n' "$marker")
  if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
    log "writing $conf"
    mkdir -p /etc/containers
    printf '%s\n' "$want" >"$conf"
  fi
}

[ $# -gt 0 ] || set -- base
for what in "$@"; do
  case $what in
    base) install_base ;;
    test) install_test ;;
    bench) install_bench ;;
    containers) install_containers ;;
    all) install_bench; install_containers ;;
    -h|--help) usage ;;
    *) log "unknown target: $what"; usage ;;
  esac
done
log "tools ready in $BIN"
