# shellcheck shell=sh
# studio status: what runs, how healthy it is, which release it is.

studio_status_help() {
  cat <<'USAGE'
Usage: deploy/studio status

Shows the stack's containers (compose ps), each service's health, the
release that is deployed (deploy/.releases/current, written by
deploy/studio deploy), the edge's public /health answer and the app's
/readyz. /health is fetched from https://DOMAIN/health on this host
(curl --resolve to 127.0.0.1, or EDGE_BIND_ADDRESS), so it works before
DNS points here; STUDIO_EDGE_CA_FILE names a CA to trust for it (e.g. a
staging or test ACME root).

Exit codes: 0 every service is running and healthy and both health
answers pass (a warn is reported but still counts as healthy), 1
otherwise, 2 usage, 3 no container engine.
USAGE
}

# Where deploy/studio deploy records releases (STUDIO_RELEASES_DIR may
# move it, as it does for deploy).
STUDIO_RELEASES_DIR=${STUDIO_RELEASES_DIR:-$STUDIO_DIR/.releases}

studio_status() {
  [ $# -eq 0 ] || usage_error "status takes no arguments"
  detect_engine
  st_bad=0
  st_tmp=$(mktemp)

  step "containers"
  # One line per container: service, state, health (empty when the
  # service has no health check).
  if ! compose ps --all --format '{{.Service}}|{{.State}}|{{.Health}}|{{.Name}}' >"$st_tmp" 2>&1; then
    fail_item "compose ps failed: $(tail -n 1 "$st_tmp")"
    rm -f "$st_tmp"
    return "$EX_FAIL"
  fi
  compose ps --all >&2 2>/dev/null || true
  st_services=$(compose config --services 2>/dev/null || true)
  if [ -z "$st_services" ]; then
    fail_item "compose cannot read the configuration: $COMPOSE -f $STUDIO_COMPOSE_FILE --env-file $STUDIO_ENV_FILE config shows why"
    st_bad=1
  fi
  for st_svc in $st_services; do
    st_lines=$(grep "^$st_svc|" "$st_tmp" || true)
    if [ -z "$st_lines" ]; then
      fail_item "$st_svc: no container (start the stack: deploy/studio deploy)"
      st_bad=1
      continue
    fi
    # A service may run more than one container (during a deploy).
    while IFS='|' read -r _ st_state st_health st_name; do
      case $st_state:$st_health in
        running:healthy | running:) pass "$st_svc ($st_name): running${st_health:+, $st_health}" ;;
        running:starting)
          fail_item "$st_svc ($st_name): running, health check still starting (rerun in a few seconds)"
          st_bad=1
          ;;
        *)
          fail_item "$st_svc ($st_name): $st_state${st_health:+, $st_health} (deploy/studio logs $st_svc shows why)"
          st_bad=1
          ;;
      esac
    done <<EOF
$st_lines
EOF
  done

  step "release"
  # deploy/studio deploy writes one KEY=VALUE record per release and puts
  # the running one's id in `current`.
  st_release=$(cat "$STUDIO_RELEASES_DIR/current" 2>/dev/null || true)
  if [ -z "$st_release" ]; then
    say "  no release recorded ($STUDIO_RELEASES_DIR/current: deploy/studio deploy writes it)"
  elif [ -f "$STUDIO_RELEASES_DIR/$st_release" ]; then
    say "  current release $st_release:"
    sed 's/^/    /' "$STUDIO_RELEASES_DIR/$st_release" >&2
  else
    warn "current release $st_release has no record in $STUDIO_RELEASES_DIR"
  fi

  step "edge: public /health"
  st_domain=$(env_value DOMAIN)
  st_port=$(env_value HTTPS_PORT)
  st_port=${st_port:-443}
  st_addr=$(env_value EDGE_BIND_ADDRESS)
  case $st_addr in '' | 0.0.0.0 | '::' | '[::]') st_addr=127.0.0.1 ;; esac
  if [ -z "$st_domain" ]; then
    fail_item "DOMAIN is not set in $STUDIO_ENV_FILE"
    st_bad=1
  elif ! command -v curl >/dev/null 2>&1; then
    rm -f "$st_tmp"
    die "status needs curl: sudo apt-get install -y curl" "$EX_PREREQ"
  else
    set -- -sS --max-time 10 --resolve "$st_domain:$st_port:$st_addr" -o "$st_tmp" -w '%{http_code}'
    [ -z "${STUDIO_EDGE_CA_FILE:-}" ] || set -- "$@" --cacert "$STUDIO_EDGE_CA_FILE"
    st_url="https://$st_domain:$st_port/health"
    [ "$st_port" != 443 ] || st_url="https://$st_domain/health"
    if st_code=$(curl "$@" "$st_url" 2>"$st_tmp.err"); then
      st_body=$(head -c 300 "$st_tmp")
      st_health=$(printf '%s' "$st_body" | sed -n 's/.*"status"[[:space:]]*:[[:space:]]*"\([a-z]*\)".*/\1/p')
      case $st_code:$st_health in
        200:pass) pass "$st_url: $st_body" ;;
        200:warn) warn "$st_url: $st_body (see the edge's internal /health: docs/edge.md)" ;;
        *)
          fail_item "$st_url answered $st_code: $st_body"
          st_bad=1
          ;;
      esac
    else
      fail_item "$st_url: $(tail -n 1 "$st_tmp.err")"
      case $(cat "$st_tmp.err") in
        *certificate* | *SSL*) say "         the edge answers but its certificate is not trusted: still being issued, or from a staging CA (deploy/studio logs edge)" ;;
      esac
      st_bad=1
    fi
    rm -f "$st_tmp.err"
  fi

  step "app: /readyz (app healthcheck inside the container)"
  if compose exec -T app /usr/bin/app healthcheck >"$st_tmp" 2>&1; then
    pass "app /readyz: ready"
  else
    fail_item "app /readyz: $(tail -n 1 "$st_tmp")"
    st_bad=1
  fi
  rm -f "$st_tmp"

  if [ "$st_bad" != 0 ]; then
    say "status: not healthy"
    return "$EX_FAIL"
  fi
  say "status: healthy"
}
