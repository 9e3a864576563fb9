#!/usr/bin/env bash
# App startup benchmark: time from exec to the first passing /readyz, against
# real Postgres and MinIO started by the Go test harness. Prints the median of
# COUNT runs for a restart (database already migrated) and a first start
# (empty database: all migrations applied), side by side.
#
# usage: deploy/scripts/bench-app.sh [COUNT]   (default 15)
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  echo "usage: $0 [COUNT]" >&2
  exit 0
fi
COUNT="${1:-15}"
[[ "$COUNT" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [COUNT]  (COUNT must be a positive integer)" >&2; exit 2; }

cd "$(dirname "$0")/../.."
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

go test -run '^$' -bench 'BenchmarkStartup' -benchtime=1x -count="$COUNT" ./app | tee "$out" >&2

median_ms() {
  grep "^$1" "$out" | awk '{print $3}' | sort -n |
    awk '{v[NR]=$1} END {if (NR == 0) exit 1; m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; printf "%.1f", m / 1e6}'
}
restart="$(median_ms BenchmarkStartupToReady)"
fresh="$(median_ms BenchmarkStartupFreshDatabase)"
printf '\n%-42s %s\n' "startup to ready (median of $COUNT)" "ms"
printf '%-42s %s\n' "restart, database already migrated" "$restart"
printf '%-42s %s\n' "first start, empty database (migrations)" "$fresh"
