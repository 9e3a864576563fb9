# shellcheck shell=sh
# studio logs: follow the stack's logs.

studio_logs_help() {
  cat <<'USAGE'
Usage: deploy/studio logs [SERVICE] [--since WHEN] [--tail N] [--no-follow]

Follows the logs of SERVICE (one of the compose services: edge, app,
postgres, minio, ...) or of every service, starting with the last 200
lines. Ctrl-C stops following; the services keep running.

  --since WHEN   only lines since WHEN: a duration (10m, 2h) or a time
                 (2025-06-01T12:00:00Z)
  --tail N       start with the last N lines of each service (default 200;
                 "all" for everything)
  --no-follow    print and exit instead of following

The app and the edge log JSON, one object per line (docs/operations.md).
Exit codes: 0, 2 usage (e.g. an unknown service), 3 no container engine.
USAGE
}

studio_logs() {
  lg_service=
  lg_since=
  lg_tail=200
  lg_follow=-f
  while [ $# -gt 0 ]; do
    case $1 in
      --since)
        [ $# -ge 2 ] || usage_error "logs: --since needs a value (10m, 2h, or a time)"
        lg_since=$2
        shift 2
        ;;
      --since=*)
        lg_since=${1#--since=}
        shift
        ;;
      --tail)
        [ $# -ge 2 ] || usage_error "logs: --tail needs a number"
        lg_tail=$2
        shift 2
        ;;
      --no-follow)
        lg_follow=
        shift
        ;;
      -*) usage_error "logs: unknown option '$1'" ;;
      *)
        [ -z "$lg_service" ] || usage_error "logs: one SERVICE at most (got '$lg_service' and '$1')"
        lg_service=$1
        shift
        ;;
    esac
  done
  case $lg_tail in
    all) ;;
    '' | *[!0-9]*) usage_error "logs: --tail takes a number or 'all'" ;;
  esac
  case $lg_since in
    -* | *[!0-9A-Za-z:.+-]*) usage_error "logs: --since '$lg_since' is neither a duration nor a time" ;;
  esac
  detect_engine
  if [ -n "$lg_service" ]; then
    lg_services=$(compose config --services 2>/dev/null) ||
      die "compose cannot read the configuration: $COMPOSE -f $STUDIO_COMPOSE_FILE --env-file $STUDIO_ENV_FILE config shows why"
    printf '%s\n' "$lg_services" | grep -qx -- "$lg_service" ||
      usage_error "logs: unknown service '$lg_service' (services: $(printf '%s' "$lg_services" | tr '\n' ' '))"
  fi
  set -- logs --tail "$lg_tail"
  [ -z "$lg_follow" ] || set -- "$@" "$lg_follow"
  [ -z "$lg_since" ] || set -- "$@" --since "$lg_since"
  [ -z "$lg_service" ] || set -- "$@" "$lg_service"
  compose "$@"
}
