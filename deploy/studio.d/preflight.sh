# shellcheck shell=sh
# studio preflight: the pre-deployment checklist (docs/checklist.md), run
# on the host that will serve the stack. Every item prints [pass], [warn]
# or [FAIL] and, unless it passed, the exact fix.

studio_preflight_help() {
  cat <<'USAGE'
Usage: deploy/studio preflight [--public-ip ADDR]... [--lookup-public-ip]

Checks this host against the pre-deployment checklist (docs/checklist.md):
container engine and compose versions, memory, free disk, ports, DNS,
deploy/.env, `app config check`, secrets, internal certificates, clock,
Kaggle credentials (one cheap authenticated call to Kaggle) and the host
firewall. Each item prints [pass], [warn] or [FAIL] with the fix.

  --public-ip ADDR    this host's public address (IPv4 or IPv6; repeat for
                      both), for hosts behind NAT such as Oracle Cloud or
                      AWS, where the public IP is not on any interface
  --lookup-public-ip  ask a public "what is my IP" service instead (one
                      HTTPS request to STUDIO_PUBLIC_IP_URL, default
                      https://api.ipify.org); off unless given

Without either, DOMAIN must resolve to an address on one of this host's
interfaces to pass; otherwise the DNS item warns and says how to verify.
Runs as any user; checks that need root (who holds a port, the firewall,
secrets only root can read) warn instead of failing when run without it.

Exit codes: 0 no FAIL (warnings allowed), 1 at least one FAIL, 2 usage,
3 a tool preflight needs to check is missing (it says which).
USAGE
}

# Thresholds (docs/checklist.md). Docker 24, Compose 2.20 and podman 4
# are the minimums we support (Docker 23 and older are out of upstream
# support; podman 4.3 is Debian 12's); the stack is tested with Compose
# 2.40.3. Memory: a "2 GB" VM reports about 1.9 GiB after the kernel's
# reservations.
PF_DOCKER_MIN=24.0
PF_PODMAN_MIN=4.0
PF_COMPOSE_MIN=2.20
PF_MEM_PASS_KB=1887437 # 1.8 GiB
PF_MEM_FAIL_KB=1468006 # 1.4 GiB: below this the memory limits cannot all be met
PF_DISK_FAIL_KB=5242880  # 5 GiB
PF_DISK_WARN_KB=10485760 # 10 GiB
PF_CERT_WARN_DAYS=30     # gen-certs.sh reissues inside this window
PF_CERT_FAIL_DAYS=7

PF_FAILS=0
PF_WARNS=0
PF_PASSES=0
# pf_pass MSG, pf_warn MSG [FIX], pf_fail MSG [FIX]: one checklist line.
pf_pass() {
  pass "$1"
  PF_PASSES=$((PF_PASSES + 1))
}
pf_warn() {
  warn "$1"
  [ -z "${2:-}" ] || printf '         fix: %s\n' "$2" >&2
  PF_WARNS=$((PF_WARNS + 1))
}
pf_fail() {
  fail_item "$1"
  [ -z "${2:-}" ] || printf '         fix: %s\n' "$2" >&2
  PF_FAILS=$((PF_FAILS + 1))
}

# ver_ge HAVE WANT: true when dotted version HAVE >= WANT (a leading "v"
# and suffixes such as "-ce" are ignored).
ver_ge() {
  awk -v a="${1#v}" -v b="${2#v}" 'BEGIN {
    split(a, x, "."); split(b, y, ".")
    for (i = 1; i <= 3; i++) { p = x[i] + 0; q = y[i] + 0; if (p > q) exit 0; if (p < q) exit 1 }
    exit 0 }'
}

