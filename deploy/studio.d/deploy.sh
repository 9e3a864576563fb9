# shellcheck shell=sh
# studio deploy [REV]: build (or pull) the images of a revision, record the
# release, roll the app out without downtime, smoke-check it and roll back by
# itself when the check fails. rollback.sh sources this file for the same
# release records and roll.

REPO_DIR=$(CDPATH='' cd -- "$STUDIO_DIR/.." && pwd)
# One file per release attempt, plus the `current` and `previous` pointers.
RELEASES_DIR=${STUDIO_RELEASES_DIR:-$STUDIO_DIR/.releases}
# Seconds a new app instance gets to become ready (it migrates first).
DEPLOY_TIMEOUT=${STUDIO_DEPLOY_TIMEOUT:-300}
# Seconds the smoke check waits for the edge (a first start orders the
# certificate).
SMOKE_TIMEOUT=${STUDIO_SMOKE_TIMEOUT:-180}
# The app's stop_grace_period: its shutdown timeout plus drain delay fit in.
APP_STOP_GRACE=45

studio_deploy_help() {
  cat <<'USAGE'
Usage: deploy/studio deploy [REV]

Deploys revision REV of this checkout (default: HEAD; any git revision:
a commit, tag or branch). Uncommitted changes are never deployed.

  1. Images: builds the app and edge images from `git archive REV`, tagged
     localhost/finetune-studio/{app,edge}:<rev> (skipped when they exist).
     With REGISTRY set (environment or deploy/.env) it pulls
     $REGISTRY/finetune-studio-app:<rev> and $REGISTRY/finetune-studio-edge:<rev>
     instead (<rev>: the first 12 hex digits of the commit).
  2. Records the release in deploy/.releases/ (revision, images, time,
     outcome; `current` and `previous` name the running and the one before).
  3. First deploy (no app running): `compose up -d`. Otherwise a rolling
     update: a new app instance starts beside the old one (it applies new
     migrations as it starts), the edge sends every new request to it once it
     is ready and serves REV, the old instance drains (SIGTERM) and is
     removed. The edge container is replaced only when its image changed,
     after `caddy validate` passed in the new image (a replaced edge drops
     connections for a second or two).
  4. Smoke check: https://DOMAIN/health answers 200 through the edge, every
     app instance is ready and reports REV, /api/v1/whoami answers 401 JSON
     without a token (200 with STUDIO_SMOKE_TOKEN, if set).
  5. A new instance that never gets ready is removed (the old one never
     stopped serving); a failed smoke check rolls back to the release that
     ran before. Both exit 1.

Environment: REGISTRY, STUDIO_ENV_FILE, STUDIO_DEPLOY_TIMEOUT (300 s),
STUDIO_SMOKE_TIMEOUT (180 s), STUDIO_SMOKE_TOKEN, STUDIO_CA_FILE (CA bundle
for the edge's certificate when it is not publicly trusted, e.g. staging).
Safe to rerun: an interrupted deploy is finished by the next one.
Exit codes: 0 deployed, 1 failed (rolled back where possible), 2 usage,
3 a prerequisite is missing.
USAGE
}

studio_deploy() {
  d_rev=
  for d_arg in "$@"; do
    case $d_arg in
      -*) usage_error "deploy: unknown option $d_arg" ;;
      *) [ -z "$d_rev" ] || usage_error "deploy: at most one REV"; d_rev=$d_arg ;;
    esac
  done
  release_begin
  release_resolve "${d_rev:-HEAD}"
  release_images
  release_apply deploy
}

# --- shared by deploy and rollback -----------------------------------------

