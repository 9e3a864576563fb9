# shellcheck shell=sh
# studio rollback [REV]: back to the previous (or a named) release, with the
# same zero-downtime roll and smoke check as deploy.

# shellcheck source=deploy/studio.d/deploy.sh
. "$STUDIO_DIR/studio.d/deploy.sh"

studio_rollback_help() {
  cat <<'USAGE'
Usage: deploy/studio rollback [REV]

Rolls back to the release that ran before the current one (deploy/.releases/
previous), or to the newest successful release of revision REV (a commit
prefix, tag or branch that names a recorded release). The same rolling update
as deploy: the new instance starts beside the running one, the edge moves to
it, the old one drains; then the smoke check, and an automatic return to the
release that ran before if the check fails.

The database is not rolled back: migrations are expand/contract, so the
previous release runs against the newer schema (docs/migrations.md).
Images are reused when present, else rebuilt (or pulled with REGISTRY).
Running it twice in a row returns to where you started.
Exit codes: 0 rolled back, 1 failed, 2 usage, 3 a prerequisite is missing.
USAGE
}

studio_rollback() {
  rb_rev=
  for rb_arg in "$@"; do
    case $rb_arg in
      -*) usage_error "rollback: unknown option $rb_arg" ;;
      *) [ -z "$rb_rev" ] || usage_error "rollback: at most one REV"; rb_rev=$rb_arg ;;
    esac
  done
  release_begin
  if [ -z "$rb_rev" ]; then
    rb_id=$(pointer_get previous)
    [ -f "$RELEASES_DIR/${rb_id:-none}" ] ||
      die "no previous release recorded in $RELEASES_DIR: name one (deploy/studio rollback REV)"
    rb_sha=$(record_get "$rb_id" rev)
  else
    rb_sha=$(git -C "$REPO_DIR" rev-parse --verify --quiet "$rb_rev^{commit}" 2>/dev/null || printf '%s' "$rb_rev")
    rb_id=
    # The newest successful release of that revision: record names start
    # with their UTC time, so the glob's order is their order.
    for rb_f in "$RELEASES_DIR"/2*; do
      [ -f "$rb_f" ] || continue
      rb_f=${rb_f##*/}
      [ "$(record_get "$rb_f" outcome)" = succeeded ] || continue
      case $(record_get "$rb_f" rev) in
        "$rb_sha"*) rb_id=$rb_f ;;
      esac
    done
    [ -n "$rb_id" ] || die "no successful release of '$rb_rev' in $RELEASES_DIR (deploy/studio deploy $rb_rev deploys a new one)"
    rb_sha=$(record_get "$rb_id" rev)
  fi
  say "rolling back to $(record_get "$rb_id" version) (release $rb_id)"
  release_resolve "$rb_sha"
  release_images
  release_apply rollback
}
