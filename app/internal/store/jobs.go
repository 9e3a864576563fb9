package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

const jobColumns = `id::text, coalesce(dataset_id::text, ''), base_model, hyperparameters::text, status, error,
	kaggle_dataset_ref, kaggle_kernel_ref, kaggle_status, created_at, updated_at, started_at, finished_at,
	kaggle_push_started_at`

func scanJob(row scanner) (training.Job, error) {
	var j training.Job
	var hp, status string
	err := row.Scan(&j.ID, &j.DatasetID, &j.BaseModel, &hp, &status, &j.Error,
		&j.KaggleDataset, &j.KaggleKernel, &j.KaggleStatus, &j.CreatedAt, &j.UpdatedAt, &j.StartedAt, &j.FinishedAt,
		&j.PushStartedAt)
	if err != nil {
		return j, err
	}
	j.Status = training.Status(status)
	// Jobs stored before quantization existed have none in their JSON.
	j.Hyperparameters.Quantization = training.QuantizationNone
	if err := json.Unmarshal([]byte(hp), &j.Hyperparameters); err != nil {
		return j, fmt.Errorf("decoding hyperparameters of job %s: %w", j.ID, err)
	}
	j.CreatedAt, j.UpdatedAt = j.CreatedAt.UTC(), j.UpdatedAt.UTC()
	if j.StartedAt != nil {
		t := j.StartedAt.UTC()
		j.StartedAt = &t
	}
	if j.FinishedAt != nil {
		t := j.FinishedAt.UTC()
		j.FinishedAt = &t
	}
	if j.PushStartedAt != nil {
		t := j.PushStartedAt.UTC()
		j.PushStartedAt = &t
	}
	return j, nil
}

// InsertJob stores a queued job with its first event and enqueues step, the
// task that runs it, all in one transaction: a job is never queued without a
// worker task, nor a task left without its job.
func (s *Store) InsertJob(ctx context.Context, j training.Job, step training.Task) (training.Job, error) {
	hp, err := json.Marshal(j.Hyperparameters)
	if err != nil {
		return training.Job{}, fmt.Errorf("encoding hyperparameters: %w", err)
	}
	var out training.Job
	err = s.InTx(ctx, func(tx *Tx) error {
		var err error
		out, err = scanJob(tx.db.QueryRow(ctx, `
			INSERT INTO jobs (id, dataset_id, base_model, hyperparameters, status)
			VALUES ($1, $2, $3, $4, 'queued')
			RETURNING `+jobColumns, j.ID, j.DatasetID, j.BaseModel, string(hp)))
		if err != nil {
			return mapErr(err)
		}
		if err := insertEvent(ctx, tx, j.ID, training.EventStatus, "", training.StatusQueued, "job created"); err != nil {
			return err
		}
		_, _, err = tx.Enqueue(ctx, NewTask{Kind: step.Kind, Payload: step.Payload, DedupeKey: step.DedupeKey, MaxAttempts: s.taskMaxAttempts})
		return err
	})
	if err != nil {
		return training.Job{}, fmt.Errorf("inserting job: %w", err)
	}
	return out, nil
}

// ListJobs returns a page of jobs, newest first, optionally of one status.
func (s *Store) ListJobs(ctx context.Context, status training.Status, page training.Page) ([]training.Job, string, error) {
	q, args := listJobsQuery(status, page)
	return listPage(ctx, s.db, "listing jobs", q, args, page.Limit, scanJob)
}

// listJobsQuery builds the list query: two literal shapes rather than one
// "no filter OR status = $1", so the planner picks jobs_status_list_position_idx
// for a filtered list and jobs_list_position_idx for the whole one
// (TestListQueriesUseTheirIndexes checks the plans).
func listJobsQuery(status training.Status, page training.Page) (string, []any) {
	q := `SELECT ` + jobColumns + `, list_position FROM jobs WHERE $1 = ''`
	if status != "" {
		q = `SELECT ` + jobColumns + `, list_position FROM jobs WHERE status = $1`
	}
	args := []any{string(status), page.Limit + 1}
	if page.After != nil {
		if status != "" {
			// Equivalent to the form below given status = $1, and a row
			// comparison over the status index's leading columns, which the
			// planner can use as one index condition.
			q += ` AND (status, list_position) < ($1, $3)`
		} else {
			q += ` AND list_position < $3`
		}
		args = append(args, page.After.Position)
	}
	q += ` ORDER BY jobs.list_position DESC LIMIT $2`
	return q, args
}

