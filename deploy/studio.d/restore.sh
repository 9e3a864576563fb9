# shellcheck shell=sh
# studio restore [NAME] [--yes]: replace the database (and objects) with a backup.

studio_restore_help() {
  cat <<'USAGE'
Usage: deploy/studio restore [NAME] [--yes]

Restores the Postgres dump NAME (default: the newest verified one, not
counting pre-restore safety dumps; list them with `deploy/studio restore
--list`). In order: verifies the dump (sha256 and pg_restore --list); takes
a safety dump of the current database (schedule pre-restore, so a wrong
restore can be undone by restoring it); stops the app; drops and recreates
the studio database and restores the dump, then checks every table's row
count and checksum against the dump's manifest; starts the app and waits for
it to be healthy; restores the objects (app backup restore-objects) when the
app has that command. The app is down during the restore.
  --yes    do not ask; required when stdin is not a terminal
  --list   list the verified dumps and exit
Exit codes: 0 restored and healthy, 1 a step failed, 2 usage (or not
confirmed), 3 no container engine.
USAGE
}

studio_restore() {
  # shellcheck source=deploy/studio.d/backup.sh
  . "$STUDIO_DIR/studio.d/backup.sh"
  yes=0
  name=
  for arg in "$@"; do
    case $arg in
      --yes | -y) yes=1 ;;
      --list) detect_engine; backup_sh list; return ;;
      -*) usage_error "restore: unknown option $arg" ;;
      *) [ -z "$name" ] || usage_error "restore: one NAME at most"; name=$arg ;;
    esac
  done
  detect_engine
  if [ -z "$name" ]; then
    name=$(backup_sh latest) || die "no verified dump to restore (deploy/studio restore --list)"
  fi
  step "verifying $name"
  backup_sh verify "$name" || die "$name is not a verified dump; nothing was changed"
  if [ $yes -eq 0 ]; then
    [ -t 0 ] || usage_error "restore replaces the database: pass --yes when stdin is not a terminal"
    printf 'Replace the studio database with %s? The app stops meanwhile. Type yes: ' "$name" >&2
    read -r answer || answer=
    [ "$answer" = yes ] || die "not confirmed; nothing was changed" "$EX_USAGE"
  fi

  step "safety dump of the current database"
  safety=$(backup_sh now pre-restore) || die "the safety dump failed; nothing was changed"
  pass "safety dump $safety (deploy/studio restore $safety --yes undoes this restore)"

  step "stopping the app"
  compose stop app >&2 || die "could not stop the app"
  step "restoring $name"
  if ! backup_sh restore "$name"; then
    fail_item "the restore failed; the app stays stopped. To go back: deploy/studio restore $safety --yes"
    exit "$EX_FAIL"
  fi
  pass "database restored; row counts and checksums equal the dump's manifest"

  step "starting the app"
  compose up -d --no-deps app >&2 || die "could not start the app"
  tries=0
  until compose exec -T app /usr/bin/app healthcheck >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ $tries -lt 90 ] || die "the app is not healthy 3 minutes after the restore: deploy/studio logs app"
    sleep 2
  done
  pass "app healthy"

  if app_backup_has restore-objects; then
    step "restoring objects"
    compose exec -T app /usr/bin/app backup restore-objects >&2 || die "the object restore failed (output above)"
    pass "objects restored"
  else
    warn "this app has no 'app backup restore-objects': object storage was left as it is"
  fi
  say "restored $name"
}