# pf_path P: P resolved the way compose resolves it (relative to deploy/).
pf_path() {
  case $1 in
    /*) printf '%s' "$1" ;;
    *) printf '%s/%s' "$STUDIO_DIR" "${1#./}" ;;
  esac
}

# pf_run OUT CMD...: runs CMD with its output in OUT (emptied first), dots
# while it runs, so a slow container start is visibly alive.
pf_run() {
  : >"$1"
  pr_rc=0
  run_dotted "$@" || pr_rc=$?
  printf '\n' >&2
  return "$pr_rc"
}

PF_NONROOT_HINT=
pf_root_hint() {
  [ "$(id -u)" -eq 0 ] || PF_NONROOT_HINT=" (not root: rerun with sudo to check this)"
  printf '%s' "$PF_NONROOT_HINT"
}

# ---- container engine and compose -------------------------------------

PF_ENGINE_OK=0
pf_check_engine() {
  step "container engine"
  pe_det=$( (detect_engine >/dev/null 2>&1 && printf '%s|%s' "$ENGINE" "$COMPOSE") || true)
  if [ -z "$pe_det" ]; then
    pe_compose_fix="install Compose v2: sudo apt-get install docker-compose-plugin (Docker's apt repository), or the docker-compose binary from https://github.com/docker/compose/releases"
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
      pf_fail "Docker answers but Compose v2 is missing" "$pe_compose_fix"
    elif command -v podman >/dev/null 2>&1; then
      pf_fail "podman $(podman version --format '{{.Client.Version}}' 2>/dev/null || true) is installed but no compose" "$pe_compose_fix"
    elif command -v docker >/dev/null 2>&1; then
      pe_client=$(docker version --format '{{.Client.Version}}' 2>/dev/null || true)
      if [ "$(id -u)" -ne 0 ]; then
        pf_fail "Docker ${pe_client:-(client)} is installed but its daemon does not answer to uid $(id -u)" \
          "sudo usermod -aG docker $(id -un) and log in again (or rerun with sudo); if the daemon is stopped: sudo systemctl enable --now docker"
      else
        pf_fail "Docker ${pe_client:-(client)} is installed but its daemon does not answer" "sudo systemctl enable --now docker"
      fi
    else
      pf_fail "no container engine (Docker >= ${PF_DOCKER_MIN%.0} or podman >= ${PF_PODMAN_MIN%.0})" \
        "install Docker Engine and the Compose plugin: https://docs.docker.com/engine/install/debian/ (docs/deploy.md)"
    fi
    return 0
  fi
  ENGINE=${pe_det%%|*}
  COMPOSE=${pe_det#*|}
  export ENGINE COMPOSE
  PF_ENGINE_OK=1

  # A docker CLI may be talking to podman's Docker-compatible socket.
  pe_kind=$ENGINE
  if [ "$ENGINE" = docker ]; then
    pe_all=$(docker version 2>/dev/null || true)
    case $pe_all in *"Podman Engine"*) pe_kind=podman ;; esac
    pe_ver=$(docker version --format '{{.Server.Version}}' 2>/dev/null || true)
  else
    pe_ver=$(podman version --format '{{.Client.Version}}' 2>/dev/null || true)
  fi
  if [ "$pe_kind" = podman ]; then pe_min=$PF_PODMAN_MIN; else pe_min=$PF_DOCKER_MIN; fi
  case $pe_ver in
    [0-9]*) ;;
    *) pe_ver= ;;
  esac
  if [ -z "$pe_ver" ]; then
    pf_warn "$pe_kind: version unknown, cannot verify it is >= ${pe_min%.0}" "$ENGINE version"
  elif ver_ge "$pe_ver" "$pe_min"; then
    pf_pass "$pe_kind $pe_ver (>= ${pe_min%.0})"
  else
    pf_fail "$pe_kind $pe_ver is older than ${pe_min%.0}" \
      "upgrade $pe_kind (Docker: https://docs.docker.com/engine/install/debian/)"
  fi

  # shellcheck disable=SC2086 # COMPOSE is a command and its subcommand
  pe_cver=$($COMPOSE version --short 2>/dev/null | tail -n 1 || true)
  case ${pe_cver#v} in
    [0-9]*) ;;
    *)
      # A source build reports "dev": nothing to compare.
      pf_warn "$COMPOSE reports version '${pe_cver:-nothing}': cannot verify it is Compose v2 >= $PF_COMPOSE_MIN" \
        "$COMPOSE version; if it is older, install docker-compose-plugin (Docker's apt repository)"
      return 0
      ;;
  esac
  if ver_ge "$pe_cver" "$PF_COMPOSE_MIN"; then
    pf_pass "compose ${pe_cver#v} ($COMPOSE, >= $PF_COMPOSE_MIN)"
  else
    pf_fail "compose ${pe_cver#v} ($COMPOSE) is older than $PF_COMPOSE_MIN (podman-compose and Compose v1 are not supported)" \
      "install Compose v2: sudo apt-get install docker-compose-plugin, or the docker-compose binary from https://github.com/docker/compose/releases"
  fi
}

# ---- memory and disk ----------------------------------------------------

pf_check_memory() {
  step "memory"
  pm_total=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null || true)
  pm_swap=$(awk '/^SwapTotal:/ {print $2}' /proc/meminfo 2>/dev/null || true)
  if [ -z "$pm_total" ]; then
    pf_warn "cannot read /proc/meminfo" "free -h (2 GB of RAM are needed)"
    return 0
  fi
  pm_gib=$(awk -v k="$pm_total" 'BEGIN { printf "%.1f", k / 1048576 }')
  pm_swap_gib=$(awk -v k="${pm_swap:-0}" 'BEGIN { printf "%.1f", k / 1048576 }')
  if [ "$pm_total" -ge "$PF_MEM_PASS_KB" ]; then
    pf_pass "memory: $pm_gib GiB (a 2 GB VM is enough)"
  elif [ "$pm_total" -ge "$PF_MEM_FAIL_KB" ] || [ $((pm_total + ${pm_swap:-0})) -ge "$PF_MEM_PASS_KB" ]; then
    pf_warn "memory: $pm_gib GiB RAM + $pm_swap_gib GiB swap, below the 2 GB the stack is sized for (expect swapping under load)" \
      "a VM with 2 GB or more; or add swap: sudo fallocate -l 2G /swapfile && sudo chmod 600 /swapfile && sudo mkswap /swapfile && sudo swapon /swapfile (and add it to /etc/fstab)"
  else
    pf_fail "memory: $pm_gib GiB RAM + $pm_swap_gib GiB swap; the stack needs 2 GB (its memory limits add up to 1.5 GiB)" \
      "a VM with 2 GB of RAM or more (Oracle Cloud: VM.Standard.A1.Flex with 2+ GB), or add 2 GB of swap (docs/checklist.md)"
  fi
}

# pf_disk_line LABEL DIR: free space on DIR's filesystem (the nearest
# existing parent when DIR does not exist yet).
pf_disk_line() {
  pd_dir=$2
  while [ ! -e "$pd_dir" ] && [ "$pd_dir" != / ]; do pd_dir=$(dirname "$pd_dir"); done
  pd_df=$(df -Pk "$pd_dir" 2>/dev/null | awk 'NR == 2 {print $4, $6}' || true)
  if [ -z "$pd_df" ]; then
    pf_warn "$1: cannot measure free space on $pd_dir" "df -h $pd_dir (5 GB free needed, 10 GB recommended)"
    return 0
  fi
  pd_avail=${pd_df%% *}
  pd_mount=${pd_df#* }
  case " $PF_DISK_SEEN " in *" $pd_mount "*) return 0 ;; esac
  PF_DISK_SEEN="$PF_DISK_SEEN $pd_mount"
  pd_gib=$(awk -v k="$pd_avail" 'BEGIN { printf "%.1f", k / 1048576 }')
  pd_fix="free space (docker system prune removes unused images and build cache) or grow the disk"
  if [ "$pd_avail" -lt "$PF_DISK_FAIL_KB" ]; then
    pf_fail "disk: $pd_gib GiB free on $pd_mount ($1); at least 5 GB are needed" "$pd_fix"
  elif [ "$pd_avail" -lt "$PF_DISK_WARN_KB" ]; then
    pf_warn "disk: $pd_gib GiB free on $pd_mount ($1); 10 GB leave room for images, datasets, models and backups" "$pd_fix"
  else
    pf_pass "disk: $pd_gib GiB free on $pd_mount ($1)"
  fi
}

PF_DISK_SEEN=
pf_check_disk() {
  step "disk"
  pk_root=
  if [ "$PF_ENGINE_OK" = 1 ]; then
    if [ "$ENGINE" = docker ]; then
      pk_root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || true)
    else
      pk_root=$(podman info --format '{{.Store.GraphRoot}}' 2>/dev/null || true)
    fi
  fi
  if [ -z "$pk_root" ]; then
    if command -v podman >/dev/null 2>&1 && ! command -v docker >/dev/null 2>&1; then
      pk_root=/var/lib/containers/storage
    else
      pk_root=/var/lib/docker
    fi
  fi
  pf_disk_line "container data root $pk_root" "$pk_root"
  pf_disk_line "this checkout" "$STUDIO_DIR"
}

# ---- ports ---------------------------------------------------------------

# pf_port_conflicts PROTO PORT: the listeners (ss lines) that would stop
# the edge from publishing PORT on EDGE_BIND_ADDRESS.
pf_port_conflicts() {
  if [ "$1" = tcp ]; then pc_flags=-Hltn; else pc_flags=-Hlun; fi
  pc_bind=${PF_BIND:-0.0.0.0}
  ss "$pc_flags" "sport = :$2" 2>/dev/null | awk -v bind="$pc_bind" -v port="$2" '{
    addr = $4; sub(":" port "$", "", addr); gsub(/[][]/, "", addr); sub(/%.*/, "", addr)
    wild = (addr == "0.0.0.0" || addr == "*" || addr == "::")
    v4 = (addr ~ /^[0-9.]+$/)
    if (wild || addr == bind || ((bind == "0.0.0.0" || bind == "") && v4) || (bind == "::" && !v4)) print
  }' || true
}

