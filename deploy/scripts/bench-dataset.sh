#!/usr/bin/env bash
# Measures dataset validation: throughput (MB/s) and peak memory on generated
# chat datasets of 64 MiB and 256 MiB. Each size runs in its own process so
# that the peak RSS (maxrss-MB) belongs to that size alone.
#
# Usage: deploy/scripts/bench-dataset.sh [count]   (runs per size, default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."

count=${1:-3}
case $count in
  ''|*[!0-9]*) echo "usage: $0 [count]" >&2; exit 2 ;;
esac

bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
go test -c -o "$bin" ./app/internal/dataset/

for size in jsonl_chat_64MiB jsonl_chat_256MiB array_chat_64MiB; do
  for _ in $(seq "$count"); do
    "$bin" -test.run '^$' -test.bench "^BenchmarkValidate/${size}\$" -test.benchtime 1x -test.benchmem | grep '^Benchmark'
  done
done
