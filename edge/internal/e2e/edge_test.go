package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/finetune-studio/finetune-studio/edge/internal/edgetest"
)

func TestCaddyfilesAdaptAndValidate(t *testing.T) {
	env, _ := defaultEnv(t, "127.0.0.1:1")
	var envList []string
	envList = append(envList, "PATH="+os.Getenv("PATH"), "HOME="+t.TempDir())
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	envList = append(envList, "EDGE_DEV_ADDR=localhost:18443", "EDGE_DEV_METRICS_ADDR=localhost:19180", "PORT=18080")
	// Caddyfile.snippets holds only snippets: it is formatted, and validated
	// through the two files that import it.
	for _, file := range []string{"Caddyfile", "Caddyfile.dev", "Caddyfile.railway", "Caddyfile.snippets"} {
		t.Run(file, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if file != "Caddyfile.snippets" {
				out, err := runEdge(ctx, envList, "validate", "--config", repoPath(t, file), "--adapter", "caddyfile")
				if err != nil || !strings.Contains(out, "Valid configuration") {
					t.Fatalf("validate %s: %v\n%s", file, err, out)
				}
			}
			formatted, err := runEdge(ctx, envList, "fmt", repoPath(t, file))
			if err != nil {
				t.Fatalf("fmt %s: %v\n%s", file, err, formatted)
			}
			if raw, _ := os.ReadFile(repoPath(t, file)); formatted != string(raw) {
				t.Errorf("%s is not formatted; run: edge fmt --overwrite %s", file, file)
			}
		})
	}
	t.Run("missing DOMAIN is refused", func(t *testing.T) {
		var noDomain []string
		for _, kv := range envList {
			if !strings.HasPrefix(kv, "DOMAIN=") {
				noDomain = append(noDomain, kv)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := runEdge(ctx, noDomain, "validate", "--config", repoPath(t, "Caddyfile"), "--adapter", "caddyfile")
		if err == nil {
			t.Fatalf("validate without DOMAIN succeeded:\n%s", out)
		}
	})
}

func TestRateLimit(t *testing.T) {
	app := startStubApp(t)
	env, pe := defaultEnv(t, app.addr)
	startProdEdge(t, env, pe)

	t.Run("general zone: 429 after the configured count, JSON and Retry-After", func(t *testing.T) {
		c := pe.client("127.0.0.2") // a trusted proxy speaking for one client
		hdr := map[string]string{"X-Forwarded-For": "198.51.100.7"}
		for i := range 5 {
			resp, body := do(t, c, "GET", pe.url("/api/v1/datasets"), nil, hdr)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d: got %d, want 200: %s", i+1, resp.StatusCode, body)
			}
		}
		resp, body := do(t, c, "GET", pe.url("/api/v1/datasets"), nil, hdr)
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("request 6: got %d, want 429", resp.StatusCode)
		}
		if code := errorCode(t, resp, body); code != "rate_limited" {
			t.Errorf("error code = %q, want rate_limited", code)
		}
		if ra := resp.Header.Get("Retry-After"); !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(ra) {
			t.Errorf("Retry-After = %q, want a positive number of seconds", ra)
		}
		// Another client behind the same trusted proxy has its own budget.
		resp, _ = do(t, c, "GET", pe.url("/api/v1/datasets"), nil, map[string]string{"X-Forwarded-For": "198.51.100.8"})
		if resp.StatusCode != http.StatusOK {
			t.Errorf("other client behind the trusted proxy: got %d, want 200", resp.StatusCode)
		}
	})

	t.Run("spoofed X-Forwarded-For from an untrusted peer does not escape", func(t *testing.T) {
		c := pe.client("127.0.0.3") // not in TRUSTED_PROXIES
		for i := range 5 {
			hdr := map[string]string{"X-Forwarded-For": fmt.Sprintf("203.0.113.%d", i+1)}
			resp, _ := do(t, c, "GET", pe.url("/api/v1/datasets"), nil, hdr)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d: got %d, want 200", i+1, resp.StatusCode)
			}
		}
		resp, _ := do(t, c, "GET", pe.url("/api/v1/datasets"), nil, map[string]string{"X-Forwarded-For": "203.0.113.99"})
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("6th request with a fresh spoofed X-Forwarded-For: got %d, want 429", resp.StatusCode)
		}
		// The spoofing chain's trusted proxy (127.0.0.2) prepending a fake
		// entry does not help either: strict parsing takes the rightmost
		// untrusted address.
		c2 := pe.client("127.0.0.2")
		hdr := map[string]string{"X-Forwarded-For": "203.0.113.50, 198.51.100.7"}
		resp, _ = do(t, c2, "GET", pe.url("/api/v1/datasets"), nil, hdr)
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("prepended fake entry before a limited client: got %d, want 429", resp.StatusCode)
		}
	})

	t.Run("expensive zone is stricter", func(t *testing.T) {
		c := pe.client("127.0.0.2")
		hdr := map[string]string{"X-Forwarded-For": "198.51.100.20", "Content-Type": "application/json"}
		for i := range 2 {
			resp, body := do(t, c, "POST", pe.url("/api/v1/jobs"), []byte(`{}`), hdr)
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("job %d: got %d, want 201: %s", i+1, resp.StatusCode, body)
			}
		}
		resp, body := do(t, c, "POST", pe.url("/api/v1/jobs"), []byte(`{}`), hdr)
		if resp.StatusCode != http.StatusTooManyRequests || errorCode(t, resp, body) != "rate_limited" {
			t.Fatalf("3rd job: got %d %s, want 429 rate_limited", resp.StatusCode, body)
		}
		// The general zone is separate: reads still work for this client.
		resp, _ = do(t, c, "GET", pe.url("/api/v1/jobs"), nil, hdr)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("read after expensive limit: got %d, want 200", resp.StatusCode)
		}
	})
}