# pf_edge_holds PROTO PORT: true when our own edge container publishes PORT.
pf_edge_holds() {
  [ "$PF_ENGINE_OK" = 1 ] || return 1
  if [ "$1" = tcp ]; then
    peh_internal=80
    [ "$2" != "$PF_HTTPS_PORT" ] || peh_internal=443
  else
    peh_internal=443
  fi
  peh=$(compose port --protocol "$1" edge "$peh_internal" 2>/dev/null || true)
  [ -n "$peh" ] && [ "${peh##*:}" = "$2" ]
}

pf_check_ports() {
  step "ports"
  PF_BIND=$(env_value EDGE_BIND_ADDRESS)
  PF_HTTP_PORT=$(env_value HTTP_PORT)
  PF_HTTPS_PORT=$(env_value HTTPS_PORT)
  PF_HTTP_PORT=${PF_HTTP_PORT:-80}
  PF_HTTPS_PORT=${PF_HTTPS_PORT:-443}
  for pp in "tcp $PF_HTTP_PORT HTTP_PORT" "tcp $PF_HTTPS_PORT HTTPS_PORT" "udp $PF_HTTPS_PORT HTTPS_PORT"; do
    # shellcheck disable=SC2086 # three words on purpose
    set -- $pp
    case $2 in
      '' | *[!0-9]*)
        pf_fail "$3=$2 is not a port number" "set $3 in $STUDIO_ENV_FILE (80 and 443 for Let's Encrypt)"
        continue
        ;;
    esac
    pp_lines=$(pf_port_conflicts "$1" "$2")
    if [ -z "$pp_lines" ]; then
      pf_pass "port $2/$1 is free"
    elif pf_edge_holds "$1" "$2"; then
      pf_pass "port $2/$1 is held by this stack's edge"
    else
      pp_who=$(printf '%s\n' "$pp_lines" | sed -n 's/.*users:(("\([^"]*\)".*/\1/p' | head -n 1)
      pp_addr=$(printf '%s\n' "$pp_lines" | awk '{print $4}' | head -n 1)
      if [ -n "$pp_who" ]; then
        pf_fail "port $2/$1 is in use by $pp_who ($pp_addr)" \
          "stop it: sudo systemctl disable --now $pp_who (if it is a service), or run the edge on another port with $3 in $STUDIO_ENV_FILE"
      else
        pf_fail "port $2/$1 is in use ($pp_addr)$(pf_root_hint)" \
          "find the holder with: sudo ss -lnp$(printf '%.1s' "$1") 'sport = :$2' and stop it (e.g. sudo systemctl disable --now nginx)"
      fi
    fi
  done
}

# ---- DNS -----------------------------------------------------------------

# pf_is_private ADDR: loopback, private, link-local, CGNAT or unique-local.
pf_is_private() {
  case $1 in
    127.* | 10.* | 192.168.* | 169.254.* | 0.*) return 0 ;;
    172.1[6-9].* | 172.2[0-9].* | 172.3[01].*) return 0 ;;
    100.6[4-9].* | 100.[7-9][0-9].* | 100.1[01][0-9].* | 100.12[0-7].*) return 0 ;;
    ::1 | [fF][cCdD]* | [fF][eE][89aAbB]*) return 0 ;;
  esac
  return 1
}

# pf_in WORD LIST: WORD is one of LIST's newline- or space-separated words.
pf_in() {
  for pi in $2; do [ "$pi" = "$1" ] && return 0; done
  return 1
}

