//go:build faults

package faults

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// floodBudget is the api zone's budget per client in TestClientFlood: small
// so the flood reaches it at once, large enough for the other client's
// requests (and the stack's start-up probe, from the same address).
const floodBudget = 40

// TestClientFlood: one client (127.0.0.2) floods the API far over its
// rate-limit budget while another (127.0.0.1) uses it normally. The flood
// gets 429 JSON rate_limited with Retry-After, and never more than its
// budget of successes; the other client's requests all succeed.
func TestClientFlood(t *testing.T) {
	s := newStack(t, stackOptions{apps: 1, edgeEnv: map[string]string{
		"RATE_LIMIT_API_EVENTS": strconv.Itoa(floodBudget),
		"RATE_LIMIT_API_WINDOW": "10m", // no budget comes back while the test runs
	}})
	flood := s.startLoad(t, loadSpec{name: "flood", sourceIP: "127.0.0.2", workers: 8, interval: 5 * time.Millisecond,
		request: s.readRequest,
		accept: func(resp *http.Response, body []byte) error {
			code, err := checkError(resp, body, http.StatusTooManyRequests, true)
			if err == nil && code != "rate_limited" {
				return fmt.Errorf("429 with code %q, want rate_limited", code)
			}
			return err
		}})
	waitFor(t, 2*time.Minute, "the flood to be refused", func() bool { return flood.unavailable.Load() >= 50 })
	// The other client, at a normal pace, while the flood goes on.
	normal := s.startLoad(t, loadSpec{name: "normal", workers: 1, interval: 200 * time.Millisecond, request: s.readRequest})
	normal.waitOK(t, 15, 2*time.Minute)
	normal.halt()
	refusedBefore := flood.unavailable.Load()
	waitFor(t, 2*time.Minute, "the flood to go on being refused", func() bool {
		return flood.unavailable.Load() >= refusedBefore+50
	})
	flood.halt()
	normal.requireNoFailures(t)
	flood.requireNoFailures(t)
	if n := flood.ok.Load(); n > floodBudget {
		t.Fatalf("the flooding client got %d successes, over its budget of %d", n, floodBudget)
	}
	t.Logf("RESULT flood: flooder %s; normal client %s", flood.summary(), normal.summary())
}

// slowClientSafetyNet bounds how long a slow-client test waits for the
// edge to close a connection, over the configured timeout. It catches a
// hang; it is not a measurement.
const slowClientSafetyNet = 30 * time.Second

// The production slow-client timeouts (Caddyfile, docs/edge.md), which the
// scenario keeps.
const (
	readHeaderTimeout   = 10 * time.Second
	readBodyIdleTimeout = 30 * time.Second
)

// TestSlowClientsCutOff: slowloris connections (headers trickled a byte
// at a time), a trickled upload body and a stalled one are each closed by
// the edge within its configured timeout (plus a safety net), while a
// normal client's requests, running meanwhile, all succeed.
func TestSlowClientsCutOff(t *testing.T) {
	s := newStack(t, stackOptions{apps: 1})
	normal := s.startLoad(t, loadSpec{name: "normal", workers: 2, interval: 100 * time.Millisecond, request: s.readRequest})
	normal.waitOK(t, 20, 2*time.Minute)

	type result struct {
		name   string
		closed time.Duration
		err    error
	}
	var mu sync.Mutex
	var results []result
	var wg sync.WaitGroup
	run := func(name string, limit time.Duration, open func(conn net.Conn, stop <-chan struct{})) {
		wg.Go(func() {
			closed, err := s.slowConn(limit+slowClientSafetyNet, open)
			mu.Lock()
			defer mu.Unlock()
			results = append(results, result{name, closed, err})
		})
	}
	headerLine := "GET /api/v1/whoami HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + s.token + "\r\n"
	for i := range 20 {
		run(fmt.Sprintf("slowloris %d", i), readHeaderTimeout, func(conn net.Conn, stop <-chan struct{}) {
			io.WriteString(conn, headerLine+"X-Slow: ")
			trickle(conn, stop, 500*time.Millisecond, "a")
		})
	}
	uploadHead := "POST /api/v1/datasets HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + s.token +
		"\r\nContent-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 1000000\r\n\r\n"
	run("trickled body", readBodyIdleTimeout, func(conn net.Conn, stop <-chan struct{}) {
		io.WriteString(conn, uploadHead)
		trickle(conn, stop, 500*time.Millisecond, strings.Repeat("b", 64)) // 128 B/s
	})
	run("stalled body", readBodyIdleTimeout, func(conn net.Conn, stop <-chan struct{}) {
		io.WriteString(conn, uploadHead+"--xyz\r\n")
	})
	wg.Wait()

	normal.waitOK(t, 20, 2*time.Minute)
	normal.halt()
	normal.requireNoFailures(t)
	var slowest = map[string]time.Duration{}
	for _, r := range results {
		if r.err != nil {
			t.Errorf("%s: %v", r.name, r.err)
			continue
		}
		kind := strings.TrimRight(r.name, " 0123456789")
		slowest[kind] = max(slowest[kind], r.closed)
	}
	t.Logf("RESULT slow clients: closed after (slowest of each kind) %v; normal client %s", slowest, normal.summary())
}

// trickle writes chunk every interval until stop or a write fails.
func trickle(conn net.Conn, stop <-chan struct{}, interval time.Duration, chunk string) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			if _, err := io.WriteString(conn, chunk); err != nil {
				return
			}
		}
	}
}

// slowConn opens a TLS connection to the edge from 127.0.0.3, lets open
// misbehave on it, and returns how long the edge took to end the request:
// closing the connection or answering an error status. It is an error if
// the edge answers with success or is still waiting after limit.
func (s *stack) slowConn(limit time.Duration, open func(conn net.Conn, stop <-chan struct{})) (time.Duration, error) {
	dialer := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}
	conn, err := tls.DialWithDialer(dialer, "tcp", fmt.Sprintf("127.0.0.1:%d", s.httpsPort),
		&tls.Config{RootCAs: s.roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	wg.Go(func() { open(conn, stop) })
	_ = conn.SetReadDeadline(start.Add(limit))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	took := time.Since(start)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return took, fmt.Errorf("the edge kept the connection open for %s", limit)
	case err != nil:
		return took, nil // closed (EOF or reset): cut off
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 400 {
		return took, fmt.Errorf("answered %d, want the request cut off", resp.StatusCode)
	}
	return took, nil
}
