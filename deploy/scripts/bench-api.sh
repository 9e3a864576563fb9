#!/usr/bin/env bash
# Latency of the API's list endpoints with 10 000 jobs in the database:
# p50/p95/p99 of GET /api/v1/jobs and /api/v1/datasets (several query
# shapes), one request at a time over loopback, against a throwaway
# Postgres and MinIO started by the test harness. docs/benchmarks.md
# ("API list endpoints") quotes its output.
#
# Usage: deploy/scripts/bench-api.sh [requests-per-endpoint]   (default 2000)
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  echo "usage: $0 [requests-per-endpoint]" >&2
  exit 0
fi
n=${1:-2000}
case $n in
  ''|*[!0-9]*) echo "usage: $0 [requests-per-endpoint]" >&2; exit 2 ;;
esac

go test -run '^$' -bench '^BenchmarkListEndpoints$' -benchtime "${n}x" -count 1 ./app/internal/api
