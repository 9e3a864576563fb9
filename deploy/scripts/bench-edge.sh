#!/usr/bin/env bash
# Edge benchmark: the same ~1 KB JSON API route, side by side in one run,
#   direct   straight to the stub app
#   edge     our edge, production Caddyfile (TLS, CORS, rate limit below its
#            trigger, security headers, gzip, JSON access log), tuned as the
#            image ships it (GOGC=400, xcaddy.Dockerfile)
#   edge-untuned  the same with Go's default GC settings
#   caddysame  stock Caddy v2.11.9 (+ caddy-ratelimit) running the production
#            Caddyfile with our three modules taken out (CORS by hand with
#            header rules): the cost of our modules
#   caddy    stock Caddy with a typical hand-written config for the same job
#            (gzip, rate limit, JSON log, headers, CORS by hand, proxy with
#            flush_interval -1 for SSE), Go defaults: "untuned stock Caddy"
#   caddybare  stock Caddy with a bare reverse_proxy and nothing else: not
#            the same job; the floor of Caddy's proxying on this machine
#   nginx    Debian's nginx doing the same job
# over plain HTTP/1.1 and HTTPS (HTTP/1.1 over TLS). Closed loop: wrk, max
# throughput. Open loop: vegeta at a fixed rate, p50/p95/p99 latency.
# Every figure is the median of REPEATS runs. All load stays on loopback.
#
# Usage: deploy/scripts/bench-edge.sh [-d seconds] [-n repeats] [-r rate] [-c connections] [-p]
#   -p  also take a 10 s CPU profile of the edge under wrk load (top 25 printed)
set -euo pipefail

usage() { echo "usage: $0 [-d seconds] [-n repeats] [-r rate] [-c connections] [-p]" >&2; }
DUR=5 REPEATS=3 RATE=1000 CONNS=32 PROFILE=0
while getopts "d:n:r:c:ph" opt; do
	case $opt in
	d) DUR=$OPTARG ;;
	n) REPEATS=$OPTARG ;;
	r) RATE=$OPTARG ;;
	c) CONNS=$OPTARG ;;
	p) PROFILE=1 ;;
	h) usage; exit 0 ;;
	*) usage; exit 2 ;;
	esac
done

cd "$(dirname "$0")/../.."
root=$(pwd)
tools="${TOOLS_DIR:-$HOME/.cache/finetune-studio/tools}/bin"
export PATH="$tools:$PATH"
for t in wrk vegeta nginx openssl go python3; do
	command -v "$t" >/dev/null || { echo "bench-edge: $t not found; run make tools-bench" >&2; exit 1; }
done

work=$(mktemp -d /tmp/bench-edge.XXXXXX)
chmod 755 "$work"
pids=()
declare -A urls # "<target>_<proto>" -> base URL; "<target>_admin" -> admin address
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { # url
	for _ in $(seq 1 300); do
		if curl -ks -o /dev/null "$1"; then return 0; fi
		sleep 0.1
	done
	echo "bench-edge: $1 did not come up" >&2
	return 1
}

echo "building edge, stock caddy and the stub app..." >&2
go build -o "$work/edge" ./edge
go build -o "$work/stockcaddy" ./edge/internal/stockcaddy
go build -o "$work/benchstub" ./edge/internal/benchstub

stub_port=$(free_port)
"$work/benchstub" -addr "127.0.0.1:$stub_port" 2>"$work/stub.log" &
pids+=($!)
wait_http "http://127.0.0.1:$stub_port/readyz"

