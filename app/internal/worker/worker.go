// Package worker runs background tasks from the shared Postgres queue.
//
// N workers claim tasks of the registered kinds; each claim is a lease that
// the worker extends by heartbeat while its handler runs. A handler's return
// value decides what happens next:
//
//	nil                   done
//	Reschedule(d)         not finished: run again after d, no attempt counted
//	Permanent(err)        dead-letter at once
//	any other error       retry with exponential backoff; dead-letter after
//	                      the task's maximum attempts
//
// Several instances share the queue safely: a task is claimed with FOR
// UPDATE SKIP LOCKED, and every later state change is conditioned on the
// lease token, so a worker that lost its lease (it hung past the lease, or
// the database was unreachable for the whole lease) can no longer touch the
// task — its handler's context is cancelled instead. After a crash (kill -9)
// the lease simply expires and another instance reclaims the task; that
// counts as a failed attempt, so a task that crashes its worker every time
// still ends in the dead-letter state.
//
// Whatever the path to the dead-letter state (a permanent error, the last
// retry failing, or attempts used up by crashes), the kind's GiveUp hook
// runs first, while the lease is still held, so the owner of the work can
// record the failure (a job marked failed) before its task disappears from
// the queue. If the hook fails (the database is down), nothing is written:
// the lease expires and the next claim calls the hook again.
//
// Shutdown stops claiming, lets running handlers finish until its context
// ends, then cancels them and releases their leases, so any instance picks
// the tasks up again at once.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/store"
)

// Queue is the task table, as the pool uses it (implemented by *store.Store).
type Queue interface {
	ClaimTask(ctx context.Context, kinds []string, lease time.Duration) (*store.Task, error)
	HeartbeatTask(ctx context.Context, id int64, token string, lease time.Duration) error
	CompleteTask(ctx context.Context, id int64, token string) error
	RescheduleTask(ctx context.Context, id int64, token string, delay time.Duration) error
	ReleaseTask(ctx context.Context, id int64, token string) error
	FailTask(ctx context.Context, id int64, token string, delay time.Duration, reason string) (dead bool, err error)
	KillTask(ctx context.Context, id int64, token string, reason string) error
	TaskQueueDepth(ctx context.Context) (store.QueueDepth, error)
}

// Task is what a handler receives.
type Task struct {
	ID          int64
	Kind        string
	Payload     []byte
	DedupeKey   string
	Attempts    int // failed attempts before this run
	MaxAttempts int
	// LeaseToken identifies this claim. A handler whose side effects must
	// not overlap with a later claim's (after this one's lease expired)
	// checks it in the transaction that records them.
	LeaseToken string
	// LastError is the error recorded by the previous failed attempt.
	LastError string
}

// Handler runs one step of a task. It must return when ctx is cancelled.
type Handler func(ctx context.Context, t Task) error

// GiveUp is called when a task is about to be dead-lettered, with the
// cause, while the task's lease is still held. An error leaves the task to
// be claimed again (after its lease expires) and the hook called again.
type GiveUp func(ctx context.Context, t Task, cause error) error

// giveUpTries bounds the extra claims spent on a failing GiveUp hook for a
// task whose attempts are used up; after them the task is dead-lettered
// anyway and the owner's reconciliation has to finish the work.
const giveUpTries = 3

// Observer records task outcomes (implemented by the metrics package).
type Observer interface {
	ObserveTask(kind, outcome string, d time.Duration)
}

// Outcomes reported to the Observer.
const (
	OutcomeDone        = "done"
	OutcomeRescheduled = "rescheduled"
	OutcomeRetry       = "retry"
	OutcomeDead        = "dead"
	OutcomeReleased    = "released"
	OutcomeLeaseLost   = "lease_lost"
)

type rescheduleError struct{ after time.Duration }

func (e *rescheduleError) Error() string { return fmt.Sprintf("reschedule after %s", e.after) }

// Reschedule asks for the task to run again after d without counting a
// failed attempt: the step succeeded but the work is not finished.
func Reschedule(d time.Duration) error { return &rescheduleError{after: max(d, 0)} }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: the task is dead-lettered.
func Permanent(err error) error {
	if err == nil {
		err = errors.New("permanent failure")
	}
	return &permanentError{err: err}
}

// Options configure a Pool; zero values take the defaults.
type Options struct {
	Concurrency  int           // workers; default 4
	Lease        time.Duration // default 30s; heartbeat every Lease/3
	PollInterval time.Duration // idle wait between claims; default 1s
	// Backoff returns the delay before retry number attempt (1-based).
	// Default: 2^(attempt-1) seconds with ±20% jitter, capped at 10 minutes.
	Backoff func(attempt int) time.Duration
	// DepthInterval is how often queue depth is refreshed; default 5s.
	DepthInterval time.Duration
	Observer      Observer
}

