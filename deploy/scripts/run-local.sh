#!/usr/bin/env bash
# Runs the whole stack locally for development: Postgres and MinIO with their
# data under .data/, the app (bin/app), and the edge (bin/edge with
# Caddyfile.dev) when it has been built. Prints the URLs and a fresh API
# token; Ctrl-C stops everything.
#
# usage: deploy/scripts/run-local.sh
#   (normally through `make run`, which installs tools and builds bin/ first)
#
# Ports (override in the environment): PG_PORT=55432 MINIO_PORT=59000
# APP_PORT=8080 APP_METRICS_PORT=9090 EDGE_DEV_ADDR=localhost:8443
set -euo pipefail

usage() { echo "usage: $0   (no arguments; ports via PG_PORT, MINIO_PORT, APP_PORT, APP_METRICS_PORT, EDGE_DEV_ADDR)" >&2; }
if [[ $# -gt 0 ]]; then
  usage
  [[ "$1" == "-h" || "$1" == "--help" ]] && exit 0
  exit 2
fi

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
DATA="$ROOT/.data"
TOOLS_BIN="${TOOLS_DIR:-$HOME/.cache/finetune-studio/tools}/bin"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_PORT="${PG_PORT:-55432}"
MINIO_PORT="${MINIO_PORT:-59000}"
APP_PORT="${APP_PORT:-8080}"
APP_METRICS_PORT="${APP_METRICS_PORT:-9090}"
EDGE_DEV_ADDR="${EDGE_DEV_ADDR:-localhost:8443}"

log() { printf '[run-local] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# wait_ready NAME URL LOG: wait up to 60 s for URL to answer (2xx/3xx, any
# certificate) from the process started last; stop with its log named if it
# exits or never gets ready.
wait_ready() {
  for _ in $(seq 1 300); do
    curl -ksf -o /dev/null "$2" 2>/dev/null && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || die "$1 exited; see $3"
    sleep 0.2
  done
  die "$1 is not ready after 60 s; see $3"
}

[[ -x bin/app ]] || die "bin/app is missing: run 'make build' (or 'make run')"
[[ -x "$PG_BIN/initdb" ]] || die "PostgreSQL 15 is missing in $PG_BIN: run 'make tools'"
MINIO_BIN="$TOOLS_BIN/minio"
[[ -x "$MINIO_BIN" ]] || MINIO_BIN="$(command -v minio || true)"
[[ -n "$MINIO_BIN" && -x "$MINIO_BIN" ]] || die "minio is missing: run 'make tools'"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$PG_PORT" "$MINIO_PORT" "$APP_PORT" "$APP_METRICS_PORT"; do
  port_free "$p" || die "port $p on 127.0.0.1 is in use (is another 'make run' running? override with PG_PORT, MINIO_PORT, APP_PORT, APP_METRICS_PORT)"
done

mkdir -p "$DATA"
chmod 0755 "$DATA" # postgres must traverse it when we run as root

# Postgres refuses to run as root: run it as the postgres user then.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# Local development credentials: generated once, kept in .data/ (ignored by
# git), never printed.
CREDS="$DATA/dev-credentials.env"
if [[ ! -f "$CREDS" ]]; then
  umask 077
  {
    echo "PG_PASSWORD=$(openssl rand -hex 16)"
    echo "MINIO_USER=dev-$(openssl rand -hex 4)"
    echo "MINIO_PASSWORD=$(openssl rand -hex 20)"
  } >"$CREDS"
  umask 022
  log "generated local credentials in $CREDS"
fi
# shellcheck source=/dev/null
source "$CREDS"

PIDS=()
PG_DATA="$DATA/postgres"
stopping=0
cleanup() {
  [[ $stopping -eq 1 ]] && return
  stopping=1
  log "stopping..."
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
  done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    wait "${PIDS[i]}" 2>/dev/null || true
  done
  if [[ -f "$PG_DATA/postmaster.pid" ]]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
  log "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- Postgres -----------------------------------------------------------
if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
  log "initialising Postgres in $PG_DATA"
  mkdir -p "$PG_DATA"
  pwfile="$DATA/.pgpass.tmp"
  (umask 077 && printf '%s\n' "$PG_PASSWORD" >"$pwfile")
  if [[ $(id -u) -eq 0 ]]; then chown postgres: "$PG_DATA" "$pwfile"; fi
  chmod 0700 "$PG_DATA"
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U finetune --pwfile="$pwfile" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$DATA/initdb.log" 2>&1 ||
    { rm -f "$pwfile"; die "initdb failed; see $DATA/initdb.log"; }
  rm -f "$pwfile"
fi
# Socket and log live in a directory the server's user owns.
PG_RUN="$DATA/pg-run"
mkdir -p "$PG_RUN"
if [[ $(id -u) -eq 0 ]]; then chown postgres: "$PG_RUN"; fi
log "starting Postgres on 127.0.0.1:$PG_PORT"
as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_RUN/postgres.log" -w -t 60 \
  -o "-p $PG_PORT -k $PG_RUN -c listen_addresses=127.0.0.1" start >/dev/null ||
  die "Postgres did not start; see $PG_RUN/postgres.log"
if ! PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U finetune -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname = 'finetune'" | grep -q 1; then
  PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U finetune -d postgres -qc "CREATE DATABASE finetune" ||
    die "cannot create the finetune database"
fi

# --- MinIO --------------------------------------------------------------
log "starting MinIO on 127.0.0.1:$MINIO_PORT"
mkdir -p "$DATA/minio"
MINIO_ROOT_USER="$MINIO_USER" MINIO_ROOT_PASSWORD="$MINIO_PASSWORD" MINIO_BROWSER=off MINIO_UPDATE=off \
  "$MINIO_BIN" server --quiet --address "127.0.0.1:$MINIO_PORT" "$DATA/minio" >"$DATA/minio.log" 2>&1 &
PIDS+=("$!")
wait_ready MinIO "http://127.0.0.1:$MINIO_PORT/minio/health/ready" "$DATA/minio.log"

# --- App ----------------------------------------------------------------
export APP_ENV=development
export APP_ADDR="127.0.0.1:$APP_PORT"
export APP_METRICS_ADDR="127.0.0.1:$APP_METRICS_PORT"
export APP_TRUSTED_PROXIES=127.0.0.1
export APP_DRAIN_DELAY=0s
export DATABASE_URL="postgres://finetune:$PG_PASSWORD@127.0.0.1:$PG_PORT/finetune?sslmode=disable"
export S3_ENDPOINT="127.0.0.1:$MINIO_PORT"
export S3_ACCESS_KEY="$MINIO_USER"
export S3_SECRET_KEY="$MINIO_PASSWORD"
export S3_USE_TLS=false
# No backups run locally: keep /readyz from warning about their age.
export BACKUP_MAX_AGE=0
# Without Kaggle credentials (in the environment or .env), train against the
# local Kaggle emulator so the whole loop can be tried: jobs are labelled
# "simulated" in the UI and the app log, and produce sample models.
if [[ -z "${KAGGLE_USERNAME:-}${KAGGLE_KEY:-}${KAGGLE_API_TOKEN:-}" ]] &&
  ! grep -Eq '^KAGGLE_(USERNAME|KEY|API_TOKEN)=.+' .env 2>/dev/null; then
  export KAGGLE_SIMULATOR="${KAGGLE_SIMULATOR:-true}"
fi

log "starting the app on $APP_ADDR (logs: $DATA/app.log)"
bin/app serve >"$DATA/app.log" 2>&1 &
PIDS+=("$!")
wait_ready "the app" "http://$APP_ADDR/readyz" "$DATA/app.log"
TOKEN="$(bin/app token create --name "dev-$(date +%Y%m%d-%H%M%S)" 2>>"$DATA/app.log")"

# --- Edge (once it is built) --------------------------------------------
EDGE_URL=""
if [[ -x bin/edge && -f Caddyfile.dev ]]; then
  log "starting the edge on $EDGE_DEV_ADDR (logs: $DATA/edge.log)"
  APP_UPSTREAMS="$APP_ADDR" EDGE_DEV_ADDR="$EDGE_DEV_ADDR" EDGE_UI_DIR="$ROOT/edge/ui" \
    EDGE_STORAGE_DIR="$DATA/edge" \
    bin/edge run --config Caddyfile.dev --adapter caddyfile >"$DATA/edge.log" 2>&1 &
  PIDS+=("$!")
  EDGE_URL="https://$EDGE_DEV_ADDR"
  wait_ready "the edge" "$EDGE_URL/" "$DATA/edge.log"
fi

cat <<EOF

  Finetune Studio is running.

    API         http://$APP_ADDR/api/v1/   (readiness: http://$APP_ADDR/readyz)
    Metrics     http://$APP_METRICS_ADDR/metrics
    MinIO       http://127.0.0.1:$MINIO_PORT   (bucket finetune-studio)
    Postgres    127.0.0.1:$PG_PORT, database finetune (credentials in .data/dev-credentials.env)
EOF
if [[ -n "$EDGE_URL" ]]; then
  echo "    Edge + UI   $EDGE_URL/   (local CA: trust it or use curl -k)"
fi
if [[ "${KAGGLE_SIMULATOR:-}" == "true" ]]; then
  echo "    Training    SIMULATED (no Kaggle credentials): jobs run against a local emulator"
fi
cat <<EOF

  API token (shown once):
    $TOKEN

  Try: curl -H "Authorization: Bearer $TOKEN" http://$APP_ADDR/api/v1/whoami
  Logs in .data/*.log and .data/pg-run/postgres.log. Press Ctrl-C to stop everything.

EOF

# Stop everything as soon as any component exits.
wait -n "${PIDS[@]}" || true
log "a component exited; see the logs in $DATA"