# release_begin: engine, tools, the releases directory and its lock.
release_begin() {
  detect_engine
  for rb_tool in git curl tar; do
    command -v "$rb_tool" >/dev/null 2>&1 || die "$rb_tool is not installed: apt-get install $rb_tool" "$EX_PREREQ"
  done
  [ -f "$STUDIO_ENV_FILE" ] || die "no $STUDIO_ENV_FILE: cp deploy/.env.example deploy/.env and edit it (docs/deploy.md)" "$EX_PREREQ"
  mkdir -p "$RELEASES_DIR"
  # One deploy or rollback at a time; a lock left by a killed run is taken
  # over once its process is gone.
  if ! mkdir "$RELEASES_DIR/.lock" 2>/dev/null; then
    rb_pid=$(cat "$RELEASES_DIR/.lock/pid" 2>/dev/null || true)
    if [ -n "$rb_pid" ] && kill -0 "$rb_pid" 2>/dev/null; then
      die "another deploy or rollback is running (pid $rb_pid)"
    fi
    warn "taking over the lock of an interrupted run (pid ${rb_pid:-unknown})"
  fi
  echo $$ >"$RELEASES_DIR/.lock/pid"
  RELEASE_TMP=
  RELEASE_TICKER=
  trap release_cleanup EXIT
  trap 'exit 130' INT TERM
}

release_cleanup() {
  [ -n "${RELEASE_TICKER:-}" ] && kill "$RELEASE_TICKER" 2>/dev/null
  [ -n "${RELEASE_TMP:-}" ] && rm -rf "$RELEASE_TMP"
  rm -rf "$RELEASES_DIR/.lock"
}

# release_resolve REV: sets R_SHA, R_SHORT (12 hex digits) and R_VERSION.
release_resolve() {
  R_SHA=$(git -C "$REPO_DIR" rev-parse --verify --quiet "$1^{commit}") ||
    die "no revision '$1' in $REPO_DIR (git fetch first?)"
  R_SHORT=$(printf '%s' "$R_SHA" | cut -c1-12)
  R_VERSION=$(git -C "$REPO_DIR" describe --tags --always "$R_SHA" 2>/dev/null || echo "$R_SHORT")
  if [ "$1" = HEAD ] && [ -n "$(git -C "$REPO_DIR" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    warn "the checkout has uncommitted changes: they are not deployed (a release is a commit)"
  fi
  step "release $R_VERSION ($R_SHA)"
}

image_exists() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }

# release_images: sets R_APP_IMAGE and R_EDGE_IMAGE, building or pulling.
release_images() {
  ri_registry=${REGISTRY:-$(env_value REGISTRY)}
  if [ -n "$ri_registry" ]; then
    R_APP_IMAGE=$ri_registry/finetune-studio-app:$R_SHORT
    R_EDGE_IMAGE=$ri_registry/finetune-studio-edge:$R_SHORT
    for ri_img in "$R_APP_IMAGE" "$R_EDGE_IMAGE"; do
      image_exists "$ri_img" && continue
      with_progress "pulling $ri_img" "$ENGINE" pull "$ri_img" ||
        die "could not pull $ri_img: push the images of $R_SHORT first (docs/deploy.md, \"Releases\"), or unset REGISTRY to build them here"
    done
    return 0
  fi
  R_APP_IMAGE=localhost/finetune-studio/app:$R_SHORT
  R_EDGE_IMAGE=localhost/finetune-studio/edge:$R_SHORT
  if image_exists "$R_APP_IMAGE" && image_exists "$R_EDGE_IMAGE"; then
    pass "images of $R_SHORT already built"
    return 0
  fi
  RELEASE_TMP=$(mktemp -d "${TMPDIR:-/tmp}/studio-build.XXXXXX")
  # The commit's files only: never the working tree's changes or its
  # untracked files (secrets included).
  git -C "$REPO_DIR" archive --format=tar "$R_SHA" | tar -x -C "$RELEASE_TMP" ||
    die "git archive $R_SHA failed"
  # git archive stamps every file with the commit's time; one fixed time
  # instead lets unchanged files hit the build cache and give identical
  # layers in every release.
  find "$RELEASE_TMP" -exec touch -h -d @0 {} + || die "could not reset file times in $RELEASE_TMP"
  build_image app.Dockerfile "$R_APP_IMAGE"
  build_image xcaddy.Dockerfile "$R_EDGE_IMAGE"
  rm -rf "$RELEASE_TMP"
  RELEASE_TMP=
}

