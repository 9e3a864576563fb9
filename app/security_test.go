//go:build security

package main

// The security suite's live checks (make test-security, docs/security.md):
// the whole stack — the edge binary with the production Caddyfile, the app,
// Postgres, MinIO and the Kaggle emulator — probed from the public
// listener the way an attacker would reach it. The app's own tests already
// prove each route's authentication in-process
// (api.TestEveryAPIRouteRejectsMissingOrWrongToken); these prove it still
// holds once the edge sits in front, and look at what both processes log.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/api"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle/kaggletest"
)

// securityHeaders are the headers every public answer carries, errors
// included (the Caddyfile's security_headers snippet).
var securityHeaders = map[string]*regexp.Regexp{
	"Strict-Transport-Security": regexp.MustCompile(`^max-age=([3-9][0-9]{7}|[0-9]{9,})(;|$)`), // ≥ 1 year
	"X-Content-Type-Options":    regexp.MustCompile(`^nosniff$`),
	"Referrer-Policy":           regexp.MustCompile(`^strict-origin-when-cross-origin$`),
	"Content-Security-Policy":   regexp.MustCompile(`default-src 'self'.*frame-ancestors 'none'`),
	"X-Frame-Options":           regexp.MustCompile(`^DENY$`),
}

func checkHeaders(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	for k, re := range securityHeaders {
		if v := resp.Header.Get(k); !re.MatchString(v) {
			t.Errorf("%s (%d): %s = %q, want %s", what, resp.StatusCode, k, v, re)
		}
	}
	if s := resp.Header.Get("Server"); s != "" {
		t.Errorf("%s: Server = %q, want none", what, s)
	}
}

// expensiveEvents is the edge's budget for uploads and job creations per
// client in this test; the 429 probe exhausts it from its own address.
const expensiveEvents = 40