# --- our edge: the production Caddyfile, one site block answering on HTTPS
# and, for the plain-HTTP rows, on an extra http:// address (the only change).
# The shared snippets are inlined, so the result runs from $work (imports
# resolve beside the importing file) and the filters below see them.
edge_caddyfile() { # http_port
	awk '/^import Caddyfile\.snippets$/ { while ((getline l < "Caddyfile.snippets") > 0) print l; next } { print }' Caddyfile |
		sed "s|^{\$DOMAIN} {|{\$DOMAIN}, http://{\$DOMAIN}:$1 {|"
}
printf 'local_certs\nskip_install_trust\n' >"$work/globals.caddy"
# The production Caddyfile without our modules, for stock Caddy.
without_our_modules() {
	python3 - "$1" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
s = s.replace("\tcert_metrics\n", "")
s, n = re.subn(r"output buffered \{.*?output stdout\n\t\t\}", "output stdout", s, flags=re.S)
assert n == 1, "buffered log output not found"
s, n = re.subn(r"edge_health(?: \{[^}]*\})?\n", "respond `{\"status\":\"pass\"}` 200\n", s)
assert n == 3, "edge_health handlers not found"
cors_by_hand = """@cors_allowed header Origin https://{$DOMAIN}
		header @cors_allowed Access-Control-Allow-Origin {http.request.header.Origin}
		header @cors_allowed Access-Control-Expose-Headers "X-Request-ID, Retry-After, Location"
		header Vary Origin
		@preflight {
			method OPTIONS
			header Access-Control-Request-Method *
		}
		respond @preflight 204"""
s, n = re.subn(r"finetune_cors https://\{\$DOMAIN\} \{\$CORS_ORIGINS\} \{.*?\n\t\t\}", cors_by_hand, s, flags=re.S)
assert n == 1, "cors block not found"
# Caddy's own query filter, doing a comparable job on the URI.
s, n = re.subn(r"finetune_query \{.*?\n\t\t\t\t\}", "query {\n\t\t\t\t\tdelete token\n\t\t\t\t}", s, flags=re.S)
assert n == 1, "finetune_query filter not found"
print(s, end="")
PY
}

start_edge() { # name gogc [binary] [caddyfile-filter]
	local name=$1 gogc=$2 bin=${3:-$work/edge} filter=${4:-cat} hp tp ap
	hp=$(free_port) tp=$(free_port) ap=$(free_port)
	edge_caddyfile "$hp" >"$work/$name.Caddyfile.in"
	"$filter" "$work/$name.Caddyfile.in" >"$work/$name.Caddyfile"
	env -i PATH="$PATH" HOME="$work/$name-home" GOGC="$gogc" \
		DOMAIN=localhost ACME_EMAIL=bench@example.test \
		EDGE_ADMIN_ADDR="127.0.0.1:$ap" EDGE_STORAGE_DIR="$work/$name-data" \
		EDGE_HTTP_LISTEN_PORT="$(free_port)" EDGE_HTTPS_LISTEN_PORT="$tp" \
		EDGE_METRICS_PORT="$(free_port)" EDGE_EXTRA_GLOBALS="$work/globals.caddy" \
		EDGE_UI_DIR="$root/edge/ui" APP_UPSTREAMS="127.0.0.1:$stub_port" \
		RATE_LIMIT_API_EVENTS=100000 RATE_LIMIT_API_WINDOW=1s \
		"$bin" run --config "$work/$name.Caddyfile" --adapter caddyfile >"$work/$name.log" 2>&1 &
	pids+=($!)
	urls[${name}_http]="http://localhost:$hp"
	urls[${name}_https]="https://localhost:$tp"
	urls[${name}_admin]="127.0.0.1:$ap"
	wait_http "http://localhost:$hp/api/v1/datasets"
	wait_http "https://localhost:$tp/api/v1/datasets"
}
# Tuned: GOGC=400 trades a little heap (a few MB here) for far fewer GC
# cycles; the image ships it (see docs/benchmarks.md).
start_edge edge 400
start_edge edgeuntuned 100
start_edge caddysame 100 "$work/stockcaddy" without_our_modules

# start_stock target name http_port tls_port: stock Caddy on $work/<name>.Caddyfile.
start_stock() {
	env -i PATH="$PATH" HOME="$work/$2-home" \
		"$work/stockcaddy" run --config "$work/$2.Caddyfile" --adapter caddyfile >"$work/$2.log" 2>&1 &
	pids+=($!)
	urls[${1}_http]="http://localhost:$3"
	urls[${1}_https]="https://localhost:$4"
	wait_http "${urls[${1}_http]}/api/v1/datasets"
	wait_http "${urls[${1}_https]}/api/v1/datasets"
}

# --- stock Caddy, configured by hand for the same job, untuned.
caddy_http_port=$(free_port) caddy_tls_port=$(free_port)
cat >"$work/stock.Caddyfile" <<CADDY
{
	admin 127.0.0.1:$(free_port)
	local_certs
	skip_install_trust
	storage file_system $work/stock-data
	http_port $(free_port)
	https_port $caddy_tls_port
}
localhost, http://localhost:$caddy_http_port {
	log {
		output stdout
		format json
	}
	header {
		Strict-Transport-Security "max-age=63072000; includeSubDomains"
		X-Content-Type-Options "nosniff"
		Referrer-Policy "strict-origin-when-cross-origin"
		Content-Security-Policy "default-src 'self'; frame-ancestors 'none'"
		X-Frame-Options "DENY"
		Vary Origin
		-Server
	}
	@cors header Origin https://localhost
	header @cors Access-Control-Allow-Origin https://localhost
	@preflight {
		method OPTIONS
		header Access-Control-Request-Method *
	}
	respond @preflight 204
	encode gzip zstd
	request_body {
		max_size 1MB
	}
	rate_limit {
		zone api {
			key {remote_host}
			events 100000
			window 1s
		}
	}
	reverse_proxy 127.0.0.1:$stub_port {
		flush_interval -1
		header_up X-Request-ID {http.request.uuid}
	}
}
CADDY
start_stock caddy stock "$caddy_http_port" "$caddy_tls_port"

