package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finetune-studio/finetune-studio/app/internal/backup"
)

// RecordBackupRun inserts a finished run into backup_runs (migration
// 00009; 00010 adds the kind postgres-offsite). The Postgres backup
// service writes its rows with psql.
func (s *Store) RecordBackupRun(ctx context.Context, r backup.Run) error {
	detail, err := json.Marshal(r.Detail)
	if err != nil {
		return fmt.Errorf("encoding backup run detail: %w", err)
	}
	if r.Detail == nil {
		detail = []byte("{}")
	}
	_, err = s.db.Exec(ctx, `
		INSERT INTO backup_runs (kind, started_at, finished_at, ok, verified, location, bytes, detail, error)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		r.Kind, r.StartedAt, r.FinishedAt, r.OK, r.Verified, r.Location, r.Bytes, detail, r.Error)
	if err != nil {
		return fmt.Errorf("recording backup run: %w", mapErr(err))
	}
	return nil
}

// LastVerifiedBackups returns, for each of kinds, the finish time of its
// newest ok and verified run; a kind never backed up is absent from the
// map. One index probe per kind (backup_runs_fresh_idx), so it is cheap
// enough for every scrape and readiness check.
func (s *Store) LastVerifiedBackups(ctx context.Context, kinds []string) (map[string]time.Time, error) {
	rows, err := s.db.Query(ctx, `
		SELECT k.kind, (SELECT b.finished_at FROM backup_runs b
		                WHERE b.kind = k.kind AND b.ok AND b.verified AND b.finished_at IS NOT NULL
		                ORDER BY b.finished_at DESC LIMIT 1)
		FROM unnest($1::text[]) AS k(kind)`, kinds)
	if err != nil {
		return nil, fmt.Errorf("reading backup freshness: %w", mapErr(err))
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var kind string
		var at *time.Time
		if err := rows.Scan(&kind, &at); err != nil {
			return nil, fmt.Errorf("reading backup freshness: %w", mapErr(err))
		}
		if at != nil {
			out[kind] = *at
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading backup freshness: %w", mapErr(err))
	}
	return out, nil
}

// LastBackupAttempt returns when the newest run of kind started, ok or not,
// and whether there is one: a scheduler waits a retry delay after a failed
// run rather than starting again at once.
func (s *Store) LastBackupAttempt(ctx context.Context, kind string) (time.Time, bool, error) {
	var at time.Time
	err := s.db.QueryRow(ctx,
		`SELECT started_at FROM backup_runs WHERE kind = $1 ORDER BY started_at DESC LIMIT 1`, kind).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("reading last backup attempt: %w", mapErr(err))
	}
	return at, true, nil
}

// InstalledAt is when the first migration was applied: the installation's
// birth, which outlives restarts (a fresh install has no backup yet and is
// given time to make one).
func (s *Store) InstalledAt(ctx context.Context) (time.Time, error) {
	var at time.Time
	err := s.db.QueryRow(ctx, `SELECT min(tstamp)::timestamptz FROM goose_db_version WHERE version_id > 0`).Scan(&at)
	if err != nil {
		return time.Time{}, fmt.Errorf("reading installation time: %w", mapErr(err))
	}
	return at, nil
}

// WithAdvisoryLock runs f while holding the session advisory lock key on a
// dedicated connection, when no other session holds it; ran says whether f
// ran. Instances use it so a periodic job runs on one of them at a time.
// The lock dies with the connection, so a crashed holder never blocks the
// others for long.
func (s *Store) WithAdvisoryLock(ctx context.Context, key int64, f func(context.Context) error) (ran bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("acquiring a connection for a lock: %w", mapErr(err))
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
		return false, fmt.Errorf("taking advisory lock: %w", mapErr(err))
	}
	if !got {
		return false, nil
	}
	defer func() {
		// On a dead context or connection the unlock fails; closing the
		// connection releases the lock instead.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, uerr := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, key); uerr != nil {
			_ = conn.Conn().Close(uctx)
		}
	}()
	return true, f(ctx)
}