pf_check_dns() {
  step "DNS"
  pd_domain=$(env_value DOMAIN)
  if [ -z "$pd_domain" ]; then
    pf_fail "DNS: DOMAIN is not set, nothing to resolve" "set DOMAIN in $STUDIO_ENV_FILE"
    return 0
  fi
  pd_host4=$(ip -4 -o addr show scope global 2>/dev/null | awk '{sub(/\/.*/, "", $4); print $4}' || true)
  # fd00::/8 and fc00::/7 are "scope global" to the kernel but unreachable
  # from the internet.
  pd_host6=$(ip -6 -o addr show scope global 2>/dev/null | awk '{sub(/\/.*/, "", $4); print $4}' | grep -vi '^f[cd]' || true)
  pd_pub4=
  pd_pub6=
  for pd_ip in $PF_PUBLIC_IPS; do
    case $pd_ip in *:*) pd_pub6="$pd_pub6 $pd_ip" ;; *) pd_pub4="$pd_pub4 $pd_ip" ;; esac
  done
  if [ "$PF_LOOKUP" = 1 ]; then
    pd_url=${STUDIO_PUBLIC_IP_URL:-https://api.ipify.org}
    pd_looked=$(curl -4fsS --max-time 10 "$pd_url" 2>/dev/null | tr -d '[:space:]' || true)
    case $pd_looked in
      *[!0-9.]* | '') pf_warn "DNS: could not learn this host's public IPv4 from $pd_url" "rerun with --public-ip ADDR (the address in your cloud console)" ;;
      *) pd_pub4="$pd_pub4 $pd_looked" ;;
    esac
  fi

  pd_a=$(getent ahostsv4 "$pd_domain" 2>/dev/null | awk '{print $1}' | sort -u || true)
  if [ -z "$pd_a" ]; then
    pf_fail "DNS: $pd_domain has no A record" \
      "create an A record $pd_domain -> this host's public IPv4 at your DNS provider; check with: getent ahostsv4 $pd_domain"
  else
    pd_ours=
    pd_theirs=
    for pd_ip in $pd_a; do
      if pf_in "$pd_ip" "$pd_host4 $pd_pub4"; then pd_ours="$pd_ours $pd_ip"; else pd_theirs="$pd_theirs $pd_ip"; fi
    done
    pd_theirs=${pd_theirs# }
    if [ -z "$pd_theirs" ]; then
      pf_pass "DNS: $pd_domain A ->$pd_ours (this host)"
    elif [ -n "$pd_ours" ]; then
      pf_warn "DNS: $pd_domain A ->$pd_ours (this host) but also -> $pd_theirs" \
        "remove the A records that are not this host: Let's Encrypt and clients may pick them"
    elif [ -n "${pd_pub4# }" ]; then
      pf_fail "DNS: $pd_domain A -> $pd_theirs, but this host's public IPv4 is ${pd_pub4# }" \
        "point the A record of $pd_domain at ${pd_pub4# } (DNS changes can take the record's TTL to arrive)"
    else
      pd_private=
      for pd_ip in $pd_theirs; do pf_is_private "$pd_ip" && pd_private="$pd_private $pd_ip"; done
      if [ -n "$pd_private" ]; then
        pf_fail "DNS: $pd_domain A -> $pd_theirs: a private or loopback address Let's Encrypt cannot reach" \
          "point the A record at this host's public IPv4"
      else
        pf_warn "DNS: $pd_domain A -> $pd_theirs, not an address of this host's interfaces (normal behind NAT: Oracle Cloud, AWS, GCP)" \
          "compare with the public IP in your cloud console, then rerun: deploy/studio preflight --public-ip ADDR (or --lookup-public-ip)"
      fi
    fi
  fi

  # getent ahostsv6 answers IPv4-mapped addresses when there is no AAAA.
  pd_aaaa=$(getent ahostsv6 "$pd_domain" 2>/dev/null | awk '{print $1}' | grep -v '^::ffff:' | sort -u | tr '\n' ' ' || true)
  pd_aaaa=${pd_aaaa% }
  pd_known6=$(printf '%s %s' "$pd_host6" "$pd_pub6" | tr -s '\n ' '  ')
  pd_known6=${pd_known6# }
  pd_known6=${pd_known6% }
  pd_bind=$(env_value EDGE_BIND_ADDRESS)
  pd_bind=${pd_bind:-0.0.0.0}
  if [ -z "$pd_aaaa" ]; then
    pf_pass "DNS: $pd_domain has no AAAA record"
    return 0
  fi
  # Let's Encrypt validates over IPv6 when an AAAA record exists, and the
  # compose file publishes the edge on EDGE_BIND_ADDRESS only.
  case $pd_bind in
    *:*) ;;
    *)
      pf_fail "DNS: $pd_domain has AAAA $pd_aaaa, but the edge is published on IPv4 only (EDGE_BIND_ADDRESS=$pd_bind): Let's Encrypt and IPv6 clients would reach nothing" \
        "delete the AAAA record of $pd_domain (docs/deploy.md)"
      return 0
      ;;
  esac
  if [ -z "$pd_known6" ]; then
    pf_warn "DNS: $pd_domain AAAA -> $pd_aaaa, but this host has no public IPv6 address on its interfaces" \
      "delete the AAAA record, or confirm the address in your cloud console and rerun with --public-ip ADDR"
    return 0
  fi
  pd_bad=
  for pd_ip in $pd_aaaa; do pf_in "$pd_ip" "$pd_known6" || pd_bad="$pd_bad $pd_ip"; done
  if [ -n "$pd_bad" ]; then
    pf_fail "DNS: $pd_domain AAAA ->$pd_bad, not this host (this host's IPv6: $pd_known6)" \
      "point the AAAA record at this host's IPv6 address or delete it"
  else
    pf_pass "DNS: $pd_domain AAAA -> $pd_aaaa (this host)"
  fi
}

# ---- deploy/.env ---------------------------------------------------------