# --- stock Caddy doing nothing but proxying (no log, compression, headers,
# rate limit or CORS): not the same job, a reference row that shows what
# Caddy's reverse_proxy costs by itself, apart from the chain around it.
bare_http_port=$(free_port) bare_tls_port=$(free_port)
cat >"$work/bare.Caddyfile" <<CADDY
{
	admin off
	local_certs
	skip_install_trust
	storage file_system $work/bare-data
	http_port $(free_port)
	https_port $bare_tls_port
}
localhost, http://localhost:$bare_http_port {
	reverse_proxy 127.0.0.1:$stub_port
}
CADDY
start_stock caddybare bare "$bare_http_port" "$bare_tls_port"

# --- nginx, the same job.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=localhost -addext subjectAltName=DNS:localhost \
	-keyout "$work/nginx.key" -out "$work/nginx.crt" 2>/dev/null
nginx_http_port=$(free_port) nginx_tls_port=$(free_port)
cat >"$work/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
	client_body_temp_path $work/nginx-body;
	proxy_temp_path $work/nginx-proxy;
	fastcgi_temp_path $work/nginx-fastcgi;
	uwsgi_temp_path $work/nginx-uwsgi;
	scgi_temp_path $work/nginx-scgi;
	log_format json escape=json '{"ts":"\$time_iso8601","remote":"\$remote_addr","method":"\$request_method","uri":"\$uri","status":\$status,"bytes":\$body_bytes_sent,"duration":\$request_time,"request_id":"\$request_id"}';
	access_log $work/nginx-access.log json;
	server_tokens off;
	gzip on;
	gzip_comp_level 5;
	gzip_min_length 1024;
	gzip_types application/json text/css application/javascript;
	limit_req_zone \$binary_remote_addr zone=api:10m rate=100000r/s;
	map \$http_origin \$cors_origin { default ""; "https://localhost" \$http_origin; }
	upstream app { server 127.0.0.1:$stub_port; keepalive 64; }
	server {
		listen 127.0.0.1:$nginx_http_port;
		listen 127.0.0.1:$nginx_tls_port ssl;
		server_name localhost;
		ssl_certificate $work/nginx.crt;
		ssl_certificate_key $work/nginx.key;
		client_max_body_size 1m;
		add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;
		add_header X-Content-Type-Options nosniff always;
		add_header Referrer-Policy strict-origin-when-cross-origin always;
		add_header Content-Security-Policy "default-src 'self'; frame-ancestors 'none'" always;
		add_header X-Frame-Options DENY always;
		add_header Access-Control-Allow-Origin \$cors_origin always;
		add_header Vary Origin always;
		location /api/ {
			if (\$request_method = OPTIONS) { return 204; }
			limit_req zone=api burst=100000 nodelay;
			proxy_pass http://app;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header X-Request-ID \$request_id;
			proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
		}
	}
}
NGINX
nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off;' 2>"$work/nginx-start.log" &
pids+=($!)
urls[nginx_http]="http://localhost:$nginx_http_port"
urls[nginx_https]="https://localhost:$nginx_tls_port"
wait_http "${urls[nginx_http]}/api/v1/datasets"
wait_http "${urls[nginx_https]}/api/v1/datasets"

urls[direct_http]="http://127.0.0.1:$stub_port"

# Sanity: every target answers the same body, gzip'd where it applies, and
# the CORS header is there.
for t in edge edgeuntuned caddysame caddy nginx; do
	for proto in http https; do
		hdrs=$(curl -ks -D - -o /dev/null -H 'Accept-Encoding: gzip' -H 'Origin: https://localhost' "${urls[${t}_${proto}]}/api/v1/datasets")
		grep -qi '^content-encoding: gzip' <<<"$hdrs" || { echo "bench-edge: $t/$proto not gzip'd" >&2; exit 1; }
		grep -qi '^access-control-allow-origin: https://localhost' <<<"$hdrs" || { echo "bench-edge: $t/$proto lacks CORS" >&2; exit 1; }
	done
done

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