// DefaultBackoff doubles from one second up to ten minutes, with jitter so
// a burst of failures does not retry in lockstep.
func DefaultBackoff(attempt int) time.Duration {
	d := time.Second << min(attempt-1, 20)
	d = min(d, 10*time.Minute)
	jitter := 0.8 + 0.4*rand.Float64() // #nosec G404 -- retry jitter, not a secret: any PRNG will do
	return time.Duration(float64(d) * jitter)
}

// Pool is a set of workers.
type Pool struct {
	q        Queue
	log      *slog.Logger
	opts     Options
	handlers map[string]Handler
	giveUps  map[string]GiveUp
	kinds    []string

	started   atomic.Bool
	stopClaim context.CancelFunc // stops claiming new tasks
	stopWork  context.CancelFunc // cancels running handlers
	claimCtx  context.Context
	workCtx   context.Context
	wg        sync.WaitGroup

	busy     atomic.Int64
	queued   atomic.Int64
	running  atomic.Int64
	stopping atomic.Bool
}

// New returns a pool; register handlers, then Start it.
func New(q Queue, log *slog.Logger, opts Options) *Pool {
	if opts.Concurrency < 0 {
		opts.Concurrency = 0
	}
	if opts.Lease <= 0 {
		opts.Lease = 30 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.Backoff == nil {
		opts.Backoff = DefaultBackoff
	}
	if opts.DepthInterval <= 0 {
		opts.DepthInterval = 5 * time.Second
	}
	return &Pool{q: q, log: log, opts: opts, handlers: map[string]Handler{}, giveUps: map[string]GiveUp{}}
}

// Handle registers h for kind. It must be called before Start.
func (p *Pool) Handle(kind string, h Handler) {
	if p.started.Load() {
		panic("worker: Handle called after Start")
	}
	p.handlers[kind] = h
	p.kinds = append(p.kinds, kind)
	sort.Strings(p.kinds)
}

// HandleGiveUp registers g as kind's GiveUp hook. It must be called before
// Start.
func (p *Pool) HandleGiveUp(kind string, g GiveUp) {
	if p.started.Load() {
		panic("worker: HandleGiveUp called after Start")
	}
	p.giveUps[kind] = g
}

// Start launches the workers. With no handlers or no concurrency the pool
// idles (it still reports queue depth).
func (p *Pool) Start() {
	if !p.started.CompareAndSwap(false, true) {
		return
	}
	p.claimCtx, p.stopClaim = context.WithCancel(context.Background())
	p.workCtx, p.stopWork = context.WithCancel(context.Background())
	n := p.opts.Concurrency
	if len(p.kinds) == 0 {
		n = 0
	}
	for i := range n {
		p.wg.Go(func() { p.work(i) })
	}
	p.wg.Go(p.watchDepth)
	p.log.Info("worker pool started", "workers", n, "kinds", p.kinds)
}

// Shutdown stops claiming and waits for running handlers until ctx ends;
// then it cancels them and releases their leases. It returns ctx's error if
// handlers had to be cancelled.
func (p *Pool) Shutdown(ctx context.Context) error {
	if !p.started.Load() || !p.stopping.CompareAndSwap(false, true) {
		return nil
	}
	p.stopClaim()
	finished := make(chan struct{})
	go func() { p.wg.Wait(); close(finished) }()
	select {
	case <-finished:
		p.stopWork()
		p.log.Info("worker pool stopped", "cancelled_tasks", 0)
		return nil
	case <-ctx.Done():
	}
	busy := p.busy.Load()
	p.log.Warn("worker pool shutdown timeout: cancelling running tasks", "busy", busy)
	p.stopWork()
	<-finished // handlers honour cancellation; leases are released as they return
	p.log.Info("worker pool stopped", "cancelled_tasks", busy)
	return ctx.Err()
}

// Stats is a snapshot for readiness and metrics.
type Stats struct {
	Workers  int
	Busy     int
	Queued   int64 // from the last depth refresh
	Running  int64
	Started  bool
	Stopping bool
}

// Stats returns the pool's current state.
func (p *Pool) Stats() Stats {
	// Workers is the configured concurrency: with no kinds registered the
	// goroutines are not started, but there is no work they could do.
	return Stats{
		Workers: p.opts.Concurrency, Busy: int(p.busy.Load()),
		Queued: p.queued.Load(), Running: p.running.Load(),
		Started: p.started.Load(), Stopping: p.stopping.Load(),
	}
}

func (p *Pool) watchDepth() {
	t := time.NewTicker(p.opts.DepthInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(p.claimCtx, 5*time.Second)
		d, err := p.q.TaskQueueDepth(ctx)
		cancel()
		if err == nil {
			p.queued.Store(d.Queued)
			p.running.Store(d.Running)
		}
		select {
		case <-p.claimCtx.Done():
			return
		case <-t.C:
		}
	}
}

// claimTimeout bounds one claim query, which shutdown waits for.
const claimTimeout = 5 * time.Second

func (p *Pool) work(id int) {
	idle := p.opts.PollInterval
	for p.claimCtx.Err() == nil {
		// Not claimCtx: a claim cancelled mid-flight can still commit on the
		// server, leaving a leased task that nobody runs until the lease
		// expires. A claim always completes; a task claimed after shutdown
		// began is released below.
		ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
		t, err := p.q.ClaimTask(ctx, p.kinds, p.opts.Lease)
		cancel()
		switch {
		case err != nil && p.claimCtx.Err() == nil:
			// The database is unreachable: back off (up to 30s) instead of
			// logging and hammering it every poll interval.
			p.log.Warn("claiming task failed", "worker", id, "retry_in", idle.String(), "error", err.Error())
		case err == nil:
			idle = p.opts.PollInterval
		}
		if t == nil {
			select {
			case <-p.claimCtx.Done():
			case <-time.After(idle):
			}
			if err != nil {
				idle = min(idle*2, max(30*time.Second, p.opts.PollInterval))
			}
			continue
		}
		if p.claimCtx.Err() != nil {
			// Shutdown began while this claim was in flight: hand the task
			// back untouched for another instance instead of starting it.
			p.release(t)
			return
		}
		p.busy.Add(1)
		p.run(t)
		p.busy.Add(-1)
	}
}

// release gives a claimed but unstarted task back to the queue, no attempt
// counted.
func (p *Pool) release(st *store.Task) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := p.q.ReleaseTask(ctx, st.ID, st.LeaseToken)
	p.outcome(p.log.With("task_id", st.ID, "kind", st.Kind), st.Kind, OutcomeReleased, 0, err)
}

