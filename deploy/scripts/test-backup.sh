#!/usr/bin/env bash
# Proves backups in real containers (what `make test-backup` and CI run),
# through the operator's commands (deploy/studio backup, restore,
# restore-drill) against the production compose file:
#   1. brings up postgres, minio, app and the backup service; checks the
#      backup service's hardening and that its scheduler is waiting;
#   2. creates data: an API token and datasets uploaded through the API
#      (rows in Postgres, objects in MinIO);
#   3. `studio backup`; the dump's manifest (row counts and checksums taken
#      from the dump's own snapshot) equals the live database; a corrupted
#      copy fails verification;
#   4. destroys the data volumes (Postgres, and MinIO when the app can
#      back objects up) and brings the stack up empty;
#   5. `studio restore` refuses without --yes, then restores: every table's
#      row count and checksum equals the pre-destruction database, the
#      token authenticates, the datasets are listed with their sha256, and
#      every object is byte-equal;
#   6. `studio restore-drill` passes, and fails listing the table when a
#      manifest checksum is altered;
#   7. retention keeps BACKUP_KEEP_MANUAL manual dumps;
#   8. a stale backup (finished_at aged past BACKUP_MAX_AGE) turns /readyz
#      to warn, when the app has the backups readiness check;
#   9. off the VM: every verified dump is in BACKUP_POSTGRES_TARGET (a second
#      bucket on the stack's MinIO stands in for another provider's) with
#      its manifest, its sha256 equal to the manifest's; the dump retention
#      removed from the VM is still there; the runs are recorded verified;
#      a dump downloaded from there into the backups volume passes the drill.
# Works with a Docker engine or podman (as test-containers.sh: its API
# socket, health checks ticked here). Everything started is removed on exit.
#
# Usage: deploy/scripts/test-backup.sh
set -euo pipefail

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
case ${1:-} in -h | --help) usage ;; "") ;; *) usage ;; esac

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
TOOLS_DIR=${TOOLS_DIR:-$HOME/.cache/finetune-studio/tools}
export PATH="$TOOLS_DIR/bin:$PATH"
APP_IMAGE=localhost/finetune-studio/app:test-backup
GO_IMAGE=docker.io/library/golang:1.26-bookworm
PROJECT=fsbk$$
OFFSITE_BUCKET=offsite-copy
WAIT_SECS=${WAIT_SECS:-300}

t0=$(date +%s)
log() { printf '[test-backup %4ss] %s\n' "$(($(date +%s) - t0))" "$*" >&2; }
# The reason is repeated as the very last line (after the services' logs),
# where a CI page that shows only the tail of the output still has it.
FAILURE=""
fail() { log "FAIL: $*"; FAILURE=$*; exit 1; }
pass() { log "ok: $*"; }

work=$(mktemp -d /tmp/test-backup.XXXXXX)
chmod 0755 "$work"
service_pid=""
ticker_pid=""
compose_ready=0

cleanup() {
  local rc=$?
  set +e
  if [ $compose_ready -eq 1 ]; then
    if [ $rc -ne 0 ]; then
      log "failure: last logs of every service"
      compose logs --no-color --tail 40 >&2 2>&1
    fi
    compose down -v --remove-orphans >/dev/null 2>&1
  fi
  [ -n "$ticker_pid" ] && kill "$ticker_pid" 2>/dev/null && wait "$ticker_pid" 2>/dev/null
  [ -n "$service_pid" ] && kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
  rm -rf "$work"
  if [ $rc -eq 0 ]; then log "PASS in $(($(date +%s) - t0))s"; else log "FAILED (exit $rc)${FAILURE:+: $FAILURE}"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in openssl curl python3; do
  command -v "$tool" >/dev/null || fail "$tool missing: run deploy/scripts/install-tools.sh containers"
done

# shellcheck source=deploy/scripts/lib/harness.sh
. "$repo/deploy/scripts/lib/harness.sh"
harness_engine
harness_standins

log "building the app image (cached layers are reused)"
build_start=$(date +%s)
if [ "$ENGINE" = podman ]; then
  podman build --format docker --layers -f app.Dockerfile -t "$APP_IMAGE" \
    --build-arg "GO_IMAGE=$GO_IMAGE" --build-arg VERSION=test --build-arg "REVISION=$(git rev-parse HEAD)" \
    . >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; fail "app image build failed"; }