run_wrk() { # url -> req/s
	wrk -t2 -c"$CONNS" -d"${DUR}s" -H 'Accept-Encoding: gzip' -H 'Origin: https://localhost' "$1/api/v1/datasets" |
		awk '/^Requests\/sec:/ {print $2}'
}
run_vegeta() { # url -> "p50 p95 p99 success" (ms)
	echo "GET $1/api/v1/datasets" |
		vegeta attack -insecure -rate="$RATE" -duration="${DUR}s" -keepalive=true \
			-header 'Accept-Encoding: gzip' -header 'Origin: https://localhost' |
		vegeta report -type=json |
		python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["latencies"]; print("%.2f %.2f %.2f %.4f" % (l["50th"]/1e6, l["95th"]/1e6, l["99th"]/1e6, r["success"]))'
}

if [ "$PROFILE" = 1 ]; then
	echo "profiling the edge (HTTPS) for 10 s under wrk..." >&2
	wrk -t2 -c"$CONNS" -d14s -H 'Accept-Encoding: gzip' -H 'Origin: https://localhost' "${urls[edge_https]}/api/v1/datasets" >/dev/null &
	wrkpid=$!
	sleep 2
	curl -s -o "$work/edge.pprof" "http://${urls[edge_admin]}/debug/pprof/profile?seconds=10"
	wait "$wrkpid"
	go tool pprof -top -nodecount=25 "$work/edge" "$work/edge.pprof" 2>/dev/null | sed -n '1,32p'
fi

printf '\nEdge benchmark: %s s per run, median of %s runs, wrk -t2 -c%s, vegeta %s req/s; %s\n\n' \
	"$DUR" "$REPEATS" "$CONNS" "$RATE" "$(date -u +%Y-%m-%dT%H:%MZ)"
# Round-robin: each repeat visits every target in turn, so a burst of
# background load hits all of them alike instead of one row; each round
# starts one target later, so no target always runs first (or right after
# the same neighbour).
targets=()
for t in direct edge edgeuntuned caddysame caddy caddybare nginx; do
	for proto in http https; do
		if [ -n "${urls[${t}_${proto}]:-}" ]; then # the stub app speaks plain HTTP only
			targets+=("${t}_${proto}")
		fi
	done
done
declare -A rps p50 p95 p99 ok
for i in $(seq 1 "$REPEATS"); do
	echo "round $i/$REPEATS..." >&2
	for j in "${!targets[@]}"; do
		k=${targets[$(((i + j) % ${#targets[@]}))]}
		rps[$k]+="$(run_wrk "${urls[$k]}") "
		read -r a b c d <<<"$(run_vegeta "${urls[$k]}")"
		p50[$k]+="$a " p95[$k]+="$b " p99[$k]+="$c " ok[$k]+="$d "
	done
done

med() { tr ' ' '\n' <<<"$1" | grep . | median; }
printf '| target | proto | max req/s (wrk) | p50 ms @%s/s | p95 ms | p99 ms | success |\n' "$RATE"
printf '|---|---|---:|---:|---:|---:|---:|\n'
declare -A mrps mp99
for k in "${targets[@]}"; do
	mrps[$k]=$(med "${rps[$k]}") mp99[$k]=$(med "${p99[$k]}")
	printf '| %s | %s | %.0f | %s | %s | %s | %s |\n' "${k%_*}" "${k##*_}" \
		"${mrps[$k]}" "$(med "${p50[$k]}")" "$(med "${p95[$k]}")" "${mp99[$k]}" "$(med "${ok[$k]}")"
done
# The ratios that matter, from the medians above: the edge against stock
# Caddy doing the same job (the production Caddyfile minus our modules) and
# against the untuned hand config, and against a bare Caddy reverse_proxy,
# the floor of Caddy's proxying on this machine. nginx stays in the table
# for context only: its targets are withdrawn (docs/benchmarks.md).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
echo
for proto in http https; do
	printf '%s: edge/caddysame throughput %s, p99 %s; edge/caddy throughput %s; edge/caddybare throughput %s, p99 %s\n' "$proto" \
		"$(ratio "${mrps[edge_$proto]}" "${mrps[caddysame_$proto]}")" \
		"$(ratio "${mp99[edge_$proto]}" "${mp99[caddysame_$proto]}")" \
		"$(ratio "${mrps[edge_$proto]}" "${mrps[caddy_$proto]}")" \
		"$(ratio "${mrps[edge_$proto]}" "${mrps[caddybare_$proto]}")" \
		"$(ratio "${mp99[edge_$proto]}" "${mp99[caddybare_$proto]}")"
done
