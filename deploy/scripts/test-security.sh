#!/usr/bin/env bash
# The security suite (`make test-security`, run by .ci/run after
# test-containers). docs/security.md says what each step checks and why.
#
# Usage: deploy/scripts/test-security.sh [step]...
#   gosec     static analysis: no HIGH finding without a justified #nosec
#   vulns     govulncheck against the offline vulnerability database
#   secrets   gitleaks over the git history and over both images' filesystems
#   edge      TLS scan (testssl.sh) and HTTP/2 conformance (h2spec) of the
#             running edge, and the live checks through the edge (every route
#             needs a token, security headers, no internal endpoint exposed,
#             no secret in any log line)
#   fuzz      every Fuzz* target for FUZZTIME (default 20s) each
# With no step, all of them run, in that order. The tools are installed by
# deploy/scripts/install-tools.sh security.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
TOOLS_DIR=${TOOLS_DIR:-$HOME/.cache/finetune-studio/tools}
export PATH="$TOOLS_DIR/bin:$PATH"
FUZZTIME=${FUZZTIME:-20s}
APP_IMAGE=${APP_IMAGE:-localhost/finetune-studio/app:test}
EDGE_IMAGE=${EDGE_IMAGE:-localhost/finetune-studio/edge:test}

t0=$(date +%s)
log() { printf '[test-security %4ss] %s\n' "$(($(date +%s) - t0))" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
pass() { log "ok: $*"; }
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

work=$(mktemp -d /tmp/test-security.XXXXXX)
containers=()
cleanup() {
  local rc=$?
  set +e
  for c in "${containers[@]}"; do "$ENGINE" rm -f "$c" >/dev/null 2>&1; done
  rm -rf "$work"
  if [ $rc -eq 0 ]; then log "PASS"; else log "FAILED (exit $rc)"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- gosec -----------------------------------------------------------------
# Every severity is reported; a HIGH one fails the step unless it carries a
# `#nosec Gxxx -- reason` with a reason. Confidence does not filter: a
# low-confidence HIGH finding is either fixed or justified in place.
step_gosec() {
  log "gosec ./... (all severities reported; HIGH fails unless justified)"
  local out="$work/gosec.json"
  # -track-suppressions keeps #nosec'd issues in the report, with their
  # justification, so an unexplained suppression is caught too.
  gosec -quiet -no-fail -track-suppressions -fmt json -out "$out" ./... ||
    fail "gosec did not run"
  if ! python3 - "$out" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
errors = report.get("Golang errors") or {}
if errors:
    for f, errs in errors.items():
        for e in errs:
            print(f"gosec could not analyse {f}: {e.get('error')}")
    sys.exit(1)
issues = report.get("Issues") or []
bad, counts = [], {}
for i in issues:
    where = f"{i['file']}:{i['line']} {i['rule_id']} [{i['severity']}/{i['confidence']}] {i['details']}"
    sups = i.get("suppressions") or []
    if sups:
        reasons = [s.get("justification", "").strip() for s in sups]
        if not any(reasons):
            bad.append("suppressed without a reason: " + where)
        continue
    counts[i["severity"]] = counts.get(i["severity"], 0) + 1
    print("  " + where)
    if i["severity"] == "HIGH":
        bad.append(where)
supp = sum(1 for i in issues if i.get("suppressions"))
print(f"gosec: {report['Stats']['files']} files, {report['Stats']['lines']} lines; "
      f"unsuppressed HIGH={counts.get('HIGH', 0)} MEDIUM={counts.get('MEDIUM', 0)} "
      f"LOW={counts.get('LOW', 0)}; justified suppressions={supp}")
for b in bad:
    print("FAIL: " + b)
sys.exit(1 if bad else 0)
EOF
  then
    fail "gosec: a HIGH finding without a justified #nosec (above)"
  fi
  pass "gosec: no unjustified HIGH finding"
}

# --- govulncheck -----------------------------------------------------------
# A vulnerability in code the module actually calls (govulncheck's symbol
# level) fails the step. One exception, listed in
# deploy/security/govulncheck-allow.txt with a reason each: a standard
# library vulnerability whose only fix is a newer Go release than the
# machine's toolchain (the images build with golang:1.26, the newest 1.26.x).
# A third-party module's vulnerability is never allowed: bump it in go.mod.
step_vulns() {
  local version db snapshot
  version=$(sed -n 's/^VULNDB_VERSION=//p' deploy/scripts/install-tools.sh)
  db="$TOOLS_DIR/vulndb/$version"
  [ -f "$db/index/db.json" ] || fail "no vulnerability database at $db (run deploy/scripts/install-tools.sh security)"
  snapshot=$(sed -n 's/.*"modified":"\([^"]*\)".*/\1/p' "$db/index/db.json")
  log "govulncheck ($(go env GOVERSION)) against golang.org/x/vulndb@$version: $(find "$db/ID" -name '*.json' | wc -l) entries, snapshot of $snapshot"
  govulncheck -format json -db "file://$db" ./... >"$work/govulncheck.json" ||
    fail "govulncheck did not run"
  if ! python3 - "$work/govulncheck.json" deploy/security/govulncheck-allow.txt "$snapshot" <<'EOF'
import json, sys
from datetime import datetime, timezone
path, allow_path, snapshot = sys.argv[1:4]
allowed = {}
for line in open(allow_path):
    line = line.strip()
    if line and not line.startswith("#"):
        allowed[line.split()[0]] = line
dec = json.JSONDecoder()
text = open(path).read()
i, osv, reach, imported = 0, {}, {}, set()
while i < len(text):
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    obj, i = dec.raw_decode(text, i)
    if "osv" in obj:
        osv[obj["osv"]["id"]] = obj["osv"]
    f = obj.get("finding")
    if f:
        top = f["trace"][0]
        if top.get("function"):
            reach.setdefault(f["osv"], (top.get("module"), top.get("version"), f.get("fixed_version", "none")))
        else:
            imported.add(f["osv"])
age = (datetime.now(timezone.utc) - datetime.fromisoformat(snapshot.replace("Z", "+00:00"))).days
print(f"govulncheck: database snapshot {snapshot} ({age} days old); "
      f"{len(reach)} reachable, {len(imported - set(reach))} only imported or required (not called)")
bad = []
for vid, (mod, ver, fixed) in sorted(reach.items()):
    summary = osv.get(vid, {}).get("summary", "")
    if mod in ("stdlib", "toolchain") and vid in allowed:
        print(f"  allowed  {vid} {mod}@{ver} fixed in {fixed}: {summary}")
    else:
        print(f"  FAIL     {vid} {mod}@{ver} fixed in {fixed}: {summary}")
        bad.append(vid)
for vid in sorted(set(allowed) - set(reach)):
    print(f"  {vid} is allowed but no longer found: remove it from {allow_path}")
sys.exit(1 if bad else 0)
EOF
  then
    fail "govulncheck: vulnerable code is reachable (above); bump the module in go.mod, or the Go toolchain"
  fi
  pass "govulncheck: no reachable vulnerability outside the toolchain allow-list (database of $snapshot)"
}

# --- secrets ---------------------------------------------------------------
detect_engine() {
  if command -v docker >/dev/null && docker info >/dev/null 2>&1 && ! docker info 2>/dev/null | grep -qi podman; then
    ENGINE=docker
  elif command -v podman >/dev/null; then
    ENGINE=podman
  else
    fail "neither a Docker engine nor podman is available to export the images"
  fi
}

step_secrets() {
  log "gitleaks over the git history"
  gitleaks git --no-banner --redact --log-level warn . || fail "gitleaks found a secret in the history"
  pass "no secret in the history"
  ENGINE=${ENGINE:-}
  [ -n "$ENGINE" ] || detect_engine
  local name image
  for name in app edge; do
    image=$APP_IMAGE
    [ $name = edge ] && image=$EDGE_IMAGE
    if ! "$ENGINE" image inspect "$image" >/dev/null 2>&1; then
      # make test-containers builds and keeps both; build only if absent.
      log "$image absent: building it ($ENGINE)"
      local dockerfile=app.Dockerfile
      [ $name = edge ] && dockerfile=xcaddy.Dockerfile
      "$ENGINE" build -f "$dockerfile" -t "$image" . >"$work/build-$name.log" 2>&1 ||
        { tail -30 "$work/build-$name.log" >&2; fail "building $image"; }
    fi
    # The flattened filesystem a container of the image sees: every layer
    # applied, deleted files gone (a secret deleted in a later layer is
    # caught by test-containers' layer scan).
    local cid rootfs="$work/rootfs-$name"
    cid=$("$ENGINE" create "$image")
    containers+=("$cid")
    mkdir -p "$rootfs"
    "$ENGINE" export "$cid" | tar -C "$rootfs" -xf - 2>/dev/null ||
      fail "exporting the $name image's filesystem"
    "$ENGINE" rm -f "$cid" >/dev/null
    log "gitleaks over the $name image's filesystem ($(du -sh "$rootfs" | cut -f1), $(find "$rootfs" -type f | wc -l) files)"
    gitleaks dir --no-banner --redact --log-level warn "$rootfs" ||
      fail "gitleaks found a secret in the $name image"
    pass "no secret in the $name image ($image)"
    rm -rf "$rootfs"
  done
}

# --- the running edge (and the stack behind it) ------------------------------
step_edge() {
  for tool in testssl h2spec; do
    command -v "$tool" >/dev/null || fail "$tool missing (run deploy/scripts/install-tools.sh security)"
  done
  log "TLS scan, HTTP/2 conformance and live checks through the edge (go test -tags security)"
  go test -tags security -count=1 -timeout 40m -run '^TestSecurity' -v \
    ./edge/internal/e2e/ ./app/ 2>&1 | tee "$work/edge.log" | grep -E '^(=== RUN|--- |    |ok|FAIL|PASS|panic)' || true
  grep -qE '^(FAIL|--- FAIL|panic)' "$work/edge.log" && fail "security tests through the edge failed"
  grep -q '^ok' "$work/edge.log" || fail "security tests through the edge did not run"
  pass "TLS, HTTP/2 and live checks through the edge"
}

# --- fuzzing ---------------------------------------------------------------
# Every Fuzz* target in the repo, found by name so a new one is fuzzed
# without editing this list. A crasher fails the step, and Go writes the
# input to the package's testdata/fuzz/<Target>/ where plain `go test` then
# replays it as a regression test: commit it with the fix.
step_fuzz() {
  local targets=0 file dir name
  while IFS=: read -r file name; do
    dir=$(dirname "$file")
    name=${name#func }
    name=${name%%(*}
    targets=$((targets + 1))
    log "fuzz $name in ./$dir for $FUZZTIME"
    go test -run='^$' -fuzz="^$name\$" -fuzztime="$FUZZTIME" "./$dir" >"$work/fuzz.log" 2>&1 ||
      { tail -40 "$work/fuzz.log" >&2; fail "fuzz $name found a failure; its input is in $dir/testdata/fuzz/$name/"; }
    grep -E '^(fuzz: elapsed|ok)' "$work/fuzz.log" | tail -2 >&2 || true
  done < <(git grep -E --no-color -o '^func Fuzz[A-Za-z0-9_]*\(' -- '*_test.go')
  [ "$targets" -gt 0 ] || fail "no fuzz target found"
  pass "$targets fuzz targets, $FUZZTIME each, no failure"
}

[ $# -gt 0 ] || set -- gosec vulns secrets edge fuzz
for s in "$@"; do
  case $s in
    gosec|vulns|secrets|edge|fuzz) ;;
    -h|--help) usage ;;
    *) log "unknown step: $s"; usage ;;
  esac
done
for s in "$@"; do
  start=$(date +%s)
  "step_$s"
  log "$s took $(($(date +%s) - start))s"
done
