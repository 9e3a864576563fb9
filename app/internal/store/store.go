// Package store is the application's Postgres layer and the only package that
// imports pgx. It owns the connection pool, applies the embedded migrations,
// and maps driver errors onto the problem sentinels at its edge, so callers
// never see a vendor type.
//
// Pattern for new queries: write the SQL once against a querier (satisfied by
// both the pool and a transaction), then expose it as a method on *Store and,
// when it must join a caller's transaction, on *Tx:
//
//	func createThing(ctx context.Context, q querier, ...) error { ... }
//	func (s *Store) CreateThing(ctx context.Context, ...) error { return createThing(ctx, s.db, ...) }
//	func (t *Tx) CreateThing(ctx context.Context, ...) error    { return createThing(ctx, t.db, ...) }
//
// Every method takes ctx and returns errors through mapErr.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jackc/puddle/v2"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/retry"
	"github.com/finetune-studio/finetune-studio/migrations"
)

// Options configures Open.
type Options struct {
	URL              string
	MaxConns         int32
	ConnectTimeout   time.Duration
	StatementTimeout time.Duration
	// Migrate applies pending migrations before Open returns.
	Migrate bool
	// TaskMaxAttempts bounds the failed (not rescheduled) runs of the tasks
	// the store enqueues (WORKER_MAX_ATTEMPTS). Default 10.
	TaskMaxAttempts int
	// ListenerPing is how long the event listener's connection may stay
	// quiet before it is pinged, and how long the ping may take. Default
	// 30 s.
	ListenerPing time.Duration
	// Migrations replaces the embedded migrations (tests run an earlier
	// release's set this way). Default: migrations.FS.
	Migrations fs.FS

	// lookup replaces the resolver of the database's host name (tests
	// make it fail on purpose). Default: pgx's own.
	lookup pgconn.LookupFunc
}

// Store is the database handle shared by every request and worker.
type Store struct {
	pool     *pgxpool.Pool
	db       querier
	sqlDB    *sql.DB
	provider *goose.Provider
	log      *slog.Logger
	// taskMaxAttempts is Options.TaskMaxAttempts with its default.
	taskMaxAttempts int
	// listenerPing is Options.ListenerPing with its default.
	listenerPing time.Duration
}

