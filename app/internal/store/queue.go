package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The task queue: a generic, Postgres-backed work queue the worker pool
// drains. A task is claimed with FOR UPDATE SKIP LOCKED, so any number of
// instances share one table without handing a task to two of them; the
// claimer holds a lease identified by a random token and must heartbeat
// before it expires. Every state change after the claim is conditioned on
// that token, so a worker whose lease was taken over can no longer touch
// the task.

// Task states.
const (
	TaskQueued  = "queued"
	TaskRunning = "running"
	TaskDone    = "done"
	TaskDead    = "dead"
)

// ErrLeaseLost means the task's lease expired and another claimer may own it.
var ErrLeaseLost = errors.New("task lease lost")

// NewTask is a task to enqueue.
type NewTask struct {
	Kind string
	// Payload is a JSON document; empty means {}.
	Payload []byte
	// DedupeKey, when set, allows at most one live (queued or running) task
	// with the same Kind and key; enqueueing another returns the live one.
	DedupeKey   string
	MaxAttempts int
	// RunAt delays the first run; zero means now.
	RunAt time.Time
}

// Task is a claimed or inspected task.
type Task struct {
	ID          int64
	Kind        string
	Payload     []byte
	DedupeKey   string
	State       string
	Attempts    int // failed attempts so far
	MaxAttempts int
	RunAt       time.Time
	LeaseToken  string
	LeaseUntil  time.Time
	LastError   string
	CreatedAt   time.Time
	// Reclaimed is set when the claim took over an expired lease (its
	// previous holder crashed or hung); that counts as a failed attempt.
	Reclaimed bool
}

// Enqueue adds a task as part of the transaction: it becomes visible to
// workers only if the transaction commits, so a task is enqueued together
// with the change that calls for it (a job row, say).
func (t *Tx) Enqueue(ctx context.Context, nt NewTask) (id int64, created bool, err error) {
	return enqueue(ctx, t.db, nt)
}

func enqueue(ctx context.Context, q querier, t NewTask) (int64, bool, error) {
	if t.Kind == "" {
		return 0, false, errors.New("enqueue: empty task kind")
	}
	if t.MaxAttempts <= 0 {
		return 0, false, errors.New("enqueue: MaxAttempts must be positive")
	}
	payload := t.Payload
	if len(payload) == 0 {
		payload = []byte("{}")
	}
	var runAt *time.Time
	if !t.RunAt.IsZero() {
		runAt = &t.RunAt
	}
	// Two tries: a conflicting live task may finish between the insert and
	// the lookup.
	for range 2 {
		var id int64
		err := q.QueryRow(ctx, `
			INSERT INTO tasks (kind, payload, dedupe_key, max_attempts, run_at)
			VALUES ($1, $2, NULLIF($3, ''), $4, COALESCE($5, now()))
			ON CONFLICT (kind, dedupe_key)
			    WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running')
			DO NOTHING
			RETURNING id`, t.Kind, string(payload), t.DedupeKey, t.MaxAttempts, runAt).Scan(&id)
		if err == nil {
			return id, true, nil
		}
		if err = mapErr(err); !isNotFound(err) {
			return 0, false, fmt.Errorf("enqueueing %s task: %w", t.Kind, err)
		}
		err = q.QueryRow(ctx, `
			SELECT id FROM tasks
			WHERE kind = $1 AND dedupe_key = $2 AND state IN ('queued', 'running')`,
			t.Kind, t.DedupeKey).Scan(&id)
		if err == nil {
			return id, false, nil
		}
		if err = mapErr(err); !isNotFound(err) {
			return 0, false, fmt.Errorf("enqueueing %s task: %w", t.Kind, err)
		}
	}
	return 0, false, fmt.Errorf("enqueueing %s task: dedupe key kept changing hands", t.Kind)
}

const taskColumns = `t.id, t.kind, t.payload::text, coalesce(t.dedupe_key, ''), t.state, t.attempts,
	t.max_attempts, t.run_at, coalesce(t.lease_token, ''), coalesce(t.lease_expires_at, 'epoch'),
	coalesce(t.last_error, ''), t.created_at`

type scanner interface{ Scan(dest ...any) error }