else
  DOCKER_BUILDKIT=1 docker build -f app.Dockerfile -t "$APP_IMAGE" \
    --build-arg "GO_IMAGE=$GO_IMAGE" --build-arg VERSION=test --build-arg "REVISION=$(git rev-parse HEAD)" \
    . >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; fail "app image build failed"; }
fi
log "app image ready in $(($(date +%s) - build_start))s"

# --- 1. the stack ------------------------------------------------------------
"$repo/deploy/scripts/gen-certs.sh" "$work/certs" 2>/dev/null
"$repo/deploy/scripts/gen-secrets.sh" "$work/secrets" 2>/dev/null
# The settings an operator keeps in deploy/.env; the studio verbs read the
# same file. The edge is not started: the test talks to the app from inside
# the internal network (MinIO's image has curl).
cat >"$work/env" <<EOF
DOMAIN=studio.test
ACME_EMAIL=ops@studio.test
CERTS_DIR=$work/certs
SECRETS_DIR=$work/secrets
APP_IMAGE=$APP_IMAGE
POSTGRES_IMAGE=${POSTGRES_IMAGE:-docker.io/library/postgres:15.18-bookworm}
MINIO_IMAGE=${MINIO_IMAGE:-quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z}
INTERNAL_SUBNET=172.30.$((RANDOM % 150 + 60)).0/24
BACKUP_KEEP_MANUAL=2
BACKUP_MAX_AGE=1h
BACKUP_POSTGRES_TARGET=s3://$OFFSITE_BUCKET/studio/postgres
BACKUP_S3_ENDPOINT=minio:9000
BACKUP_S3_CA_FILE=/etc/finetune-studio/ca.crt
EOF
# Step 9's "remote": the stack's MinIO, with its root keys as the backup keys.
cp "$work/secrets/minio_root_user" "$work/secrets/backup_s3_access_key"
cp "$work/secrets/minio_root_password" "$work/secrets/backup_s3_secret_key"
export STUDIO_ENV_FILE="$work/env" COMPOSE_PROJECT_NAME=$PROJECT
export STUDIO_LOG="$work/studio.log"
studio() { "$repo/deploy/studio" "$@"; }
# studio_failed WHAT: fail with the last lines deploy/studio wrote, so the
# final line of a failed run says why the verb failed.
studio_failed() { fail "$1; its last output:
$(tail -n 20 "$work/studio.err")"; }
compose() { $COMPOSE --env-file "$work/env" -f "$repo/deploy/docker-compose.yml" "$@"; }
compose config -q || fail "compose config is invalid"
compose_ready=1

harness_ticker "$PROJECT"

cid() { compose ps -q "$1" | head -1; }
health() { "$ENGINE" inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$(cid "$1")" 2>/dev/null || echo missing; }
wait_for() {
  local what=$1 deadline=$(($(date +%s) + WAIT_SECS))
  shift
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out after ${WAIT_SECS}s waiting for $what"
    sleep 1
  done
}
stack_healthy() {
  local s
  for s in postgres minio app; do [ "$(health "$s")" = healthy ] || return 1; done
  [ "$("$ENGINE" inspect --format '{{.State.Running}}' "$(cid backup)" 2>/dev/null)" = true ]
}
up() {
  compose up -d postgres minio app backup >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "compose up failed"; }
  wait_for "postgres, minio, app healthy and backup running" stack_healthy
}

log "compose up (fresh volumes)"
up_start=$(date +%s)
up
log "stack healthy in $(($(date +%s) - up_start))s"

c=$(cid backup)
pid=$("$ENGINE" inspect --format '{{.State.Pid}}' "$c")
status=$(cat "/proc/$pid/status")
[ "$("$ENGINE" inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$c")" = true ] || fail "backup: root filesystem is writable"
grep -Eq '^CapEff:[[:space:]]+0+$' <<<"$status" || fail "backup: has effective capabilities"
grep -Eq '^NoNewPrivs:[[:space:]]+1$' <<<"$status" || fail "backup: no_new_privs is off"
grep -Eq '^Uid:[[:space:]]+999[[:space:]]' <<<"$status" || fail "backup: does not run as uid 999"
[ "$("$ENGINE" inspect --format '{{.HostConfig.Memory}}' "$c")" -gt 0 ] || fail "backup: no memory limit"
[ -z "$("$ENGINE" port "$c")" ] || fail "backup publishes a port"
# shellcheck disable=SC2016 # a Go template, not shell
nets=$("$ENGINE" inspect --format '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$c")
[ "$(echo "$nets" | xargs)" = "${PROJECT}_internal" ] || fail "backup: networks '$nets', want only ${PROJECT}_internal"
scheduled() { compose logs backup 2>/dev/null | grep -q 'next dump in'; }
wait_for "the backup scheduler" scheduled
pass "backup service: read-only, no capabilities, no_new_privs, uid 999, memory limit, internal network only; scheduler waiting"

# --- 2. data -------------------------------------------------------------------
token=$(studio token create backup-test 2>>"$work/studio.err" | tail -1 | tr -d '\r')
[ -n "$token" ] || studio_failed "studio token create printed nothing"
# in_net CMD...: a command in the MinIO container, on the internal network.
in_net() { compose exec -T minio "$@"; }
# The app's address on the internal network, looked up afresh each time (a
# restore restarts the app): the container runtime's DNS has been seen to
# miss a just-(re)started container's name, which made this test flaky
# without anything being wrong with the stack.
app_addr() {
  # shellcheck disable=SC2016 # a Go template, not shell
  "$ENGINE" inspect --format '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{$v.IPAddress}}{{"\n"}}{{end}}' \
    "$(compose ps -q app | head -n 1)" | awk '$1 ~ /_internal$/ { print $2 ":8080"; exit }'
}
api() { in_net curl -sS --max-time 30 -H "Authorization: Bearer $token" "$@"; }
declare -A dataset_sha=()
for n in 1 2 3; do
  f="$work/data-$n.jsonl"
  for i in $(seq 1 $((n * 20))); do
    printf '{"messages":[{"role":"user","content":"q%d-%d"},{"role":"assistant","content":"a%d-%d %s"}]}\n' \
      "$n" "$i" "$n" "$i" "$(openssl rand -hex 8)"
  done >"$f"
  out=$(api -F "name=backup-$n" -F "file=@-;filename=data-$n.jsonl" "http://$(app_addr)/api/v1/datasets" <"$f")
  id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$out") || fail "upload $n: $out"
  dataset_sha[$id]=$(sha256sum "$f" | cut -d' ' -f1)
done
pass "token and ${#dataset_sha[@]} datasets created through the API"

# Per-table row counts and checksums, the same definition the backup
# service records (sorted md5s of the rows' text, UTC, ISO dates).
pg_sums() {
  compose exec -T -e PGTZ=UTC -e PGDATESTYLE=ISO postgres psql -X -q -A -t -v ON_ERROR_STOP=1 \
    -h /run/postgresql -U studio -d studio <<'SQL' | sort
SELECT format('SELECT %L, count(*), coalesce(md5(string_agg(r, '''' ORDER BY r)), '''') FROM (SELECT md5(t::text) AS r FROM %I.%I t) s',
              schemaname || '.' || tablename, schemaname, tablename)
FROM pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND schemaname NOT LIKE 'pg\_%'
ORDER BY schemaname, tablename
\gexec
SQL
}
# Objects: sha256 of every object in the bucket, read over S3 inside MinIO.
obj_sums() {
  # shellcheck disable=SC2016 # expanded by the container's shell
  in_net sh -c 'set -e
    auth="$(cat /run/secrets/minio_root_user):$(cat /run/secrets/minio_root_password)"
    s3() { curl -sS --fail --cacert /certs/CAs/ca.crt --aws-sigv4 aws:amz:us-east-1:s3 --user "$auth" "https://localhost:9000/$1"; }
    for key in $(s3 "finetune-studio?list-type=2&max-keys=1000" | tr "<" "\n" | sed -n "s/^Key>//p"); do
      printf "%s %s\n" "$key" "$(s3 "finetune-studio/$key" | sha256sum | cut -d" " -f1)"
    done' | sort
}
has_objects_backup=0
if compose exec -T app /usr/bin/app help 2>/dev/null | grep -q 'app backup objects'; then has_objects_backup=1; fi

# --- 3. backup -------------------------------------------------------------------
backup_start=$(date +%s%3N)
name=$(studio backup 2>>"$work/studio.err") || studio_failed "studio backup failed"
backup_ms=$(($(date +%s%3N) - backup_start))
[[ $name =~ ^studio-[0-9]{8}T[0-9]{6}Z-manual\.dump$ ]] || fail "studio backup printed '$name', not a dump name"
sums_before=$(pg_sums)
objs_before=$(obj_sums)
[ "$(wc -l <<<"$objs_before")" -ge "${#dataset_sha[@]}" ] || fail "fewer objects than datasets: $objs_before"
grep -q "^public.api_tokens|1|" <<<"$sums_before" || fail "no api_tokens row: $sums_before"
grep -q "^public.datasets|3|" <<<"$sums_before" || fail "not 3 datasets: $sums_before"
bdir=/var/lib/postgresql/data
manifest=$(compose exec -T backup cat "$bdir/$name.manifest")
# Nothing wrote to the application's tables after the dump, so the live
# database must equal the manifest (backup_runs got the dump's own row).
want=$(sed -n 's/^table\t//p' <<<"$manifest" | grep -v '^public.backup_runs' | tr '\t' '|' | sort)
got=$(grep -v '^public.backup_runs' <<<"$sums_before")
[ "$want" = "$got" ] || { diff <(echo "$want") <(echo "$got") >&2; fail "the manifest does not describe the live database"; }
row=$(compose exec -T postgres psql -X -A -t -h /run/postgresql -U studio -d studio -c \
  "SELECT ok, verified, bytes > 0, detail->>'schedule', detail->>'sha256' FROM backup_runs WHERE location = '$name'")
sha=$(sed -n 's/^sha256\t//p' <<<"$manifest")
[ "$row" = "t|t|t|manual|$sha" ] || fail "backup_runs row for $name: '$row' (want t|t|t|manual|$sha)"
pass "studio backup: $name in $((backup_ms / 1000)).$((backup_ms % 1000 / 100))s; manifest equals the live tables; backup_runs ok+verified with its sha256"

# A flipped byte must fail verification (and leave the good dump alone).
bad=${name/-manual/-corrupt}
compose exec -T backup sh -c "cp $bdir/$name $bdir/$bad && cp $bdir/$name.manifest $bdir/$bad.manifest && printf x | dd of=$bdir/$bad bs=1 seek=200 conv=notrunc 2>/dev/null"
if compose exec -T backup /backup/backup.sh verify "$bad" 2>"$work/corrupt.err"; then fail "a corrupted dump verified"; fi
grep -q 'differs from the manifest' "$work/corrupt.err" || fail "the corrupted dump failed for another reason: $(cat "$work/corrupt.err")"
compose exec -T backup rm -f "$bdir/$bad" "$bdir/$bad.manifest"
pass "a dump with one byte changed fails verification"

# --- 4. destroy ------------------------------------------------------------------
destroyed="postgres-data"
[ $has_objects_backup -eq 0 ] || destroyed="$destroyed minio-data"
log "destroying volumes: $destroyed (the backups volume is kept)"
compose down >/dev/null 2>&1
for v in $destroyed; do
  "$ENGINE" volume rm -f "${PROJECT}_$v" >/dev/null || fail "could not remove volume $v"
done
up
empty=$(compose exec -T postgres psql -X -A -t -h /run/postgresql -U studio -d studio -c 'SELECT count(*) FROM datasets')
[ "$empty" = 0 ] || fail "the new database is not empty ($empty datasets)"
pass "stack up on an empty database"

# --- 5. restore ------------------------------------------------------------------
if studio restore </dev/null 2>"$work/refuse.err"; then fail "restore ran without --yes on a non-terminal stdin"; fi
grep -q -- '--yes' "$work/refuse.err" || fail "the refusal does not name --yes: $(cat "$work/refuse.err")"
pass "restore refuses without --yes when stdin is not a terminal"
restore_start=$(date +%s%3N)
studio restore --yes </dev/null 2>>"$work/studio.err" || studio_failed "studio restore failed"
restore_ms=$(($(date +%s%3N) - restore_start))
sums_after=$(pg_sums)
diff <(grep -v '^public.backup_runs' <<<"$sums_before") <(grep -v '^public.backup_runs' <<<"$sums_after") >&2 ||
  fail "restored tables differ from the ones before the volumes were destroyed"
pass "every table's row count and checksum equals the database before destruction"
[ "$(api -o /dev/null -w '%{http_code}' "http://$(app_addr)/api/v1/whoami")" = 200 ] || fail "the token does not authenticate after restore"
listing=$(api "http://$(app_addr)/api/v1/datasets")
for id in "${!dataset_sha[@]}"; do
  python3 -c 'import json,sys; d={x["id"]: x["sha256"] for x in json.loads(sys.argv[1])["data"]}; sys.exit(0 if d.get(sys.argv[2]) == sys.argv[3] else 1)' \
    "$listing" "$id" "${dataset_sha[$id]}" || fail "dataset $id missing or changed after restore"
done
pass "the token authenticates; all datasets listed with their sha256"
objs_after=$(obj_sums)
[ "$objs_before" = "$objs_after" ] || { diff <(echo "$objs_before") <(echo "$objs_after") >&2; fail "objects differ after restore"; }
if [ $has_objects_backup -eq 1 ]; then
  pass "objects restored byte for byte ($(wc -l <<<"$objs_after") objects)"
else
  log "note: this app has no object backup; the MinIO volume was kept, objects unchanged ($(wc -l <<<"$objs_after"))"
fi
pre=$(compose exec -T backup /backup/backup.sh list | cut -f1 | grep -c -- '-pre-restore\.dump$' || true)
[ "$pre" = 1 ] || fail "want 1 pre-restore safety dump, found $pre"
pass "studio restore in $((restore_ms / 1000)).$((restore_ms % 1000 / 100))s, after a verified safety dump"

# --- 6. drill ----------------------------------------------------------------------
drill_start=$(date +%s%3N)
studio restore-drill 2>>"$work/studio.err" || studio_failed "studio restore-drill failed"
drill_ms=$(($(date +%s%3N) - drill_start))
dbs=$(compose exec -T postgres psql -X -A -t -h /run/postgresql -U studio -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = 'studio_drill'")
[ "$dbs" = 0 ] || fail "the drill left its scratch database behind"
pass "studio restore-drill passes in $((drill_ms / 1000)).$((drill_ms % 1000 / 100))s and drops studio_drill"
compose exec -T backup sh -c "sed -i 's/^\(table\tpublic\.datasets\t3\t\)./\1z/' $bdir/$name.manifest"
if studio restore-drill "$name" 2>"$work/drill-bad.err"; then fail "the drill passed against an altered manifest"; fi
grep -q 'public.datasets: checksum' "$work/drill-bad.err" || fail "the drill did not list the table: $(cat "$work/drill-bad.err")"
pass "the drill fails and names public.datasets when its checksum differs"

# --- 7. retention --------------------------------------------------------------------
for _ in 1 2; do studio backup >/dev/null 2>>"$work/studio.err" || studio_failed "studio backup failed"; done
manual=$(compose exec -T backup /backup/backup.sh list | cut -f1 | grep -- '-manual\.dump$')
[ "$(wc -l <<<"$manual")" = 2 ] || fail "BACKUP_KEEP_MANUAL=2 but found: $manual"
grep -q "$name" <<<"$manual" && fail "the oldest manual dump $name survived retention"
pass "retention keeps the newest 2 manual dumps"

# --- 8. stale backups ------------------------------------------------------------------
readyz() { in_net curl -sS --max-time 10 "http://$(app_addr)/readyz"; }
if readyz | grep -q '"backups'; then
  compose exec -T postgres psql -X -q -h /run/postgresql -U studio -d studio -c \
    "UPDATE backup_runs SET started_at = now() - interval '30 hours', finished_at = now() - interval '30 hours' WHERE kind = 'postgres'"
  stale() {
    readyz | python3 -c 'import json,sys
b=json.load(sys.stdin); c=[v for k, v in b.get("checks", {}).items() if k.startswith("backups")]
sys.exit(0 if b.get("status") == "warn" and any(x.get("status") == "warn" and "postgres" in x.get("output", "") for e in c for x in e) else 1)'
  }
  wait_for "/readyz to warn about the stale backup" stale
  pass "a backup older than BACKUP_MAX_AGE turns /readyz to warn"
else
  log "note: this app has no backups readiness check; stale-backup warning not tested"
fi

# --- 9. off the VM ----------------------------------------------------------------------
# s3get PATH [curl args]: GET https://localhost:9000/PATH inside MinIO,
# signed with the root keys (the same keys the app was given as backup keys).
s3get() {
  local p=$1
  shift
  # shellcheck disable=SC2016 # expanded by the container's shell
  in_net sh -c 'auth="$(cat /run/secrets/minio_root_user):$(cat /run/secrets/minio_root_password)"
    exec curl -sS --fail --cacert /certs/CAs/ca.crt --aws-sigv4 aws:amz:us-east-1:s3 --user "$auth" "$@"' \
    sh "$@" "https://localhost:9000/$p"
}
prefix="$OFFSITE_BUCKET/studio/postgres"
# (No prefix= in the query: curl's SigV4 signs a "/" there differently
# from the server, which answers 403; the keys are filtered here instead.)
remote=$(s3get "$OFFSITE_BUCKET?list-type=2&max-keys=1000" | tr '<' '\n' | sed -n 's|^Key>studio/postgres/||p' | sort) ||
  fail "could not list the bucket $OFFSITE_BUCKET (the off-VM target)"
local_dumps=$(compose exec -T backup /backup/backup.sh list | cut -f1)
[ -n "$local_dumps" ] || fail "no verified dump on the VM to compare with"
n=0
for d in $local_dumps; do
  grep -qx "$d" <<<"$remote" || fail "$d is not in s3://$prefix (found: $(tr '\n' ' ' <<<"$remote"))"
  grep -qx "$d.manifest" <<<"$remote" || fail "$d has no manifest in s3://$prefix"
  want=$(compose exec -T backup sed -n 's/^sha256\t//p' "$bdir/$d.manifest")
  got=$(s3get "$prefix/$d" | sha256sum | cut -d' ' -f1)
  { [ -n "$want" ] && [ "$got" = "$want" ]; } || fail "s3://$prefix/$d: sha256 $got, its manifest says $want"
  [ "$(s3get "$prefix/$d.manifest" | sha256sum)" = "$(compose exec -T backup cat "$bdir/$d.manifest" | sha256sum)" ] ||
    fail "s3://$prefix/$d.manifest differs from the manifest on the VM"
  s3get "$prefix/$d" -I | tr -d '\r' | grep -qix "x-amz-meta-sha256: $want" || fail "s3://$prefix/$d lacks x-amz-meta-sha256: $want"
  n=$((n + 1))
done
# $name was removed from the VM by step 7's retention; its copy stays
# (BACKUP_POSTGRES_RETENTION, 35 days): deletions are not mirrored.
grep -qx "$name" <<<"$remote" || fail "$name (pruned on the VM) is gone from s3://$prefix: deletions were mirrored"
grep -qx "$name.manifest" <<<"$remote" || fail "$name.manifest is gone from s3://$prefix"
# The first periodic run, before any dump existed, is recorded failed ("no
# verified dump"); any other failure is a bug.
row=$(compose exec -T postgres psql -X -A -t -h /run/postgresql -U studio -d studio -c \
  "SELECT count(*) FILTER (WHERE ok AND verified), count(*) FILTER (WHERE NOT ok AND error NOT LIKE 'no verified dump in %') FROM backup_runs WHERE kind = 'postgres-offsite'")
{ [ "${row%|*}" -ge 2 ] && [ "${row#*|}" = 0 ]; } || fail "postgres-offsite runs (verified|failed): $row, want >= 2 verified and no other failure"
pass "off the VM: $n dumps in s3://$prefix byte-equal to their manifests' sha256 (and tagged with it), the pruned $name kept, $row (verified|failed) postgres-offsite runs"
# The documented way back from the off-VM copy: download a dump and its
# manifest, put them into the backups volume through the backup service,
# and the restore drill (verify, restore into a scratch database, compare
# every table with the manifest) passes on them.
newest=$(head -n 1 <<<"$manual")
s3get "$prefix/$newest" >"$work/$newest" || fail "could not download s3://$prefix/$newest"
s3get "$prefix/$newest.manifest" >"$work/$newest.manifest" || fail "could not download s3://$prefix/$newest.manifest"
compose exec -T backup rm -f "$bdir/$newest" "$bdir/$newest.manifest"
for f in "$newest" "$newest.manifest"; do
  compose exec -T backup sh -c "umask 027 && cat >$bdir/$f" <"$work/$f" || fail "could not put $f into the backups volume"
done
studio restore-drill "$newest" 2>>"$work/studio.err" || studio_failed "the drill failed on $newest downloaded from s3://$prefix"
pass "$newest downloaded from s3://$prefix and put back into the backups volume passes the restore drill"

# The runtime's DNS blips (backup.sh waits them out) are worth seeing.
blips=$(grep -cE 'waiting for the database|lost the connection to the database' "$work/studio.err" || true)
[ "$blips" = 0 ] || log "note: the backup service waited $blips time(s) for the database to answer (container DNS right after a stop or start)"
