# shellcheck shell=bash
# shellcheck disable=SC2154 # work and repo are the caller's
# Shared by the container test scripts (test-containers, test-backup,
# test-deploy): which engine runs the containers, which base images they
# use, and podman's health checks. Sourced; the caller defines log and fail
# and owns $work (a temporary directory) and $repo, and stops $service_pid
# and $ticker_pid in its cleanup.

# harness_engine: a Docker engine, or podman through its Docker-compatible
# API socket (served by a process the caller owns: $service_pid). Sets and
# exports ENGINE and COMPOSE (deploy/studio keeps them instead of detecting
# again); TICK=1 when health checks must be ticked (harness_ticker).
harness_engine() {
  if command -v docker >/dev/null && docker info >/dev/null 2>&1 && ! docker info 2>/dev/null | grep -qi podman; then
    ENGINE=docker
    COMPOSE="docker compose"
    TICK=0
  else
    command -v podman >/dev/null || fail "neither a Docker engine nor podman is available"
    ENGINE=podman
    local sock="$work/podman.sock"
    podman system service --time=0 "unix://$sock" >"$work/podman-service.log" 2>&1 &
    # shellcheck disable=SC2034 # stopped by the caller's cleanup
    service_pid=$!
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
    [ -S "$sock" ] || fail "podman API socket did not appear"
    export DOCKER_HOST="unix://$sock"
    COMPOSE=docker-compose
    # shellcheck disable=SC2034 # read by the caller
    TICK=1
  fi
  export ENGINE COMPOSE
  log "engine: $ENGINE"
}

# harness_standins: the official Postgres and MinIO images when a registry
# answers, else stand-ins built from deploy/images (exported as
# POSTGRES_IMAGE and MINIO_IMAGE). STANDINS=0/1 forces the choice.
harness_standins() {
  STANDINS=${STANDINS:-auto}
  if [ "$STANDINS" = auto ]; then
    if timeout 60 "$ENGINE" pull -q docker.io/library/postgres:15.18-bookworm >/dev/null 2>&1; then
      STANDINS=0
    else
      STANDINS=1
    fi
  fi
  if [ "$STANDINS" = 1 ]; then
    log "no registry: building local stand-in base images"
    "$repo/deploy/images/build.sh" golang postgres minio
    export POSTGRES_IMAGE=localhost/finetune-studio/postgres:15-standin
    export MINIO_IMAGE=localhost/finetune-studio/minio:standin
  fi
}

# harness_ticker PREFIX: podman runs HEALTHCHECKs only from systemd timers,
# so run them every 2 s for the containers whose names start with PREFIX
# ($ticker_pid). A Docker engine does it itself.
harness_ticker() {
  [ "$TICK" = 1 ] || return 0
  (
    while :; do
      for c in $(podman ps --format '{{.Names}}' | grep "^$1" || true); do
        podman healthcheck run "$c" >/dev/null 2>&1 || true
      done
      sleep 2
    done
  ) &
  # shellcheck disable=SC2034 # stopped by the caller's cleanup
  ticker_pid=$!
}

# free_port: a free TCP port on the loopback interface.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# harness_pebble IMAGE DOMAIN MGMT_PORT: Pebble stands in for Let's Encrypt.
# Writes the edge's extra globals ($work/edge-globals: trust Pebble's HTTPS
# root) and the compose overlay $work/compose.test.yml: Pebble on the public
# network (its management port on MGMT_PORT), and the edge reachable there
# as DOMAIN, so Pebble's validation reaches it.
harness_pebble() {
  mkdir -p "$work/edge-globals"
  "$ENGINE" run --rm --entrypoint /bin/cat "$1" /etc/pebble/certs/pebble.minica.pem \
    >"$work/edge-globals/pebble-https-root.pem"
  printf 'acme_ca_root /etc/caddy/test-globals/pebble-https-root.pem\n' >"$work/edge-globals/pebble.caddy"
  cat >"$work/compose.test.yml" <<YAML
services:
  pebble:
    image: $1
    environment:
      PEBBLE_VA_NOSLEEP: "1"
    ports:
      - "127.0.0.1:$3:15000"
    networks: [public]
  edge:
    environment:
      EDGE_EXTRA_GLOBALS: /etc/caddy/test-globals/*.caddy
    volumes:
      - $work/edge-globals:/etc/caddy/test-globals:ro
    networks:
      public:
        aliases: [$2]
      internal: {}
    depends_on:
      pebble:
        condition: service_started
YAML
}
