#!/usr/bin/env bash
# Creates the secret files the production compose stack reads as Docker
# secrets: random passwords for Postgres and MinIO and the app's database
# URL built from them. Idempotent: an existing file is never overwritten, so
# rerunning it after an upgrade only adds the files a new release needs.
#
# Usage: deploy/scripts/gen-secrets.sh [OUT_DIR]   (default: deploy/secrets, gitignored)
#   postgres_password, database_url, minio_root_user, minio_root_password,
#   kaggle_api_token, kaggle_key (created empty: paste your Kaggle API token,
#   or the classic key from kaggle.json, into one; set KAGGLE_USERNAME in
#   deploy/.env. An empty file is read as unset.), backup_s3_access_key,
#   backup_s3_secret_key (created empty: keys of an S3 backup target)
# The directory is 0700, so other users of the host cannot read the files;
# the files themselves are 0644 because each container reads them as its
# own user (app 65532, Postgres 999, MinIO root).
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ] && usage
[ $# -le 1 ] || usage

here=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$here/../secrets}
log() { printf 'gen-secrets: %s\n' "$*" >&2; }
command -v openssl >/dev/null || { log "openssl is required"; exit 1; }

mkdir -p "$OUT"
chmod 0700 "$OUT"

# put NAME VALUE writes OUT/NAME once.
put() {
  if [ -e "$OUT/$1" ]; then return 0; fi
  (umask 022 && printf '%s' "$2" >"$OUT/$1")
  log "created $OUT/$1"
}

put postgres_password "$(openssl rand -hex 24)"
put minio_root_user "studio-$(openssl rand -hex 6)"
put minio_root_password "$(openssl rand -hex 24)"
put kaggle_api_token ""
put kaggle_key ""
put backup_s3_access_key ""
put backup_s3_secret_key ""
# The URL is derived, so it follows the password file (rewritten only when
# the password changed by hand).
url="postgres://studio:$(cat "$OUT/postgres_password")@postgres:5432/studio?sslmode=verify-full&sslrootcert=/etc/finetune-studio/ca.crt"
if [ "$(cat "$OUT/database_url" 2>/dev/null)" != "$url" ]; then
  (umask 022 && printf '%s' "$url" >"$OUT/database_url")
  log "wrote $OUT/database_url"
fi
log "secrets ready in $OUT"