// GetJob returns one job.
func (s *Store) GetJob(ctx context.Context, id string) (training.Job, error) {
	if !training.ValidID(id) {
		return training.Job{}, fmt.Errorf("job %q: %w", id, problem.ErrNotFound)
	}
	j, err := scanJob(s.db.QueryRow(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = $1`, id))
	if err != nil {
		return training.Job{}, fmt.Errorf("getting job: %w", mapErr(err))
	}
	return j, nil
}

// updateJob is the one conditional UPDATE every job change goes through:
// it applies only if the job is still in status from, so two writers (a
// cancel and a worker) can never both win. It returns training.ErrStale
// when the job is in another status, problem.ErrNotFound when it is gone,
// and training.ErrLeaseLost when upd's fence lease is no longer held.
func updateJob(ctx context.Context, tx *Tx, id string, from, to training.Status, upd training.JobUpdate) (training.Job, error) {
	if upd.Fence != nil {
		// FOR SHARE holds the task row until commit: a claim (FOR UPDATE
		// SKIP LOCKED) cannot take the lease over in between, and a claim
		// that committed first has changed the token.
		var held bool
		err := tx.db.QueryRow(ctx, `
			SELECT EXISTS (SELECT 1 FROM tasks WHERE id = $1 AND lease_token = $2 AND state = 'running' FOR SHARE)`,
			upd.Fence.TaskID, upd.Fence.Token).Scan(&held)
		if err != nil {
			return training.Job{}, mapErr(err)
		}
		if !held {
			return training.Job{}, fmt.Errorf("job %s: task %d: %w", id, upd.Fence.TaskID, training.ErrLeaseLost)
		}
	}
	j, err := scanJob(tx.db.QueryRow(ctx, `
		UPDATE jobs SET
			status = $3,
			updated_at = now(),
			started_at = CASE WHEN $3 = 'uploading' AND started_at IS NULL THEN now() ELSE started_at END,
			finished_at = CASE WHEN $3 IN ('succeeded', 'failed', 'cancelled') THEN now() ELSE finished_at END,
			error = coalesce($4, error),
			kaggle_dataset_ref = coalesce($5, kaggle_dataset_ref),
			kaggle_kernel_ref = coalesce($6, kaggle_kernel_ref),
			kaggle_status = coalesce($7, kaggle_status),
			kaggle_push_started_at = CASE WHEN $8 THEN now() ELSE kaggle_push_started_at END
		WHERE id = $1 AND status = $2
		RETURNING `+jobColumns,
		id, string(from), string(to), upd.Error, upd.KaggleDataset, upd.KaggleKernel, upd.KaggleStatus, upd.PushStarted))
	if err == nil {
		return j, nil
	}
	if err = mapErr(err); !isNotFound(err) {
		return training.Job{}, err
	}
	var exists bool
	if err := tx.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1)`, id).Scan(&exists); err != nil {
		return training.Job{}, mapErr(err)
	}
	if !exists {
		return training.Job{}, fmt.Errorf("job %s: %w", id, problem.ErrNotFound)
	}
	return training.Job{}, fmt.Errorf("job %s is no longer %s: %w", id, from, training.ErrStale)
}

// Transition moves a job from one status to another if it is still in from,
// and records the transition as an event, in one transaction.
func (s *Store) Transition(ctx context.Context, id string, from, to training.Status, upd training.JobUpdate, message string) (training.Job, error) {
	if !training.CanTransition(from, to) {
		return training.Job{}, fmt.Errorf("job %s: transition %s -> %s is not allowed", id, from, to)
	}
	if !training.ValidID(id) {
		return training.Job{}, fmt.Errorf("job %q: %w", id, problem.ErrNotFound)
	}
	var j training.Job
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		if j, err = updateJob(ctx, tx, id, from, to, upd); err != nil {
			return err
		}
		return insertEvent(ctx, tx, id, training.EventStatus, from, to, message)
	})
	if err != nil {
		return training.Job{}, fmt.Errorf("job transition %s -> %s: %w", from, to, err)
	}
	return j, nil
}