func TestCORS(t *testing.T) {
	app := startStubApp(t)
	env, pe := defaultEnv(t, app.addr)
	// Written the way operators do; browsers send https://studio.example.org.
	env["CORS_ORIGINS"] = "https://*.example.com HTTPS://Studio.Example.org:443/"
	startProdEdge(t, env, pe)
	c := pe.client("127.0.0.1")

	preflight := func(origin, method, headers string) (*http.Response, []byte) {
		h := map[string]string{"Origin": origin, "Access-Control-Request-Method": method}
		if headers != "" {
			h["Access-Control-Request-Headers"] = headers
		}
		return do(t, c, "OPTIONS", pe.url("/api/v1/jobs"), nil, h)
	}
	for _, tc := range []struct {
		name, origin, method, headers string
		want                          int
	}{
		{"own origin", "https://localhost", "POST", "content-type", http.StatusNoContent},
		{"wildcard subdomain", "https://a.b.example.com", "DELETE", "Authorization, Content-Type", http.StatusNoContent},
		{"exact extra origin", "https://studio.example.org", "GET", "", http.StatusNoContent},
		{"apex of wildcard is not included", "https://example.com", "GET", "", http.StatusForbidden},
		{"scheme must match", "http://a.example.com", "GET", "", http.StatusForbidden},
		{"lookalike suffix", "https://evilexample.com", "GET", "", http.StatusForbidden},
		{"unknown origin", "https://evil.test", "POST", "", http.StatusForbidden},
		{"method not allowed", "https://localhost", "TRACE", "", http.StatusForbidden},
		{"header not allowed", "https://localhost", "POST", "x-evil", http.StatusForbidden},
	} {
		t.Run("preflight "+tc.name, func(t *testing.T) {
			resp, body := preflight(tc.origin, tc.method, tc.headers)
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Origin") {
				t.Errorf("Vary = %q, want it to include Origin", resp.Header.Values("Vary"))
			}
			acao := resp.Header.Get("Access-Control-Allow-Origin")
			if tc.want == http.StatusNoContent {
				if acao != tc.origin {
					t.Errorf("Access-Control-Allow-Origin = %q, want %q", acao, tc.origin)
				}
				if resp.Header.Get("Access-Control-Max-Age") != "600" {
					t.Errorf("Access-Control-Max-Age = %q, want 600", resp.Header.Get("Access-Control-Max-Age"))
				}
				if got := resp.Header.Get("Access-Control-Allow-Methods"); got != "GET, HEAD, POST, PUT, PATCH, DELETE" {
					t.Errorf("Access-Control-Allow-Methods = %q", got)
				}
			} else {
				if acao != "" {
					t.Errorf("denied preflight carries Access-Control-Allow-Origin %q", acao)
				}
				if code := errorCode(t, resp, body); code != "cors_rejected" {
					t.Errorf("error code = %q, want cors_rejected", code)
				}
			}
		})
	}

	t.Run("actual request from allowed origin gets headers, disallowed gets none", func(t *testing.T) {
		resp, _ := do(t, c, "GET", pe.url("/api/v1/datasets"), nil, map[string]string{"Origin": "https://x.example.com"})
		if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://x.example.com" {
			t.Errorf("allowed: status %d, ACAO %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
		if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Request-ID") {
			t.Errorf("Access-Control-Expose-Headers = %q", resp.Header.Get("Access-Control-Expose-Headers"))
		}
		resp, _ = do(t, c, "GET", pe.url("/api/v1/datasets"), nil, map[string]string{"Origin": "https://evil.test"})
		if resp.StatusCode != 200 {
			t.Errorf("disallowed simple request: got %d, want 200 (the browser blocks it)", resp.StatusCode)
		}
		for k := range resp.Header {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("disallowed origin got %s", k)
			}
		}
		if !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Origin") {
			t.Errorf("Vary = %q, want Origin", resp.Header.Values("Vary"))
		}
	})
}

