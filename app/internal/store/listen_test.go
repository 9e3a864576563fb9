package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// listenRecorder collects what ListenJobEvents reports.
type listenRecorder struct {
	mu       sync.Mutex
	connects int
	jobs     []string
	changed  chan struct{}
}

func (r *listenRecorder) onConnect() { r.record(func() { r.connects++ }) }

func (r *listenRecorder) onEvent(id string) { r.record(func() { r.jobs = append(r.jobs, id) }) }

func (r *listenRecorder) record(f func()) {
	r.mu.Lock()
	f()
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// waitUntil waits for cond to hold over the recorder's state; a minute is
// a safety net, not a timing assertion.
func (r *listenRecorder) waitUntil(t *testing.T, what string, cond func(connects int, jobs []string) bool) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		r.mu.Lock()
		ok := cond(r.connects, r.jobs)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("waiting for %s: connects %d, jobs %v", what, r.connects, r.jobs)
		}
	}
}

func count(jobs []string, id string) int {
	n := 0
	for _, j := range jobs {
		if j == id {
			n++
		}
	}
	return n
}

// TestListenJobEventsDeliversAndReconnects: a committed event reaches the
// listener as its job id; when the listener's connection is killed it
// reconnects, calls onConnect again (the caller's cue to catch up), and
// later events arrive again. The listener never uses a pool connection.
func TestListenJobEventsDeliversAndReconnects(t *testing.T) {
	s := openTestStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	rec := &listenRecorder{changed: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ListenJobEvents(ctx, rec.onConnect, rec.onEvent)
	}()
	t.Cleanup(func() { cancel(); <-done })
	rec.waitUntil(t, "the first connection", func(c int, _ []string) bool { return c == 1 })
	if got := s.Stats().Acquired; got != 0 {
		t.Errorf("the listener holds %d pool connections, want 0 (it has its own)", got)
	}

	ds := insertTestDataset(t, s, "d")
	job := insertTestJob(t, s, ds.ID) // its "job created" event
	rec.waitUntil(t, "the created event", func(_ int, jobs []string) bool { return count(jobs, job.ID) == 1 })

	var killed int
	err := s.pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`,
		listenerAppName).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminating the listener's backend: killed %d, %v", killed, err)
	}
	rec.waitUntil(t, "a reconnection", func(c int, _ []string) bool { return c == 2 })

	if _, err := s.Transition(ctx, job.ID, training.StatusQueued, training.StatusCancelled, training.JobUpdate{}, "cancelled"); err != nil {
		t.Fatal(err)
	}
	rec.waitUntil(t, "the event after reconnecting", func(_ int, jobs []string) bool { return count(jobs, job.ID) == 2 })

	cancel()
	<-done
	// The backend exits a moment after the client closes: wait for it.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		var left int
		if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`,
			listenerAppName).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after ctx ended: %d listener connections left, want 0", left)
		}
	}
}
