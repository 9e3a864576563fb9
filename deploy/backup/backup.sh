#!/bin/sh
# Postgres backups for the compose stack (the `backup` service; POSIX sh,
# run in the same Postgres image as the database, so pg_dump, pg_restore and
# the server always share one major version). docs/backups.md.
#
# Usage: backup.sh <command> [args]
#   schedule            run forever: one dump a day at BACKUP_TIME (UTC);
#                       the service's default command
#   now [SCHEDULE]      one dump now (SCHEDULE: manual (default), daily,
#                       weekly, pre-restore); prints its file name last
#   list                verified dumps, newest first
#   latest              the newest verified dump (pre-restore dumps excluded)
#   verify NAME         re-check a dump's checksum and table of contents
#   restore NAME        replace the studio database with the dump (drop,
#                       create, pg_restore); stop the app first
#   drill [NAME]        restore into a scratch database (studio_drill) and
#                       compare row counts and table checksums with the ones
#                       recorded when the dump was taken; exit 1 on mismatch
#
# Every dump is pg_dump -Fc taken over TLS (verify-full against the internal
# CA), from one exported snapshot that also yields the per-table row counts
# and checksums written to its manifest. It counts only once `pg_restore
# --list` reads it and its sha256 re-reads equal to the manifest's; each
# attempt is recorded in the backup_runs table (ok/verified), which the app
# reads to report backup freshness.
set -eu

BACKUP_DIR=${BACKUP_DIR:-/var/lib/postgresql/data}
BACKUP_TIME=${BACKUP_TIME:-03:00}
BACKUP_WEEKLY_DAY=${BACKUP_WEEKLY_DAY:-7}
BACKUP_KEEP_DAILY=${BACKUP_KEEP_DAILY:-7}
BACKUP_KEEP_WEEKLY=${BACKUP_KEEP_WEEKLY:-4}
BACKUP_KEEP_MANUAL=${BACKUP_KEEP_MANUAL:-5}
BACKUP_KEEP_PRE_RESTORE=${BACKUP_KEEP_PRE_RESTORE:-3}
DB_NAME=${PGDATABASE:-studio}
DRILL_DB=${BACKUP_DRILL_DB:-studio_drill}
PASSWORD_FILE=${POSTGRES_PASSWORD_FILE:-/run/secrets/postgres_password}

# Row text (timestamps, dates) depends on session settings: the dump-time
# checksums and the drill's must be computed under the same ones.
export PGTZ=UTC PGDATESTYLE=ISO
export PGHOST="${PGHOST:-postgres}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-studio}"
export PGSSLMODE="${PGSSLMODE:-verify-full}" PGSSLROOTCERT="${PGSSLROOTCERT:-/etc/finetune-studio/ca.crt}"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-10}"
# No NOTICEs ("database ... does not exist, skipping") in the output.
export PGOPTIONS='-c client_min_messages=warning'

# Dumps hold every user's data. They are readable by their owner (uid 999)
# and group 999 only: the app joins group 999 (group_add in the compose
# file) to copy them off the VM (app backup postgres-offsite), and nobody
# else on a host directory (BACKUP_DIR) may read them. Hence 0640 files in
# a 0750 directory, never world-readable.
umask 0027