PF_ENV_OK=0
pf_check_env() {
  step "settings ($STUDIO_ENV_FILE)"
  pe_example=$STUDIO_DIR/.env.example
  if [ ! -f "$STUDIO_ENV_FILE" ]; then
    pf_fail "$STUDIO_ENV_FILE does not exist" \
      "cp $pe_example $STUDIO_ENV_FILE and set DOMAIN and ACME_EMAIL"
    return 0
  fi
  if [ ! -r "$STUDIO_ENV_FILE" ]; then
    pf_fail "$STUDIO_ENV_FILE is not readable by uid $(id -u)" "rerun with sudo, or chmod 644 $STUDIO_ENV_FILE (it holds no secrets)"
    return 0
  fi
  pe_bad=0
  # Every variable the example sets (not the commented-out optional ones)
  # is required.
  # shellcheck disable=SC2013 # variable names are words
  for pe_name in $(sed -n 's/^\([A-Z][A-Z0-9_]*\)=.*/\1/p' "$pe_example"); do
    pe_val=$(env_value "$pe_name")
    if [ -z "$pe_val" ]; then
      pf_fail "$pe_name is not set in $STUDIO_ENV_FILE" \
        "add it: $(grep "^$pe_name=" "$pe_example" | head -n 1) (edit the value; deploy/.env.example explains it)"
      pe_bad=1
      continue
    fi
    case $pe_val in
      *example.com* | *example.org* | *example.net* | *[Cc][Hh][Aa][Nn][Gg][Ee]*[Mm][Ee]* | *'<'*'>'*)
        pf_fail "$pe_name still holds the example value ($pe_val)" "set your own value for $pe_name in $STUDIO_ENV_FILE"
        pe_bad=1
        ;;
    esac
  done
  pe_email=$(env_value ACME_EMAIL)
  case $pe_email in
    '' | *@*.*) ;;
    *) pf_fail "ACME_EMAIL=$pe_email is not an e-mail address" "set ACME_EMAIL to an address that receives expiry notices"; pe_bad=1 ;;
  esac
  pe_domain=$(env_value DOMAIN)
  case $pe_domain in
    *://* | */* | *:*)
      pf_fail "DOMAIN=$pe_domain must be a bare host name" "DOMAIN=studio.your-domain.org (no scheme, port or path)"
      pe_bad=1
      ;;
  esac
  if [ "$pe_bad" = 0 ]; then
    pf_pass "every required variable of deploy/.env.example is set"
    PF_ENV_OK=1
  fi
}

# ---- secrets -------------------------------------------------------------

# pf_compose_secrets: "NAME FILE" for each top-level secret of the compose
# file, FILE being the file's name inside SECRETS_DIR.
pf_compose_secrets() {
  awk '
    /^secrets:/ { s = 1; next }
    s && /^[^ #]/ { s = 0 }
    s && /^  [A-Za-z0-9_-]+:/ { n = $1; sub(/:$/, "", n) }
    s && /^    file:/ { f = $2; sub(/.*\//, "", f); print n, f }
  ' "$STUDIO_COMPOSE_FILE"
}

PF_SECRETS_OK=0
PF_SECRETS_UNREADABLE=0
PF_KAGGLE_SECRETS=
pf_check_secrets() {
  step "secrets"
  ps_dir=$(env_value SECRETS_DIR)
  ps_dir=$(pf_path "${ps_dir:-./secrets}")
  ps_fix="deploy/scripts/gen-secrets.sh $ps_dir"
  if [ ! -d "$ps_dir" ]; then
    pf_fail "secrets directory $ps_dir does not exist" "$ps_fix"
    return 0
  fi
  if [ ! -x "$ps_dir" ]; then
    pf_warn "cannot look into $ps_dir as uid $(id -u)" "rerun with sudo to check the secrets"
    PF_SECRETS_UNREADABLE=1
    return 0
  fi
  ps_bad=0
  ps_mode=$(stat -c %a "$ps_dir")
  case $ps_mode in
    *0) ;;
    *)
      pf_fail "$ps_dir is mode $ps_mode: every user of this host can read the secrets" "chmod 700 $ps_dir"
      ps_bad=1
      ;;
  esac
  ps_list=$(pf_compose_secrets)
  [ -n "$ps_list" ] || pf_warn "no secrets found in $STUDIO_COMPOSE_FILE" "check the compose file's top-level secrets: section"
  ps_names=
  # Optional secrets are the ones gen-secrets.sh creates empty (the Kaggle
  # credentials: without them training is disabled). The rest must hold a
  # value.
  ps_optional=$(sed -n 's/^[[:space:]]*put \([A-Za-z0-9_]*\) ""[[:space:]]*$/\1/p' "$STUDIO_DIR/scripts/gen-secrets.sh" | tr '\n' ' ')
  # The here-document keeps the loop in this shell (counters survive).
  while read -r ps_name ps_file; do
    [ -n "$ps_name" ] || continue
    ps_path=$ps_dir/$ps_file
    case $ps_name in kaggle*) [ ! -s "$ps_path" ] || PF_KAGGLE_SECRETS="$PF_KAGGLE_SECRETS $ps_name" ;; esac
    if pf_in "$ps_file" "$ps_optional"; then
      if [ ! -e "$ps_path" ]; then
        pf_fail "secret $ps_file is missing (compose refuses to start without the file)" "$ps_fix (creates it empty)"
        ps_bad=1
      fi
      continue
    fi
    if [ ! -e "$ps_path" ]; then
      pf_fail "secret $ps_file is missing in $ps_dir" "$ps_fix"
      ps_bad=1
    elif [ ! -s "$ps_path" ]; then
      pf_fail "secret $ps_file is empty" "rm $ps_path && $ps_fix"
      ps_bad=1
    else
      case $(stat -c %a "$ps_path") in
        *[2367])
          pf_fail "secret $ps_file is writable by every user" "chmod 644 $ps_path"
          ps_bad=1
          ;;
        *) ps_names="$ps_names $ps_name" ;;
      esac
    fi
  done <<EOF
