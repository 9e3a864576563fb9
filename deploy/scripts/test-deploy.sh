#!/usr/bin/env bash
# Proves `deploy/studio deploy` and `rollback` in real containers (what
# `make test-deploy` and CI run), from a fresh clone of this repository:
#   preflight: may warn; may FAIL only on the test domain's DNS;
#   A. deploy release A (the clone's HEAD) to healthy HTTPS, with Pebble as
#      the ACME CA; the elapsed time goes to the results;
#   B. deploy release B (a second commit: an expand migration) while a
#      constant-rate load runs through the edge: no request may fail; B
#      serves and its migration is applied;
#   rollback: A serves again, against B's schema (expand/contract), under
#      the same load, with no failed request;
#   C. a release whose app exits at start: deploy fails, the new instance
#      is removed, A keeps serving (under load, no failed request);
#   D. a release that starts but fails the smoke check (its whoami route is
#      gone): deploy rolls back to A by itself and exits 1;
#   finally the stack is healthy, serves A, and the release records agree.
# Works with a Docker engine or with podman (its API socket + docker-compose).
# Everything started is removed on exit: containers, volumes, networks, the
# images built for the test releases, the clone.
#
# Usage: deploy/scripts/test-deploy.sh
# Results are printed at the end and written to $RESULTS (default
# .run/test-deploy/results.txt).
set -euo pipefail

case ${1:-} in
  -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "unknown argument: $1" >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
TOOLS_DIR=${TOOLS_DIR:-$HOME/.cache/finetune-studio/tools}
export PATH="$TOOLS_DIR/bin:$PATH"
RESULTS=${RESULTS:-$repo/.run/test-deploy/results.txt}
TEST_DOMAIN=studio.test
PROJECT=fstd$$
LOAD_RATE=${LOAD_RATE:-40}
WAIT_SECS=${WAIT_SECS:-300}

t0=$(date +%s)
log() { printf '[test-deploy %4ss] %s\n' "$(($(date +%s) - t0))" "$*" >&2; }
# The reason is repeated as the very last line (after the services' logs),
# where a CI page that shows only the tail of the output still has it.
FAILURE=""
fail() { log "FAIL: $*"; FAILURE=$*; exit 1; }
pass() { log "ok: $*"; }
result() { printf '%s\n' "$*" | tee -a "$RESULTS" >&2; }

work=$(mktemp -d /tmp/test-deploy.XXXXXX)
chmod 0755 "$work"
clone="$work/clone"
service_pid=""
load_pid=""
root_pid=""
stack_up=0