// run executes one claimed task and records its outcome.
func (p *Pool) run(st *store.Task) {
	log := p.log.With("task_id", st.ID, "kind", st.Kind)
	if st.Reclaimed {
		log.Warn("task reclaimed after an expired lease", "attempts", st.Attempts)
	}
	// finishCtx outlives the shutdown of claiming: state changes must land.
	finish := func(f func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return f(ctx)
	}
	if st.Attempts >= st.MaxAttempts {
		// Reclaims used up the attempts: the task keeps killing its worker
		// (or the hook failed on an earlier claim). The handler is not run
		// again.
		cause := errors.New("the worker running this task stopped (crashed or lost its lease) on every attempt")
		if st.LastError != "" {
			cause = fmt.Errorf("%s; the last recorded error was: %s", cause, st.LastError)
		}
		outcome, err := p.deadLetter(log, st, cause, st.Attempts >= st.MaxAttempts+giveUpTries, func(ctx context.Context) error {
			return p.q.KillTask(ctx, st.ID, st.LeaseToken, cause.Error())
		})
		p.outcome(log, st.Kind, outcome, 0, err)
		return
	}

	ctx, cancel := context.WithCancelCause(p.workCtx)
	defer cancel(nil)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		p.heartbeat(ctx, cancel, st)
	}()

	start := time.Now()
	err := p.call(ctx, st)
	elapsed := time.Since(start)
	leaseLost := errors.Is(context.Cause(ctx), store.ErrLeaseLost)
	cancel(nil)
	<-hbDone

	var (
		resched *rescheduleError
		perm    *permanentError
		ferr    error
		outcome string
	)
	switch {
	case leaseLost:
		outcome = OutcomeLeaseLost
	case p.workCtx.Err() != nil && err != nil:
		// Cancelled by shutdown: give the task back without counting.
		outcome = OutcomeReleased
		ferr = finish(func(c context.Context) error { return p.q.ReleaseTask(c, st.ID, st.LeaseToken) })
	case err == nil:
		outcome = OutcomeDone
		ferr = finish(func(c context.Context) error { return p.q.CompleteTask(c, st.ID, st.LeaseToken) })
	case errors.As(err, &resched):
		outcome = OutcomeRescheduled
		ferr = finish(func(c context.Context) error {
			return p.q.RescheduleTask(c, st.ID, st.LeaseToken, resched.after)
		})
	case errors.As(err, &perm):
		log.Error("task failed permanently", "error", err.Error())
		outcome, ferr = p.deadLetter(log, st, perm.err, false, func(c context.Context) error {
			return p.q.KillTask(c, st.ID, st.LeaseToken, err.Error())
		})
	case st.Attempts+1 >= st.MaxAttempts:
		attempt := st.Attempts + 1
		log.Error("task failed its last attempt", "attempt", attempt, "error", err.Error())
		outcome, ferr = p.deadLetter(log, st, err, false, func(c context.Context) error {
			_, e := p.q.FailTask(c, st.ID, st.LeaseToken, 0, err.Error())
			return e
		})
	default:
		attempt := st.Attempts + 1
		delay := p.opts.Backoff(attempt)
		var dead bool
		ferr = finish(func(c context.Context) error {
			var e error
			dead, e = p.q.FailTask(c, st.ID, st.LeaseToken, delay, err.Error())
			return e
		})
		if dead {
			// The task's maximum was lowered under it: no hook ran, the
			// owner's reconciliation finishes the work.
			outcome = OutcomeDead
			log.Error("task dead-lettered after its last attempt", "attempt", attempt, "error", err.Error())
		} else {
			outcome = OutcomeRetry
			log.Warn("task failed; will retry", "attempt", attempt, "retry_in", delay.String(), "error", err.Error())
		}
	}
	p.outcome(log, st.Kind, outcome, elapsed, ferr)
}

