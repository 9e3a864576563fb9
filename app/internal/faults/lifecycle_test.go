//go:build faults

package faults

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
)

// startMixedLoad is the background traffic of the lifecycle scenarios:
// reads at a constant rate plus a dataset upload (a POST with a body,
// which the edge cannot simply retry) every 500 ms. Every answer must be
// a 2xx.
func (s *stack) startMixedLoad(t *testing.T) (reads, uploads *load) {
	t.Helper()
	reads = s.startLoad(t, loadSpec{name: "read", workers: 4, interval: 50 * time.Millisecond, request: s.readRequest})
	var seq atomic.Int64
	uploads = s.startLoad(t, loadSpec{name: "upload", workers: 1, interval: 500 * time.Millisecond, timeout: time.Minute,
		request: func(_, _ int) *http.Request {
			return s.uploadRequest(fmt.Sprintf("load-%d", seq.Add(1)))
		}})
	reads.waitOK(t, 50, 2*time.Minute)
	uploads.waitOK(t, 3, 2*time.Minute)
	return reads, uploads
}

// restartApp sends SIGTERM to instance a, waits for a clean exit, starts it
// again on the same address and waits until the edge routes requests to it.
// It returns how long the old process took to exit.
func (s *stack) restartApp(t *testing.T, a *appInstance) time.Duration {
	t.Helper()
	start := time.Now()
	if err := a.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.proc.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("app %s did not exit after SIGTERM", a.addr)
	}
	exited := time.Since(start)
	if a.proc.exit != 0 {
		t.Fatalf("app %s exited %d after SIGTERM, want 0", a.addr, a.proc.exit)
	}
	s.startApp(t, a)
	// The edge's health check (every 5 s) puts it back in rotation.
	a.proc.waitLog(t, `"route":"/api/v1/datasets"`, 2*time.Minute)
	return exited
}

// TestAppRollingRestart: two app instances behind the edge, each restarted
// in turn with SIGTERM while reads and uploads run through the edge. Not
// one request may fail: the instance reports not ready and drains while
// the edge sends new requests to the other one.
func TestAppRollingRestart(t *testing.T) {
	s := newStack(t, stackOptions{apps: 2})
	reads, uploads := s.startMixedLoad(t)
	var exits []string
	for _, a := range s.apps {
		exits = append(exits, s.restartApp(t, a).Round(time.Millisecond).String())
		reads.requireNoFailures(t)
		uploads.requireNoFailures(t)
	}
	reads.waitOK(t, 50, 2*time.Minute)
	reads.halt()
	uploads.halt()
	reads.requireNoFailures(t)
	uploads.requireNoFailures(t)
	t.Logf("RESULT rolling restart: instances exited in %v; reads %s; uploads %s", exits, reads.summary(), uploads.summary())
}

// TestAppRestartSingleInstance: the only app instance is restarted with
// SIGTERM under load. The edge holds each request for up to
// lb_try_duration (15 s) until the new process is ready, so none fails;
// users see a slow answer instead of an error.
func TestAppRestartSingleInstance(t *testing.T) {
	s := newStack(t, stackOptions{apps: 1})
	reads, uploads := s.startMixedLoad(t)
	exited := s.restartApp(t, s.apps[0])
	reads.waitOK(t, 50, 2*time.Minute)
	reads.halt()
	uploads.halt()
	reads.requireNoFailures(t)
	uploads.requireNoFailures(t)
	t.Logf("RESULT single restart: old process exited in %s; reads %s; uploads %s",
		exited.Round(time.Millisecond), reads.summary(), uploads.summary())
}

// TestEdgeReloadUnderLoad: three config reloads (each a real change, so
// Caddy does not skip it) while reads and uploads run through the edge.
// Not one request may fail.
func TestEdgeReloadUnderLoad(t *testing.T) {
	s := newStack(t, stackOptions{apps: 1})
	reads, uploads := s.startMixedLoad(t)
	var took []string
	for i := range 3 {
		start := time.Now()
		s.reload(t, map[string]string{"RATE_LIMIT_API_WINDOW": fmt.Sprintf("%dm", 2+i)})
		took = append(took, time.Since(start).Round(time.Millisecond).String())
		reads.waitOK(t, 50, 2*time.Minute)
		uploads.waitOK(t, 2, 2*time.Minute)
	}
	reads.halt()
	uploads.halt()
	reads.requireNoFailures(t)
	uploads.requireNoFailures(t)
	waitFor(t, 30*time.Second, "three config loads logged", func() bool {
		return strings.Count(s.edge.logs.String(), `"msg":"load complete"`) >= 3
	})
	t.Logf("RESULT reload: 3 reloads took %v; reads %s; uploads %s", took, reads.summary(), uploads.summary())
}

// TestDeadUpstreamBesideLive is the edge as deploy/studio leaves it after a
// roll ("<instance address>:8080 app:8080"), once the instance behind the
// address is gone (replaced outside deploy): one upstream refuses
// connections, the other serves. The edge must route around the dead one
// (dial errors are retried within lb_try_duration, passive and active
// health checks take it out): not one request may fail.
func TestDeadUpstreamBesideLive(t *testing.T) {
	s := newStack(t, stackOptions{apps: 1})
	dead := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) // nothing listens there
	s.reload(t, map[string]string{"APP_UPSTREAMS": dead + " " + s.apps[0].addr})
	reads, uploads := s.startMixedLoad(t)
	reads.waitOK(t, 200, 2*time.Minute)
	uploads.waitOK(t, 5, 2*time.Minute)
	reads.halt()
	uploads.halt()
	reads.requireNoFailures(t)
	uploads.requireNoFailures(t)
	t.Logf("RESULT dead upstream beside a live one: reads %s; uploads %s", reads.summary(), uploads.summary())
}
