# shellcheck shell=sh
# Shared by every studio verb (sourced; POSIX sh). Each verb lives in
# studio.d/<verb>.sh and defines studio_<verb> (dashes become underscores)
# and studio_<verb>_help, which prints its usage and what it does.

# Exit codes, as documented in deploy/studio.
EX_FAIL=1
EX_USAGE=2
EX_PREREQ=3

# Output: one line per step; progress goes to stderr so stdout stays
# parseable where a verb prints data (e.g. token create).
say() { printf '%s\n' "$*" >&2; }
step() { printf '==> %s\n' "$*" >&2; }
pass() { printf '  [pass] %s\n' "$*" >&2; }
warn() { printf '  [warn] %s\n' "$*" >&2; }
# fail_item marks a failed check and carries on; die stops the verb.
fail_item() { printf '  [FAIL] %s\n' "$*" >&2; }
die() {
  printf 'studio: %s\n' "$1" >&2
  exit "${2:-$EX_FAIL}"
}
usage_error() { die "$1 (see --help)" "$EX_USAGE"; }

# The environment file compose reads (deploy/.env by default).
STUDIO_ENV_FILE=${STUDIO_ENV_FILE:-$STUDIO_DIR/.env}
# The production compose file; STUDIO_COMPOSE_FILES may add overrides
# (space-separated paths), e.g. a test CA for the edge.
STUDIO_COMPOSE_FILE=${STUDIO_COMPOSE_FILE:-$STUDIO_DIR/docker-compose.yml}

# env_value NAME: the value of NAME in the environment file (empty if unset).
# The file is read, never sourced: it is data, not a script.
env_value() {
  [ -f "$STUDIO_ENV_FILE" ] || return 0
  sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$STUDIO_ENV_FILE" | tail -n 1 |
    sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'\$/\1/"
}

# detect_engine sets ENGINE (docker or podman) and COMPOSE (the compose
# command, word-split on purpose), or exits with EX_PREREQ.
detect_engine() {
  [ -n "${ENGINE:-}" ] && [ -n "${COMPOSE:-}" ] && return 0
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    ENGINE=docker
    if docker compose version >/dev/null 2>&1; then
      COMPOSE="docker compose"
    elif command -v docker-compose >/dev/null 2>&1; then
      COMPOSE=docker-compose
    else
      die "Docker is installed but Compose v2 is not: install the docker-compose-plugin package (docs/deploy.md)" "$EX_PREREQ"
    fi
  elif command -v podman >/dev/null 2>&1; then
    ENGINE=podman
    if command -v docker-compose >/dev/null 2>&1; then
      COMPOSE=docker-compose
    elif podman compose version >/dev/null 2>&1; then
      COMPOSE="podman compose"
    else
      die "podman is installed but no compose: install docker-compose (docs/deploy.md)" "$EX_PREREQ"
    fi
  else
    die "no container engine: install Docker (docs/deploy.md) and rerun" "$EX_PREREQ"
  fi
  export ENGINE COMPOSE
}

# current_release_images: exports APP_IMAGE and EDGE_IMAGE of the release
# `deploy` recorded as running (deploy/.releases/current), unless already
# set, so every compose command addresses the images that run.
current_release_images() {
  [ -z "${APP_IMAGE:-}" ] || return 0
  cri_dir=${STUDIO_RELEASES_DIR:-$STUDIO_DIR/.releases}
  cri_id=$(cat "$cri_dir/current" 2>/dev/null) || return 0
  [ -f "$cri_dir/$cri_id" ] || return 0
  APP_IMAGE=$(sed -n 's/^app_image=//p' "$cri_dir/$cri_id")
  EDGE_IMAGE=$(sed -n 's/^edge_image=//p' "$cri_dir/$cri_id")
  export APP_IMAGE EDGE_IMAGE
}

# compose ARGS...: the production stack's compose, from any directory.
compose() {
  detect_engine
  current_release_images
  # Files are prepended one by one, so walk the overrides last to first:
  # compose then sees the production file first and each override after
  # it, in the order given (later files override earlier ones).
  cf_rev=
  for f in ${STUDIO_COMPOSE_FILES:-}; do cf_rev="$f $cf_rev"; done
  for f in $cf_rev; do set -- -f "$f" "$@"; done
  set -- -f "$STUDIO_COMPOSE_FILE" "$@"
  # shellcheck disable=SC2086 # COMPOSE is a command and its subcommand
  $COMPOSE --env-file "$STUDIO_ENV_FILE" "$@"
}

# run_dotted OUT COMMAND...: runs COMMAND with its output appended to OUT,
# printing a dot every 5 s so a long step is visibly alive; polled each
# second so a quick one is not held up. Returns COMMAND's status.
run_dotted() {
  rd_out=$1
  shift
  "$@" >>"$rd_out" 2>&1 &
  rd_pid=$!
  rd_ticks=0
  while kill -0 "$rd_pid" 2>/dev/null; do
    sleep 1
    rd_ticks=$((rd_ticks + 1))
    if [ $((rd_ticks % 5)) -eq 0 ] && kill -0 "$rd_pid" 2>/dev/null; then
      printf '.' >&2
    fi
  done
  wait "$rd_pid"
}

# with_progress MESSAGE COMMAND...: a step line for COMMAND, its output in
# the step log, and the log's last lines when it fails.
STUDIO_LOG=${STUDIO_LOG:-${TMPDIR:-/tmp}/studio-$(id -u).log}
with_progress() {
  msg=$1
  shift
  printf '==> %s ' "$msg" >&2
  if run_dotted "$STUDIO_LOG" "$@"; then
    printf ' done\n' >&2
  else
    wp_rc=$?
    printf ' failed\n' >&2
    say "last lines of $STUDIO_LOG:"
    tail -n 20 "$STUDIO_LOG" >&2
    return "$wp_rc"
  fi
}
