package health

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func ok(context.Context) error { return nil }

func TestStatusesAndHTTPCodes(t *testing.T) {
	down := func(context.Context) error { return errors.New("dial tcp 10.9.8.7:5432: user=app password=hunter2") }
	tests := []struct {
		name       string
		checks     []Check
		wantStatus Status
		wantHTTP   int
	}{
		{"all pass", []Check{{Name: "database", Critical: true, Run: ok}, {Name: "objectStorage", Run: ok}}, Pass, 200},
		{"database down", []Check{{Name: "database", Critical: true, Run: down}, {Name: "objectStorage", Run: ok}}, Fail, 503},
		{"object storage down", []Check{{Name: "database", Critical: true, Run: ok}, {Name: "objectStorage", Run: down}}, Warn, 200},
		{"degraded", []Check{{Name: "workerPool", Critical: true, Run: func(context.Context) error { return Degraded("no workers running") }}}, Warn, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(slog.New(slog.DiscardHandler), Options{}, tt.checks...)
			rep := c.Ready(context.Background())
			if rep.Status != tt.wantStatus || rep.HTTPStatus() != tt.wantHTTP {
				t.Fatalf("got %s/%d, want %s/%d", rep.Status, rep.HTTPStatus(), tt.wantStatus, tt.wantHTTP)
			}
			b, _ := json.Marshal(rep)
			for _, leak := range []string{"10.9.8.7", "hunter2", "dial tcp"} {
				if strings.Contains(string(b), leak) {
					t.Fatalf("report leaks %q: %s", leak, b)
				}
			}
			for _, ch := range tt.checks {
				rs := rep.Checks[ch.Name+":responseTime"]
				if len(rs) != 1 || rs[0].ObservedUnit != "ms" || rs[0].Time == "" || rs[0].Status == "" {
					t.Fatalf("check %s: %+v", ch.Name, rs)
				}
			}
		})
	}
}

// TestChecksRunConcurrently: each check waits for the other to start, so
// they only both pass if they run at the same time.
func TestChecksRunConcurrently(t *testing.T) {
	aStarted, bStarted := make(chan struct{}), make(chan struct{})
	wait := func(mine, other chan struct{}) func(context.Context) error {
		return func(ctx context.Context) error {
			close(mine)
			select {
			case <-other:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	c := New(slog.New(slog.DiscardHandler), Options{Timeout: 30 * time.Second},
		Check{Name: "a", Critical: true, Run: wait(aStarted, bStarted)},
		Check{Name: "b", Critical: true, Run: wait(bStarted, aStarted)})
	if rep := c.Ready(context.Background()); rep.Status != Pass {
		t.Fatalf("got %+v: checks ran one after the other", rep)
	}
}

func TestCheckTimeout(t *testing.T) {
	c := New(slog.New(slog.DiscardHandler), Options{Timeout: 50 * time.Millisecond},
		Check{Name: "database", Critical: true, Run: func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}})
	rep := c.Ready(context.Background())
	if r := rep.Checks["database:responseTime"][0]; rep.Status != Fail || r.Output != "timed out" {
		t.Fatalf("got %+v", rep)
	}
}

func TestReportIsCachedAndShared(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	var runs atomic.Int32
	release := make(chan struct{})
	c := New(slog.New(slog.DiscardHandler), Options{Now: clock.Now, Timeout: time.Minute},
		Check{Name: "database", Critical: true, Run: func(ctx context.Context) error {
			runs.Add(1)
			<-release
			return nil
		}})
	// Many simultaneous callers share one run.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { c.Ready(context.Background()) })
	}
	for runs.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Fatalf("20 concurrent callers caused %d probes, want 1", n)
	}
	clock.Advance(500 * time.Millisecond)
	c.Ready(context.Background())
	if n := runs.Load(); n != 1 {
		t.Fatalf("within the TTL: %d probes, want 1", n)
	}
	clock.Advance(600 * time.Millisecond)
	c.Ready(context.Background())
	if n := runs.Load(); n != 2 {
		t.Fatalf("after the TTL: %d probes, want 2", n)
	}
}

func TestDrainFailsAtOnceWithoutProbing(t *testing.T) {
	var runs atomic.Int32
	c := New(slog.New(slog.DiscardHandler), Options{},
		Check{Name: "database", Critical: true, Run: func(context.Context) error { runs.Add(1); return nil }})
	c.Drain()
	rep := c.Ready(context.Background())
	if rep.Status != Fail || rep.HTTPStatus() != 503 || runs.Load() != 0 {
		t.Fatalf("got %+v after %d probes", rep, runs.Load())
	}
}

func TestPanickingCheckFails(t *testing.T) {
	c := New(slog.New(slog.DiscardHandler), Options{},
		Check{Name: "x", Critical: true, Run: func(context.Context) error { panic("boom") }})
	if rep := c.Ready(context.Background()); rep.Status != Fail {
		t.Fatalf("got %+v", rep)
	}
}