func scanTask(row scanner, extra ...any) (*Task, error) {
	var t Task
	var payload string
	dest := append([]any{&t.ID, &t.Kind, &payload, &t.DedupeKey, &t.State, &t.Attempts,
		&t.MaxAttempts, &t.RunAt, &t.LeaseToken, &t.LeaseUntil, &t.LastError, &t.CreatedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	t.Payload = []byte(payload)
	return &t, nil
}

// ClaimTask leases the next due task of one of kinds, or returns nil when
// there is none. Queued tasks whose run_at has come and running tasks whose
// lease expired are both eligible, oldest first.
func (s *Store) ClaimTask(ctx context.Context, kinds []string, lease time.Duration) (*Task, error) {
	token, err := newLeaseToken()
	if err != nil {
		return nil, err
	}
	var reclaimed bool
	t, err := scanTask(s.db.QueryRow(ctx, `
		WITH next AS (
			SELECT id, state FROM tasks
			WHERE kind = ANY($1)
			  AND ((state = 'queued' AND run_at <= now())
			    OR (state = 'running' AND lease_expires_at < now()))
			ORDER BY run_at, id
			LIMIT 1
			FOR UPDATE SKIP LOCKED
		)
		UPDATE tasks t SET
			state = 'running',
			lease_token = $2,
			lease_expires_at = now() + $3 * interval '1 millisecond',
			attempts = t.attempts + CASE WHEN next.state = 'running' THEN 1 ELSE 0 END,
			updated_at = now()
		FROM next WHERE t.id = next.id
		RETURNING `+taskColumns+`, next.state = 'running'`,
		kinds, token, lease.Milliseconds()), &reclaimed)
	if err != nil {
		if err = mapErr(err); isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("claiming a task: %w", err)
	}
	t.Reclaimed = reclaimed
	return t, nil
}

// HeartbeatTask extends the lease; ErrLeaseLost if it is no longer held.
func (s *Store) HeartbeatTask(ctx context.Context, id int64, token string, lease time.Duration) error {
	return s.leased(ctx, "heartbeat", id, token, `
		UPDATE tasks SET lease_expires_at = now() + $3 * interval '1 millisecond', updated_at = now()
		WHERE id = $1 AND lease_token = $2 AND state = 'running'`, lease.Milliseconds())
}

// CompleteTask marks the task done.
func (s *Store) CompleteTask(ctx context.Context, id int64, token string) error {
	return s.leased(ctx, "complete", id, token, `
		UPDATE tasks SET state = 'done', lease_token = NULL, lease_expires_at = NULL,
			last_error = NULL, finished_at = now(), updated_at = now()
		WHERE id = $1 AND lease_token = $2 AND state = 'running'`)
}

// RescheduleTask puts the task back to run again after delay without
// counting a failed attempt: the handler made progress and is not done.
func (s *Store) RescheduleTask(ctx context.Context, id int64, token string, delay time.Duration) error {
	return s.leased(ctx, "reschedule", id, token, `
		UPDATE tasks SET state = 'queued', lease_token = NULL, lease_expires_at = NULL,
			run_at = now() + $3 * interval '1 millisecond', updated_at = now()
		WHERE id = $1 AND lease_token = $2 AND state = 'running'`, delay.Milliseconds())
}

// ReleaseTask gives the lease back (shutdown): the task is due at once for
// any instance, and no attempt is counted.
func (s *Store) ReleaseTask(ctx context.Context, id int64, token string) error {
	return s.leased(ctx, "release", id, token, `
		UPDATE tasks SET state = 'queued', lease_token = NULL, lease_expires_at = NULL,
			run_at = now(), updated_at = now()
		WHERE id = $1 AND lease_token = $2 AND state = 'running'`)
}

// FailTask counts a failed attempt. The task is queued again after delay,
// or dead-lettered when it has used its attempts; dead reports which.
func (s *Store) FailTask(ctx context.Context, id int64, token string, delay time.Duration, reason string) (dead bool, err error) {
	var state string
	err = s.db.QueryRow(ctx, `
		UPDATE tasks SET
			attempts = attempts + 1,
			state = CASE WHEN attempts + 1 >= max_attempts THEN 'dead' ELSE 'queued' END,
			finished_at = CASE WHEN attempts + 1 >= max_attempts THEN now() END,
			run_at = now() + $3 * interval '1 millisecond',
			last_error = $4, lease_token = NULL, lease_expires_at = NULL, updated_at = now()
		WHERE id = $1 AND lease_token = $2 AND state = 'running'
		RETURNING state`, id, token, delay.Milliseconds(), truncate(reason, 2000)).Scan(&state)
	if err != nil {
		if err = mapErr(err); isNotFound(err) {
			return false, fmt.Errorf("fail task %d: %w", id, ErrLeaseLost)
		}
		return false, fmt.Errorf("fail task %d: %w", id, err)
	}
	return state == TaskDead, nil
}

// KillTask dead-letters the task at once (a permanent failure).
func (s *Store) KillTask(ctx context.Context, id int64, token string, reason string) error {
	return s.leased(ctx, "dead-letter", id, token, `
		UPDATE tasks SET state = 'dead', lease_token = NULL, lease_expires_at = NULL,
			last_error = $3, finished_at = now(), updated_at = now()
		WHERE id = $1 AND lease_token = $2 AND state = 'running'`, truncate(reason, 2000))
}

func (s *Store) leased(ctx context.Context, op string, id int64, token, sql string, args ...any) error {
	tag, err := s.db.Exec(ctx, sql, append([]any{id, token}, args...)...)
	if err != nil {
		return fmt.Errorf("%s task %d: %w", op, id, mapErr(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s task %d: %w", op, id, ErrLeaseLost)
	}
	return nil
}

// QueueDepth counts live tasks: queued (including not yet due) and running.
type QueueDepth struct {
	Queued, Running int64
}

// queueDepthSQL reads only the small tasks_live_state index, however many
// finished tasks the table keeps.
const queueDepthSQL = `
	SELECT count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'running')
	FROM tasks WHERE state IN ('queued', 'running')`

// TaskQueueDepth counts live tasks.
func (s *Store) TaskQueueDepth(ctx context.Context) (QueueDepth, error) {
	var d QueueDepth
	err := s.db.QueryRow(ctx, queueDepthSQL).Scan(&d.Queued, &d.Running)
	if err != nil {
		return d, fmt.Errorf("counting tasks: %w", mapErr(err))
	}
	return d, nil
}

func newLeaseToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
