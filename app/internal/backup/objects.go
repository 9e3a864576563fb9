package backup

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/blob"
	"github.com/finetune-studio/finetune-studio/app/internal/health"
)

// Run is one backup attempt, a row of backup_runs.
type Run struct {
	Kind       string // KindPostgres, KindObjects or KindPostgresOffsite
	StartedAt  time.Time
	FinishedAt time.Time
	OK         bool
	// Verified: the backup was read back and checked, not only written.
	Verified bool
	Location string
	Bytes    int64
	Detail   map[string]any
	Error    string
}

// The kinds of backup (backup_runs.kind).
const (
	KindPostgres = "postgres"
	KindObjects  = "objects"
	// KindPostgresOffsite: the dumps copied off the VM (PostgresOffsite).
	KindPostgresOffsite = "postgres-offsite"
)

// ObjectsLockKey is the Postgres advisory lock that makes one object
// mirror run at a time across every app instance and CLI invocation
// ("ftbkobjs" in ASCII; distinct from goose's migration lock).
const ObjectsLockKey int64 = 0x6674626b6f626a73

// RunStore is what the object backup needs from the database;
// *store.Store satisfies it.
type RunStore interface {
	Store
	RecordBackupRun(ctx context.Context, r Run) error
	LastBackupAttempt(ctx context.Context, kind string) (time.Time, bool, error)
	WithAdvisoryLock(ctx context.Context, key int64, f func(context.Context) error) (bool, error)
}

// ErrBusy means another instance is running the same backup right now.
var ErrBusy = errors.New("another run of this backup is in progress (it holds the backup lock)")

// Objects mirrors the bucket and records each run.
type Objects struct {
	st     RunStore
	mirror *blob.Mirror
	src    *blob.Store
	log    *slog.Logger
	now    func() time.Time
}

// NewObjects returns the object backup of src through mirror.
func NewObjects(st RunStore, mirror *blob.Mirror, src *blob.Store, log *slog.Logger) *Objects {
	return &Objects{st: st, mirror: mirror, src: src, log: log, now: time.Now}
}

// RunOnce mirrors the bucket now, under the backup lock, and records the
// run in backup_runs whether it succeeds or not. It returns ErrBusy without
// recording anything when another run holds the lock.
func (o *Objects) RunOnce(ctx context.Context) (blob.MirrorStats, error) {
	return o.run(ctx, nil)
}

// run mirrors under the lock; when stillDue is set it is asked again under
// the lock, so two instances that woke together run once.
func (o *Objects) run(ctx context.Context, stillDue func(context.Context) (bool, error)) (blob.MirrorStats, error) {
	var stats blob.MirrorStats
	err := runLocked(ctx, o.st, ObjectsLockKey, stillDue, func(ctx context.Context) (Run, error) {
		started := o.now()
		var err error
		stats, err = o.mirror.Run(ctx, o.src)
		r := Run{
			Kind: KindObjects, StartedAt: started, FinishedAt: o.now(),
			OK: err == nil, Verified: err == nil && stats.Verified,
			Location: o.mirror.Location(o.src.Bucket()), Bytes: stats.Bytes,
			Detail: map[string]any{
				"objects": stats.Objects, "copied": stats.Copied, "skipped": stats.Skipped,
				"removed": stats.Removed, "bytes_copied": stats.BytesCopied,
			},
		}
		if err != nil {
			r.Error = err.Error()
		}
		return r, err
	})
	return stats, err
}

// Schedule mirrors every interval until ctx ends. The schedule lives in
// backup_runs, not in this process: a run is due interval after the newest
// verified one finished, so restarts and extra replicas do not add runs,
// and a failed run is retried retry after it started.
func (o *Objects) Schedule(ctx context.Context, interval, retry time.Duration) {
	periodic{st: o.st, kind: KindObjects, now: o.now, log: o.log,
		run: func(ctx context.Context, stillDue func(context.Context) (bool, error)) error {
			stats, err := o.run(ctx, stillDue)
			switch {
			case errors.Is(err, ErrBusy), ctx.Err() != nil:
			case err != nil:
				o.log.Error("object backup failed", "error", err.Error(), "retry_in", retry.String())
			case stats.Location != "":
				o.log.Info("object backup done", "location", stats.Location, "objects", stats.Objects,
					"copied", stats.Copied, "skipped", stats.Skipped, "removed", stats.Removed, "bytes_copied", stats.BytesCopied)
			}
			return err
		}}.schedule(ctx, interval, retry)
}

