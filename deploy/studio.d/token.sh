# shellcheck shell=sh
# studio token create NAME: an API token, printed once on stdout.

studio_token_help() {
  cat <<'USAGE'
Usage: deploy/studio token create NAME [--expires-in DURATION]

Creates an API token named NAME in the running app and prints it once on
stdout (store it: only its hash is kept). --expires-in (e.g. 720h or 30d)
makes it expire. Progress goes to stderr.
Exit codes: 0 created, 1 the app refused or is not running, 2 usage.
USAGE
}

studio_token() {
  [ "${1:-}" = create ] || usage_error "token: the only action is 'create'"
  [ -n "${2:-}" ] || usage_error "token create: a NAME is required"
  name=$2
  shift 2
  step "creating API token '$name'"
  compose exec -T app /usr/bin/app token create --name "$name" "$@" ||
    die "token create failed: is the stack running? (deploy/studio status)"
}