cleanup() {
  local rc=$?
  set +e
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null && wait "$load_pid" 2>/dev/null
  [ -n "$root_pid" ] && kill "$root_pid" 2>/dev/null && wait "$root_pid" 2>/dev/null
  if [ $stack_up -eq 1 ]; then
    if [ $rc -ne 0 ]; then
      log "failure: last lines of the deploy log and of every service"
      tail -n 60 "$STUDIO_LOG" >&2
      tc logs --no-color --tail 30 >&2 2>&1
    fi
    tc down -v --remove-orphans >/dev/null 2>&1
  fi
  for sha in ${shas:-}; do
    "$ENGINE" rmi -f "localhost/finetune-studio/app:${sha:0:12}" "localhost/finetune-studio/edge:${sha:0:12}" >/dev/null 2>&1
  done
  [ -n "$service_pid" ] && kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
  rm -rf "$work"
  if [ $rc -eq 0 ]; then log "PASS"; else log "FAILED (exit $rc)${FAILURE:+: $FAILURE}"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- engine and tools ------------------------------------------------------
log "installing/checking tools (idempotent)"
"$repo/deploy/scripts/install-tools.sh" containers >/dev/null
for tool in openssl curl git go python3; do
  command -v "$tool" >/dev/null || fail "$tool missing after install-tools.sh"
done
# shellcheck source=deploy/scripts/lib/harness.sh
. "$repo/deploy/scripts/lib/harness.sh"
harness_engine
mkdir -p "$(dirname "$RESULTS")"
: >"$RESULTS"
result "# test-deploy $(date -u +%Y-%m-%dT%H:%M:%SZ) engine=$ENGINE cores=$(nproc)"

harness_standins
"$repo/deploy/images/build.sh" pebble
PEBBLE_IMAGE=localhost/finetune-studio/pebble:standin
go build -o "$work/loadprobe" ./deploy/loadprobe

# --- a fresh clone, configured as an operator would --------------------------
git clone -q "$repo" "$clone"
git -C "$clone" config user.email test-deploy@example.invalid
git -C "$clone" config user.name test-deploy
studio="$clone/deploy/studio"
"$clone/deploy/scripts/gen-certs.sh" >/dev/null 2>&1 || fail "gen-certs.sh failed"
"$clone/deploy/scripts/gen-secrets.sh" >/dev/null 2>&1 || fail "gen-secrets.sh failed"
HTTP_PORT=$(free_port)
HTTPS_PORT=$(free_port)
PEBBLE_MGMT_PORT=$(free_port)
# deploy/.env as the docs say: the example, with this host's values.
cp "$clone/deploy/.env.example" "$clone/deploy/.env"
set_env() {
  if grep -q "^$1=" "$clone/deploy/.env"; then
    sed -i "s#^$1=.*#$1=$2#" "$clone/deploy/.env"
  else
    printf '%s=%s\n' "$1" "$2" >>"$clone/deploy/.env"
  fi
}
set_env DOMAIN "$TEST_DOMAIN"
set_env ACME_EMAIL "ops@$TEST_DOMAIN"
set_env ACME_CA https://pebble:14000/dir
set_env ACME_ISSUERS pinned
set_env EDGE_BIND_ADDRESS 127.0.0.1
set_env HTTP_PORT "$HTTP_PORT"
set_env HTTPS_PORT "$HTTPS_PORT"
# A rate limit the constant load stays under.
set_env RATE_LIMIT_API_EVENTS 1000000
if [ "$STANDINS" = 1 ]; then
  set_env POSTGRES_IMAGE "$POSTGRES_IMAGE"
  set_env MINIO_IMAGE "$MINIO_IMAGE"
fi

# The test's addition to the production stack: Pebble as the ACME CA (the
# test domain resolves to the edge on the public network).
harness_pebble "$PEBBLE_IMAGE" "$TEST_DOMAIN" "$PEBBLE_MGMT_PORT"
export COMPOSE_PROJECT_NAME=$PROJECT
export STUDIO_COMPOSE_FILES="$work/compose.test.yml"
export STUDIO_LOG="$work/studio.log"
export STUDIO_CA_FILE="$work/acme-root.pem"
# tc: the test's view of the same stack.
# shellcheck disable=SC2086 # COMPOSE is a command and its subcommand
tc() { $COMPOSE --env-file "$clone/deploy/.env" -f "$clone/deploy/docker-compose.yml" -f "$work/compose.test.yml" "$@"; }
stack_up=1

# Pebble first: the smoke check verifies the edge's certificate against
# Pebble's root, which exists once Pebble runs.
tc up -d pebble >"$work/pebble-up.log" 2>&1 || { cat "$work/pebble-up.log" >&2; fail "pebble did not start"; }
acme_root() {
  curl -sS --max-time 10 --cacert "$work/edge-globals/pebble-https-root.pem" \
    "https://127.0.0.1:$PEBBLE_MGMT_PORT/roots/0" -o "$STUDIO_CA_FILE" 2>/dev/null &&
    grep -q 'BEGIN CERTIFICATE' "$STUDIO_CA_FILE"
}
wait_for() {
  local what=$1 deadline=$(($(date +%s) + WAIT_SECS))
  shift
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out after ${WAIT_SECS}s waiting for $what"
    sleep 1
  done
}
wait_for "Pebble's root" acme_root
# The first deploy's `compose up -d` recreated Pebble (seen on podman), and a
# new Pebble has a new root: keep the smoke check's CA file current.
(
  while sleep 1; do
    curl -sS --max-time 5 --cacert "$work/edge-globals/pebble-https-root.pem" \
      "https://127.0.0.1:$PEBBLE_MGMT_PORT/roots/0" -o "$work/root.new" 2>/dev/null &&
      grep -q 'BEGIN CERTIFICATE' "$work/root.new" && mv "$work/root.new" "$STUDIO_CA_FILE"
  done
) &
root_pid=$!

edge_curl() {
  curl -sS --max-time 20 --cacert "$STUDIO_CA_FILE" \
    --resolve "$TEST_DOMAIN:$HTTPS_PORT:127.0.0.1" "$@"
}
url() { printf 'https://%s:%s%s' "$TEST_DOMAIN" "$HTTPS_PORT" "$1"; }
status_of() { edge_curl -o /dev/null -w '%{http_code}' "$@" 2>/dev/null || echo 000; }
app_ids() { tc ps -q app; }
# serves SHA: exactly one app instance runs, and it reports SHA.
serves() {
  local ids
  ids=$(app_ids)
  [ "$(grep -c . <<<"$ids")" = 1 ] || return 1
  "$ENGINE" exec "$ids" /usr/bin/app healthcheck 2>/dev/null | grep -q "\"releaseId\":\"$1\""
}
current_rev() { sed -n 's/^rev=//p' "$clone/deploy/.releases/$(cat "$clone/deploy/.releases/current")"; }

# load_start / load_stop: constant-rate authenticated GETs through the edge.
load_start() {
  "$work/loadprobe" -url "$(url /api/v1/whoami)" -rate "$LOAD_RATE" \
    -connect "127.0.0.1:$HTTPS_PORT" -cacert "$STUDIO_CA_FILE" \
    -header "Authorization: Bearer $token" >"$work/load-$1.json" 2>"$work/load-$1.err" &
  load_pid=$!
}
load_stop() {
  kill -INT "$load_pid"
  wait "$load_pid" || fail "loadprobe failed: $(cat "$work/load-$1.err")"
  load_pid=""
  local sent failed
  sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent"])' "$work/load-$1.json")
  failed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["failed"])' "$work/load-$1.json")
  result "load during $1: $(cat "$work/load-$1.json")"
  [ "$sent" -gt 0 ] || fail "no request was sent during $1"
  [ "$failed" = 0 ] || fail "$failed of $sent requests failed during $1; the first ones:
$(python3 -c 'import json,sys; [print(json.dumps(f)) for f in json.load(open(sys.argv[1])).get("failures", [])]' "$work/load-$1.json")"
  pass "$1: $sent requests at $LOAD_RATE/s through the edge, none failed"
}

