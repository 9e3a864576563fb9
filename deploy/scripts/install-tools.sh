#!/usr/bin/env bash
# Installs what `make run`, `make test` and `make bench` need on a fresh
# Debian 12 machine: Debian packages and pinned Go tools (MinIO server,
# Pebble, gitleaks, ...). Idempotent: anything already present is left alone.
#
# Usage: deploy/scripts/install-tools.sh [base|test|bench|containers|security|all]...
#   base        Postgres, MinIO server (what `make run` needs)
#   test        base + Pebble, pebble-challtestsrv, gitleaks, shellcheck,
#               python3, python3-nbformat, zstd, brotli
#   bench       test + wrk, vegeta, nginx (stock Caddy is built from
#               edge/internal/stockcaddy by the benchmark itself)
#   containers  podman, buildah, debootstrap, docker-compose, gitleaks, Pebble
#   security    test + containers + gosec, govulncheck and its offline
#               database (built from golang.org/x/vulndb), h2spec, testssl.sh
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
GOSEC_VERSION=v2.30.0
GOVULNCHECK_VERSION=v1.9.0
# The vulnerability database snapshot (a pseudo-version: its timestamp is
# the snapshot's date). Bump it to scan against newer advisories.
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
# h2spec has no go.mod; its dependencies are pinned here so a rebuild is
# the same program.
H2SPEC_VERSION=v2.2.1+incompatible
H2SPEC_DEPS="golang.org/x/net@v0.63.0 github.com/spf13/cobra@v1.10.2 github.com/fatih/color@v1.19.0"
# Seconds apt-get waits for another process's dpkg lock before giving up.
APT_LOCK_TIMEOUT=${APT_LOCK_TIMEOUT:-300}

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
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

install_security() {
  install_test
  install_containers
  # testssl.sh scans the edge's TLS; it drives the system openssl and bash.
  apt_install testssl.sh
  go_tool gosec github.com/securego/gosec/v2/cmd/gosec "$GOSEC_VERSION"
  go_tool govulncheck golang.org/x/vuln/cmd/govulncheck "$GOVULNCHECK_VERSION"
  if [ ! -x "$BIN/h2spec" ] || [ "$(cat "$TOOLS_DIR/versions/h2spec" 2>/dev/null)" != "$H2SPEC_VERSION" ]; then
    log "building h2spec $H2SPEC_VERSION"
    local dir
    dir=$(mktemp -d)
    printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/summerwind/h2spec/cmd/h2spec"\n' >"$dir/tools.go"
    # shellcheck disable=SC2086 # H2SPEC_DEPS is a list of module@version words
    (cd "$dir" && go mod init h2specbuild >/dev/null 2>&1 &&
      go get "github.com/summerwind/h2spec@$H2SPEC_VERSION" $H2SPEC_DEPS >/dev/null 2>&1 &&
      go mod tidy >/dev/null 2>&1 &&
      go build -trimpath -o "$BIN/h2spec" github.com/summerwind/h2spec/cmd/h2spec)
    rm -rf "$dir"
    mkdir -p "$TOOLS_DIR/versions"
    echo "$H2SPEC_VERSION" >"$TOOLS_DIR/versions/h2spec"
  fi
  install_vulndb
}

# install_vulndb builds govulncheck's offline database (v1 layout) from the
# pinned golang.org/x/vulndb snapshot into $TOOLS_DIR/vulndb/<version>, once.
# The online database cannot be assumed reachable from CI; the snapshot's
# date is printed by the security suite with every scan.
install_vulndb() {
  local out="$TOOLS_DIR/vulndb/$VULNDB_VERSION"
  [ -f "$out/index/db.json" ] && return 0
  log "building the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION"
  local dir stamp repo
  repo=$(cd "$(dirname "$0")/../.." && pwd)
  dir=$(go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
  [ -d "$dir/data/osv" ] || { log "golang.org/x/vulndb@$VULNDB_VERSION has no data/osv"; return 1; }
  # A pseudo-version ends in -yyyymmddhhmmss-commit: the commit's UTC time.
  stamp=$(printf '%s\n' "$VULNDB_VERSION" | sed -n 's/.*-\([0-9]\{4\}\)\([0-9]\{2\}\)\([0-9]\{2\}\)\([0-9]\{2\}\)\([0-9]\{2\}\)\([0-9]\{2\}\)-[0-9a-f]*$/\1-\2-\3T\4:\5:\6Z/p')
  [ -n "$stamp" ] || { log "VULNDB_VERSION $VULNDB_VERSION is not a pseudo-version"; return 1; }
  rm -rf "$out.tmp"
  (cd "$repo" && go run ./deploy/security/vulndb -src "$dir/data/osv" -out "$out.tmp" -snapshot "$stamp") >&2
  printf '%s\n' "$VULNDB_VERSION" >"$out.tmp/version"
  rm -rf "$out"
  mv "$out.tmp" "$out"
}

[ $# -gt 0 ] || set -- base
for what in "$@"; do
  case $what in
    base) install_base ;;
    test) install_test ;;
    bench) install_bench ;;
    containers) install_containers ;;
    security) install_security ;;
    all) install_bench; install_containers ;;
    -h|--help) usage ;;
    *) log "unknown target: $what"; usage ;;
  esac
done
log "tools ready in $BIN"
