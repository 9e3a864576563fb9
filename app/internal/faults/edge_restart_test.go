//go:build faults

package faults

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// isConnError reports whether err is the client failing to reach the edge
// or losing the connection before an answer: refused, reset, or closed.
// These are what a stopped edge may cause; anything else (a timeout, a TLS
// failure, an HTTP error) is not.
func isConnError(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		// net/http's error for a keep-alive connection the server closed
		// as a request went out on it (not retried for a POST).
		strings.Contains(err.Error(), "server closed idle connection")
}

// outcomeLog records, for each request of a constant-rate load, when it
// was sent and how it ended.
type outcomeLog struct {
	mu        sync.Mutex
	ok        int
	connErrs  []time.Time // when each connection error happened
	wrong     []string    // anything else
	firstSent time.Time
}

func (o *outcomeLog) record(c *http.Client, req *http.Request) {
	resp, body, took, err := do(c, req)
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case err != nil && isConnError(err) && !isTimeout(err):
		o.connErrs = append(o.connErrs, now)
	case err != nil:
		o.wrong = append(o.wrong, fmt.Sprintf("%s %s: %v after %s", req.Method, req.URL.Path, err, took.Round(time.Millisecond)))
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		o.wrong = append(o.wrong, fmt.Sprintf("%s %s: %d %.200s", req.Method, req.URL.Path, resp.StatusCode, body))
	default:
		o.ok++
	}
}

// TestEdgeRestartUnderLoad stops the edge process (SIGTERM, a graceful
// stop, not a reload) and starts it again under reads and uploads. While
// no edge listens, clients cannot connect: the window of failed requests is
// expected, and measured. The assertions are that every failure is a
// connection error (refused, reset, closed), never a wrong answer, a hang
// or a TLS failure, and that service comes back with the same certificate.
func TestEdgeRestartUnderLoad(t *testing.T) {
	s := newStack(t, stackOptions{apps: 1})
	var reads, uploads outcomeLog
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var seq atomic.Int64
	worker := func(o *outcomeLog, interval time.Duration, req func() *http.Request) {
		// A fresh client per worker; it reconnects after the restart.
		c := s.client("127.0.0.1", 30*time.Second)
		wg.Go(func() {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				o.record(c, req())
			}
		})
	}
	for w := range 4 {
		worker(&reads, 50*time.Millisecond, func() *http.Request { return s.readRequest(w, 0) })
	}
	worker(&uploads, 500*time.Millisecond, func() *http.Request {
		return s.uploadRequest(fmt.Sprintf("restart-%d", seq.Add(1)))
	})
	halt := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(halt)
	okCount := func(o *outcomeLog) int { o.mu.Lock(); defer o.mu.Unlock(); return o.ok }
	waitFor(t, time.Minute, "100 reads and 2 uploads through the edge", func() bool {
		return okCount(&reads) >= 100 && okCount(&uploads) >= 2
	})

	stopped := time.Now()
	s.edge.stop(time.Minute)
	stopTook := time.Since(stopped)
	if s.edge.exit != 0 {
		t.Fatalf("edge exited %d after SIGTERM, want 0", s.edge.exit)
	}
	started := time.Now()
	s.runEdge(t)
	s.waitEdgeRouting(t)
	back := time.Since(started)
	baseReads, baseUploads := okCount(&reads), okCount(&uploads)
	waitFor(t, time.Minute, "200 more reads and 3 more uploads after the restart", func() bool {
		return okCount(&reads) >= baseReads+200 && okCount(&uploads) >= baseUploads+3
	})
	halt()

	for _, o := range []*outcomeLog{&reads, &uploads} {
		if len(o.wrong) > 0 {
			t.Errorf("%d requests failed other than by a connection error; first: %q", len(o.wrong), o.wrong[:min(5, len(o.wrong))])
		}
	}
	all := append(append([]time.Time{}, reads.connErrs...), uploads.connErrs...)
	var window time.Duration
	if len(all) > 0 {
		first, last := all[0], all[0]
		for _, at := range all {
			first, last = minTime(first, at), maxTime(last, at)
		}
		window = last.Sub(first)
	}
	t.Logf("RESULT edge restart: SIGTERM to exit %s, start to routing %s; %d connection errors (%d reads, %d uploads) over %s; "+
		"%d reads and %d uploads succeeded; 0 other failures",
		stopTook.Round(time.Millisecond), back.Round(time.Millisecond), len(all), len(reads.connErrs), len(uploads.connErrs),
		window.Round(time.Millisecond), reads.ok, uploads.ok)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