// runLocked runs do under the advisory lock key (when stillDue, if set,
// still says the run is due) and records the Run it returns in backup_runs
// whether it succeeded or not, even when ctx was cancelled. It returns
// ErrBusy without running or recording anything when another session holds
// the lock, and do's error otherwise.
func runLocked(ctx context.Context, st RunStore, key int64, stillDue func(context.Context) (bool, error),
	do func(context.Context) (Run, error)) error {
	var runErr error
	ran, err := st.WithAdvisoryLock(ctx, key, func(ctx context.Context) error {
		if stillDue != nil {
			due, err := stillDue(ctx)
			if err != nil || !due {
				return err
			}
		}
		var r Run
		r, runErr = do(ctx)
		// Record even when the run was cancelled: the row says it failed.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return st.RecordBackupRun(rctx, r)
	})
	switch {
	case err == nil && !ran:
		return ErrBusy
	case runErr != nil:
		return runErr
	}
	return err
}

// periodic is a backup whose schedule lives in backup_runs (see
// Objects.Schedule).
type periodic struct {
	st   RunStore
	kind string
	now  func() time.Time
	log  *slog.Logger
	// run runs the backup once if stillDue says so under its lock, and
	// logs its own outcome.
	run func(ctx context.Context, stillDue func(context.Context) (bool, error)) error
}

func (p periodic) schedule(ctx context.Context, interval, retry time.Duration) {
	for {
		wait, err := p.untilDue(ctx, interval, retry)
		if err != nil {
			p.log.Warn("backup: reading the schedule failed", "kind", p.kind, "error", err.Error(), "retry_in", retry.String())
			wait = retry
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		err = p.run(ctx, func(ctx context.Context) (bool, error) {
			w, err := p.untilDue(ctx, interval, retry)
			return w <= 0, err
		})
		if err != nil {
			// Busy, failed or unreadable: look again no sooner than retry.
			t := time.NewTimer(retry)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// untilDue is how long until the next run is due (<= 0: now).
func (p periodic) untilDue(ctx context.Context, interval, retry time.Duration) (time.Duration, error) {
	last, err := p.st.LastVerifiedBackups(ctx, []string{p.kind})
	if err != nil {
		return 0, err
	}
	due := p.now()
	if at, ok := last[p.kind]; ok {
		due = at.Add(interval)
	}
	attempt, ok, err := p.st.LastBackupAttempt(ctx, p.kind)
	if err != nil {
		return 0, err
	}
	if ok && attempt.Add(retry).After(due) && !attempt.Before(last[p.kind]) {
		due = attempt.Add(retry)
	}
	return due.Sub(p.now()), nil
}

// Versioner turns on bucket versioning; *blob.Store satisfies it.
type Versioner interface {
	EnableVersioning(ctx context.Context) error
}

// Versioning keeps bucket versioning on and reports, through its readiness
// check, when the server refused it.
type Versioning struct {
	v     Versioner
	now   func() time.Time
	mu    sync.Mutex
	ok    bool
	tried time.Time
}

// versioningRetry bounds how often the readiness check asks a refusing
// server again.
const versioningRetry = time.Minute

// NewVersioning returns a Versioning for v.
func NewVersioning(v Versioner) *Versioning { return &Versioning{v: v, now: time.Now} }

// Enable turns versioning on (idempotent) and remembers the outcome.
func (v *Versioning) Enable(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.enableLocked(ctx)
}

func (v *Versioning) enableLocked(ctx context.Context) error {
	v.tried = v.now()
	err := v.v.EnableVersioning(ctx)
	v.ok = err == nil
	return err
}

// Check is the readiness check: pass once versioning is on, warn while it
// is not (retrying at most once a minute).
func (v *Versioning) Check(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.ok && v.now().Sub(v.tried) >= versioningRetry {
		_ = v.enableLocked(ctx)
	}
	if v.ok {
		return nil
	}
	return health.Degraded("bucket versioning could not be enabled: overwritten or deleted objects are not recoverable from the bucket; see docs/backups.md")
}
