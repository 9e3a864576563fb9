-- When the runner started pushing a job's kernel to Kaggle. A push is
-- recorded under the worker's task lease before it is made, so a worker
-- that later reclaims the task knows a push may still become visible on
-- Kaggle and waits for it instead of pushing a second kernel version.

-- +goose Up
ALTER TABLE jobs ADD COLUMN kaggle_push_started_at timestamptz;

-- +goose Down
ALTER TABLE jobs DROP COLUMN kaggle_push_started_at;
