# shellcheck shell=sh
# studio restore-drill [NAME]: prove a backup restores, without touching live data.

studio_restore_drill_help() {
  cat <<'USAGE'
Usage: deploy/studio restore-drill [NAME]

Restores the dump NAME (default: the newest verified one) into a scratch
database, studio_drill, and compares every table's row count and checksum
with the ones recorded in the dump's manifest when it was taken (from the
same snapshot as the dump, so later changes to the live database do not
matter); then drops the scratch database. When the app has the object
backup commands, the object mirror is restored into a scratch bucket
(S3_BUCKET-drill) and compared with it byte for byte (app backup
restore-objects / verify-objects). Live data and
the app are not touched. Run it after every change to the backup setup and
on a schedule of your own (docs/backups.md).
Exit codes: 0 the backup restores exactly, 1 a mismatch or failure (each
listed), 3 no container engine.
USAGE
}

studio_restore_drill() {
  # shellcheck source=deploy/studio.d/backup.sh
  . "$STUDIO_DIR/studio.d/backup.sh"
  [ $# -le 1 ] || usage_error "restore-drill: one NAME at most"
  case ${1:-} in -*) usage_error "restore-drill: unknown option $1" ;; esac
  detect_engine
  failed=0
  DRILL_BUCKET=$(env_value S3_BUCKET)
  DRILL_BUCKET=${DRILL_BUCKET:-finetune-studio}-drill
  step "Postgres: restore ${1:-the newest dump} into studio_drill and compare"
  if backup_sh drill "$@"; then
    pass "Postgres: every table's row count and checksum equal the dump's manifest"
  else
    fail_item "Postgres: the drill found differences (listed above)"
    failed=1
  fi
  if app_backup_has verify-objects; then
    # The mirror is restored into a scratch bucket and compared with it:
    # live objects may have changed since the mirror ran.
    step "objects: restore the mirror into the bucket $DRILL_BUCKET and compare"
    if compose exec -T app /usr/bin/app backup restore-objects --to-bucket "$DRILL_BUCKET" >&2 &&
      compose exec -T app /usr/bin/app backup verify-objects --against "$DRILL_BUCKET" >&2; then
      pass "objects: the mirror restores byte for byte"
    else
      fail_item "objects: the mirror does not restore exactly (listed above)"
      failed=1
    fi
  else
    warn "this app has no 'app backup verify-objects': objects were not checked"
  fi
  [ $failed -eq 0 ] || exit "$EX_FAIL"
  say "restore drill passed"
}