# build_image DOCKERFILE IMAGE: from the archive in RELEASE_TMP.
build_image() {
  if [ "$ENGINE" = podman ]; then
    # Docker format: the OCI format has no HEALTHCHECK.
    set -- "$1" "$2" podman build --format docker --layers
  else
    set -- "$1" "$2" env DOCKER_BUILDKIT=1 docker build
  fi
  bi_file=$1 bi_image=$2
  shift 2
  with_progress "building $bi_image (the first build takes minutes)" "$@" -f "$RELEASE_TMP/$bi_file" -t "$bi_image" \
    --build-arg "VERSION=$R_VERSION" --build-arg "REVISION=$R_SHA" \
    ${GO_IMAGE:+--build-arg "GO_IMAGE=$GO_IMAGE"} "$RELEASE_TMP" ||
    die "building $bi_image failed (full log: $STUDIO_LOG)"
}

# record_write ID KEY=VALUE...: (re)writes release record ID.
record_write() {
  rw_id=$1
  shift
  rw_tmp="$RELEASES_DIR/.$rw_id.tmp"
  printf '%s\n' "$@" >"$rw_tmp"
  mv "$rw_tmp" "$RELEASES_DIR/$rw_id"
}

# record_get ID KEY: one field of a release record.
record_get() { sed -n "s/^$2=//p" "$RELEASES_DIR/$1" 2>/dev/null | tail -n 1; }

pointer_get() { cat "$RELEASES_DIR/$1" 2>/dev/null || true; }
pointer_set() { printf '%s\n' "$2" >"$RELEASES_DIR/.$1.tmp" && mv "$RELEASES_DIR/.$1.tmp" "$RELEASES_DIR/$1"; }

# app_containers [-a]: the ids of the app's containers (running, or all).
app_containers() { compose ps ${1:+"$1"} -q app 2>/dev/null || true; }
edge_container() { compose ps -q edge 2>/dev/null | head -n 1; }

# image_layers IMAGE: its layer digests, which identify its contents
# (labels such as the revision do not change them).
image_layers() { "$ENGINE" image inspect --format '{{json .RootFS.Layers}}' "$1" 2>/dev/null || true; }

# ctr_report CID: the readiness report the instance prints when ready.
ctr_report() { "$ENGINE" exec "$1" /usr/bin/app healthcheck 2>/dev/null; }
ctr_serves() { ctr_report "$1" | grep -q "\"releaseId\":\"$2\""; }

# wait_instance CID SHA: until the instance is ready and serves SHA; fails
# early when it keeps crashing.
wait_instance() {
  wi_deadline=$(($(date +%s) + DEPLOY_TIMEOUT))
  wi_down=0
  printf '==> waiting for the new app instance to be ready (migrations run first) ' >&2
  while ! ctr_serves "$1" "$2"; do
    wi_restarts=$("$ENGINE" inspect --format '{{.RestartCount}}' "$1" 2>/dev/null || echo 0)
    wi_state=$("$ENGINE" inspect --format '{{.State.Status}}' "$1" 2>/dev/null || echo gone)
    # Not running three polls in a row (exited, restarting, ...): crashing.
    if [ "$wi_state" = running ]; then wi_down=0; else wi_down=$((wi_down + 1)); fi
    if [ "$wi_restarts" -ge 3 ] || [ "$wi_down" -ge 3 ] || [ "$wi_state" = gone ] ||
      [ "$(date +%s)" -ge "$wi_deadline" ]; then
      printf ' failed (state %s, %s restarts)\n' "$wi_state" "$wi_restarts" >&2
      say "last log lines of the new instance:"
      "$ENGINE" logs --tail 20 "$1" >&2 2>&1 || true
      return 1
    fi
    printf '.' >&2
    sleep 2
  done
  printf ' ready\n' >&2
}

