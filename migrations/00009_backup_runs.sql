-- Backup runs: one row per backup attempt, written by whoever made it (the
-- Postgres backup sidecar with psql after each verified dump, the app's
-- object mirror after each run). The app reads the newest ok and verified
-- row per kind to publish backup freshness (a metric and a /readyz check),
-- so "the last backup worked" is something the system proves, not hopes.
--
-- verified means the backup was read back and checked (pg_restore --list
-- and a checksum for a dump; every copied object's sha256 re-read for the
-- object mirror); a run that wrote files but could not prove them stays
-- ok = false or verified = false and never counts as fresh.
--
-- detail holds kind-specific counters (objects copied/skipped, dump file
-- name); error is the failure, empty when ok.

-- +goose Up
CREATE TABLE backup_runs (
    id bigserial PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('postgres', 'objects')),
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    ok boolean NOT NULL DEFAULT false,
    verified boolean NOT NULL DEFAULT false,
    location text NOT NULL DEFAULT '',
    bytes bigint NOT NULL DEFAULT 0,
    detail jsonb NOT NULL DEFAULT '{}',
    error text NOT NULL DEFAULT ''
);
-- The freshness query (newest verified run per kind, on every scrape and
-- readiness check) reads only successful runs through this index.
CREATE INDEX backup_runs_fresh_idx ON backup_runs (kind, finished_at DESC) WHERE ok AND verified;

-- +goose Down
DROP TABLE backup_runs;
