#!/usr/bin/env bash
# Runs every benchmark of the project, one area after another, and prints
# the results. The numbers quoted in docs/benchmarks.md come from this.
#
# Usage: deploy/scripts/bench.sh [area...]   (areas: go app dataset api edge; default all)
# Load stays on loopback; each area bounds its own duration.
set -euo pipefail
cd "$(dirname "$0")/../.."

areas=("$@")
[ ${#areas[@]} -gt 0 ] || areas=(go app dataset api edge)

for area in "${areas[@]}"; do
  case $area in
    go)
      echo "== Go benchmarks"
      go test -run '^$' -bench . -benchmem -count 3 ./app/... ./caddy-modules/...
      ;;
    app|dataset|api|edge)
      script="deploy/scripts/bench-$area.sh"
      if [ -x "$script" ]; then
        echo "== $area"
        "$script"
      else
        echo "== $area: no $script, skipped" >&2
      fi
      ;;
    *)
      echo "usage: $0 [go|app|dataset|api|edge]..." >&2
      exit 2
      ;;
  esac
done