$ps_list
EOF
  if [ "$ps_bad" = 0 ]; then
    pf_pass "secrets present, non-empty, directory mode $ps_mode:$ps_names"
    PF_SECRETS_OK=1
  fi
}

# ---- internal certificates ------------------------------------------------

PF_CERTS_OK=0
pf_check_certs() {
  step "internal certificates"
  pc_dir=$(env_value CERTS_DIR)
  pc_dir=$(pf_path "${pc_dir:-./certs}")
  pc_fix="sudo deploy/scripts/gen-certs.sh $pc_dir"
  pc_restart="; then: deploy/studio deploy (or docker compose restart postgres minio app)"
  if [ ! -d "$pc_dir" ]; then
    pf_fail "certificates directory $pc_dir does not exist" "$pc_fix"
    return 0
  fi
  pc_bad=0
  for pc_file in ca.crt postgres/server.crt postgres/server.key minio/public.crt minio/private.key minio/CAs/ca.crt; do
    if [ ! -s "$pc_dir/$pc_file" ]; then
      pf_fail "certificate file $pc_file is missing or empty in $pc_dir" "$pc_fix"
      pc_bad=1
    fi
  done
  [ "$pc_bad" = 0 ] || return 0
  pc_warned=0
  for pc_file in ca.crt postgres/server.crt minio/public.crt; do
    pc_crt=$pc_dir/$pc_file
    pc_end=$(openssl x509 -in "$pc_crt" -noout -enddate 2>/dev/null | sed 's/^notAfter=//' || true)
    if [ -z "$pc_end" ]; then
      pf_fail "$pc_file is not a readable PEM certificate" "$pc_fix"
      pc_bad=1
      continue
    fi
    if [ "$pc_file" = ca.crt ]; then
      pc_refix="move $pc_dir/ca.crt and ca.key aside and rerun $pc_fix (it reissues every certificate)$pc_restart"
    else
      pc_refix="$pc_fix (reissues certificates that expire within 30 days)$pc_restart"
    fi
    if ! openssl x509 -in "$pc_crt" -noout -checkend $((PF_CERT_FAIL_DAYS * 86400)) >/dev/null 2>&1; then
      pf_fail "$pc_file expires $pc_end (less than $PF_CERT_FAIL_DAYS days left, or expired)" "$pc_refix"
      pc_bad=1
    elif ! openssl x509 -in "$pc_crt" -noout -checkend $((PF_CERT_WARN_DAYS * 86400)) >/dev/null 2>&1; then
      pf_warn "$pc_file expires $pc_end (less than $PF_CERT_WARN_DAYS days left)" "$pc_refix"
      pc_warned=1
    fi
    if [ "$pc_file" != ca.crt ] && ! openssl verify -CAfile "$pc_dir/ca.crt" "$pc_crt" >/dev/null 2>&1; then
      pf_fail "$pc_file is not signed by $pc_dir/ca.crt (the app would refuse it)" "$pc_fix (reissues it)$pc_restart"
      pc_bad=1
    fi
  done
  if ! cmp -s "$pc_dir/ca.crt" "$pc_dir/minio/CAs/ca.crt"; then
    pf_fail "minio/CAs/ca.crt differs from ca.crt" "$pc_fix (copies it)$pc_restart"
    pc_bad=1
  fi
  # Postgres refuses a key it does not own (or, owned by root, one its
  # group or others can read); the container runs as POSTGRES_UID (999, as
  # in gen-certs.sh), so the key must be its own, or root's with its group.
  pc_key=$pc_dir/postgres/server.key
  pc_uid=${POSTGRES_UID:-999}
  pc_own=$(stat -c '%u:%g %a' "$pc_key")
  case $pc_own in
    "$pc_uid:"*" 600" | "$pc_uid:"*" 400" | "0:$pc_uid 640" | "0:$pc_uid 440") ;;
    *)
      pf_fail "postgres/server.key has owner:group mode $pc_own: Postgres (uid $pc_uid) will refuse it" \
        "sudo chown $pc_uid:$pc_uid $pc_key && sudo chmod 600 $pc_key"
      pc_bad=1
      ;;
  esac
  if [ "$pc_bad" = 0 ]; then
    PF_CERTS_OK=1
    [ "$pc_warned" = 1 ] || pf_pass "internal certificates present, signed by ca.crt, valid for more than $PF_CERT_WARN_DAYS days"
  fi
}

# ---- clock ---------------------------------------------------------------

pf_check_clock() {
  step "clock"
  pt_sync=$(timedatectl show -p NTPSynchronized --value 2>/dev/null || true)
  case $pt_sync in
    yes) pf_pass "clock synchronised (NTP)" ;;
    no)
      pf_warn "clock not synchronised: TLS and Let's Encrypt need the right time" \
        "sudo timedatectl set-ntp true (then timedatectl status shows 'System clock synchronized: yes')"
      ;;
    *)
      pf_warn "cannot tell whether the clock is synchronised (no timedatectl/systemd)" \
        "check by hand: chronyc tracking, or ntpq -p, or compare date -u with a trusted clock"
      ;;
  esac
}

# ---- app config check and Kaggle (run in the app image) -------------------