# internal_ip CID: the container's address on the stack's internal network.
internal_ip() {
  ii_project=$("$ENGINE" inspect --format '{{index .Config.Labels "com.docker.compose.project"}}' "$1")
  "$ENGINE" inspect --format "{{with index .NetworkSettings.Networks \"${ii_project}_internal\"}}{{.IPAddress}}{{end}}" "$1"
}

# edge_reload [UPSTREAMS]: reloads the running edge's configuration with
# APP_UPSTREAMS set to UPSTREAMS (or the container's own value). Caddy reads
# the environment when it adapts the Caddyfile, which the reload command
# does in its own process, so the running edge changes where it proxies
# without a restart; requests in flight finish on the old configuration.
edge_reload() {
  er_cid=$(edge_container)
  [ -n "$er_cid" ] || return 0
  if [ -n "${1:-}" ]; then
    "$ENGINE" exec -e "APP_UPSTREAMS=$1" "$er_cid" \
      /usr/bin/caddy reload --config /etc/caddy/Caddyfile --adapter caddyfile
  else
    "$ENGINE" exec "$er_cid" /usr/bin/caddy reload --config /etc/caddy/Caddyfile --adapter caddyfile
  fi
}

# podman has no scheduler for HEALTHCHECKs without systemd, and compose's
# `depends_on: service_healthy` waits on them: run them while compose waits.
start_health_ticker() {
  [ "$ENGINE" = podman ] || return 0
  (
    while :; do
      for ht_c in $(compose ps -q 2>/dev/null); do
        podman healthcheck run "$ht_c" >/dev/null 2>&1 || true
      done
      sleep 2
    done
  ) &
  RELEASE_TICKER=$!
}
stop_health_ticker() {
  [ -n "${RELEASE_TICKER:-}" ] || return 0
  kill "$RELEASE_TICKER" 2>/dev/null || true
  wait "$RELEASE_TICKER" 2>/dev/null || true
  RELEASE_TICKER=
}

# release_running EDGE_IMAGE: one app instance runs and serves R_SHA, and
# the edge runs EDGE_IMAGE's contents.
release_running() {
  rn_apps=$(app_containers)
  [ "$(printf '%s\n' "$rn_apps" | grep -c .)" = 1 ] || return 1
  ctr_serves "$rn_apps" "$R_SHA" || return 1
  rn_edge=$(edge_container)
  [ -n "$rn_edge" ] || return 1
  [ "$(image_layers "$("$ENGINE" inspect --format '{{.Image}}' "$rn_edge")")" = "$(image_layers "$1")" ]
}

