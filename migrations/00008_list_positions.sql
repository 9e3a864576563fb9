-- List positions: every list (datasets, jobs, models) is ordered by
-- list_position, handed out by a counter row per list that stays locked
-- until the inserting transaction ends. A second insert into the same list
-- waits for the first to commit or roll back before it gets the next
-- number, so positions increase in commit order: a row that commits late
-- can never sort behind one a client has already seen (created_at = now(),
-- the transaction's start, could). Inserts into one list are serialised for
-- the few milliseconds a transaction takes; these lists grow at human
-- speed. A rolled-back insert gives its number back (the UPDATE is undone),
-- so positions have no gaps except those left by deletes.
--
-- Existing rows get positions in their old list order (created_at, id).

-- +goose Up
CREATE TABLE list_positions (
    list text PRIMARY KEY,
    last bigint NOT NULL
);

-- +goose StatementBegin
CREATE FUNCTION next_list_position(l text) RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    UPDATE list_positions SET last = last + 1 WHERE list = l RETURNING last
$$;
-- +goose StatementEnd

ALTER TABLE datasets ADD COLUMN list_position bigint;
UPDATE datasets SET list_position = r.n
FROM (SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM datasets) r
WHERE datasets.id = r.id;
INSERT INTO list_positions SELECT 'datasets', coalesce(max(list_position), 0) FROM datasets;
ALTER TABLE datasets
    ALTER COLUMN list_position SET DEFAULT next_list_position('datasets'),
    ALTER COLUMN list_position SET NOT NULL;
CREATE UNIQUE INDEX datasets_list_position_idx ON datasets (list_position);
CREATE INDEX datasets_lower_name_position_idx ON datasets (lower(name) text_pattern_ops, list_position);
DROP INDEX datasets_created_at_id_idx;
DROP INDEX datasets_lower_name_idx;

ALTER TABLE jobs ADD COLUMN list_position bigint;
UPDATE jobs SET list_position = r.n
FROM (SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM jobs) r
WHERE jobs.id = r.id;
INSERT INTO list_positions SELECT 'jobs', coalesce(max(list_position), 0) FROM jobs;
ALTER TABLE jobs
    ALTER COLUMN list_position SET DEFAULT next_list_position('jobs'),
    ALTER COLUMN list_position SET NOT NULL;
CREATE UNIQUE INDEX jobs_list_position_idx ON jobs (list_position);
CREATE INDEX jobs_status_list_position_idx ON jobs (status, list_position);
DROP INDEX jobs_created_at_id_idx;
DROP INDEX jobs_status_created_at_id_idx;

ALTER TABLE models ADD COLUMN list_position bigint;
UPDATE models SET list_position = r.n
FROM (SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM models) r
WHERE models.id = r.id;
INSERT INTO list_positions SELECT 'models', coalesce(max(list_position), 0) FROM models;
ALTER TABLE models
    ALTER COLUMN list_position SET DEFAULT next_list_position('models'),
    ALTER COLUMN list_position SET NOT NULL;
CREATE UNIQUE INDEX models_list_position_idx ON models (list_position);
DROP INDEX models_created_at_id_idx;

-- +goose Down
CREATE INDEX models_created_at_id_idx ON models (created_at DESC, id DESC);
ALTER TABLE models DROP COLUMN list_position;
CREATE INDEX jobs_created_at_id_idx ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_status_created_at_id_idx ON jobs (status, created_at DESC, id DESC);
ALTER TABLE jobs DROP COLUMN list_position;
CREATE INDEX datasets_created_at_id_idx ON datasets (created_at DESC, id DESC);
CREATE INDEX datasets_lower_name_idx ON datasets (lower(name) text_pattern_ops, created_at DESC, id DESC);
ALTER TABLE datasets DROP COLUMN list_position;
DROP FUNCTION next_list_position(text);
DROP TABLE list_positions;
