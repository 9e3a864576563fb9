package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMetricsHealthAndLogs(t *testing.T) {
	app := startStubApp(t)
	env, pe := defaultEnv(t, app.addr)
	startProdEdge(t, env, pe)
	c := pe.client("127.0.0.1")

	// Secrets a client may send; none may reach the access log, whatever
	// the spelling of the parameter that carries them.
	do(t, c, "GET", pe.url("/api/v1/datasets?X-Amz-Signature=sig-SECRET-1&X-Amz-Credential=cred-SECRET-2&limit=2"+
		"&Token=SECRET-6&access_token=SECRET-7&x-amz-signature=SECRET-8&API_KEY=SECRET-9&Sig=SECRET-10&code=SECRET-11"+
		"&%54oken=SECRET-12&limit=3;password=SECRET-13"), nil,
		map[string]string{"Authorization": "Bearer tok-SECRET-3", "Cookie": "session=cookie-SECRET-4"})

	t.Run("access log is JSON without secrets", func(t *testing.T) {
		line, err := pe.WaitLog(30*time.Second, `"logger":"http.log.access`, "/api/v1/datasets")
		if err != nil {
			t.Fatal(err)
		}
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("access log line is not JSON: %v: %s", err, line)
		}
		if !strings.Contains(line, "limit=2") || !strings.Contains(line, "limit=3") {
			t.Errorf("the API's own query parameters lost their values: %s", line)
		}
		if !strings.Contains(line, "Token=REDACTED") || !strings.Contains(line, "x-amz-signature=REDACTED") {
			t.Errorf("redacted parameters should keep their names: %s", line)
		}
		for _, secret := range []string{"SECRET", "Bearer", "session="} {
			if strings.Contains(pe.Logs(), secret) {
				t.Errorf("logs contain %q", secret)
			}
		}
	})

	t.Run("metrics listener has certificate and request metrics", func(t *testing.T) {
		// The internal certificate is obtained at startup; the expiry gauge
		// is read from Caddy's cache at scrape time.
		var body string
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, b := do(t, http.DefaultClient, "GET", pe.metricsURL("/metrics"), nil, nil)
			body = string(b)
			if resp.StatusCode == 200 && strings.Contains(body, `edge_tls_certificate_not_after_timestamp_seconds{name="localhost"}`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no certificate expiry metric for localhost:\n%s", grep(body, "edge_tls"))
			}
			time.Sleep(200 * time.Millisecond)
		}
		for _, want := range []string{
			`edge_tls_certificate_operations_total{operation="obtain",result="success"} 1`,
			`edge_tls_certificate_operations_total{operation="renew",result="failure"} 0`,
			`caddy_http_requests_total`,
			`caddy_http_request_duration_seconds`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("metrics lack %q:\n%s", want, grep(body, "edge_tls"))
			}
		}
	})

	t.Run("public site does not serve metrics", func(t *testing.T) {
		for _, p := range []string{"/metrics", "/api/metrics"} {
			_, b := do(t, c, "GET", pe.url(p), nil, nil)
			if strings.Contains(string(b), "caddy_http_requests_total") || strings.Contains(string(b), "edge_tls_") {
				t.Errorf("public %s serves metrics", p)
			}
		}
	})

	t.Run("internal health reports edge, app and certificate", func(t *testing.T) {
		resp, b := do(t, http.DefaultClient, "GET", pe.metricsURL("/health"), nil, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/health+json" {
			t.Fatalf("%d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		var rep healthReport
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		// Caddy's internal CA issues 12-hour certificates, renewed with 4
		// hours left: a fresh one is healthy, judged by its lifetime.
		if rep.Status != "pass" {
			t.Errorf("status = %q, want pass (fresh 12-hour internal certificate): %s", rep.Status, b)
		}
		if app := rep.Checks["app:readiness"]; len(app) != 1 || app[0].Status != "pass" || app[0].ObservedValue != 1 {
			t.Errorf("app:readiness = %+v", app)
		}
		certs := rep.Checks["certificate:expiry"]
		if len(certs) != 1 || certs[0].ComponentID != "localhost" || certs[0].Status != "pass" ||
			certs[0].ObservedValue <= 0 || certs[0].ObservedValue > 1 {
			t.Errorf("certificate:expiry = %+v, want localhost, pass, with under a day left", certs)
		}
		if strings.Contains(string(b), app.addr) {
			t.Errorf("health names the upstream: %s", b)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := pe.Run(ctx, "healthcheck", "--ready", "--url", pe.metricsURL("/health")); err != nil {
			t.Errorf("healthcheck --ready: %v\n%s", err, out)
		}
	})

	t.Run("public health is the overall status and the certificate days left only", func(t *testing.T) {
		resp, b := do(t, c, "GET", pe.url("/health"), nil, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/health+json" {
			t.Fatalf("%d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		var rep map[string]any
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		days, _ := rep["certificate_days_left"].(float64)
		if len(rep) != 2 || rep["status"] != "pass" || days <= 0 || days > 1 {
			t.Errorf("public /health = %s, want the status pass and under a day left alone (no certificate names, no instance count)", b)
		}
	})
}

// TestReloadUnderLoad reloads the config repeatedly while clients keep
// requesting the API, the UI and /health, and an event stream stays open:
// not one request may fail and the stream must not be cut.
func TestReloadUnderLoad(t *testing.T) {
	app := startStubApp(t)
	env, pe := defaultEnv(t, app.addr)
	env["RATE_LIMIT_API_EVENTS"] = "1000000"
	env["RATE_LIMIT_STATIC_EVENTS"] = "1000000"
	env["EDGE_STREAM_CLOSE_DELAY"] = "2m"
	// The hard request-body deadline far below the stream's life: it must
	// not end a response that streams longer (a GET has no body).
	env["EDGE_READ_BODY_TIMEOUT"] = "1s"
	startProdEdge(t, env, pe)

	// An event stream opened before the reloads must survive them.
	streamReq, _ := http.NewRequest("GET", pe.url("/api/v1/jobs/1/events/stream"), nil)
	stream, err := pe.client("127.0.0.1").Do(streamReq)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	streamRd := bufio.NewReader(stream.Body)
	if line, err := streamRd.ReadString('\n'); err != nil || line != "event: status\n" {
		t.Fatalf("stream start: %q, %v", line, err)
	}

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := pe.client("127.0.0.1")
			paths := []string{"/api/v1/datasets", "/", "/health"}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				p := paths[(n+i)%len(paths)]
				resp, err := c.Get(pe.url(p))
				if err == nil {
					_, err = readAllClose(resp)
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("%s: status %d", p, resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}

	// edge:uptime is the process's, not the config's: wait until it is
	// visibly above zero, and it must not go back after the reloads.
	uptime := func() float64 {
		rep := getHealth(t, http.DefaultClient, pe.metricsURL("/health"))
		if u := rep.Checks["edge:uptime"]; len(u) == 1 {
			return u[0].ObservedValue
		}
		t.Fatalf("no edge:uptime in %+v", rep)
		return 0
	}
	var before float64
	for before = uptime(); before < 2; before = uptime() {
		time.Sleep(200 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for i := range 3 {
		// Let requests flow between reloads.
		target := ok.Load() + 50
		for ok.Load() < target && failed.Load() == 0 {
			time.Sleep(20 * time.Millisecond)
		}
		env := append([]string(nil), pe.Env...)
		// A real change each time, so Caddy does not skip an identical config.
		env = append(env, fmt.Sprintf("RATE_LIMIT_API_WINDOW=%dm", 2+i))
		out, err := runEdge(ctx, env, "reload", "--config", pe.Config, "--adapter", "caddyfile", "--address", pe.AdminAddr)
		if err != nil {
			t.Fatalf("reload %d: %v\n%s", i+1, err, out)
		}
	}
	target := ok.Load() + 50
	for ok.Load() < target && failed.Load() == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if after := uptime(); after < before {
		t.Errorf("edge:uptime went from %vs to %vs across reloads: it is the config's age, not the process's", before, after)
	}

	close(app.release)
	rest, err := io.ReadAll(streamRd)
	if err != nil || !strings.Contains(string(rest), `"state":"done"`) {
		t.Errorf("event stream cut by the reloads: read %q, %v", rest, err)
	}
	if _, err := pe.WaitLog(10*time.Second, "load complete"); err != nil {
		t.Errorf("no config load logged: %v", err)
	}
	if n := strings.Count(pe.Logs(), `"msg":"load complete"`); n < 3 {
		t.Errorf("%d config reloads logged, want 3", n)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during reloads; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	t.Logf("%d requests across 3 reloads, none failed", ok.Load())
}

func readAllClose(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestAccessLogBufferedUntilReloadAndStop: the production access log goes
// through the buffered writer, so lines wait in memory (here for an hour);
// a reload writes them out and the same buffer goes on serving the new
// config; a graceful stop writes out the rest. Every line exactly once.
func TestAccessLogBufferedUntilReloadAndStop(t *testing.T) {
	app := startStubApp(t)
	env, pe := defaultEnv(t, app.addr)
	env["EDGE_ACCESS_LOG_FLUSH_INTERVAL"] = "1h"
	env["RATE_LIMIT_API_EVENTS"] = "1000"
	startProdEdge(t, env, pe)
	c := pe.client("127.0.0.1")

	const n = 20 // 2 × 20 short lines: far below the 64 KiB buffer
	get := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			resp, _ := do(t, c, "GET", pe.url(fmt.Sprintf("/api/v1/datasets?cursor=probe%d", i)), nil, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d: status %d", i, resp.StatusCode)
			}
		}
	}
	get(0, n)
	if strings.Contains(pe.Logs(), "cursor=probe") {
		t.Fatal("access log lines were written before a flush: the log is not buffered")
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reloadEnv := append(append([]string(nil), pe.Env...), "RATE_LIMIT_API_WINDOW=2m") // a real change
	if out, err := runEdge(ctx, reloadEnv, "reload", "--config", pe.Config, "--adapter", "caddyfile", "--address", pe.AdminAddr); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	if _, err := pe.WaitLog(30*time.Second, fmt.Sprintf(`cursor=probe%d"`, n-1)); err != nil {
		t.Fatalf("the reload did not write out the buffered lines: %v", err)
	}

	get(n, 2*n)
	pe.Stop()
	logs := pe.Logs()
	for i := range 2 * n {
		if got := strings.Count(logs, fmt.Sprintf(`cursor=probe%d"`, i)); got != 1 {
			t.Errorf("after a reload and a graceful stop the access log has request %d %d times, want once", i, got)
		}
	}
}

// TestHealthReadsTheProxy: edge_health reports the reverse proxy's own
// view of the app (its active check at startup, its passive failure
// count later) and never asks the app again.
func TestHealthReadsTheProxy(t *testing.T) {
	app := startStubApp(t)
	env, pe := defaultEnv(t, app.addr)
	env["EDGE_HEALTH_INTERVAL"] = "1h" // one active check: at startup
	startProdEdge(t, env, pe)
	c := pe.client("127.0.0.1")

	deadline := time.Now().Add(30 * time.Second)
	for app.readyHits.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the proxy never checked /readyz")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for range 5 {
		getHealth(t, http.DefaultClient, pe.metricsURL("/health"))
		do(t, c, "GET", pe.url("/health"), nil, nil)
	}
	rep := getHealth(t, http.DefaultClient, pe.metricsURL("/health"))
	if a := rep.Checks["app:readiness"]; len(a) != 1 || a[0].Status != "pass" || a[0].ObservedValue != 1 {
		t.Errorf("app:readiness = %+v, want pass with 1 ready instance", a)
	}
	if n := app.readyHits.Load(); n != 1 {
		t.Errorf("the app was asked /readyz %d times, want 1 (the one proxy's one check; health must not probe again)", n)
	}

	// The app goes away: the next active check is an hour off, so only the
	// proxy's passive failure count can tell, and /health must follow it.
	app.stop()
	resp, body := do(t, c, "GET", pe.url("/api/v1/datasets"), nil, nil)
	if resp.StatusCode < 500 {
		t.Fatalf("API with the app stopped: %d %s", resp.StatusCode, body)
	}
	waitHealth(t, http.DefaultClient, pe.metricsURL("/health"), "fail")
}
