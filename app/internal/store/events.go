package store

import (
	"context"
	"fmt"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// insertEvent appends an event to a job's log. Callers have just updated
// the job row in the same transaction, so they hold its lock: events of one
// job are numbered and committed one at a time, and seq order is commit
// order (an SSE reader of "seq > last" never misses a late commit). The
// job_events_notify trigger tells the event listener (ListenJobEvents).
func insertEvent(ctx context.Context, tx *Tx, jobID string, kind training.EventKind, from, to training.Status, message string) error {
	_, err := tx.db.Exec(ctx, `
		INSERT INTO job_events (job_id, seq, kind, from_status, to_status, message)
		SELECT $1, coalesce(max(seq), 0) + 1, $2, $3, $4, $5 FROM job_events WHERE job_id = $1`,
		jobID, string(kind), string(from), string(to), message)
	if err != nil {
		return fmt.Errorf("recording job event: %w", mapErr(err))
	}
	return nil
}

// ListEvents returns up to limit events of a job with seq > afterSeq, in
// order. Served by the (job_id, seq) primary key.
func (s *Store) ListEvents(ctx context.Context, jobID string, afterSeq int64, limit int) ([]training.Event, error) {
	if !training.ValidID(jobID) {
		return nil, fmt.Errorf("job %q: %w", jobID, problem.ErrNotFound)
	}
	rows, err := s.db.Query(ctx, `
		SELECT job_id::text, seq, kind, from_status, to_status, message, created_at
		FROM job_events WHERE job_id = $1 AND seq > $2
		ORDER BY seq LIMIT $3`, jobID, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("listing job events: %w", mapErr(err))
	}
	defer rows.Close()
	out := []training.Event{}
	for rows.Next() {
		var e training.Event
		var kind, from, to string
		if err := rows.Scan(&e.JobID, &e.Seq, &kind, &from, &to, &e.Message, &e.CreatedAt); err != nil {
			return nil, fmt.Errorf("listing job events: %w", mapErr(err))
		}
		e.Kind, e.FromStatus, e.ToStatus = training.EventKind(kind), training.Status(from), training.Status(to)
		e.CreatedAt = e.CreatedAt.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing job events: %w", mapErr(err))
	}
	return out, nil
}
