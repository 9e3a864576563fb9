#!/usr/bin/env bash
# Builds the placeholder web UI the edge serves: content-hashed asset names,
# index.html pointing at them, and precompressed .zst/.br/.gz siblings that the
# edge's file_server sends as-is (no compression work per request).
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
mkdir -p "$out/assets"
index="$(cat "$src/index.html")"
for f in "$src"/*.js "$src"/*.css; do
	[[ -e "$f" ]] || continue
	name="$(basename "$f")"
	hash="$(sha256sum "$f" | cut -c1-8)"
	hashed="${name%.*}.${hash}.${name##*.}"
	cp "$f" "$out/assets/$hashed"
	index="${index//\{\{$name\}\}/$hashed}"
done
printf '%s\n' "$index" >"$out/index.html"

# -n: no name/timestamp in the gzip header, so rebuilding is reproducible.
find "$out" -type f \( -name '*.html' -o -name '*.js' -o -name '*.css' \) -print0 |
	while IFS= read -r -d '' f; do
		gzip -9 -n -k -f "$f"
		zstd -19 -q -f "$f" -o "$f.zst"
		brotli -q 11 -f -o "$f.br" "$f"
	done
echo "built $out"