pf_check_app() {
  step "app configuration (app config check in the app image)"
  if [ "$PF_ENGINE_OK" != 1 ]; then
    pf_warn "app config check skipped: no usable container engine (see above)" "fix the engine, then rerun preflight"
    pf_kaggle_unverified
    return 0
  fi
  if [ "$PF_ENV_OK" != 1 ] || [ "$PF_SECRETS_OK" != 1 ] || [ "$PF_CERTS_OK" != 1 ]; then
    # Without them compose cannot start the app's container (and a missing
    # ca.crt would be created as a directory by the bind mount).
    pf_warn "app config check skipped until the settings, secrets and certificates above pass" "fix those FAIL lines, then rerun preflight"
    pf_kaggle_unverified
    return 0
  fi
  pa_tmp=$(mktemp)
  if ! compose config --quiet >"$pa_tmp" 2>&1; then
    pf_fail "compose refuses the configuration: $(grep -v '^[[:space:]]*$' "$pa_tmp" | tail -n 1)" \
      "$COMPOSE -f $STUDIO_COMPOSE_FILE --env-file $STUDIO_ENV_FILE config (shows the whole error)"
    rm -f "$pa_tmp"
    return 0
  fi
  # `config --images app` would list app's dependencies' images too.
  pa_image=$(compose config app 2>/dev/null | awk '/^services:/ {s = 1; next} s && /^[^ ]/ {s = 0}
    s && /^  [^ ]/ {svc = $1} s && svc == "app:" && /^    image:/ {print $2; exit}' || true)
  if [ -z "$pa_image" ] || ! "$ENGINE" image inspect "$pa_image" >/dev/null 2>&1; then
    pf_warn "the app image ${pa_image:-(unknown)} is not on this host yet, so app config check cannot run" \
      "deploy/studio deploy builds it (or pulls it); rerun preflight afterwards to check the app's configuration"
    pf_kaggle_unverified
    rm -f "$pa_tmp"
    return 0
  fi
  printf '==> running app config check in %s ' "$pa_image" >&2
  pa_rc=0
  pf_run "$pa_tmp" compose run --rm --no-deps -T app config check || pa_rc=$?
  pa_kaggle_only=0
  if [ "$pa_rc" = 0 ]; then
    pf_pass "app config check: $(tail -n 1 "$pa_tmp")"
  elif [ "$pa_rc" = 2 ] && grep -q '^  [A-Z]' "$pa_tmp"; then
    # Missing Kaggle credentials are an advisory ("KAGGLE_...: missing:"),
    # reported as the Kaggle item; anything else is a problem.
    if ! grep '^  [A-Z]' "$pa_tmp" | grep -qv '^  KAGGLE_[A-Z_]*: missing:'; then
      pa_kaggle_only=1
      pf_pass "app config check: clean apart from Kaggle (below)"
    else
      grep '^  [A-Z]' "$pa_tmp" | grep -v '^  KAGGLE_[A-Z_]*: missing:' | while read -r pa_line; do
        fail_item "app config check: $pa_line"
      done
      PF_FAILS=$((PF_FAILS + 1))
      printf '         fix: %s\n' "set these in $STUDIO_ENV_FILE or the secrets (docs/configuration.md), then rerun preflight" >&2
    fi
  else
    pf_fail "app config check could not run (exit $pa_rc): $(grep -v '^[[:space:]]*$' "$pa_tmp" | tail -n 1)" \
      "run it by hand to see everything: $COMPOSE -f $STUDIO_COMPOSE_FILE --env-file $STUDIO_ENV_FILE run --rm --no-deps app config check"
  fi

  step "Kaggle credentials (app kaggle check: one authenticated call to Kaggle)"
  if [ "$pa_kaggle_only" = 1 ]; then
    pf_warn "no Kaggle credentials: training disabled (training requests answer 503)" \
      "set KAGGLE_USERNAME in $STUDIO_ENV_FILE and paste your Kaggle API token into the kaggle_api_token secret (docs/kaggle.md), then rerun preflight"
    rm -f "$pa_tmp"
    return 0
  fi
  if [ "$pa_rc" != 0 ]; then
    pf_warn "Kaggle check skipped: app config check did not pass" "fix it, then rerun preflight"
    rm -f "$pa_tmp"
    return 0
  fi
  printf '==> asking Kaggle ' >&2
  pk_rc=0
  pf_run "$pa_tmp" compose run --rm --no-deps -T app kaggle check || pk_rc=$?
  case $pk_rc in
    0) pf_pass "Kaggle accepted the credentials: $(grep -m 1 'Kaggle credentials OK' "$pa_tmp" | sed 's/^Kaggle credentials OK: //')" ;;
    2)
      pf_warn "no Kaggle credentials: training disabled (training requests answer 503)" \
        "set KAGGLE_USERNAME in $STUDIO_ENV_FILE and paste your Kaggle API token into the kaggle_api_token secret (docs/kaggle.md), then rerun preflight"
      ;;
    *)
      pf_fail "Kaggle refused the credentials or could not be reached: $(grep -v '^[[:space:]]*$' "$pa_tmp" | tail -n 1)" \
        "create a new API token at https://www.kaggle.com/settings (API section) and replace the secret; the host needs outbound HTTPS to www.kaggle.com"
      ;;
  esac
  rm -f "$pa_tmp"
}

# pf_kaggle_unverified: the Kaggle item when the app image cannot run.
pf_kaggle_unverified() {
  step "Kaggle credentials"
  if [ -z "$PF_KAGGLE_SECRETS" ] && [ "$PF_SECRETS_UNREADABLE" = 0 ]; then
    pf_warn "no Kaggle credentials: training disabled (training requests answer 503)" \
      "set KAGGLE_USERNAME in $STUDIO_ENV_FILE and paste your Kaggle API token into the kaggle_api_token secret (docs/kaggle.md), then rerun preflight"
  else
    pf_warn "Kaggle credentials not verified: the app image cannot run yet" \
      "rerun preflight once the items above pass (it then asks Kaggle)"
  fi
}

# ---- host firewall -------------------------------------------------------

