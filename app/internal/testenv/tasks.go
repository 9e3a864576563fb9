package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Task is one row of the task queue as tests inspect it. Production code
// never reads a task by id, so the store offers no such query; a test that
// checks what the queue did reads the rows here.
type Task struct {
	ID         int64
	Kind       string
	DedupeKey  string
	State      string
	Attempts   int
	LeaseToken string
	LeaseUntil time.Time
	LastError  string
}

// TaskReader reads the task queue of one test database.
type TaskReader struct{ db *pgxpool.Pool }

// NewTaskReader connects to the database at dsn until the test ends.
func NewTaskReader(t testing.TB, dsn string) *TaskReader {
	t.Helper()
	db, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatalf("connecting to postgres: %v", err)
	}
	t.Cleanup(db.Close)
	// Open the pool's connections now: a read that had to connect first
	// (a test polling while a hook reads) could be slow enough on a busy
	// machine to outlive the short leases tests use.
	var conns []*pgxpool.Conn
	for range db.Config().MaxConns {
		c, err := db.Acquire(context.Background())
		if err != nil {
			t.Fatalf("connecting to postgres: %v", err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}
	return &TaskReader{db: db}
}

// Tasks returns every task, in id order.
func (r *TaskReader) Tasks(ctx context.Context) ([]Task, error) {
	rows, err := r.db.Query(ctx, `
		SELECT id, kind, coalesce(dedupe_key, ''), state, attempts, coalesce(lease_token, ''),
		       coalesce(lease_expires_at, 'epoch'), coalesce(last_error, '')
		FROM tasks ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("reading tasks: %w", err)
	}
	defer rows.Close()
	var out []Task
	for rows.Next() {
		var k Task
		if err := rows.Scan(&k.ID, &k.Kind, &k.DedupeKey, &k.State, &k.Attempts, &k.LeaseToken, &k.LeaseUntil, &k.LastError); err != nil {
			return nil, fmt.Errorf("reading tasks: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// Task returns task id. It returns an error rather than failing the test,
// so handlers and hooks may call it too.
func (r *TaskReader) Task(ctx context.Context, id int64) (*Task, error) {
	var k Task
	err := r.db.QueryRow(ctx, `
		SELECT id, kind, coalesce(dedupe_key, ''), state, attempts, coalesce(lease_token, ''),
		       coalesce(lease_expires_at, 'epoch'), coalesce(last_error, '')
		FROM tasks WHERE id = $1`, id).
		Scan(&k.ID, &k.Kind, &k.DedupeKey, &k.State, &k.Attempts, &k.LeaseToken, &k.LeaseUntil, &k.LastError)
	if err != nil {
		return nil, fmt.Errorf("reading task %d: %w", id, err)
	}
	return &k, nil
}
