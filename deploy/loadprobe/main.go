// Command loadprobe sends GET requests at a constant rate until it is
// interrupted (SIGINT or SIGTERM), then prints one JSON summary: how many
// requests were sent, how many answered the expected status, and every
// other outcome by status or error. deploy/scripts/test-deploy.sh runs it
// through the edge while releases roll, to prove they drop no request.
//
//	loadprobe -url https://studio.test:8443/api/v1/whoami -rate 40 \
//	  -connect 127.0.0.1:8443 -cacert root.pem -header "Authorization: Bearer ..."
//
// A constant rate, not a closed loop: a stalled upstream shows as requests
// piling up and failing, instead of the client slowing down with it.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

// summary is what loadprobe prints on exit.
type summary struct {
	Sent     int            `json:"sent"`
	OK       int            `json:"ok"`
	Failed   int            `json:"failed"`
	Outcomes map[string]int `json:"outcomes"`
	Seconds  float64        `json:"seconds"`
	P50MS    float64        `json:"p50_ms"`
	P99MS    float64        `json:"p99_ms"`
	MaxMS    float64        `json:"max_ms"`
	// The first failures, whole enough to tell who answered (the edge or
	// the app: Server, the problem body) and when in the run.
	Failures []failure `json:"failures,omitempty"`
}

// failure is one failed request as the client saw it.
type failure struct {
	AtMS      float64           `json:"at_ms"` // since the probe started
	LatencyMS float64           `json:"latency_ms"`
	Outcome   string            `json:"outcome"`
	Headers   map[string]string `json:"headers,omitempty"`
	Body      string            `json:"body,omitempty"`
}

// maxFailures bounds the samples kept; the counts cover the rest.
const maxFailures = 10

// keptHeaders are the response headers a failure sample keeps.
var keptHeaders = []string{"Server", "Content-Type", "Retry-After", "X-Request-Id", "Date"}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func main() {
	var (
		target  = flag.String("url", "", "URL to GET")
		rate    = flag.Int("rate", 20, "requests per second")
		connect = flag.String("connect", "", "host:port to dial instead of the URL's host (the URL's name still goes into SNI and Host)")
		cacert  = flag.String("cacert", "", "PEM file of the CA to trust (default: the system's)")
		want    = flag.Int("status", http.StatusOK, "the status that counts as success")
		timeout = flag.Duration("timeout", 30*time.Second, "per-request timeout")
		hdrs    headers
	)
	flag.Var(&hdrs, "header", "request header 'Name: value' (repeatable)")
	flag.Parse()
	if *target == "" || *rate < 1 {
		fmt.Fprintln(os.Stderr, "loadprobe: -url and a positive -rate are required")
		os.Exit(2)
	}
	client, err := newClient(*connect, *cacert, *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadprobe:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	s := run(ctx, client, *target, hdrs, *rate, *want)
	_ = json.NewEncoder(os.Stdout).Encode(s)
}

func newClient(connect, cacert string, timeout time.Duration) (*http.Client, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cacert != "" {
		pem, err := os.ReadFile(cacert)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("no certificate in " + cacert)
		}
		tlsConf.RootCAs = pool
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		TLSClientConfig:     tlsConf,
		MaxIdleConnsPerHost: 64,
		ForceAttemptHTTP2:   true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if connect != "" {
				addr = connect
			}
			return dialer.DialContext(ctx, network, addr)
		},
	}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

func run(ctx context.Context, client *http.Client, target string, hdrs headers, rate, want int) summary {
	var (
		mu        sync.Mutex
		wg        sync.WaitGroup
		latencies []time.Duration
		s         = summary{Outcomes: map[string]int{}}
	)
	began := time.Now()
	record := func(outcome string, ok bool, start time.Time, resp *http.Response, body []byte) {
		d := time.Since(start)
		mu.Lock()
		defer mu.Unlock()
		s.Outcomes[outcome]++
		latencies = append(latencies, d)
		if ok {
			s.OK++
			return
		}
		s.Failed++
		if len(s.Failures) >= maxFailures {
			return
		}
		f := failure{AtMS: ms(start.Sub(began)), LatencyMS: ms(d), Outcome: outcome, Body: string(body)}
		if resp != nil {
			f.Headers = map[string]string{}
			for _, h := range keptHeaders {
				if v := resp.Header.Get(h); v != "" {
					f.Headers[h] = v
				}
			}
		}
		s.Failures = append(s.Failures, f)
	}
	one := func() {
		defer wg.Done()
		start := time.Now()
		// Not bound to ctx: a request sent before the stop still counts.
		req, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			record("error: "+err.Error(), false, start, nil, nil)
			return
		}
		for _, h := range hdrs {
			name, value, _ := strings.Cut(h, ":")
			req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
		}
		resp, err := client.Do(req)
		if err != nil {
			record("error: "+err.Error(), false, start, nil, nil)
			return
		}
		// The head of the body names who failed and why; the rest is
		// drained so the connection is reused.
		head, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		record(fmt.Sprintf("%d", resp.StatusCode), resp.StatusCode == want, start, resp, head)
	}

	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			s.Sent++
			wg.Add(1)
			go one()
		}
	}
	wg.Wait()
	s.Seconds = time.Since(began).Seconds()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	if n := len(latencies); n > 0 {
		s.P50MS = ms(latencies[n/2])
		s.P99MS = ms(latencies[(n*99)/100])
		s.MaxMS = ms(latencies[n-1])
	}
	return s
}
