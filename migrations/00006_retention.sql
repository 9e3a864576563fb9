-- Retention: the queue-depth query (every 5 s) reads only live tasks
-- through a small partial index, and the periodic retention task
-- (app/internal/maintenance) deletes finished tasks and the event logs of
-- long-finished jobs through indexes of their own, so none of them scans a
-- table that grows with history.

-- +goose Up
CREATE INDEX tasks_live_state ON tasks (state) WHERE state IN ('queued', 'running');
CREATE INDEX tasks_finished_at ON tasks (finished_at) WHERE state IN ('done', 'dead');
CREATE INDEX job_events_created_at_idx ON job_events (created_at);

-- +goose Down
DROP INDEX job_events_created_at_idx;
DROP INDEX tasks_finished_at;
DROP INDEX tasks_live_state;