// deadLetter runs the kind's GiveUp hook, then write (the dead-letter
// write), each with a context of its own: state changes must land even
// during shutdown. When the hook fails nothing is written unless force is
// set: the lease expires, and the next claim, finding the attempts used
// up, calls the hook again without running the handler.
func (p *Pool) deadLetter(log *slog.Logger, st *store.Task, cause error, force bool, write func(ctx context.Context) error) (string, error) {
	if g := p.giveUps[st.Kind]; g != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := p.callGiveUp(ctx, g, st, cause)
		cancel()
		if err != nil {
			if !force {
				log.Error("task give-up hook failed; the task will be claimed again", "error", err.Error())
				return OutcomeRetry, nil
			}
			log.Error("task give-up hook failed again; dead-lettering the task anyway", "error", err.Error())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return OutcomeDead, write(ctx)
}

// callGiveUp runs a GiveUp hook, turning a panic into an error.
func (p *Pool) callGiveUp(ctx context.Context, g GiveUp, st *store.Task, cause error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("give-up hook panicked: %v", r)
		}
	}()
	return g(ctx, taskOf(st), cause)
}

func (p *Pool) outcome(log *slog.Logger, kind, outcome string, d time.Duration, err error) {
	if errors.Is(err, store.ErrLeaseLost) {
		outcome = OutcomeLeaseLost
		err = nil
	}
	if err != nil {
		// The lease will expire and another claim will retry the task.
		log.Error("recording task outcome failed", "outcome", outcome, "error", err.Error())
	}
	if outcome == OutcomeLeaseLost {
		log.Warn("task lease lost; another worker may own it now")
	}
	if p.opts.Observer != nil {
		p.opts.Observer.ObserveTask(kind, outcome, d)
	}
}

// call runs the handler, turning a panic into a retryable error.
func (p *Pool) call(ctx context.Context, st *store.Task) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return p.handlers[st.Kind](ctx, taskOf(st))
}

func taskOf(st *store.Task) Task {
	return Task{
		ID: st.ID, Kind: st.Kind, Payload: st.Payload, DedupeKey: st.DedupeKey,
		Attempts: st.Attempts, MaxAttempts: st.MaxAttempts,
		LeaseToken: st.LeaseToken, LastError: st.LastError,
	}
}

// heartbeat extends the lease every Lease/3 until ctx ends. If the lease is
// lost, or cannot be extended before it would expire, the handler is
// cancelled: another instance may legitimately claim the task now.
func (p *Pool) heartbeat(ctx context.Context, cancel context.CancelCauseFunc, st *store.Task) {
	every := p.opts.Lease / 3
	deadline := time.Now().Add(p.opts.Lease)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hctx, hcancel := context.WithTimeout(ctx, every)
		err := p.q.HeartbeatTask(hctx, st.ID, st.LeaseToken, p.opts.Lease)
		hcancel()
		switch {
		case err == nil:
			deadline = time.Now().Add(p.opts.Lease)
		case errors.Is(err, store.ErrLeaseLost):
			cancel(store.ErrLeaseLost)
			return
		case ctx.Err() != nil:
			return
		case time.Until(deadline) < every:
			p.log.Warn("task heartbeat failing; giving the lease up", "task_id", st.ID, "error", err.Error())
			cancel(store.ErrLeaseLost)
			return
		}
	}
}