# pf_fw_gaps: "PROTO PORT BLOCKPOS" for each of 80/tcp, 443/tcp, 443/udp
# that iptables' INPUT chain rejects (a catch-all REJECT/DROP, or a DROP
# policy, before any rule that accepts it). BLOCKPOS is the rule number to
# insert before (0: append, the chain's policy drops).
pf_fw_gaps() {
  printf '%s\n' "$1" | awk -v hp="$PF_HTTP_PORT" -v sp="$PF_HTTPS_PORT" '
    # Extra parameters are the only local variables awk has.
    function accepts(line, proto, port,    spec, parts, cnt, k, r) {
      if (line !~ / -j ACCEPT/) return 0
      if (line ~ / -i / || line ~ / -s / || line ~ /--state (RELATED,ESTABLISHED|ESTABLISHED,RELATED|ESTABLISHED)( |$)/) return 0
      if (line ~ / -p / && line !~ (" -p " proto " ")) return 0
      if (line ~ /--dports? /) {
        if (match(line, /--dports? [0-9,:]+/) == 0) return 0
        spec = substr(line, RSTART, RLENGTH); sub(/--dports? /, "", spec)
        cnt = split(spec, parts, ",")
        for (k = 1; k <= cnt; k++) {
          if (parts[k] ~ /:/) { split(parts[k], r, ":"); if (port + 0 >= r[1] + 0 && port + 0 <= r[2] + 0) return 1 }
          else if (parts[k] + 0 == port + 0) return 1
        }
        return 0
      }
      return line !~ / -p /
    }
    function catchall(line) {
      return (line ~ / -j (REJECT|DROP)/ && line !~ / -p / && line !~ / -i / && line !~ / -s / && line !~ /--dport/)
    }
    /^-P INPUT/ { policy = $3; next }
    /^-A INPUT/ {
      n++
      for (i = 1; i <= 3; i++) if (!done[i] && accepts($0, proto[i], port[i])) done[i] = n
      if (!block && catchall($0)) block = n
      next
    }
    BEGIN { proto[1] = "tcp"; port[1] = hp; proto[2] = "tcp"; port[2] = sp; proto[3] = "udp"; port[3] = sp }
    END {
      for (i = 1; i <= 3; i++) {
        if (block && (!done[i] || done[i] > block)) print proto[i], port[i], block
        else if (!block && !done[i] && policy != "ACCEPT") print proto[i], port[i], 0
      }
    }'
}

pf_check_firewall() {
  step "host firewall"
  pw_cloud="the cloud's firewall must admit them too (Oracle: the VCN security list's ingress rules; AWS: the security group)"
  if ! command -v iptables >/dev/null 2>&1; then
    pf_pass "no iptables on this host; $pw_cloud"
    return 0
  fi
  if ! pw_rules=$(iptables -S INPUT 2>/dev/null); then
    pf_warn "cannot read the iptables INPUT chain$(pf_root_hint)" \
      "sudo iptables -S INPUT: nothing may reject $PF_HTTP_PORT/tcp, $PF_HTTPS_PORT/tcp and $PF_HTTPS_PORT/udp before accepting them"
    return 0
  fi
  pw_gaps=$(pf_fw_gaps "$pw_rules")
  if [ -z "$pw_gaps" ]; then
    pf_pass "iptables INPUT admits $PF_HTTP_PORT/tcp, $PF_HTTPS_PORT/tcp, $PF_HTTPS_PORT/udp; $pw_cloud"
    return 0
  fi
  pw_fix=
  pw_ports=
  while read -r pw_proto pw_port pw_pos; do
    [ -n "$pw_proto" ] || continue
    pw_ports="$pw_ports $pw_port/$pw_proto"
    if [ "$pw_pos" = 0 ]; then
      pw_fix="${pw_fix}sudo iptables -A INPUT -p $pw_proto -m state --state NEW --dport $pw_port -j ACCEPT && "
    else
      pw_fix="${pw_fix}sudo iptables -I INPUT $pw_pos -p $pw_proto -m state --state NEW --dport $pw_port -j ACCEPT && "
    fi
  done <<EOF
$pw_gaps
EOF
  pf_warn "iptables INPUT rejects$pw_ports before accepting them (Oracle Cloud images ship such a rule); Docker's published ports usually pass through its own FORWARD rules, but rootless podman and host-network setups do not; $pw_cloud" \
    "${pw_fix}sudo netfilter-persistent save"
}

# ---- the verb ------------------------------------------------------------

studio_preflight() {
  PF_PUBLIC_IPS=
  PF_LOOKUP=0
  while [ $# -gt 0 ]; do
    case $1 in
      --public-ip)
        [ $# -ge 2 ] || usage_error "preflight: --public-ip needs an address"
        case $2 in *[!0-9a-fA-F.:]*) usage_error "preflight: --public-ip $2 is not an IP address" ;; esac
        PF_PUBLIC_IPS="$PF_PUBLIC_IPS $2"
        shift 2
        ;;
      --public-ip=*)
        PF_PUBLIC_IPS="$PF_PUBLIC_IPS ${1#--public-ip=}"
        shift
        ;;
      --lookup-public-ip)
        PF_LOOKUP=1
        shift
        ;;
      *) usage_error "preflight: unknown argument '$1'" ;;
    esac
  done
  pf_missing=
  for pf_tool in awk sed df stat ss ip getent openssl; do
    command -v "$pf_tool" >/dev/null 2>&1 || pf_missing="$pf_missing $pf_tool"
  done
  [ "$PF_LOOKUP" = 0 ] || command -v curl >/dev/null 2>&1 || pf_missing="$pf_missing curl"
  [ -z "$pf_missing" ] ||
    die "preflight needs:$pf_missing (sudo apt-get install -y iproute2 openssl curl libc-bin coreutils gawk, or deploy/scripts/install-tools.sh base)" "$EX_PREREQ"

  say "preflight: checking this host against docs/checklist.md"
  pf_check_engine
  pf_check_memory
  pf_check_disk
  pf_check_env
  pf_check_ports
  pf_check_dns
  pf_check_secrets
  pf_check_certs
  pf_check_clock
  pf_check_app
  pf_check_firewall
  say ""
  say "preflight: $PF_PASSES passed, $PF_WARNS warnings, $PF_FAILS failed"
  if [ "$PF_FAILS" -gt 0 ]; then
    say "fix the [FAIL] items above and rerun deploy/studio preflight"
    return "$EX_FAIL"
  fi
  say "ready: deploy/studio deploy"
}
