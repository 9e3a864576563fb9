#!/usr/bin/env bash
# Builds the web UI the edge serves: the TypeScript and CSS in SRC_DIR bundled
# and minified by esbuild (its Go API, edge/internal/uibuild: no Node.js
# needed) under content-hashed names, index.html pointing at them, and
# precompressed .zst/.br/.gz siblings that the edge's file_server sends as-is
# (no compression work per request). The output is reproducible: `make lint`
# rebuilds it and compares with the committed edge/ui.
set -euo pipefail

usage() { echo "usage: $0 [SRC_DIR] [OUT_DIR]   (defaults: edge/ui-src edge/ui)" >&2; }
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi

src="${1:-edge/ui-src}"
out="${2:-edge/ui}"
[[ -f "$src/index.html" ]] || { usage; echo "no $src/index.html" >&2; exit 2; }
for tool in zstd brotli; do
	command -v "$tool" >/dev/null || { echo "$tool is required (apt-get install $tool)" >&2; exit 1; }
done

rm -rf "$out"
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="$(cd "$src" && pwd)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
(cd "$root" && go run ./edge/internal/uibuild "$src" "$out")

# -n: no name/timestamp in the gzip header, so rebuilding is reproducible.
find "$out" -type f \( -name '*.html' -o -name '*.js' -o -name '*.css' \) -print0 |
	while IFS= read -r -d '' f; do
		gzip -9 -n -k -f "$f"
		zstd -19 -q -f "$f" -o "$f.zst"
		brotli -q 11 -f -o "$f.br" "$f"
	done
echo "built $out"
