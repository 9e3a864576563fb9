package store

import (
	"context"
	"fmt"
	"time"
)

// DeleteFinishedTasks deletes at most limit done or dead tasks that
// finished before before (oldest first) and says how many it deleted.
func (s *Store) DeleteFinishedTasks(ctx context.Context, before time.Time, limit int) (int64, error) {
	tag, err := s.db.Exec(ctx, deleteFinishedTasksSQL, before, limit)
	if err != nil {
		return 0, fmt.Errorf("deleting finished tasks: %w", mapErr(err))
	}
	return tag.RowsAffected(), nil
}

const deleteFinishedTasksSQL = `
	DELETE FROM tasks WHERE id IN (
		SELECT id FROM tasks
		WHERE state IN ('done', 'dead') AND finished_at < $1
		ORDER BY finished_at LIMIT $2)`

// DeleteJobEvents deletes at most limit events of jobs that finished before
// before. A job's events all precede its finish, so its whole log goes at
// once; an unfinished job's log is never touched.
func (s *Store) DeleteJobEvents(ctx context.Context, before time.Time, limit int) (int64, error) {
	tag, err := s.db.Exec(ctx, deleteJobEventsSQL, before, limit)
	if err != nil {
		return 0, fmt.Errorf("deleting job events: %w", mapErr(err))
	}
	return tag.RowsAffected(), nil
}

const deleteJobEventsSQL = `
	DELETE FROM job_events WHERE (job_id, seq) IN (
		SELECT e.job_id, e.seq FROM job_events e JOIN jobs j ON j.id = e.job_id
		WHERE e.created_at < $1 AND j.finished_at < $1
		LIMIT $2)`

// UnreferencedObjects returns the keys among keys that no row refers to. An
// object is referenced when a dataset row names it, when it lies under a
// model's prefix, or when it lies under models/<job_id>/ of a job that has
// not finished (its output is being collected, before the model row).
func (s *Store) UnreferencedObjects(ctx context.Context, keys []string) ([]string, error) {
	rows, err := s.db.Query(ctx, `
		SELECT u.k FROM unnest($1::text[]) AS u(k)
		WHERE NOT EXISTS (SELECT 1 FROM datasets d WHERE d.object_key = u.k)
		  AND NOT EXISTS (SELECT 1 FROM models m WHERE m.prefix = substring(u.k from '^models/[^/]+/'))
		  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.finished_at IS NULL
		      AND j.id = (CASE WHEN u.k ~ '^models/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/'
		                       THEN substring(u.k from 8 for 36)::uuid END))`, keys)
	if err != nil {
		return nil, fmt.Errorf("looking up object references: %w", mapErr(err))
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("looking up object references: %w", mapErr(err))
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("looking up object references: %w", mapErr(err))
	}
	return out, nil
}