func TestBodyCaps(t *testing.T) {
	app := startStubApp(t)
	env, pe := defaultEnv(t, app.addr)
	env["RATE_LIMIT_API_EVENTS"] = "1000"
	env["RATE_LIMIT_EXPENSIVE_EVENTS"] = "1000"
	startProdEdge(t, env, pe)
	c := pe.client("127.0.0.1")

	for _, tc := range []struct {
		name    string
		path    string
		size    int
		chunked bool
		want    int
	}{
		{"api body at the cap", "/api/v1/jobs", 1024, false, http.StatusCreated},
		{"api body over the cap", "/api/v1/jobs", 1025, false, http.StatusRequestEntityTooLarge},
		{"api body over the cap, chunked", "/api/v1/jobs", 4096, true, http.StatusRequestEntityTooLarge},
		{"upload above the api cap", "/api/v1/datasets", 60000, false, http.StatusCreated},
		{"upload over its cap", "/api/v1/datasets", 65537, false, http.StatusRequestEntityTooLarge},
		{"upload over its cap, chunked", "/api/v1/datasets", 200000, true, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := bytes.Repeat([]byte("a"), tc.size)
			var body io.Reader = bytes.NewReader(payload)
			if tc.chunked {
				body = io.MultiReader(bytes.NewReader(payload)) // unknown length: chunked
			}
			req, _ := http.NewRequest("POST", pe.url(tc.path), body)
			req.Header.Set("Content-Type", "application/octet-stream")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			if tc.want == http.StatusRequestEntityTooLarge {
				if code := errorCode(t, resp, b); code != "payload_too_large" {
					t.Errorf("error code = %q, want payload_too_large", code)
				}
			}
		})
	}
}

