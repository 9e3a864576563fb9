package store

import (
	"context"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
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

// freezer is a TCP proxy to Postgres that can stop passing bytes on the
// connections it holds without closing them: the half-open connection a
// vanished peer or NAT leaves behind. Connections accepted later pass.
type freezer struct {
	ln     net.Listener
	target string
	done   chan struct{}
	mu     sync.Mutex
	frozen map[net.Conn]bool
	conns  []net.Conn
}

func startFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target, done: make(chan struct{}), frozen: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, up)
			f.mu.Unlock()
			wg.Go(func() { f.pipe(c, up, c) })
			wg.Go(func() { f.pipe(up, c, c) })
		}
	})
	t.Cleanup(func() {
		close(f.done)
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		wg.Wait()
	})
	return f
}

// pipe copies from src to dst until either fails, or blocks (holding both
// open) once key's connection is frozen.
func (f *freezer) pipe(src, dst, key net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		f.mu.Lock()
		frozen := f.frozen[key]
		f.mu.Unlock()
		if frozen {
			<-f.done
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// freeze stops every connection accepted so far.
func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 0; i < len(f.conns); i += 2 {
		f.frozen[f.conns[i]] = true
	}
}

// TestListenerReconnectsFromAHalfOpenConnection: when the listener's
// connection stops answering without being closed, the quiet-time ping
// fails, the listener reconnects (onConnect again) and events flow again.
func TestListenerReconnectsFromAHalfOpenConnection(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.NewDatabase(t)
	direct, err := Open(ctx, Options{URL: dsn, Migrate: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(direct.Close)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startFreezer(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	s, err := Open(ctx, Options{URL: u.String(), ListenerPing: 200 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)

	lctx, cancel := context.WithCancel(ctx)
	rec := &listenRecorder{changed: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ListenJobEvents(lctx, rec.onConnect, rec.onEvent)
	}()
	t.Cleanup(func() { cancel(); <-done })
	rec.waitUntil(t, "the first connection", func(c int, _ []string) bool { return c == 1 })

	proxy.freeze()
	rec.waitUntil(t, "a reconnection after the connection went silent", func(c int, _ []string) bool { return c == 2 })
	job := insertTestJob(t, direct, insertTestDataset(t, direct, "d").ID)
	rec.waitUntil(t, "an event on the new connection", func(_ int, jobs []string) bool { return count(jobs, job.ID) == 1 })
}
