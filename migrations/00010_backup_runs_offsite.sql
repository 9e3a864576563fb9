-- The off-VM copy of the Postgres dumps (the app's `backup postgres-offsite`
-- and its periodic run in serve) records its runs as kind
-- 'postgres-offsite', so its freshness is published like the others.

-- +goose Up
ALTER TABLE backup_runs DROP CONSTRAINT backup_runs_kind_check;
ALTER TABLE backup_runs ADD CONSTRAINT backup_runs_kind_check
    CHECK (kind IN ('postgres', 'objects', 'postgres-offsite'));

-- +goose Down
DELETE FROM backup_runs WHERE kind = 'postgres-offsite';
ALTER TABLE backup_runs DROP CONSTRAINT backup_runs_kind_check;
ALTER TABLE backup_runs ADD CONSTRAINT backup_runs_kind_check CHECK (kind IN ('postgres', 'objects'));