func TestCompression(t *testing.T) {
	app := startStubApp(t)
	env, pe := defaultEnv(t, app.addr)
	env["RATE_LIMIT_API_EVENTS"] = "1000"
	startProdEdge(t, env, pe)
	c := pe.client("127.0.0.1")

	_, plain := do(t, c, "GET", pe.url("/api/v1/datasets"), nil, nil)
	for _, enc := range []string{"zstd", "gzip"} {
		t.Run("api json "+enc, func(t *testing.T) {
			resp, body := do(t, c, "GET", pe.url("/api/v1/datasets"), nil, map[string]string{"Accept-Encoding": enc})
			if got := resp.Header.Get("Content-Encoding"); got != enc {
				t.Fatalf("Content-Encoding = %q, want %q", got, enc)
			}
			if got := decode(t, enc, body); !bytes.Equal(got, plain) {
				t.Errorf("decoded body differs from the plain one")
			}
			if len(body) >= len(plain) {
				t.Errorf("compressed %d bytes >= plain %d", len(body), len(plain))
			}
		})
	}
	t.Run("zstd preferred when both are accepted", func(t *testing.T) {
		resp, _ := do(t, c, "GET", pe.url("/api/v1/datasets"), nil, map[string]string{"Accept-Encoding": "gzip, zstd"})
		if got := resp.Header.Get("Content-Encoding"); got != "zstd" {
			t.Errorf("Content-Encoding = %q, want zstd", got)
		}
	})
	t.Run("SSE is never compressed and streams event by event", func(t *testing.T) {
		req, _ := http.NewRequest("GET", pe.url("/api/v1/jobs/1/events/stream"), nil)
		req.Header.Set("Accept-Encoding", "zstd, gzip")
		req.Header.Set("Accept", "text/event-stream")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ce := resp.Header.Get("Content-Encoding"); ce != "" {
			t.Fatalf("SSE Content-Encoding = %q, want none", ce)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("Content-Type = %q", ct)
		}
		// The first event must arrive while the app still holds the
		// stream open: proof that the edge flushes instead of buffering.
		rd := bufio.NewReader(resp.Body)
		line, err := rd.ReadString('\n')
		if err != nil || line != "event: status\n" {
			t.Fatalf("first line = %q, %v", line, err)
		}
		close(app.release)
		rest, err := io.ReadAll(rd)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(rest), `"state":"done"`) {
			t.Errorf("stream end missing: %q", rest)
		}
	})
}

func decode(t testing.TB, enc string, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch enc {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("zstd: %v", err)
		}
		defer zr.Close()
		r = zr
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decoding %s: %v", enc, err)
	}
	return out
}

