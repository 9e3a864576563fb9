// Package maintenance keeps storage from growing without bound: periodic
// worker tasks delete expired queue tasks and job event logs, and remove
// objects from the bucket that no database row refers to.
//
// Each job is one task kind on the shared queue, enqueued at startup with
// its kind as dedupe key, so however many instances run there is one live
// task of each kind. A run ends by rescheduling itself one Interval later,
// whether it succeeded or not: a periodic task never reaches the dead
// letter, and a failure is logged and retried at the next interval.
package maintenance

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/blob"
	"github.com/finetune-studio/finetune-studio/app/internal/worker"
)

// The task kinds; each is also its task's dedupe key.
const (
	RetentionKind = "maintenance.retention"
	OrphansKind   = "maintenance.orphans"
)

// Kinds lists the periodic tasks to enqueue at startup.
var Kinds = []string{RetentionKind, OrphansKind}

// batchSize bounds each DELETE and each reference lookup, so no statement
// runs long or holds many locks, however much there is to clean.
const batchSize = 1000

// ObjectPrefixes are the parts of the bucket the application writes (the
// domain's layout: datasets/<id>, models/<job_id>/...). Anything else in
// the bucket is not ours to remove.
var ObjectPrefixes = []string{"datasets/", "models/"}

// Store is the database side of maintenance; *store.Store satisfies it.
type Store interface {
	// DeleteFinishedTasks deletes at most limit done or dead tasks that
	// finished before before, and says how many it deleted.
	DeleteFinishedTasks(ctx context.Context, before time.Time, limit int) (int64, error)
	// DeleteJobEvents deletes at most limit events of jobs that finished
	// before before.
	DeleteJobEvents(ctx context.Context, before time.Time, limit int) (int64, error)
	// UnreferencedObjects returns the keys no row refers to.
	UnreferencedObjects(ctx context.Context, keys []string) ([]string, error)
}

// Objects is the bucket side; *blob.Store satisfies it.
type Objects interface {
	List(ctx context.Context, prefix string) ([]blob.Info, error)
	Remove(ctx context.Context, key string) error
}

// Config says how often maintenance runs and what it keeps.
type Config struct {
	// Interval is the time between two runs of each task.
	Interval time.Duration
	// TaskRetention: done and dead tasks are deleted this long after they
	// finished.
	TaskRetention time.Duration
	// EventRetention: a finished job's event log is deleted this long after
	// the job finished (the job row stays).
	EventRetention time.Duration
	// OrphanMinAge: an unreferenced object is removed only once it is this
	// old, so an upload whose row is about to be inserted is never taken.
	OrphanMinAge time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Maintainer runs the periodic tasks.
type Maintainer struct {
	store   Store
	objects Objects
	cfg     Config
	log     *slog.Logger
}

// New returns a Maintainer.
func New(st Store, objects Objects, cfg Config, log *slog.Logger) *Maintainer {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Maintainer{store: st, objects: objects, cfg: cfg, log: log}
}

// Register makes the pool run the periodic tasks.
func (m *Maintainer) Register(p *worker.Pool) {
	p.Handle(RetentionKind, m.periodic(m.Retention))
	p.Handle(OrphansKind, m.periodic(m.SweepOrphans))
}

// periodic runs f, then asks to run again one interval later. A failure is
// logged here and does not count as a failed attempt: the next run is the
// retry. Only a shutdown's cancellation is returned, so the worker gives
// the task back at once.
func (m *Maintainer) periodic(f func(context.Context) error) worker.Handler {
	return func(ctx context.Context, t worker.Task) error {
		if err := f(ctx); err != nil {
			if ctx.Err() != nil {
				return err
			}
			m.log.Error("maintenance task failed; it runs again at the next interval",
				"kind", t.Kind, "retry_in", m.cfg.Interval.String(), "error", err.Error())
		}
		return worker.Reschedule(m.cfg.Interval)
	}
}

// Retention deletes done and dead tasks older than TaskRetention and the
// event logs of jobs that finished more than EventRetention ago.
func (m *Maintainer) Retention(ctx context.Context) error {
	now := m.cfg.Now()
	tasks, err := inBatches(ctx, func(ctx context.Context) (int64, error) {
		return m.store.DeleteFinishedTasks(ctx, now.Add(-m.cfg.TaskRetention), batchSize)
	})
	if err != nil {
		return fmt.Errorf("deleting expired tasks: %w", err)
	}
	events, err := inBatches(ctx, func(ctx context.Context) (int64, error) {
		return m.store.DeleteJobEvents(ctx, now.Add(-m.cfg.EventRetention), batchSize)
	})
	if err != nil {
		return fmt.Errorf("deleting expired job events: %w", err)
	}
	if tasks > 0 || events > 0 {
		m.log.Info("retention deleted expired rows", "tasks", tasks, "job_events", events)
	}
	return nil
}

// inBatches calls del until it deletes less than a full batch.
func inBatches(ctx context.Context, del func(context.Context) (int64, error)) (int64, error) {
	var total int64
	for {
		n, err := del(ctx)
		total += n
		if err != nil || n < batchSize {
			return total, err
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// SweepOrphans removes the objects under ObjectPrefixes that are older
// than OrphanMinAge and that no row refers to: an upload whose row was
// never inserted (the process died in between), an object whose removal
// failed, the partial output of a job that failed or was cancelled while
// its files were being copied.
func (m *Maintainer) SweepOrphans(ctx context.Context) error {
	cutoff := m.cfg.Now().Add(-m.cfg.OrphanMinAge)
	var removed int
	for _, prefix := range ObjectPrefixes {
		infos, err := m.objects.List(ctx, prefix)
		if err != nil {
			return fmt.Errorf("listing %s: %w", prefix, err)
		}
		var old []string
		for _, o := range infos {
			if o.LastModified.Before(cutoff) {
				old = append(old, o.Key)
			}
		}
		for len(old) > 0 {
			batch := old[:min(len(old), batchSize)]
			old = old[len(batch):]
			orphans, err := m.store.UnreferencedObjects(ctx, batch)
			if err != nil {
				return fmt.Errorf("looking up object references: %w", err)
			}
			for _, key := range orphans {
				if err := m.objects.Remove(ctx, key); err != nil {
					return fmt.Errorf("removing an orphaned object: %w", err)
				}
				removed++
			}
		}
	}
	if removed > 0 {
		m.log.Info("removed orphaned objects", "objects", removed)
	}
	return nil
}