// querier is what a query needs; both the pool and a transaction have it.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Open connects to Postgres, retrying with backoff until the database answers
// or ctx ends (callers bound ctx with the startup timeout), then applies
// migrations under an advisory lock when opts.Migrate is set.
func Open(ctx context.Context, opts Options, log *slog.Logger) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(opts.URL)
	if err != nil {
		// The parse error may quote the URL; say only what is wrong.
		return nil, errors.New("DATABASE_URL cannot be parsed as a Postgres connection string")
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.ConnectTimeout > 0 {
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	}
	if opts.StatementTimeout > 0 {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(opts.StatementTimeout.Milliseconds(), 10)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "finetune-studio"
	if opts.lookup != nil {
		cfg.ConnConfig.LookupFunc = opts.lookup
	}
	cfg.ConnConfig.LookupFunc = lookupWithRetry(cfg.ConnConfig.LookupFunc, lookupWaits)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating database pool: %w", err)
	}
	s := &Store{pool: pool, db: pool, log: log, taskMaxAttempts: opts.TaskMaxAttempts, listenerPing: opts.ListenerPing}
	if s.taskMaxAttempts <= 0 {
		s.taskMaxAttempts = 10
	}
	if s.listenerPing <= 0 {
		s.listenerPing = 30 * time.Second
	}
	if err := s.waitReady(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	s.sqlDB = stdlib.OpenDBFromPool(pool)
	// Poll the lock every second; give up only when ctx (the startup
	// timeout) ends, so a second instance simply waits for the first.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, math.MaxInt32))
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("creating migration lock: %w", err)
	}
	migrationsFS := opts.Migrations
	if migrationsFS == nil {
		migrationsFS = migrations.FS
	}
	s.provider, err = goose.NewProvider(goose.DialectPostgres, s.sqlDB, migrationsFS,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("loading migrations: %w", err)
	}
	if opts.Migrate {
		if err := s.Migrate(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// waitReady pings until the database answers, logging every failed attempt.
func (s *Store) waitReady(ctx context.Context) error {
	return retry.UntilReady(ctx, s.log, "database", s.pool.Ping)
}

// Migrate applies pending migrations. Concurrent callers (several instances
// starting at once) serialise on a Postgres advisory lock.
//
// A database migrated further than this binary knows is accepted: during a
// rolling deploy the previous release runs beside the new one, and after a
// rollback it runs alone, on the newer schema. Migrations are written
// expand/contract so that works (docs/migrations.md); it is logged, and
// readiness reports it as a warning.
func (s *Store) Migrate(ctx context.Context) error {
	results, err := s.provider.Up(ctx)
	for _, r := range results {
		s.log.Info("migration applied", "version", r.Source.Version, "duration_ms", r.Duration.Milliseconds())
	}
	if err != nil {
		return fmt.Errorf("applying migrations: %w", err)
	}
	if cur, target, err := s.provider.GetVersions(ctx); err == nil && cur > target {
		s.log.Warn("database schema is newer than this release: running on it (expand/contract migrations)",
			"schema_version", cur, "release_version", target)
	}
	return nil
}

// MigrationState is the schema version in the database and in the binary.
type MigrationState struct {
	Current int64
	Target  int64
}

// Migrations reports the applied and embedded schema versions.
func (s *Store) Migrations(ctx context.Context) (MigrationState, error) {
	cur, target, err := s.provider.GetVersions(ctx)
	if err != nil {
		return MigrationState{}, mapErr(err)
	}
	return MigrationState{Current: cur, Target: target}, nil
}

// MigrationStatus is one migration and whether it is applied.
type MigrationStatus struct {
	Version   int64
	Name      string
	Applied   bool
	AppliedAt time.Time
}

// MigrationStatuses lists every embedded migration.
func (s *Store) MigrationStatuses(ctx context.Context) ([]MigrationStatus, error) {
	st, err := s.provider.Status(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]MigrationStatus, 0, len(st))
	for _, m := range st {
		out = append(out, MigrationStatus{
			Version: m.Source.Version, Name: m.Source.Path,
			Applied: m.State == goose.StateApplied, AppliedAt: m.AppliedAt,
		})
	}
	return out, nil
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return mapErr(s.pool.Ping(ctx)) }

// Close closes every connection.
func (s *Store) Close() {
	if s.provider != nil {
		_ = s.provider.Close() // closes sqlDB, which wraps the pool
	}
	s.pool.Close()
}

// PoolStats is a snapshot of the connection pool for metrics.
type PoolStats struct {
	Acquired, Idle, Total, Max int32
	AcquireCount               int64
	AcquireWait                time.Duration // cumulative time spent waiting for a connection
}

// Stats returns the pool's counters.
func (s *Store) Stats() PoolStats {
	st := s.pool.Stat()
	return PoolStats{
		Acquired: st.AcquiredConns(), Idle: st.IdleConns(), Total: st.TotalConns(), Max: st.MaxConns(),
		AcquireCount: st.AcquireCount(), AcquireWait: st.EmptyAcquireWaitTime(),
	}
}

// Tx is a transaction. Methods on Tx run inside it.
type Tx struct {
	db pgx.Tx
}

// InTx runs fn in a transaction: committed when fn returns nil, rolled back
// otherwise (the error is returned as is).
func (s *Store) InTx(ctx context.Context, fn func(tx *Tx) error) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return fn(&Tx{db: tx}) })
	return mapErr(err)
}

// mapErr translates driver errors into the problem sentinels, keeping the
// original for logs. Errors that already carry a sentinel pass through.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var pe *problem.Error
	if errors.As(err, &pe) || errors.Is(err, problem.ErrNotFound) || errors.Is(err, problem.ErrConflict) ||
		errors.Is(err, problem.ErrUnavailable) || errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %w", problem.ErrNotFound, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505", "23503", "40001", "40P01": // unique, foreign key, serialization, deadlock
			return fmt.Errorf("%w: %w", problem.ErrConflict, err)
		case "57014", "57P01", "57P02", "57P03", "53300": // canceled (statement timeout), shutdown, too many connections
			return fmt.Errorf("%w: %w", problem.ErrUnavailable, err)
		}
		return err
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) || errors.As(err, &netErr) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, puddle.ErrClosedPool) {
		return fmt.Errorf("%w: %w", problem.ErrUnavailable, err)
	}
	return err
}

func isNotFound(err error) bool { return errors.Is(err, problem.ErrNotFound) }