log() { printf '%s backup: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

tmp=$(mktemp -d)
psql_pid=""
cleanup() {
  if [ -n "$psql_pid" ]; then kill "$psql_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# The password is a Docker secret; libpq reads it from a pgpass file on the
# tmpfs, so it never sits in an environment or on a command line.
[ -r "$PASSWORD_FILE" ] || die "cannot read the database password ($PASSWORD_FILE)"
printf '*:*:*:%s:%s\n' "$PGUSER" "$(cat "$PASSWORD_FILE")" >"$tmp/pgpass"
chmod 0600 "$tmp/pgpass"
export PGPASSFILE="$tmp/pgpass"

q() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

# The checksum query, one row per table of the application's schema:
# name, row count, md5 over the sorted md5s of the rows' text. Sorting the
# per-row hashes (not the rows) keeps it independent of collation, and the
# aggregate stays at 32 bytes a row.
checksum_sql() {
  cat <<'SQL'
SELECT format('SELECT %L, count(*), coalesce(md5(string_agg(r, '''' ORDER BY r)), '''') FROM (SELECT md5(t::text) AS r FROM %I.%I t) s',
              schemaname || '.' || tablename, schemaname, tablename)
FROM pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND schemaname NOT LIKE 'pg\_%'
ORDER BY schemaname, tablename
SQL
}

wait_file() { # wait_file FILE: until psql wrote FILE, or psql died
  n=0
  while [ ! -s "$1" ]; do
    kill -0 "$psql_pid" 2>/dev/null || die "psql ended early: $(cat "$tmp/psql.err" 2>/dev/null)"
    n=$((n + 1))
    [ $n -lt 3000 ] || die "psql did not answer within 10 minutes"
    sleep 0.2
  done
}

# record OK VERIFIED STARTED LOCATION BYTES SHA256 SCHEDULE ERROR: one
# backup_runs row. A database that cannot take the row is logged, not fatal:
# the dump on disk is what matters, and the app then reports the backup
# stale, which is the truth it can see.
record() {
  cat >"$tmp/record.sql" <<'SQL'
INSERT INTO backup_runs (kind, started_at, finished_at, ok, verified, location, bytes, detail, error)
VALUES ('postgres', :'started', now(), :'ok', :'verified', :'loc', :'bytes',
        jsonb_build_object('sha256', :'sha', 'schedule', :'sched'), :'err');
SQL
  if ! q -d "$DB_NAME" -v ok="$1" -v verified="$2" -v started="$3" -v loc="$4" -v bytes="$5" \
    -v sha="$6" -v sched="$7" -v err="$8" -f "$tmp/record.sql" >/dev/null 2>"$tmp/record.err"; then
    log "could not record the run in backup_runs: $(cat "$tmp/record.err")"
  fi
}

# reach: wait (up to 60 s) until the database answers. The container
# runtime's DNS can miss a name for a moment while another container of the
# stack stops or starts (seen with podman right after `compose stop app`:
# "could not translate host name "postgres""): a pause here instead of a
# failed restore or a missed daily dump.
reach() {
  n=0
  until q -d postgres -c 'SELECT 1' >/dev/null 2>"$tmp/reach.err"; do
    n=$((n + 1))
    [ $n -lt 30 ] || die "the database does not answer: $(cat "$tmp/reach.err")"
    [ $n -gt 1 ] || log "waiting for the database: $(cat "$tmp/reach.err")"
    sleep 2
  done
}

manifest_value() { sed -n "s/^$2	//p" "$BACKUP_DIR/$1.manifest" | head -n 1; }

# verify NAME: the dump's sha256 equals its manifest's, and pg_restore can
# read its table of contents.
verify() {
  [ -f "$BACKUP_DIR/$1" ] || die "no dump named $1 in $BACKUP_DIR"
  [ -f "$BACKUP_DIR/$1.manifest" ] || die "$1 has no manifest: not a verified dump"
  want=$(manifest_value "$1" sha256)
  got=$(sha256sum "$BACKUP_DIR/$1" | cut -d' ' -f1)
  [ -n "$want" ] || die "$1: the manifest has no sha256"
  [ "$want" = "$got" ] || die "$1: sha256 $got differs from the manifest's ($want)"
  pg_restore --list "$BACKUP_DIR/$1" >"$tmp/toc" 2>"$tmp/toc.err" || die "$1: pg_restore --list failed: $(cat "$tmp/toc.err")"
  tables=$(grep -c '^table	' "$BACKUP_DIR/$1.manifest" || true)
  data=$(grep -c ' TABLE DATA ' "$tmp/toc" || true)
  [ "$data" -ge "$tables" ] || die "$1: $tables tables in the manifest, $data in the dump"
}

# dump SCHEDULE: takes, verifies, records and prunes one dump; prints its name.
dump() {
  schedule=$1
  started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  name="studio-$(date -u +%Y%m%dT%H%M%SZ)-$schedule.dump"
  # In a subshell with errexit on (a condition context would turn it off),
  # so any failing step fails the dump and nothing half-made counts.
  set +e
  (
    set -e
    trap '[ -z "$psql_pid" ] || kill "$psql_pid" 2>/dev/null' EXIT
    reach
    dump_verified "$name" "$schedule" "$started"
  ) 2>"$tmp/dump.err"
  rc=$?
  set -e
  cat "$tmp/dump.err" >&2
  if [ $rc -ne 0 ]; then
    err=$(tail -n 5 "$tmp/dump.err")
    rm -f "$BACKUP_DIR/$name.partial" "$BACKUP_DIR/$name" "$BACKUP_DIR/$name.manifest"
    record false false "$started" "$name" 0 "" "$schedule" "$err"
    log "FAILED: $name"
    return 1
  fi
  bytes=$(wc -c <"$BACKUP_DIR/$name" | tr -d ' ')
  record true true "$started" "$name" "$bytes" "$(manifest_value "$name" sha256)" "$schedule" ""
  log "verified $name ($bytes bytes, $(grep -c '^table	' "$BACKUP_DIR/$name.manifest") tables)"
  prune
  printf '%s\n' "$name"
}

dump_verified() {
  name=$1
  [ -w "$BACKUP_DIR" ] || die "$BACKUP_DIR is not writable by uid $(id -u) (a bind mount must be owned by it)"
  # A new named volume takes the image's 1777 data directory: close it to
  # others (see umask above). Not fatal when the directory is not ours.
  chmod 0750 "$BACKUP_DIR" 2>/dev/null || log "warning: could not chmod 0750 $BACKUP_DIR (owned by $(stat -c %u "$BACKUP_DIR"))"
  # One read-only repeatable-read transaction exports its snapshot; pg_dump
  # dumps exactly that snapshot, and the same transaction then computes the
  # table checksums, so the manifest describes the dump and nothing later.
  mkfifo "$tmp/ctl"
  q -d "$DB_NAME" <"$tmp/ctl" >"$tmp/psql.out" 2>"$tmp/psql.err" &
  psql_pid=$!
  exec 3>"$tmp/ctl"
  printf '%s\n' 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;' \
    "SELECT pg_export_snapshot() \\g $tmp/snapshot" >&3
  wait_file "$tmp/snapshot"
  snapshot=$(tr -d ' \n' <"$tmp/snapshot")
  pg_dump -Fc --snapshot="$snapshot" -d "$DB_NAME" -f "$BACKUP_DIR/$name.partial" || die "pg_dump failed"
  {
    printf '\\o %s\n' "$tmp/tables"
    checksum_sql
    printf '\\gexec\n\\o\n'
    printf "SELECT 'done' \\\\g %s\n" "$tmp/done"
  } >&3
  wait_file "$tmp/done"
  printf 'COMMIT;\n\\q\n' >&3
  exec 3>&-
  wait "$psql_pid" || die "the snapshot transaction failed: $(cat "$tmp/psql.err")"
  psql_pid=""
  rm -f "$tmp/ctl" "$tmp/done" "$tmp/snapshot"

  sha=$(sha256sum "$BACKUP_DIR/$name.partial" | cut -d' ' -f1)
  {
    printf '# Finetune Studio Postgres dump manifest, format 1 (tab-separated)\n'
    printf 'file\t%s\n' "$name"
    printf 'sha256\t%s\n' "$sha"
    printf 'bytes\t%s\n' "$(wc -c <"$BACKUP_DIR/$name.partial" | tr -d ' ')"
    printf 'schedule\t%s\n' "$2"
    printf 'started\t%s\n' "$3"
    printf 'finished\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf 'server\t%s\n' "$(q -d "$DB_NAME" -c 'SHOW server_version')"
    # table NAME ROWS CHECKSUM
    awk -F'|' 'NF == 3 { printf "table\t%s\t%s\t%s\n", $1, $2, $3 }' "$tmp/tables"
  } >"$BACKUP_DIR/$name.manifest.partial"
  # Explicit, whatever mode pg_dump created its file with (umask above).
  chmod 0640 "$BACKUP_DIR/$name.partial" "$BACKUP_DIR/$name.manifest.partial"
  mv "$BACKUP_DIR/$name.manifest.partial" "$BACKUP_DIR/$name.manifest"
  mv "$BACKUP_DIR/$name.partial" "$BACKUP_DIR/$name"
  # Re-read from disk, after the rename: what restore will read.
  verify "$name"
}

# prune: keep the newest BACKUP_KEEP_<SCHEDULE> dumps of each schedule.
prune() {
  for pair in daily:$BACKUP_KEEP_DAILY weekly:$BACKUP_KEEP_WEEKLY \
    manual:$BACKUP_KEEP_MANUAL pre-restore:$BACKUP_KEEP_PRE_RESTORE; do
    kind=${pair%%:*}
    keep=${pair#*:}
    # Names carry a UTC timestamp: reverse name order is newest first.
    (cd "$BACKUP_DIR" && ls -1 -- studio-*-"$kind".dump 2>/dev/null) | sort -r |
      tail -n +"$((keep + 1))" | while IFS= read -r old; do
        rm -f "$BACKUP_DIR/$old" "$BACKUP_DIR/$old.manifest"
        log "retention: removed $old (keeping $keep $kind)"
      done
  done
  # Leftovers of interrupted dumps.
  find "$BACKUP_DIR" -maxdepth 1 -name 'studio-*.partial' -mmin +1440 -exec rm -f {} + 2>/dev/null || true
}

# list: verified dumps (those with a manifest), newest first.
list() {
  (cd "$BACKUP_DIR" && ls -1 -- studio-*.dump 2>/dev/null) | sort -r | while IFS= read -r f; do
    if [ -f "$BACKUP_DIR/$f.manifest" ]; then
      printf '%s\t%s bytes\n' "$f" "$(manifest_value "$f" bytes)"
    fi
  done
}

latest() {
  l=$(list | cut -f1 | grep -v -- '-pre-restore\.dump$' | head -n 1)
  [ -n "$l" ] || die "no verified dump in $BACKUP_DIR"
  printf '%s\n' "$l"
}

valid_name() {
  case $1 in
    studio-*.dump) ;;
    *) die "not a dump name: $1 (see: backup.sh list)" ;;
  esac
  case $1 in */*) die "not a dump name: $1" ;; esac
}

restore() {
  valid_name "$1"
  verify "$1"
  log "restoring $1 into $DB_NAME (drop, create, pg_restore)"
  attempt=1
  reach
  until restore_into "$1" 2>"$tmp/restore.err"; do
    cat "$tmp/restore.err" >&2
    # Again only when the connection was lost (every step starts from a
    # dropped database, so a second attempt is clean): a failure the server
    # reported, such as a broken dump, would fail the same way again.
    if [ $attempt -ge 3 ] || ! connection_lost "$tmp/restore.err"; then die "the restore failed (output above)"; fi
    attempt=$((attempt + 1))
    log "lost the connection to the database; restoring again (attempt $attempt of 3)"
    reach
  done
  cat "$tmp/restore.err" >&2
  reach
  compare "$1" "$DB_NAME" || die "the restored database differs from the dump's manifest"
  # The restored backup_runs table predates this dump's own row: put it back
  # (once), so freshness reflects the backups that exist on disk.
  q -d "$DB_NAME" -v loc="$1" -v started="$(manifest_value "$1" started)" \
    -v finished="$(manifest_value "$1" finished)" -v bytes="$(manifest_value "$1" bytes)" \
    -v sha="$(manifest_value "$1" sha256)" -v sched="$(manifest_value "$1" schedule)" >/dev/null <<'SQL'
INSERT INTO backup_runs (kind, started_at, finished_at, ok, verified, location, bytes, detail)
SELECT 'postgres', :'started', :'finished', true, true, :'loc', :'bytes',
       jsonb_build_object('sha256', :'sha', 'schedule', :'sched')
WHERE NOT EXISTS (SELECT 1 FROM backup_runs WHERE kind = 'postgres' AND location = :'loc' AND ok);
SQL
  log "restored $1"
}

# restore_into NAME: drop and create the database, then pg_restore NAME.
# Returns non-zero at the first failing step (no errexit in a condition).
restore_into() {
  # Drop and create rather than --clean: tables a newer schema added would
  # otherwise survive next to the restored ones.
  q -d postgres -c "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" >/dev/null || return 1
  q -d postgres -c "CREATE DATABASE \"$DB_NAME\"" >/dev/null || return 1
  pg_restore --exit-on-error --no-owner -d "$DB_NAME" "$BACKUP_DIR/$1" || return 1
}

# connection_lost FILE: FILE (a client's stderr) says the server could not be
# reached, rather than that it refused something.
connection_lost() {
  grep -Eq 'could not translate host name|could not connect|connection to server .* failed|server closed the connection|Connection refused|SSL SYSCALL error' "$1"
}

# compare NAME DB: row counts and checksums of DB against NAME's manifest;
# prints every difference, returns 1 if there is any.
compare() {
  { checksum_sql; printf '\\gexec\n'; } | q -d "$2" | awk -F'|' 'NF == 3 { printf "%s\t%s\t%s\n", $1, $2, $3 }' | sort >"$tmp/got"
  sed -n 's/^table	//p' "$BACKUP_DIR/$1.manifest" | sort >"$tmp/want"
  awk -F'\t' '
    NR == FNR { want[$1] = $2 "\t" $3; next }
    { got[$1] = $2 "\t" $3 }
    END {
      bad = 0
      for (t in want) {
        if (!(t in got)) { printf "  missing table %s\n", t; bad = 1; continue }
        split(want[t], w, "\t"); split(got[t], g, "\t")
        if (w[1] != g[1]) { printf "  %s: %s rows, the dump had %s\n", t, g[1], w[1]; bad = 1 }
        else if (w[2] != g[2]) { printf "  %s: checksum %s, the dump had %s (same row count)\n", t, g[2], w[2]; bad = 1 }
      }
      for (t in got) if (!(t in want)) { printf "  extra table %s\n", t; bad = 1 }
      exit bad
    }' "$tmp/want" "$tmp/got" >"$tmp/diff" && return 0
  log "mismatches:"
  cat "$tmp/diff" >&2
  return 1
}

drill() {
  name=${1:-$(latest)}
  valid_name "$name"
  verify "$name"
  log "drill: restoring $name into the scratch database $DRILL_DB"
  reach
  q -d postgres -c "DROP DATABASE IF EXISTS \"$DRILL_DB\" WITH (FORCE)" >/dev/null
  q -d postgres -c "CREATE DATABASE \"$DRILL_DB\"" >/dev/null
  rc=0
  pg_restore --exit-on-error --no-owner -d "$DRILL_DB" "$BACKUP_DIR/$name" 2>"$tmp/restore.err" || {
    cat "$tmp/restore.err" >&2
    log "drill: pg_restore failed"
    rc=1
  }
  if [ $rc -eq 0 ]; then
    compare "$name" "$DRILL_DB" || rc=1
  fi
  q -d postgres -c "DROP DATABASE IF EXISTS \"$DRILL_DB\" WITH (FORCE)" >/dev/null || rc=1
  if [ $rc -eq 0 ]; then
    log "drill passed: $name restores to $(grep -c '^table	' "$BACKUP_DIR/$name.manifest") tables with the row counts and checksums recorded at dump time"
  else
    log "drill FAILED for $name"
  fi
  return $rc
}

# next_run: seconds until the next BACKUP_TIME (UTC).
next_run() {
  now=$(date -u +%s)
  at=$(date -u -d "today $BACKUP_TIME" +%s)
  [ "$at" -gt "$now" ] || at=$(date -u -d "tomorrow $BACKUP_TIME" +%s)
  echo $((at - now))
}

schedule() {
  case $BACKUP_TIME in
    off) log "BACKUP_TIME=off: no scheduled dumps (on demand only)"
         while :; do sleep 86400 & wait $!; done ;;
    [0-2][0-9]:[0-5][0-9]) ;;
    *) die "BACKUP_TIME must be HH:MM (UTC) or off, not '$BACKUP_TIME'" ;;
  esac
  log "scheduled: daily at $BACKUP_TIME UTC, weekly on day $BACKUP_WEEKLY_DAY; keeping $BACKUP_KEEP_DAILY daily, $BACKUP_KEEP_WEEKLY weekly"
  while :; do
    wait_s=$(next_run)
    log "next dump in ${wait_s}s"
    # In the background and waited for, so a stop signal ends it at once.
    sleep "$wait_s" & wait $!
    kind=daily
    [ "$(date -u +%u)" != "$BACKUP_WEEKLY_DAY" ] || kind=weekly
    dump "$kind" >/dev/null || true
  done
}

cmd=${1:-}
[ $# -eq 0 ] || shift
case $cmd in
  schedule) schedule ;;
  now)
    s=${1:-manual}
    case $s in manual | daily | weekly | pre-restore) ;; *) die "unknown schedule: $s" ;; esac
    dump "$s" ;;
  list) list ;;
  latest) latest ;;
  verify) [ $# -eq 1 ] || die "usage: verify NAME"; valid_name "$1"; verify "$1"; log "verified $1" ;;
  restore) [ $# -eq 1 ] || die "usage: restore NAME"; restore "$1" ;;
  drill) drill "${1:-}" ;;
  -h | --help | help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p;}' "$0" ;;
  *) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p;}' "$0" >&2; exit 2 ;;
esac