func TestSecurityThroughTheEdge(t *testing.T) {
	kag := kaggletest.NewServer(t)
	env := baseEnv(t)
	env["KAGGLE_API_URL"] = kag.BaseURL
	env["KAGGLE_USERNAME"] = kaggletest.DefaultUsername
	env["KAGGLE_KEY"] = kaggletest.DefaultKey
	env["KAGGLE_POLL_INTERVAL"] = "1s"
	token := setupDatabase(t, env)
	a := startApp(t, env)
	edge := startEdgeWith(t, env["APP_ADDR"], map[string]string{
		"RATE_LIMIT_EXPENSIVE_EVENTS": fmt.Sprint(expensiveEvents),
		// 1 KiB: the 413 probe crosses it without a large upload.
		"API_MAX_BODY": "1024",
	})
	rootPEM, err := os.ReadFile(filepath.Join(edge.storage, "pki", "authorities", "local", "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	port := strings.TrimPrefix(edge.url, "https://localhost:")
	// client connects from sourceIP: the edge rate-limits per client
	// address, so probes that must not eat each other's budget use
	// different loopback addresses.
	client := func(sourceIP string) *http.Client {
		d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(sourceIP)}}
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, "127.0.0.1:"+port)
			},
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"},
		}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	c := client("127.0.0.1")
	// The edge serves its metrics before its certificate is issued: wait
	// until the handshake succeeds.
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := c.Get(edge.url + "/health")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge not serving HTTPS after 60 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	do := func(t *testing.T, c *http.Client, method, path, tok string, body io.Reader, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, edge.url+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return resp, b
	}
	errorCode := func(t *testing.T, what string, resp *http.Response, body []byte) string {
		t.Helper()
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: Content-Type %q, want JSON", what, ct)
		}
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("%s: body is not the JSON error shape: %q", what, body)
		}
		return e.Error.Code
	}

	// The router itself says which routes exist: a route added later is
	// probed without editing this test.
	routes := api.New(api.Deps{Log: slog.New(slog.DiscardHandler)}).Routes()
	t.Run("every non-health route answers 401 JSON through the edge without a valid token", func(t *testing.T) {
		health := map[string]bool{"/livez": true, "/readyz": true}
		varRe := regexp.MustCompile(`\{[^}]+\}`)
		probed := 0
		for _, r := range routes {
			if health[r.Path] {
				continue
			}
			path := varRe.ReplaceAllString(r.Path, "00000000-0000-0000-0000-000000000000")
			for name, tok := range map[string]string{"no token": "", "wrong token": "fts_0000000000000000_" + strings.Repeat("a", 64)} {
				resp, body := do(t, c, r.Method, path, tok, strings.NewReader("{}"), "Content-Type", "application/json")
				what := fmt.Sprintf("%s %s (%s)", r.Method, r.Path, name)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s: got %d, want 401: %s", what, resp.StatusCode, body)
					continue
				}
				if code := errorCode(t, what, resp, body); code != "unauthenticated" {
					t.Errorf("%s: error code %q, want unauthenticated", what, code)
				}
				checkHeaders(t, what, resp)
				probed++
			}
		}
		if probed < 2*10 {
			t.Errorf("probed only %d route/credential pairs: is the router walk broken?", probed)
		}
		t.Logf("%d routes, %d unauthenticated probes through the edge", len(routes), probed)
	})

	var datasetID, jobID string
	t.Run("exercise the API: upload, job, errors", func(t *testing.T) {
		resp, body := do(t, c, "GET", "/api/v1/whoami", token, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("whoami: %d %s", resp.StatusCode, body)
		}
		checkHeaders(t, "whoami", resp)
		data, err := os.ReadFile("internal/dataset/testdata/text_label.jsonl")
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		_ = mw.WriteField("name", "security-suite")
		fw, _ := mw.CreateFormFile("file", "reviews.jsonl")
		_, _ = fw.Write(data)
		_ = mw.Close()
		resp, body = do(t, c, "POST", "/api/v1/datasets", token, &buf, "Content-Type", mw.FormDataContentType())
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("upload: %d %s", resp.StatusCode, body)
		}
		var ds struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(body, &ds)
		datasetID = ds.ID
		resp, body = do(t, c, "GET", "/api/v1/whoami", token, nil)
		var who struct {
			Training struct {
				BaseModels []string `json:"base_models"`
			} `json:"training"`
		}
		if err := json.Unmarshal(body, &who); err != nil || len(who.Training.BaseModels) == 0 {
			t.Fatalf("whoami lists no base model: %s", body)
		}
		job := fmt.Sprintf(`{"dataset_id":%q,"base_model":%q}`, datasetID, who.Training.BaseModels[0])
		resp, body = do(t, c, "POST", "/api/v1/jobs", token, strings.NewReader(job), "Content-Type", "application/json")
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusAccepted {
			t.Fatalf("job create: %d %s", resp.StatusCode, body)
		}
		var j struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(body, &j)
		jobID = j.ID
		// Errors the app answers itself.
		for _, p := range []struct{ method, path, body string }{
			{"GET", "/api/v1/jobs/not-a-uuid", ""},
			{"POST", "/api/v1/jobs", `{"dataset_id":"nope"}`},
			{"GET", "/api/v1/datasets?limit=-4", ""},
		} {
			resp, body := do(t, c, p.method, p.path, token, strings.NewReader(p.body), "Content-Type", "application/json")
			if resp.StatusCode < 400 {
				t.Errorf("%s %s: got %d, want an error", p.method, p.path, resp.StatusCode)
			}
			errorCode(t, p.path, resp, body)
			checkHeaders(t, p.method+" "+p.path, resp)
		}
	})

	t.Run("security headers on every kind of public answer, errors included", func(t *testing.T) {
		resp, _ := do(t, c, "GET", "/", "", nil)
		checkHeaders(t, "UI", resp)
		resp, _ = do(t, c, "GET", "/health", "", nil)
		checkHeaders(t, "edge /health", resp)
		resp, body := do(t, c, "GET", "/api/v1/no-such-route", token, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("unknown API route: %d, want 404", resp.StatusCode)
		}
		errorCode(t, "404", resp, body)
		checkHeaders(t, "404", resp)
		resp, body = do(t, c, "POST", "/api/v1/jobs", token, strings.NewReader(`{"pad":"`+strings.Repeat("x", 4096)+`"}`),
			"Content-Type", "application/json")
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("oversized body: %d, want 413: %s", resp.StatusCode, body)
		}
		errorCode(t, "413", resp, body)
		checkHeaders(t, "413", resp)
		// Its own address: the budget is per client.
		limited := client("127.0.0.9")
		var last *http.Response
		for range expensiveEvents + 1 {
			last, body = do(t, limited, "POST", "/api/v1/jobs", "", strings.NewReader("{}"), "Content-Type", "application/json")
		}
		if last.StatusCode != http.StatusTooManyRequests {
			t.Errorf("after %d job creations: %d, want 429", expensiveEvents+1, last.StatusCode)
		}
		errorCode(t, "429", last, body)
		checkHeaders(t, "429", last)
	})

	t.Run("metrics and admin endpoints are not reachable from the public listener", func(t *testing.T) {
		// They exist on the internal listeners...
		r, err := http.Get("http://" + edge.metricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		internal, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if !strings.Contains(string(internal), "# TYPE") {
			t.Fatalf("the internal listener serves no metrics: is the probe meaningful?")
		}
		// ...and the public one answers with the UI or an error, never
		// with them.
		for _, p := range []string{"/metrics", "/api/metrics", "/api/v1/metrics", "/config/", "/load", "/reverse_proxy/upstreams",
			"/pki/ca/local", "/debug/pprof/", "/health?full=1", "/livez", "/api/../metrics"} {
			for _, tok := range []string{"", token} {
				resp, body := do(t, c, "GET", p, tok, nil)
				s := string(body)
				if strings.Contains(s, "# TYPE") || strings.Contains(s, `"apps"`) || strings.Contains(s, `"checks"`) ||
					strings.Contains(s, "root_certificate") || strings.Contains(s, "goroutine") || strings.Contains(s, "num_requests") {
					t.Errorf("public %s (token %v): %d exposes internal data: %.200s", p, tok != "", resp.StatusCode, s)
				}
				checkHeaders(t, "public "+p, resp)
			}
		}
		// The app's metrics listener is a different port from its API.
		resp, body := do(t, c, "GET", "/api/v1/../../metrics", token, nil)
		if strings.Contains(string(body), "# TYPE") {
			t.Errorf("app metrics reachable through the edge: %d", resp.StatusCode)
		}
	})

	t.Run("502 when the app is gone: JSON and security headers", func(t *testing.T) {
		// Let the worker take the job to Kaggle first (calls made with the
		// key), so the log the next subtest reads covers them.
		deadline := time.Now().Add(90 * time.Second)
		for jobID != "" {
			_, body := do(t, c, "GET", "/api/v1/jobs/"+jobID, token, nil)
			var j struct {
				Status string `json:"status"`
			}
			_ = json.Unmarshal(body, &j)
			if j.Status != "queued" && j.Status != "" {
				t.Logf("job %s reached %s before the app stopped", jobID, j.Status)
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("job still queued after 90 s: the worker never reached the Kaggle emulator")
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		_ = a.cmd.Process.Signal(os.Interrupt)
		select {
		case <-a.done:
		case <-time.After(60 * time.Second):
			t.Fatal("app did not stop")
		}
		resp, body := do(t, c, "GET", "/api/v1/jobs", token, nil)
		if resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("app down: %d, want 502 or 503", resp.StatusCode)
		}
		if code := errorCode(t, "app down", resp, body); code != "upstream_unavailable" {
			t.Errorf("app down: code %q", code)
		}
		checkHeaders(t, "app down", resp)
		// The edge writes its access log in batches: wait until this
		// request's line is out, so the log check sees every request.
		deadline = time.Now().Add(30 * time.Second)
		for !strings.Contains(edge.logs.String(), `"status":`+fmt.Sprint(resp.StatusCode)) {
			if time.Now().After(deadline) {
				t.Fatalf("the edge never logged the %d", resp.StatusCode)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("no secret in any log line of the app or the edge", func(t *testing.T) {
		secrets := map[string]string{
			"API token":         token,
			"API token secret":  token[strings.LastIndex(token, "_")+1:],
			"database password": dbPassword,
			"S3 secret key":     env["S3_SECRET_KEY"],
			"Kaggle key":        kaggletest.DefaultKey,
		}
		logs := map[string]string{"app": a.logs.String(), "edge": edge.logs.String()}
		for proc, text := range logs {
			if len(text) == 0 {
				t.Errorf("%s logged nothing: the check would prove nothing", proc)
			}
			for name, secret := range secrets {
				if len(secret) < 8 {
					t.Fatalf("%s is too short to search for (%q)", name, secret)
				}
				for i, line := range strings.Split(text, "\n") {
					if strings.Contains(line, secret) {
						t.Errorf("%s log line %d contains the %s: %.300s", proc, i+1, name, line)
					}
				}
			}
			t.Logf("%s: %d log lines searched for %d secrets", proc, strings.Count(text, "\n"), len(secrets))
		}
	})
}