func TestStaticUIAndSecurityHeaders(t *testing.T) {
	app := startStubApp(t)
	env, pe := defaultEnv(t, app.addr)
	startProdEdge(t, env, pe)
	c := pe.client("127.0.0.1")
	uiDir := repoPath(t, "edge/ui")
	assets, err := filepath.Glob(filepath.Join(uiDir, "assets", "app.*.js"))
	if err != nil || len(assets) != 1 {
		t.Fatalf("want one hashed app.*.js in %s, got %v (%v)", uiDir, assets, err)
	}
	asset := "/assets/" + filepath.Base(assets[0])

	t.Run("hashed asset is immutable with validators", func(t *testing.T) {
		resp, body := do(t, c, "GET", pe.url(asset), nil, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("got %d", resp.StatusCode)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
			t.Errorf("Cache-Control = %q", cc)
		}
		etag := resp.Header.Get("ETag")
		if etag == "" || resp.Header.Get("Last-Modified") == "" {
			t.Errorf("ETag %q / Last-Modified %q missing", etag, resp.Header.Get("Last-Modified"))
		}
		want, _ := os.ReadFile(assets[0])
		if !bytes.Equal(body, want) {
			t.Errorf("body differs from %s", assets[0])
		}
		resp, _ = do(t, c, "GET", pe.url(asset), nil, map[string]string{"If-None-Match": etag})
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("conditional GET: got %d, want 304", resp.StatusCode)
		}
	})
	for _, enc := range []string{"zstd", "br", "gzip"} {
		t.Run("precompressed "+enc+" sibling served as is", func(t *testing.T) {
			resp, body := do(t, c, "GET", pe.url(asset), nil, map[string]string{"Accept-Encoding": enc})
			if resp.Header.Get("Content-Encoding") != enc {
				t.Fatalf("Content-Encoding = %q, want %s", resp.Header.Get("Content-Encoding"), enc)
			}
			ext := map[string]string{"zstd": ".zst", "br": ".br", "gzip": ".gz"}[enc]
			want, _ := os.ReadFile(assets[0] + ext)
			if !bytes.Equal(body, want) {
				t.Errorf("body is not the precompressed file %s", assets[0]+ext)
			}
			if !strings.Contains(resp.Header.Get("Content-Type"), "javascript") {
				t.Errorf("Content-Type = %q", resp.Header.Get("Content-Type"))
			}
		})
	}
	t.Run("index.html and SPA routes revalidate", func(t *testing.T) {
		for _, p := range []string{"/", "/index.html", "/jobs/123"} {
			resp, body := do(t, c, "GET", pe.url(p), nil, nil)
			if resp.StatusCode != 200 || !strings.Contains(string(body), "Finetune Studio") {
				t.Errorf("%s: got %d", p, resp.StatusCode)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("%s: Cache-Control = %q, want no-cache", p, cc)
			}
		}
	})
	t.Run("missing hashed asset is a 404 nobody may keep, not index.html", func(t *testing.T) {
		resp, body := do(t, c, "GET", pe.url("/assets/app.0123abcd.js"), nil, nil)
		if resp.StatusCode != 404 {
			t.Fatalf("got %d, want 404", resp.StatusCode)
		}
		if code := errorCode(t, resp, body); code != "not_found" {
			t.Errorf("code %q", code)
		}
		// During a rolling deploy the asset appears moments later: a
		// cached 404 would break the page for a year.
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store", cc)
		}
	})
	t.Run("security headers on UI, API and errors; no Server header", func(t *testing.T) {
		for _, p := range []string{"/", asset, "/api/v1/datasets", "/assets/app.0123abcd.js"} {
			resp, _ := do(t, c, "GET", pe.url(p), nil, nil)
			for k, want := range map[string]string{
				"Strict-Transport-Security": "max-age=63072000; includeSubDomains",
				"X-Content-Type-Options":    "nosniff",
				"Referrer-Policy":           "strict-origin-when-cross-origin",
			} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s: %s = %q, want %q", p, k, got, want)
				}
			}
			csp := resp.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("%s: CSP = %q", p, csp)
			}
			if s := resp.Header.Get("Server"); s != "" {
				t.Errorf("%s: Server = %q, want none", p, s)
			}
			if alt := resp.Header.Get("Alt-Svc"); !strings.Contains(alt, "h3=") {
				t.Errorf("%s: Alt-Svc = %q, want HTTP/3 advertised", p, alt)
			}
		}
	})
	t.Run("HTTP redirects to HTTPS", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/jobs", pe.httpPort), nil)
		req.Host = "localhost"
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusPermanentRedirect || !strings.HasPrefix(resp.Header.Get("Location"), "https://localhost") {
			t.Errorf("got %d Location %q, want 308 to https", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("request id reaches the app and the client", func(t *testing.T) {
		resp, _ := do(t, c, "GET", pe.url("/api/v1/ping"), nil, map[string]string{"X-Request-ID": "client-chosen"})
		rid := resp.Header.Get("X-Request-ID")
		app.mu.Lock()
		got := app.lastReqID
		app.mu.Unlock()
		if rid == "" || rid == "client-chosen" || got != rid {
			t.Errorf("client saw X-Request-ID %q, app saw %q; want the same edge-made id", rid, got)
		}
	})
}

func TestUpstreamDown(t *testing.T) {
	// A port nothing listens on.
	env, pe := defaultEnv(t, fmt.Sprintf("127.0.0.1:%d", freeClosedPort(t)))
	startProdEdge(t, env, pe)
	c := pe.client("127.0.0.1")
	resp, body := do(t, c, "GET", pe.url("/api/v1/datasets"), nil, nil)
	if resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("got %d, want 502 or 503: %s", resp.StatusCode, body)
	}
	if code := errorCode(t, resp, body); code != "upstream_unavailable" {
		t.Errorf("code = %q, want upstream_unavailable", code)
	}
	if strings.Contains(string(body), "127.0.0.1") || strings.Contains(string(body), "dial") {
		t.Errorf("error body leaks internals: %s", body)
	}

	// The proxy's active check finds the app down at startup.
	resp, body = waitHealth(t, c, pe.url("/health"), "fail")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/health with the app down: got %d, want 503: %s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "127.0.0.1") || strings.Contains(string(body), "refused") {
		t.Errorf("/health leaks internals: %s", body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Liveness is the edge itself: a healthy proxy in front of a down app
	// must not be restarted.
	if out, err := pe.Run(ctx, "healthcheck", "--url", pe.metricsURL("/livez")); err != nil {
		t.Errorf("liveness healthcheck with the app down failed: %v\n%s", err, out)
	}
	if out, err := pe.Run(ctx, "healthcheck", "--ready", "--url", pe.metricsURL("/health")); err == nil {
		t.Errorf("readiness healthcheck with the app down exited 0:\n%s", out)
	}
}

// waitHealth polls a health endpoint until it reports status and returns
// that answer.
func waitHealth(t *testing.T, c *http.Client, url, status string) (*http.Response, []byte) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, body := do(t, c, "GET", url, nil, nil)
		var rep struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(body, &rep); err == nil && rep.Status == status {
			return resp, body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reported %s; last answer %d %s", url, status, resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAppRestartRideThrough stops the app, sends a request, and brings the
// app back on the same address: the request waits (lb_try_duration) and
// succeeds instead of failing.
func TestAppRestartRideThrough(t *testing.T) {
	app := startStubApp(t)
	env, pe := defaultEnv(t, app.addr)
	env["EDGE_LB_TRY_DURATION"] = "2m"
	startProdEdge(t, env, pe)
	c := pe.client("127.0.0.1")
	if resp, _ := do(t, c, "GET", pe.url("/api/v1/datasets"), nil, nil); resp.StatusCode != 200 {
		t.Fatalf("before restart: %d", resp.StatusCode)
	}

	app.stop()
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Get(pe.url("/api/v1/datasets"))
		if err != nil {
			done <- result{err: err}
			return
		}
		readAllClose(resp)
		done <- result{code: resp.StatusCode}
	}()
	// Bring the app back only once the edge has marked it unhealthy (its
	// active check failed), so the request demonstrably waited through the
	// outage rather than racing it.
	unhealthy := fmt.Sprintf(`caddy_reverse_proxy_upstreams_healthy{upstream=%q} 0`, app.addr)
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, body := do(t, http.DefaultClient, "GET", pe.metricsURL("/metrics"), nil, nil)
		if strings.Contains(string(body), unhealthy) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge never marked the stopped app unhealthy:\n%s", grep(string(body), "upstreams_healthy"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case r := <-done:
		t.Fatalf("request finished while the app was down: %d, %v", r.code, r.err)
	default:
	}
	startStubAppAt(t, app.addr)
	select {
	case r := <-done:
		if r.err != nil || r.code != 200 {
			t.Fatalf("request across the app restart: %d, %v; want 200", r.code, r.err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("request across the app restart never finished")
	}
}

// freeClosedPort is a loopback port that nothing listens on.
func freeClosedPort(t testing.TB) int {
	t.Helper()
	return edgetest.FreePort(t)
}

func runEdge(ctx context.Context, env []string, args ...string) (string, error) {
	return edgetest.RunCommand(ctx, edgeBin, env, args...)
}