// UpdateJob changes fields of a job that is still in status, recording
// message (when not empty) as an event of kind.
func (s *Store) UpdateJob(ctx context.Context, id string, status training.Status, upd training.JobUpdate, kind training.EventKind, message string) (training.Job, error) {
	if !training.ValidID(id) {
		return training.Job{}, fmt.Errorf("job %q: %w", id, problem.ErrNotFound)
	}
	var j training.Job
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		if j, err = updateJob(ctx, tx, id, status, status, upd); err != nil {
			return err
		}
		if message == "" {
			return nil
		}
		return insertEvent(ctx, tx, id, kind, "", "", message)
	})
	if err != nil {
		return training.Job{}, fmt.Errorf("updating job: %w", err)
	}
	return j, nil
}

// CompleteJob creates the model of a collecting job and marks the job
// succeeded, in one transaction.
func (s *Store) CompleteJob(ctx context.Context, m training.Model) (training.Model, error) {
	files, err := json.Marshal(m.Files)
	if err != nil {
		return training.Model{}, fmt.Errorf("encoding model files: %w", err)
	}
	metrics := m.Metrics
	if len(metrics) == 0 {
		metrics = json.RawMessage(`{}`)
	}
	err = s.InTx(ctx, func(tx *Tx) error {
		if _, err := updateJob(ctx, tx, m.JobID, training.StatusCollecting, training.StatusSucceeded, training.JobUpdate{}); err != nil {
			return err
		}
		if err := tx.db.QueryRow(ctx, `
			INSERT INTO models (id, job_id, base_model, prefix, files, metrics, size_bytes)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			RETURNING created_at`, m.ID, m.JobID, m.BaseModel, m.Prefix, string(files), string(metrics), m.SizeBytes,
		).Scan(&m.CreatedAt); err != nil {
			return mapErr(err)
		}
		return insertEvent(ctx, tx, m.JobID, training.EventStatus, training.StatusCollecting, training.StatusSucceeded,
			fmt.Sprintf("model %s created with %d files", m.ID, len(m.Files)))
	})
	if err != nil {
		if errors.Is(err, training.ErrStale) {
			return training.Model{}, err
		}
		return training.Model{}, fmt.Errorf("completing job: %w", err)
	}
	m.CreatedAt = m.CreatedAt.UTC()
	m.Metrics = metrics
	return m, nil
}

// StrandedJobs returns up to limit unfinished jobs without a live (queued
// or running) task of kind, oldest first, with their newest task's state.
// One statement, so a job and its tasks are read from the same snapshot: a
// job whose task is being handed from one state to another is never seen
// without it. The live-task probe uses tasks_live_dedupe; the newest-task
// lookup (which no index serves) runs only for the few stranded jobs, hence
// the materialized CTE.
func (s *Store) StrandedJobs(ctx context.Context, kind string, limit int) ([]training.StrandedJob, error) {
	rows, err := s.db.Query(ctx, `
		WITH stranded AS MATERIALIZED (
			SELECT j.id, j.status, j.updated_at FROM jobs j
			WHERE j.status = ANY($2)
			  AND NOT EXISTS (
				SELECT 1 FROM tasks
				WHERE kind = $1 AND dedupe_key = j.id::text AND state IN ('queued', 'running'))
			ORDER BY j.updated_at, j.id
			LIMIT $3
		)
		SELECT s.id::text, s.status, coalesce(t.state, ''), coalesce(t.attempts, 0), coalesce(t.last_error, '')
		FROM stranded s
		LEFT JOIN LATERAL (
			SELECT state, attempts, last_error FROM tasks
			WHERE kind = $1 AND dedupe_key = s.id::text
			ORDER BY id DESC LIMIT 1
		) t ON true
		ORDER BY s.updated_at, s.id`, kind, unfinished(), limit)
	if err != nil {
		return nil, fmt.Errorf("finding stranded jobs: %w", mapErr(err))
	}
	defer rows.Close()
	var out []training.StrandedJob
	for rows.Next() {
		var sj training.StrandedJob
		var status string
		if err := rows.Scan(&sj.JobID, &status, &sj.TaskState, &sj.Attempts, &sj.LastError); err != nil {
			return nil, fmt.Errorf("finding stranded jobs: %w", mapErr(err))
		}
		sj.Status = training.Status(status)
		out = append(out, sj)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("finding stranded jobs: %w", mapErr(err))
	}
	return out, nil
}

