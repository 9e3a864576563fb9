# shellcheck shell=sh
# studio backup: a verified Postgres dump and the object mirror, now.
# Also the helpers restore and restore-drill share (they source this file).

studio_backup_help() {
  cat <<'USAGE'
Usage: deploy/studio backup

Takes a Postgres dump now in the backup service (pg_dump -Fc over TLS,
checked with pg_restore --list and a sha256 manifest, recorded in
backup_runs), copies it off the VM when BACKUP_POSTGRES_TARGET is set (app
backup postgres-offsite: sha256 checked against the manifest, uploaded,
read back) and, when the app has the command, mirrors the object storage
(app backup objects). Prints the dump's name on stdout; it lives in the
backups volume (or BACKUP_DIR). Scheduled dumps need no command: the backup
service takes one daily at BACKUP_TIME. docs/backups.md.
Exit codes: 0 backed up and verified, 1 a step failed, 3 no container engine.
USAGE
}

# backup_sh ARGS...: deploy/backup/backup.sh in the backup service; exec in
# the running container, or a one-off container when it is not running.
backup_sh() {
  if [ -n "$(compose ps -q --status running backup 2>/dev/null)" ]; then
    compose exec -T backup /bin/sh /backup/backup.sh "$@"
  else
    compose run --rm -T --no-deps backup "$@"
  fi
}

# app_backup_has SUBCOMMAND: whether the running app's CLI has
# `app backup SUBCOMMAND` (object backups came with the app, so an older
# image may lack them).
app_backup_has() {
  compose exec -T app /usr/bin/app help 2>/dev/null | grep -Eq "app backup $1( |\$)"
}

studio_backup() {
  [ $# -eq 0 ] || usage_error "backup takes no arguments"
  detect_engine
  step "Postgres: dump, verify, record"
  name=$(backup_sh now manual) || die "the Postgres dump failed (output above); nothing was recorded as verified"
  [ -n "$name" ] || die "the backup service printed no dump name"
  pass "Postgres dump $name"
  if [ -n "$(env_value BACKUP_POSTGRES_TARGET)" ]; then
    app_backup_has postgres-offsite || die "BACKUP_POSTGRES_TARGET is set, but this app has no 'app backup postgres-offsite': deploy a newer release"
    step "Postgres: copy off the VM"
    compose exec -T app /usr/bin/app backup postgres-offsite >&2 ||
      die "copying the dumps off the VM failed (output above); the dump $name itself is verified, on the VM"
    pass "dumps copied to $(env_value BACKUP_POSTGRES_TARGET)"
  fi
  if app_backup_has objects; then
    step "objects: mirror the bucket"
    compose exec -T app /usr/bin/app backup objects >&2 || die "the object mirror failed (output above)"
    pass "object mirror done"
  else
    warn "this app has no 'app backup objects': object storage was not backed up"
  fi
  dir=$(env_value BACKUP_DIR)
  say "backup: $name in ${dir:-the backups volume} (deploy/studio restore $name)"
  printf '%s\n' "$name"
}
