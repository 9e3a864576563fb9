//go:build faults

package faults

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// load is constant-rate background traffic through the edge: each worker
// sends one request per interval (a slow answer delays only its own
// worker's next request) and classifies every answer.
type load struct {
	name string
	stop chan struct{}
	wg   sync.WaitGroup

	ok          atomic.Int64 // 2xx
	unavailable atomic.Int64 // answers accept allowed that are not 2xx (e.g. a 503 during an outage)
	failed      atomic.Int64 // anything else, transport errors and hangs included
	maxLatency  atomic.Int64 // nanoseconds, over every answer

	mu       sync.Mutex
	failures []string       // the first few, for the failure message
	codes    map[string]int // error codes of the accepted non-2xx answers
}

type loadSpec struct {
	name     string
	sourceIP string // default 127.0.0.1
	workers  int
	interval time.Duration
	timeout  time.Duration // client timeout: an answer later than this is a failure
	// request builds the n-th request of worker w.
	request func(w, n int) *http.Request
	// accept decides a non-2xx answer: nil counts it as unavailable (an
	// allowed answer during a fault), an error as a failure. Nil accept
	// means only 2xx is allowed.
	accept func(resp *http.Response, body []byte) error
}

func (s *stack) startLoad(t *testing.T, spec loadSpec) *load {
	t.Helper()
	if spec.sourceIP == "" {
		spec.sourceIP = "127.0.0.1"
	}
	if spec.timeout == 0 {
		spec.timeout = 30 * time.Second
	}
	l := &load{name: spec.name, stop: make(chan struct{}), codes: map[string]int{}}
	for w := range spec.workers {
		c := s.client(spec.sourceIP, spec.timeout)
		l.wg.Go(func() {
			tick := time.NewTicker(spec.interval)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				l.record(c, spec, spec.request(w, n))
			}
		})
	}
	t.Cleanup(l.halt)
	return l
}

func (l *load) record(c *http.Client, spec loadSpec, req *http.Request) {
	resp, body, took, err := do(c, req)
	for {
		old := l.maxLatency.Load()
		if int64(took) <= old || l.maxLatency.CompareAndSwap(old, int64(took)) {
			break
		}
	}
	switch {
	case err != nil && isTimeout(err):
		l.fail(fmt.Sprintf("%s %s: %v after %s", req.Method, req.URL.Path, errHang, took.Round(time.Millisecond)))
	case err != nil:
		l.fail(fmt.Sprintf("%s %s: %v", req.Method, req.URL.Path, err))
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		l.ok.Add(1)
	case spec.accept == nil:
		l.fail(fmt.Sprintf("%s %s: %d %.200s", req.Method, req.URL.Path, resp.StatusCode, body))
	default:
		if err := spec.accept(resp, body); err != nil {
			l.fail(fmt.Sprintf("%s %s: %v", req.Method, req.URL.Path, err))
			return
		}
		l.unavailable.Add(1)
		var e apiError
		_ = json.Unmarshal(body, &e)
		l.mu.Lock()
		l.codes[fmt.Sprintf("%d %s", resp.StatusCode, e.Error.Code)]++
		l.mu.Unlock()
	}
}

func (l *load) fail(msg string) {
	l.failed.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 5 {
		l.failures = append(l.failures, msg)
	}
}

// halt stops the workers and waits for their last requests. Idempotent.
func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// waitOK waits until n more requests have succeeded since the call.
func (l *load) waitOK(t *testing.T, n int64, timeout time.Duration) {
	t.Helper()
	target := l.ok.Load() + n
	waitFor(t, timeout, fmt.Sprintf("%d more successful %s requests (%s)", n, l.name, l.summary()), func() bool {
		return l.ok.Load() >= target
	})
}

func (l *load) summary() string {
	l.mu.Lock()
	codes := fmt.Sprint(l.codes)
	l.mu.Unlock()
	return fmt.Sprintf("%d ok, %d unavailable %s, %d failed, slowest %s", l.ok.Load(), l.unavailable.Load(), codes,
		l.failed.Load(), time.Duration(l.maxLatency.Load()).Round(time.Millisecond))
}

// counts is a snapshot of the load's counters, to tell apart what happened
// in one phase of a scenario.
type counts struct{ ok, unavailable, failed int64 }

func (l *load) counts() counts {
	return counts{l.ok.Load(), l.unavailable.Load(), l.failed.Load()}
}

func (c counts) since(before counts) string {
	return fmt.Sprintf("%d ok, %d unavailable, %d failed", c.ok-before.ok, c.unavailable-before.unavailable, c.failed-before.failed)
}

// requireNoFailures fails the test if any request failed.
func (l *load) requireNoFailures(t *testing.T) {
	t.Helper()
	if n := l.failed.Load(); n > 0 {
		summary := l.summary() // takes l.mu itself
		l.mu.Lock()
		failures := slices.Clone(l.failures)
		l.mu.Unlock()
		t.Fatalf("%s load: %d requests failed (%s); first: %q", l.name, n, summary, failures)
	}
}
