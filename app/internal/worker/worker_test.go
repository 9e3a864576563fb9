package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/store"
	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
)

func TestMain(m *testing.M) {
	if os.Getenv("WORKER_HELPER_DSN") != "" {
		os.Exit(helperProcess())
	}
	os.Exit(testenv.Main(m))
}

// testStore is the store a pool runs on, and a reader of its task rows
// (only tests read a task by id).
type testStore struct {
	*store.Store
	tasks *testenv.TaskReader
}

func openStore(t *testing.T, dsn string) *testStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := store.Open(ctx, store.Options{URL: dsn, Migrate: true, MaxConns: 20}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &testStore{Store: s, tasks: testenv.NewTaskReader(t, dsn)}
}

// GetTask reads task id.
func (s *testStore) GetTask(ctx context.Context, id int64) (*testenv.Task, error) {
	return s.tasks.Task(ctx, id)
}

// Enqueue adds a task on its own (production code enqueues inside a
// transaction, with the change that calls for it).
func (s *testStore) Enqueue(ctx context.Context, nt store.NewTask) (id int64, created bool, err error) {
	err = s.InTx(ctx, func(tx *store.Tx) error {
		id, created, err = tx.Enqueue(ctx, nt)
		return err
	})
	return id, created, err
}

// outcomes counts what the pool reported.
type outcomes struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *outcomes) ObserveTask(kind, outcome string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[outcome]++
}

func (o *outcomes) get(outcome string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[outcome]
}

func fastOptions(obs Observer) Options {
	return Options{
		Concurrency:  4,
		Lease:        3 * time.Second,
		PollInterval: 20 * time.Millisecond,
		Backoff:      func(int) time.Duration { return 10 * time.Millisecond },
		Observer:     obs,
	}
}