# --- preflight, then A: first deploy --------------------------------------------
# The test domain has no public DNS (the stack resolves it internally), so
# the DNS items may fail; nothing else the test sets up may.
log "deploy/studio preflight"
"$studio" preflight >"$work/preflight.out" 2>&1 || true
if grep '^  \[FAIL\]' "$work/preflight.out" | grep -v 'DNS:' | grep -q .; then
  cat "$work/preflight.out" >&2
  fail "preflight FAILs on something the test controls"
fi
result "preflight: $(grep -c '\[pass\]' "$work/preflight.out") pass, $(grep -c '\[warn\]' "$work/preflight.out") warn, $(grep -c '^  \[FAIL\]' "$work/preflight.out") FAIL (DNS of the test domain only)"
sha_a=$(git -C "$clone" rev-parse HEAD)
shas="$sha_a"
log "release A: deploy/studio deploy ($sha_a)"
start=$(date +%s%3N)
"$studio" deploy >"$work/deploy-a.out" 2>&1 || { cat "$work/deploy-a.out" >&2; fail "deploy of release A failed"; }
secs_a=$(awk -v a="$start" -v b="$(date +%s%3N)" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
result "release A: fresh clone to healthy HTTPS (images built, stack started, certificate issued, smoke check) in ${secs_a}s"
serves "$sha_a" || fail "release A: the app does not report $sha_a"
[ "$(status_of "$(url /health)")" = 200 ] || fail "release A: edge /health is not 200"
[ "$(current_rev)" = "$sha_a" ] || fail "release A is not recorded as current"
pass "release A live over verified HTTPS, recorded as current"
token=$(tc exec -T app /usr/bin/app token create --name deploy-test 2>/dev/null | tail -n 1 | tr -d '\r')
[ -n "$token" ] || fail "app token create printed nothing"
export STUDIO_SMOKE_TOKEN=$token
[ "$(status_of -H "Authorization: Bearer $token" "$(url /api/v1/whoami)")" = 200 ] ||
  fail "the new token does not authenticate through the edge"
"$studio" deploy >"$work/deploy-a2.out" 2>&1 || { cat "$work/deploy-a2.out" >&2; fail "rerunning deploy of release A failed"; }
grep -q 'already runs' "$work/deploy-a2.out" || { cat "$work/deploy-a2.out" >&2; fail "a rerun of release A did more than check"; }
serves "$sha_a" || fail "after a rerun, release A does not serve alone"
pass "rerunning deploy of the running release only checks it"

# --- B: an expand migration, deployed under load ------------------------------
last=$(find "$clone/migrations" -name '[0-9]*.sql' | sed 's#.*/##' | sort | tail -n 1)
next=$(printf '%05d' $((10#${last%%_*} + 1)))
cat >"$clone/migrations/${next}_deploy_probe.sql" <<'SQL'
-- Expand step (test-deploy.sh): a new table the previous release ignores.
-- +goose Up
CREATE TABLE deploy_probe (id bigint PRIMARY KEY);
-- +goose Down
DROP TABLE deploy_probe;
SQL
git -C "$clone" add migrations
git -C "$clone" commit -q -m "release B: an expand migration"
sha_b=$(git -C "$clone" rev-parse HEAD)
shas="$shas $sha_b"
log "release B: deploy under load ($sha_b)"
load_start deploy-b
start=$(date +%s%3N)
"$studio" deploy >"$work/deploy-b.out" 2>&1 || { cat "$work/deploy-b.out" >&2; fail "deploy of release B failed"; }
secs_b=$(awk -v a="$start" -v b="$(date +%s%3N)" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
load_stop deploy-b
result "release B: rolling deploy (app image built, new instance ready, old drained) in ${secs_b}s"
serves "$sha_b" || fail "release B: the app does not report $sha_b"
pg() { tc exec -T postgres psql -X -q -t -A -U studio -d studio -c "$1" 2>/dev/null | tr -d '\r'; }
[ "$(pg "select to_regclass('deploy_probe') is not null")" = t ] || fail "release B's migration was not applied"
grep -q 'edge image unchanged' "$work/deploy-b.out" || fail "the edge was replaced although its image did not change"
pass "release B live, its migration applied, the edge kept running"

# --- rollback to A, against B's schema ----------------------------------------
log "rollback to release A under load"
load_start rollback
"$studio" rollback >"$work/rollback.out" 2>&1 || { cat "$work/rollback.out" >&2; fail "rollback failed"; }
load_stop rollback
serves "$sha_a" || fail "after rollback the app does not report release A"
[ "$(current_rev)" = "$sha_a" ] || fail "after rollback release A is not current"
[ "$(pg "select to_regclass('deploy_probe') is not null")" = t ] || fail "the rollback touched the schema"
[ "$(status_of -H "Authorization: Bearer $token" "$(url /api/v1/whoami)")" = 200 ] ||
  fail "release A does not serve the API after rollback"
pass "rollback: release A serves again, on release B's schema"

# --- C: an app that exits at start ---------------------------------------------
sed -i 's#^func main() {$#func main() {\n\tos.Exit(3) // release C is broken on purpose (test-deploy.sh)#' "$clone/app/main.go"
grep -q 'release C is broken' "$clone/app/main.go" || fail "could not break release C"
git -C "$clone" commit -q -am "release C: the app exits at start"
sha_c=$(git -C "$clone" rev-parse HEAD)
shas="$shas $sha_c"
log "release C (broken: exits at start): deploy under load"
load_start deploy-c
rc=0
"$studio" deploy >"$work/deploy-c.out" 2>&1 || rc=$?
load_stop deploy-c
[ $rc = 1 ] || { cat "$work/deploy-c.out" >&2; fail "deploy of broken release C exited $rc, want 1"; }
grep -q 'left serving' "$work/deploy-c.out" || { cat "$work/deploy-c.out" >&2; fail "release C: no clear message"; }
serves "$sha_a" || fail "after the failed release C, release A does not serve alone"
[ "$(current_rev)" = "$sha_a" ] || fail "the failed release C changed the current release"
pass "release C never got ready: removed, exit 1, release A kept serving"

# --- D: starts, fails the smoke check ------------------------------------------
git -C "$clone" revert --no-edit HEAD >/dev/null
grep -q '"/api/v1/whoami"' "$clone/app/internal/api/routes.go" || fail "routes.go has no whoami route to break"
sed -i 's#"/api/v1/whoami"#"/api/v1/whoami-gone"#' "$clone/app/internal/api/routes.go"
git -C "$clone" commit -q -am "release D: whoami route gone (fails the smoke check)"
sha_d=$(git -C "$clone" rev-parse HEAD)
shas="$shas $sha_d"
log "release D (fails the smoke check): deploy"
rc=0
"$studio" deploy >"$work/deploy-d.out" 2>&1 || rc=$?
[ $rc = 1 ] || { cat "$work/deploy-d.out" >&2; fail "deploy of release D exited $rc, want 1"; }
grep -q 'rolled back' "$work/deploy-d.out" || { cat "$work/deploy-d.out" >&2; fail "release D: no rollback message"; }
serves "$sha_a" || fail "after release D's rollback, release A does not serve"
[ "$(current_rev)" = "$sha_a" ] || fail "after release D's rollback, release A is not current"
grep -q '^outcome=smoke-check-failed' "$clone"/deploy/.releases/*-"${sha_d:0:12}" ||
  fail "release D's record does not say its smoke check failed"
pass "release D failed its smoke check and was rolled back to A by itself"

# --- the end state -------------------------------------------------------------
[ "$(status_of "$(url /health)")" = 200 ] || fail "edge /health is not 200 at the end"
[ "$(status_of -H "Authorization: Bearer $token" "$(url /api/v1/whoami)")" = 200 ] || fail "the API does not serve at the end"
pass "stack healthy and serving release A"
result "total test time: $(($(date +%s) - t0))s"
