#!/usr/bin/env bash
# Creates the internal CA and the TLS certificates Postgres and MinIO serve
# inside the compose network, so the app can verify both (Postgres with
# sslmode=verify-full, MinIO against S3_CA_FILE). Idempotent: existing
# files are kept; a certificate is reissued only when it is missing, expires
# within 30 days, or no longer matches the CA.
#
# Usage: deploy/scripts/gen-certs.sh [OUT_DIR]   (default: deploy/certs, gitignored)
#   OUT_DIR/ca.crt                       trust anchor given to the app
#   OUT_DIR/ca.key                       CA key: keep it here, never mount it
#   OUT_DIR/postgres/server.{crt,key}    for host name "postgres"
#   OUT_DIR/minio/public.crt, private.key, CAs/ca.crt   MinIO's --certs-dir layout
# Run it as root (sudo) so the keys get the owners the containers run as:
# Postgres (uid 999) refuses a key it does not own; MinIO runs as uid 1000.
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ] && usage
[ $# -le 1 ] || usage

here=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$here/../certs}
DAYS=${CERT_DAYS:-825}
POSTGRES_UID=${POSTGRES_UID:-999}
MINIO_UID=${MINIO_UID:-1000}
POSTGRES_NAMES=${POSTGRES_NAMES:-postgres,localhost}
MINIO_NAMES=${MINIO_NAMES:-minio,localhost}

log() { printf 'gen-certs: %s\n' "$*" >&2; }
command -v openssl >/dev/null || { log "openssl is required"; exit 1; }

umask 077
mkdir -p "$OUT/postgres" "$OUT/minio/CAs"
chmod 0755 "$OUT" "$OUT/postgres" "$OUT/minio" "$OUT/minio/CAs"

if [ ! -s "$OUT/ca.key" ] || [ ! -s "$OUT/ca.crt" ]; then
  log "creating the internal CA"
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$OUT/ca.key" -out "$OUT/ca.crt" -days 3650 -sha256 \
    -subj "/CN=Finetune Studio internal CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
chmod 0600 "$OUT/ca.key"
chmod 0644 "$OUT/ca.crt"

# issue CRT KEY NAMES: a server certificate for the comma-separated DNS
# names, signed by the CA, unless a valid one is already there.
issue() {
  local crt=$1 key=$2 names=$3
  if [ -s "$crt" ] && [ -s "$key" ] &&
    openssl x509 -in "$crt" -noout -checkend $((30 * 86400)) >/dev/null 2>&1 &&
    openssl verify -CAfile "$OUT/ca.crt" "$crt" >/dev/null 2>&1; then
    return 0
  fi
  local san="" name csr ext
  for name in ${names//,/ }; do san="${san:+$san,}DNS:$name"; done
  log "issuing $crt for $names"
  csr=$(mktemp)
  ext=$(mktemp)
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' "$san" >"$ext"
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$key" -out "$csr" -subj "/CN=${names%%,*}" 2>/dev/null
  openssl x509 -req -in "$csr" -CA "$OUT/ca.crt" -CAkey "$OUT/ca.key" -CAcreateserial \
    -out "$crt" -days "$DAYS" -sha256 -extfile "$ext" 2>/dev/null
  rm -f "$csr" "$ext"
}

issue "$OUT/postgres/server.crt" "$OUT/postgres/server.key" "$POSTGRES_NAMES"
issue "$OUT/minio/public.crt" "$OUT/minio/private.key" "$MINIO_NAMES"
cp "$OUT/ca.crt" "$OUT/minio/CAs/ca.crt"
chmod 0644 "$OUT/postgres/server.crt" "$OUT/minio/public.crt" "$OUT/minio/CAs/ca.crt"
chmod 0600 "$OUT/postgres/server.key" "$OUT/minio/private.key"

if [ "$(id -u)" -eq 0 ]; then
  # Postgres insists on owning its key (mode 0600); MinIO runs as uid 1000
  # in deploy/docker-compose.yml (whose minio-init also hands the key over,
  # for certificates made before that).
  chown "$POSTGRES_UID:$POSTGRES_UID" "$OUT/postgres/server.key"
  chown "$MINIO_UID:$MINIO_UID" "$OUT/minio/private.key"
elif [ "$(stat -c %u "$OUT/postgres/server.key")" != "$POSTGRES_UID" ]; then
  log "not root: run 'sudo chown $POSTGRES_UID:$POSTGRES_UID $OUT/postgres/server.key' (Postgres must own its key)"
fi
log "certificates ready in $OUT"