func newPool(t *testing.T, s *testStore, opts Options) *Pool {
	t.Helper()
	p := New(s.Store, slog.New(slog.DiscardHandler), opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	return p
}

// waitTask polls until the task reaches state.
func waitTask(t *testing.T, s *testStore, id int64, state string) *testenv.Task {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		task, err := s.GetTask(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if task.State == state {
			return task
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d: state %s, want %s (last error %q)", id, task.State, state, task.LastError)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func enqueue(t *testing.T, s *testStore, kind string, maxAttempts int) int64 {
	t.Helper()
	id, _, err := s.Enqueue(context.Background(), store.NewTask{Kind: kind, MaxAttempts: maxAttempts})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestTwoPoolsRunEveryTaskExactlyOnce shares one queue between two pools
// (two app instances) and checks no task runs twice or concurrently.
func TestTwoPoolsRunEveryTaskExactlyOnce(t *testing.T) {
	dsn := testenv.NewDatabase(t)
	s1, s2 := openStore(t, dsn), openStore(t, dsn)
	var mu sync.Mutex
	runs := map[int64]int{}
	running := map[int64]bool{}
	var overlap atomic.Bool
	handler := func(ctx context.Context, task Task) error {
		mu.Lock()
		if running[task.ID] {
			overlap.Store(true)
		}
		running[task.ID] = true
		runs[task.ID]++
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // hold the task so overlaps could show
		mu.Lock()
		running[task.ID] = false
		mu.Unlock()
		return nil
	}
	const n = 80
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = enqueue(t, s1, "echo", 3)
	}
	o1, o2 := &outcomes{}, &outcomes{}
	opts1 := fastOptions(o1)
	opts1.Concurrency = 1 // its one worker is held below, so the second must run
	p1, p2 := newPool(t, s1, opts1), newPool(t, s2, fastOptions(o2))
	// To prove the instances share the queue without relying on timing,
	// the first instance's first task waits until the second has finished
	// one of its own.
	secondDidOne := make(chan struct{})
	var once sync.Once
	var firstHeld atomic.Bool
	p1.Handle("echo", func(ctx context.Context, task Task) error {
		if firstHeld.CompareAndSwap(false, true) {
			select {
			case <-secondDidOne:
			case <-time.After(time.Minute):
				return Permanent(errors.New("the second instance never ran a task"))
			}
		}
		return handler(ctx, task)
	})
	p2.Handle("echo", func(ctx context.Context, task Task) error {
		err := handler(ctx, task)
		once.Do(func() { close(secondDidOne) })
		return err
	})
	p1.Start()
	p2.Start()
	for _, id := range ids {
		waitTask(t, s1, id, store.TaskDone)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if runs[id] != 1 {
			t.Errorf("task %d ran %d times", id, runs[id])
		}
	}
	if overlap.Load() {
		t.Error("a task ran concurrently in two workers")
	}
	if o1.get(OutcomeDone) == 0 || o2.get(OutcomeDone) == 0 {
		t.Errorf("both instances should share the work: %d and %d", o1.get(OutcomeDone), o2.get(OutcomeDone))
	}
	if got := o1.get(OutcomeDone) + o2.get(OutcomeDone); got != n {
		t.Errorf("done outcomes: got %d, want %d", got, n)
	}
}

func TestRetryWithBackoffThenDeadLetter(t *testing.T) {
	s := openStore(t, testenv.NewDatabase(t))
	var attempts []int
	var mu sync.Mutex
	var delays []int
	o := &outcomes{}
	opts := fastOptions(o)
	opts.Backoff = func(attempt int) time.Duration {
		mu.Lock()
		delays = append(delays, attempt)
		mu.Unlock()
		return time.Duration(attempt) * 10 * time.Millisecond
	}
	p := newPool(t, s, opts)
	p.Handle("flaky", func(ctx context.Context, task Task) error {
		mu.Lock()
		attempts = append(attempts, task.Attempts)
		mu.Unlock()
		return errors.New("upstream said no")
	})
	id := enqueue(t, s, "flaky", 3)
	p.Start()
	task := waitTask(t, s, id, store.TaskDead)
	if task.Attempts != 3 || task.LastError != "upstream said no" {
		t.Fatalf("dead task: %+v", task)
	}
	mu.Lock()
	defer mu.Unlock()
	// No backoff after the last attempt: there is no retry to delay.
	if fmt.Sprint(attempts) != "[0 1 2]" || fmt.Sprint(delays) != "[1 2]" {
		t.Fatalf("handler saw attempts %v, backoff asked for %v", attempts, delays)
	}
	if o.get(OutcomeRetry) != 2 || o.get(OutcomeDead) != 1 {
		t.Fatalf("outcomes: %v", o.n)
	}
}

func TestDefaultBackoffGrowsAndIsCapped(t *testing.T) {
	prev := time.Duration(0)
	for attempt := 1; attempt <= 8; attempt++ {
		d := DefaultBackoff(attempt)
		base := time.Second << (attempt - 1)
		if d < base*8/10 || d > base*12/10 {
			t.Errorf("attempt %d: %s outside ±20%% of %s", attempt, d, base)
		}
		if attempt > 1 && d <= prev/2 {
			t.Errorf("attempt %d: %s does not grow from %s", attempt, d, prev)
		}
		prev = d
	}
	if d := DefaultBackoff(40); d > 12*time.Minute {
		t.Errorf("cap: got %s", d)
	}
}

func TestPermanentGoesStraightToDeadLetter(t *testing.T) {
	s := openStore(t, testenv.NewDatabase(t))
	var calls atomic.Int32
	p := newPool(t, s, fastOptions(nil))
	p.Handle("bad", func(ctx context.Context, task Task) error {
		calls.Add(1)
		return Permanent(errors.New("dataset is gone"))
	})
	id := enqueue(t, s, "bad", 10)
	p.Start()
	task := waitTask(t, s, id, store.TaskDead)
	if calls.Load() != 1 || task.Attempts != 0 || task.LastError != "dataset is gone" {
		t.Fatalf("calls %d, task %+v", calls.Load(), task)
	}
}

func TestRescheduleDoesNotCountAnAttempt(t *testing.T) {
	s := openStore(t, testenv.NewDatabase(t))
	var steps atomic.Int32
	p := newPool(t, s, fastOptions(nil))
	p.Handle("steps", func(ctx context.Context, task Task) error {
		if task.Attempts != 0 {
			return Permanent(fmt.Errorf("attempts = %d, want 0", task.Attempts))
		}
		if steps.Add(1) < 5 {
			return Reschedule(10 * time.Millisecond)
		}
		return nil
	})
	id := enqueue(t, s, "steps", 1) // one attempt: any counted failure would kill it
	p.Start()
	task := waitTask(t, s, id, store.TaskDone)
	if steps.Load() != 5 || task.Attempts != 0 {
		t.Fatalf("steps %d, task %+v", steps.Load(), task)
	}
}

func TestPanicIsARetryableFailure(t *testing.T) {
	s := openStore(t, testenv.NewDatabase(t))
	var calls atomic.Int32
	p := newPool(t, s, fastOptions(nil))
	p.Handle("panics", func(ctx context.Context, task Task) error {
		if calls.Add(1) == 1 {
			panic("oops")
		}
		return nil
	})
	id := enqueue(t, s, "panics", 3)
	p.Start()
	task := waitTask(t, s, id, store.TaskDone)
	if calls.Load() != 2 || task.Attempts != 1 {
		t.Fatalf("calls %d, task %+v", calls.Load(), task)
	}
}

// TestShutdownWaitsForRunningTasks: a step that finishes within the
// shutdown budget completes normally.
func TestShutdownWaitsForRunningTasks(t *testing.T) {
	s := openStore(t, testenv.NewDatabase(t))
	started := make(chan struct{})
	release := make(chan struct{})
	p := newPool(t, s, fastOptions(nil))
	p.Handle("slow", func(ctx context.Context, task Task) error {
		close(started)
		<-release
		return nil
	})
	id := enqueue(t, s, "slow", 3)
	p.Start()
	<-started
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done <- p.Shutdown(ctx)
	}()
	// Shutdown must not return while the step runs, and must not claim more:
	// a task enqueued once the pool is stopping stays queued.
	for !p.Stats().Stopping {
		time.Sleep(time.Millisecond)
	}
	later := enqueue(t, s, "slow", 3)
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while a task was running", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitTask(t, s, id, store.TaskDone)
	if task, _ := s.GetTask(context.Background(), later); task.State != store.TaskQueued {
		t.Fatalf("a stopping pool claimed a new task: %+v", task)
	}
}

// TestShutdownReleasesLeasesForAnotherInstance: a step that outlives the
// budget is cancelled, its lease released (no attempt counted), and a second
// pool resumes it at once, long before the lease would have expired.
func TestShutdownReleasesLeasesForAnotherInstance(t *testing.T) {
	dsn := testenv.NewDatabase(t)
	s1, s2 := openStore(t, dsn), openStore(t, dsn)
	started := make(chan struct{})
	o1 := &outcomes{}
	opts := fastOptions(o1)
	opts.Lease = 10 * time.Minute // only a release can free it in time
	p1 := newPool(t, s1, opts)
	p1.Handle("long", func(ctx context.Context, task Task) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	id := enqueue(t, s1, "long", 1)
	p1.Start()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := p1.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: got %v, want the deadline error", err)
	}
	task, _ := s1.GetTask(context.Background(), id)
	if task.State != store.TaskQueued || task.LeaseToken != "" || task.Attempts != 0 {
		t.Fatalf("after shutdown: %+v, want queued, no lease, no attempt", task)
	}
	// At least the cancelled step's release; on a loaded machine a claim
	// that was still in flight when shutdown began can pick the released
	// task up and hand it back once more.
	if o1.get(OutcomeReleased) < 1 || o1.get(OutcomeDone)+o1.get(OutcomeRetry)+o1.get(OutcomeDead) != 0 {
		t.Fatalf("outcomes %v", o1.n)
	}
	p2 := newPool(t, s2, opts)
	p2.Handle("long", func(ctx context.Context, task Task) error { return nil })
	p2.Start()
	waitTask(t, s2, id, store.TaskDone)
}

// TestLostLeaseCancelsHandler: if the lease is taken away (here: the row is
// given to another claimer), the heartbeat notices and cancels the handler,
// which must not then complete the task.
func TestLostLeaseCancelsHandler(t *testing.T) {
	s := openStore(t, testenv.NewDatabase(t))
	o := &outcomes{}
	opts := fastOptions(o)
	opts.Lease = 600 * time.Millisecond
	// One worker, busy with the task: no idle worker of this pool can claim
	// the row in the moment stealLease hands it back and re-claims it.
	opts.Concurrency = 1
	started := make(chan struct{})
	cancelled := make(chan struct{})
	p := newPool(t, s, opts)
	p.Handle("k", func(ctx context.Context, task Task) error {
		close(started)
		<-ctx.Done()
		close(cancelled)
		return nil // even a nil return must not complete a task whose lease is gone
	})
	id := enqueue(t, s, "k", 3)
	p.Start()
	<-started
	thief := stealLease(t, s, id)
	select {
	case <-cancelled:
	case <-time.After(time.Minute):
		t.Fatal("handler not cancelled after its lease was lost")
	}
	deadline := time.Now().Add(time.Minute)
	for o.get(OutcomeLeaseLost) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("outcomes %v", o.n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if task, _ := s.GetTask(context.Background(), id); task.State != store.TaskRunning || task.LeaseToken != thief {
		t.Fatalf("the stale worker touched the task: %+v", task)
	}
}

// stealLease simulates another instance owning the task now: the lease is
// given back and claimed again, so the row carries a new lease token.
func stealLease(t *testing.T, s *testStore, id int64) string {
	t.Helper()
	ctx := context.Background()
	task, err := s.GetTask(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseTask(ctx, id, task.LeaseToken); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimTask(ctx, []string{"k"}, time.Hour)
	if err != nil || claimed == nil || claimed.ID != id {
		t.Fatalf("re-claim: %+v %v", claimed, err)
	}
	return claimed.LeaseToken
}

// TestKill9LeaseIsReclaimed runs a pool in a separate process, kills it with
// SIGKILL mid-task, and checks a second pool resumes the task only after the
// dead process's lease expired — never while it was alive.
func TestKill9LeaseIsReclaimed(t *testing.T) {
	dsn := testenv.NewDatabase(t)
	s := openStore(t, dsn)
	id := enqueue(t, s, "crashy", 5)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "WORKER_HELPER_DSN="+dsn)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "started "+strconv.FormatInt(id, 10)+"\n" {
		t.Fatalf("helper: %q %v", line, err)
	}

	// A second instance runs alongside; it must not get the task while the
	// helper lives and heartbeats (its lease is 1.5s, renewed every 0.5s).
	var killedAt atomic.Int64
	ranAt := make(chan time.Time, 1)
	opts := fastOptions(nil)
	p := newPool(t, s, opts)
	p.Handle("crashy", func(ctx context.Context, task Task) error {
		ranAt <- time.Now()
		return nil
	})
	p.Start()
	first, _ := s.GetTask(context.Background(), id)
	deadline := time.Now().Add(time.Minute)
	for { // wait until the helper has renewed its lease at least once
		cur, _ := s.GetTask(context.Background(), id)
		if cur.LeaseUntil.After(first.LeaseUntil) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("helper never heartbeated")
		}
		time.Sleep(20 * time.Millisecond)
	}
	killedAt.Store(time.Now().UnixNano())
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var at time.Time
	select {
	case at = <-ranAt:
	case <-time.After(time.Minute):
		t.Fatal("task not reclaimed after the crash")
	}
	if at.UnixNano() < killedAt.Load() {
		t.Fatal("the task ran in the second instance while the first still held it")
	}
	task := waitTask(t, s, id, store.TaskDone)
	if task.Attempts != 1 {
		t.Fatalf("attempts: got %d, want 1 (the crash counts)", task.Attempts)
	}
}

// helperProcess is the crashing instance of TestKill9LeaseIsReclaimed.
func helperProcess() int {
	ctx := context.Background()
	s, err := store.Open(ctx, store.Options{URL: os.Getenv("WORKER_HELPER_DSN")}, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	p := New(s, slog.New(slog.DiscardHandler), Options{Concurrency: 1, Lease: 1500 * time.Millisecond, PollInterval: 20 * time.Millisecond})
	p.Handle("crashy", func(ctx context.Context, task Task) error {
		fmt.Printf("started %d\n", task.ID)
		select {} // hang until SIGKILL
	})
	p.Start()
	select {}
}

// crashClaims claims task id n times with a lease that expires at once and
// never finishes it, as n instances that crashed mid-task would.
func crashClaims(t *testing.T, s *testStore, kind string, id int64, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for claimed := 0; claimed < n; {
		task, err := s.ClaimTask(context.Background(), []string{kind}, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if task != nil {
			if task.ID != id {
				t.Fatalf("claimed task %d, want %d", task.ID, id)
			}
			claimed++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d not claimable after %d crashed claims", id, claimed)
		}
		time.Sleep(5 * time.Millisecond) // the 1 ms lease is expiring
	}
}

// giveUps records the GiveUp calls of a kind and checks that each one runs
// while the task is still leased to the caller.
type giveUps struct {
	s     *testStore
	mu    sync.Mutex
	calls []string // the causes
	fail  int      // fail this many calls first (the database is down)
	bad   []string
}

func (g *giveUps) hook(ctx context.Context, task Task, cause error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	cur, err := g.s.GetTask(ctx, task.ID)
	if err != nil {
		return err
	}
	if cur.State != store.TaskRunning || cur.LeaseToken != task.LeaseToken {
		g.bad = append(g.bad, fmt.Sprintf("hook ran on a task in state %s, not leased to it", cur.State))
	}
	g.calls = append(g.calls, cause.Error())
	if g.fail > 0 {
		g.fail--
		return errors.New("connection refused")
	}
	return nil
}

func (g *giveUps) get() ([]string, []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.calls), slices.Clone(g.bad)
}

// TestGiveUpRunsOnEveryPathToTheDeadLetter: a permanent error, the last
// retry failing, and attempts used up by crashed workers all call the
// kind's GiveUp hook, with the cause, before the task is dead-lettered.
// Crashed claims used to dead-letter the task without telling anyone, so a
// job stayed queued forever.
func TestGiveUpRunsOnEveryPathToTheDeadLetter(t *testing.T) {
	s := openStore(t, testenv.NewDatabase(t))
	g := &giveUps{s: s}
	var handled sync.Map
	p := newPool(t, s, fastOptions(nil))
	h := func(ctx context.Context, task Task) error {
		handled.Store(task.ID, true)
		switch string(task.Payload) {
		case `{"fail": "permanent"}`:
			return Permanent(errors.New("dataset is gone"))
		default:
			return errors.New("upstream said no")
		}
	}
	for _, kind := range []string{"k", "crashing"} {
		p.Handle(kind, h)
		p.HandleGiveUp(kind, g.hook)
	}
	ctx := context.Background()
	permanent, _, err := s.Enqueue(ctx, store.NewTask{Kind: "k", Payload: []byte(`{"fail": "permanent"}`), MaxAttempts: 5})
	if err != nil {
		t.Fatal(err)
	}
	retried := enqueue(t, s, "k", 2)
	crashed := enqueue(t, s, "crashing", 2)
	crashClaims(t, s, "crashing", crashed, 2)
	// The third claim finds the attempts used up: the handler is not run.
	p.Start()
	for _, id := range []int64{permanent, retried, crashed} {
		waitTask(t, s, id, store.TaskDead)
	}
	calls, bad := g.get()
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	slices.Sort(calls)
	want := []string{"dataset is gone", "the worker running this task stopped (crashed or lost its lease) on every attempt", "upstream said no"}
	if !slices.Equal(calls, want) {
		t.Errorf("give-up causes = %q, want %q", calls, want)
	}
	if _, ran := handled.Load(crashed); ran {
		t.Error("the handler ran for a task whose attempts were used up")
	}
}

// TestGiveUpFailureKeepsTheTask: when the hook cannot record the failure
// (the database is down), the task is not dead-lettered; the next claim
// calls the hook again, without running the handler again.
func TestGiveUpFailureKeepsTheTask(t *testing.T) {
	s := openStore(t, testenv.NewDatabase(t))
	g := &giveUps{s: s, fail: 2}
	var runs atomic.Int32
	opts := fastOptions(nil)
	opts.Lease = 300 * time.Millisecond
	p := newPool(t, s, opts)
	p.Handle("k", func(ctx context.Context, task Task) error {
		runs.Add(1)
		return errors.New("upstream said no")
	})
	p.HandleGiveUp("k", g.hook)
	id := enqueue(t, s, "k", 1)
	p.Start()
	task := waitTask(t, s, id, store.TaskDead)
	calls, bad := g.get()
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	if len(calls) != 3 || runs.Load() != 1 {
		t.Errorf("hook called %d times, handler %d times; want 3 (two failures, then success) and 1", len(calls), runs.Load())
	}
	if task.Attempts < 1 {
		t.Errorf("dead task attempts = %d", task.Attempts)
	}
}

// TestGiveUpFailingForeverStillEnds: a hook that never succeeds delays the
// dead-letter by a bounded number of claims only.
func TestGiveUpFailingForeverStillEnds(t *testing.T) {
	s := openStore(t, testenv.NewDatabase(t))
	g := &giveUps{s: s, fail: 1 << 30}
	opts := fastOptions(nil)
	opts.Lease = 200 * time.Millisecond
	p := newPool(t, s, opts)
	p.Handle("k", func(ctx context.Context, task Task) error { return Permanent(errors.New("no")) })
	p.HandleGiveUp("k", g.hook)
	id := enqueue(t, s, "k", 1)
	p.Start()
	waitTask(t, s, id, store.TaskDead)
	if calls, _ := g.get(); len(calls) != 2+giveUpTries {
		t.Errorf("hook called %d times, want %d (the handler's failure, then one per extra claim)", len(calls), 2+giveUpTries)
	}
}
