-- When the runner deleted a job's private dataset copy on Kaggle. The
-- runner's periodic sweep deletes the copies of finished jobs (failed and
-- cancelled ones included) once no kernel of the job can still read them,
-- and records it here so it asks Kaggle only once. The partial index holds
-- only the finished jobs whose copy is still to delete, so the sweep never
-- scans the job history.

-- +goose Up
ALTER TABLE jobs ADD COLUMN kaggle_dataset_deleted_at timestamptz;
CREATE INDEX jobs_kaggle_dataset_cleanup_idx ON jobs (finished_at, id)
    WHERE kaggle_dataset_ref <> '' AND kaggle_dataset_deleted_at IS NULL
      AND status IN ('succeeded', 'failed', 'cancelled');

-- +goose Down
DROP INDEX jobs_kaggle_dataset_cleanup_idx;
ALTER TABLE jobs DROP COLUMN kaggle_dataset_deleted_at;