// RequeueJob enqueues step for an unfinished job (a live task with the
// same kind and dedupe key is reused). It reports whether a task was
// created; a finished or missing job gets none.
func (s *Store) RequeueJob(ctx context.Context, jobID string, step training.Task) (bool, error) {
	if !training.ValidID(jobID) {
		return false, fmt.Errorf("job %q: %w", jobID, problem.ErrNotFound)
	}
	var created bool
	err := s.InTx(ctx, func(tx *Tx) error {
		// The row lock orders this against a concurrent transition to a
		// finished status.
		var live bool
		err := tx.db.QueryRow(ctx, `SELECT status = ANY($2) FROM jobs WHERE id = $1 FOR UPDATE`,
			jobID, unfinished()).Scan(&live)
		if err != nil {
			return mapErr(err)
		}
		if !live {
			return nil
		}
		_, created, err = tx.Enqueue(ctx, NewTask{Kind: step.Kind, Payload: step.Payload, DedupeKey: step.DedupeKey, MaxAttempts: s.taskMaxAttempts})
		return err
	})
	if err != nil {
		return false, fmt.Errorf("requeueing job %s: %w", jobID, err)
	}
	return created, nil
}

// kaggleCleanupSQL lists finished jobs whose Kaggle dataset copy, owned
// by $1, is recorded and not yet deleted. The literal status list matches
// the predicate of jobs_kaggle_dataset_cleanup_idx, so the planner can use
// it (TestQueueAndRetentionQueriesUseTheirIndexes checks the plan).
const kaggleCleanupSQL = `SELECT ` + jobColumns + ` FROM jobs
	WHERE kaggle_dataset_ref <> '' AND kaggle_dataset_deleted_at IS NULL
	  AND status IN ('succeeded', 'failed', 'cancelled')
	  AND starts_with(kaggle_dataset_ref, $1 || '/')
	ORDER BY finished_at, id LIMIT $2`

// KaggleDatasetsToDelete returns up to limit finished jobs whose private
// dataset copy on Kaggle, owned by owner, is still to delete, longest
// finished first.
func (s *Store) KaggleDatasetsToDelete(ctx context.Context, owner string, limit int) ([]training.Job, error) {
	rows, err := s.db.Query(ctx, kaggleCleanupSQL, owner, limit)
	if err != nil {
		return nil, fmt.Errorf("finding Kaggle datasets to delete: %w", mapErr(err))
	}
	defer rows.Close()
	var out []training.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("finding Kaggle datasets to delete: %w", mapErr(err))
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("finding Kaggle datasets to delete: %w", mapErr(err))
	}
	return out, nil
}

// MarkKaggleDatasetDeleted records that job jobID's Kaggle dataset copy
// ref is deleted, with an event saying so, once: a second call (another
// instance's sweep) changes nothing.
func (s *Store) MarkKaggleDatasetDeleted(ctx context.Context, jobID, ref string) error {
	if !training.ValidID(jobID) {
		return fmt.Errorf("job %q: %w", jobID, problem.ErrNotFound)
	}
	err := s.InTx(ctx, func(tx *Tx) error {
		tag, err := tx.db.Exec(ctx, `
			UPDATE jobs SET kaggle_dataset_deleted_at = now()
			WHERE id = $1 AND kaggle_dataset_ref = $2 AND kaggle_dataset_deleted_at IS NULL`, jobID, ref)
		if err != nil {
			return mapErr(err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		return insertEvent(ctx, tx, jobID, training.EventLog, "", "", "deleted the job's private dataset copy on Kaggle ("+ref+")")
	})
	if err != nil {
		return fmt.Errorf("recording the Kaggle dataset deletion of job %s: %w", jobID, err)
	}
	return nil
}