# release_roll: brings the stack to R_APP_IMAGE and R_EDGE_IMAGE. Returns 1
# when it stopped before the old app instance was touched (the running
# release keeps serving), 2 when it failed after that.
release_roll() {
  export APP_IMAGE="$R_APP_IMAGE" EDGE_IMAGE="$R_EDGE_IMAGE"
  rr_old=$(app_containers)
  rr_edge=$(edge_container)
  rr_edge_changed=1
  if [ -n "$rr_edge" ]; then
    rr_edge_img=$("$ENGINE" inspect --format '{{.Image}}' "$rr_edge")
    if [ "$(image_layers "$rr_edge_img")" = "$(image_layers "$R_EDGE_IMAGE")" ]; then
      # Same contents: keep the running edge (and its connections) and the
      # name it runs under, so compose does not replace it either.
      rr_edge_changed=0
      R_EDGE_IMAGE=$("$ENGINE" inspect --format '{{.Config.Image}}' "$rr_edge")
      export EDGE_IMAGE="$R_EDGE_IMAGE"
      pass "edge image unchanged ($R_EDGE_IMAGE): the edge keeps running"
    fi
  fi
  if [ "$rr_edge_changed" = 1 ]; then
    with_progress "validating the edge configuration in $R_EDGE_IMAGE" \
      compose run --rm --no-deps -T --entrypoint /usr/bin/caddy edge \
      validate --config /etc/caddy/Caddyfile --adapter caddyfile ||
      { fail_item "caddy validate failed in $R_EDGE_IMAGE: nothing was changed"; return 1; }
    pass "edge configuration valid"
  fi

  if [ -z "$rr_old" ]; then
    # Nothing serves yet (first deploy, or the stack is down): plain start.
    start_health_ticker
    if ! with_progress "starting the stack (compose up -d)" compose up -d; then
      stop_health_ticker
      fail_item "compose up failed"
      return 1
    fi
    stop_health_ticker
    for rr_c in $(app_containers); do
      wait_instance "$rr_c" "$R_SHA" || return 1
    done
    return 0
  fi

  rr_n=$(printf '%s\n' "$rr_old" | grep -c .)
  # Postgres and MinIO are only made sure to run: never recreated here.
  with_progress "checking postgres and minio run" compose up -d --no-deps --no-recreate postgres minio ||
    { fail_item "postgres or minio would not start"; return 1; }
  with_progress "starting a new app instance beside the old one" \
    compose up -d --no-deps --no-recreate --scale "app=$((rr_n + 1))" app ||
    { fail_item "could not start a new app instance"; return 1; }
  rr_new=
  for rr_c in $(app_containers -a); do
    printf '%s\n' "$rr_old" | grep -qx "$rr_c" || rr_new="$rr_new $rr_c"
  done
  rr_new=${rr_new# }
  [ -n "$rr_new" ] || { fail_item "compose started no new app instance"; return 1; }
  if ! wait_instance "$rr_new" "$R_SHA"; then
    with_progress "removing the failed instance (the old one keeps serving)" "$ENGINE" rm -f "$rr_new" || true
    return 1
  fi
  rr_ip=$(internal_ip "$rr_new")
  [ -n "$rr_ip" ] || { "$ENGINE" rm -f "$rr_new" >/dev/null 2>&1; fail_item "no internal address for the new instance"; return 1; }
  # Every new request goes to the new instance from here on; the old one
  # finishes what it has.
  with_progress "routing the edge to the new instance ($rr_ip)" edge_reload "$rr_ip:8080" || {
    "$ENGINE" rm -f "$rr_new" >/dev/null 2>&1
    fail_item "the edge did not reload; the old instance keeps serving"
    return 1
  }
  for rr_c in $rr_old; do
    # SIGTERM: readiness turns 503, then the server drains and stops.
    with_progress "draining and stopping the old instance ${rr_c%"${rr_c#????????????}"}" \
      "$ENGINE" stop -t "$APP_STOP_GRACE" "$rr_c" || true
    "$ENGINE" rm -f "$rr_c" >/dev/null 2>&1 || true
  done
  # The edge keeps the new instance's address and gains the service name
  # beside it (the same instance). Right after a container of the network
  # stops, the runtime's DNS can miss or stall on names for seconds (seen
  # with podman: the first request through a name-only edge waited over
  # 10 s); the address needs no lookup, and the name takes over through
  # the health checks if the instance is ever replaced outside deploy (an
  # edge restart goes back to the name alone).
  with_progress "routing the edge to the new instance and the app service" edge_reload "$rr_ip:8080 app:8080" ||
    warn "edge reload failed: it keeps proxying to $rr_ip"
  if [ "$rr_edge_changed" = 1 ]; then
    with_progress "replacing the edge with $R_EDGE_IMAGE (a second or two without it)" \
      compose up -d --no-deps edge || { fail_item "the new edge did not start"; return 2; }
  else
    # A changed edge definition (environment, volumes) is applied here,
    # which replaces the edge (a second or two without it); an unchanged
    # one is left alone. Compose's own config hash decides, as compose
    # itself would, but only when it really differs.
    rr_edge=$(edge_container)
    rr_hash_now=$("$ENGINE" inspect --format '{{index .Config.Labels "com.docker.compose.config-hash"}}' "$rr_edge" 2>/dev/null || true)
    rr_hash_new=$(compose config --hash edge 2>/dev/null | awk '{print $2}')
    if [ -n "$rr_hash_new" ] && [ "$rr_hash_now" != "$rr_hash_new" ]; then
      with_progress "applying the edge's changed compose definition (config hash $rr_hash_now -> $rr_hash_new; a second or two without it)" \
        compose up -d --no-deps edge || { fail_item "compose up edge failed"; return 2; }
    else
      pass "edge definition unchanged: the edge keeps running"
    fi
  fi
  return 0
}

# smoke_check: the deployed release serves through the edge.
smoke_check() {
  sc_domain=$(env_value DOMAIN)
  sc_port=${HTTPS_PORT:-$(env_value HTTPS_PORT)}
  sc_port=${sc_port:-443}
  sc_addr=${EDGE_BIND_ADDRESS:-$(env_value EDGE_BIND_ADDRESS)}
  case $sc_addr in "" | 0.0.0.0) sc_addr=127.0.0.1 ;; esac
  [ -n "$sc_domain" ] || { fail_item "DOMAIN is not set in $STUDIO_ENV_FILE"; return 1; }
  sc_url="https://$sc_domain:$sc_port"
  sc_ok=0
  sc_deadline=$(($(date +%s) + SMOKE_TIMEOUT))
  printf '==> smoke check: %s/health through the edge ' "$sc_url" >&2
  while :; do
    sc_code=$(smoke_curl -o /dev/null -w '%{http_code}' "$sc_url/health" 2>/dev/null || true)
    [ "$sc_code" = 200 ] && break
    if [ "$(date +%s)" -ge "$sc_deadline" ]; then
      printf ' %s\n' "${sc_code:-no answer}" >&2
      fail_item "edge /health: ${sc_code:-no answer} (want 200 over verified HTTPS)"
      sc_ok=1
      break
    fi
    printf '.' >&2
    sleep 2
  done
  [ "$sc_ok" = 0 ] && { printf ' 200\n' >&2; pass "edge /health 200 over HTTPS"; }
  for sc_c in $(app_containers); do
    if ctr_serves "$sc_c" "$R_SHA"; then
      pass "app instance ready, serving $R_SHORT"
    else
      fail_item "app instance ${sc_c%"${sc_c#????????????}"} is not ready or does not serve $R_SHORT"
      sc_ok=1
    fi
  done
  sc_err=$(mktemp "${TMPDIR:-/tmp}/studio-smoke.XXXXXX")
  sc_body=$(smoke_curl -w '\n%{http_code} %{time_total}s' "$sc_url/api/v1/whoami" 2>"$sc_err" || true)
  if [ "$(printf '%s\n' "$sc_body" | tail -n 1 | cut -d' ' -f1)" = 401 ] && printf '%s' "$sc_body" | grep -q '"error"'; then
    pass "GET /api/v1/whoami without a token: 401 JSON"
  else
    fail_item "GET /api/v1/whoami without a token: want 401 JSON, got $(printf '%s\n' "$sc_body" | tail -n 1) $(head -c 300 "$sc_err")"
    sc_ok=1
  fi
  rm -f "$sc_err"
  if [ -n "${STUDIO_SMOKE_TOKEN:-}" ]; then
    sc_code=$(smoke_curl -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $STUDIO_SMOKE_TOKEN" "$sc_url/api/v1/whoami" 2>/dev/null || true)
    if [ "$sc_code" = 200 ]; then pass "authenticated GET /api/v1/whoami: 200"; else
      fail_item "authenticated GET /api/v1/whoami: $sc_code"
      sc_ok=1
    fi
  fi
  return "$sc_ok"
}

smoke_curl() {
  curl -sS --max-time 10 ${STUDIO_CA_FILE:+--cacert "$STUDIO_CA_FILE"} \
    --resolve "$sc_domain:$sc_port:$sc_addr" "$@"
}

# release_apply KIND: records, rolls and checks R_*; on a failed smoke check
# rolls back to the release that was current before.
release_apply() {
  ra_kind=$1
  ra_started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  ra_id=$(date -u +%Y%m%dT%H%M%SZ)-$R_SHORT
  ra_prev=$(pointer_get current)
  ra_fields() {
    record_write "$ra_id" "id=$ra_id" "kind=$ra_kind" "rev=$R_SHA" "version=$R_VERSION" \
      "app_image=$R_APP_IMAGE" "edge_image=$R_EDGE_IMAGE" "started=$ra_started" \
      "finished=$(date -u +%Y-%m-%dT%H:%M:%SZ)" "outcome=$1" "replaces=$ra_prev"
  }
  # A rerun of the release that already runs changes nothing and records
  # nothing (so `rollback` still means the release before it): it only
  # checks.
  if [ "$ra_kind" = deploy ] && [ -n "$ra_prev" ] && [ "$(record_get "$ra_prev" rev)" = "$R_SHA" ] &&
    release_running "$(record_get "$ra_prev" edge_image)"; then
    step "release $R_SHORT already runs: smoke check only"
    smoke_check || die "release $R_SHORT runs but fails its smoke check: see the items above; deploy/studio rollback returns to the previous release"
    return 0
  fi
  ra_fields in-progress
  if release_roll; then ra_rc=0; else ra_rc=$?; fi
  if [ "$ra_rc" = 1 ]; then
    ra_fields failed
    if [ -n "$ra_prev" ]; then
      die "release $R_SHORT did not start; the running release was left serving (record: $RELEASES_DIR/$ra_id, log: $STUDIO_LOG)"
    fi
    die "release $R_SHORT did not start (record: $RELEASES_DIR/$ra_id, log: $STUDIO_LOG)"
  fi
  if [ "$ra_rc" = 0 ] && smoke_check; then
    ra_fields succeeded
    [ -n "$ra_prev" ] && [ "$ra_prev" != "$ra_id" ] && pointer_set previous "$ra_prev"
    pointer_set current "$ra_id"
    step "release $R_VERSION ($R_SHORT) is live ($ra_kind recorded as $ra_id)"
    return 0
  fi
  ra_fields smoke-check-failed
  if [ -z "$ra_prev" ] || [ ! -f "$RELEASES_DIR/$ra_prev" ]; then
    die "smoke check failed and there is no earlier release to roll back to (record: $RELEASES_DIR/$ra_id)"
  fi
  ra_failed=$R_SHORT
  warn "smoke check failed: rolling back to $(record_get "$ra_prev" version) ($ra_prev)"
  R_SHA=$(record_get "$ra_prev" rev)
  R_SHORT=$(printf '%s' "$R_SHA" | cut -c1-12)
  R_VERSION=$(record_get "$ra_prev" version)
  R_APP_IMAGE=$(record_get "$ra_prev" app_image)
  R_EDGE_IMAGE=$(record_get "$ra_prev" edge_image)
  ra_kind=auto-rollback
  ra_started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  ra_id=$(date -u +%Y%m%dT%H%M%SZ)-$R_SHORT-auto
  ra_fields in-progress
  if release_roll && smoke_check; then
    ra_fields succeeded
    pointer_set current "$ra_id"
    die "release $ra_failed failed its smoke check and was rolled back: $R_VERSION ($R_SHORT) serves again"
  fi
  ra_fields failed
  die "release $ra_failed failed its smoke check AND the rollback to $R_SHORT failed: check deploy/studio status and $STUDIO_LOG"
}
