package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/edge/internal/edgetest"
)

// TestRailwayEdge runs Caddyfile.railway, the edge behind a platform's TLS
// proxy: plain HTTP on $PORT, the client IP taken from the proxy's
// X-Real-IP (or X-Forwarded-For) only when the peer is trusted, and the
// production chain (headers, errors, limits) otherwise unchanged.
func TestRailwayEdge(t *testing.T) {
	app := startStubApp(t)
	port := edgetest.FreePort(t)
	metricsPort := edgetest.FreePort(t)
	globals := filepath.Join(t.TempDir(), "none.caddy")
	if err := os.WriteFile(globals, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"PORT":                  strconv.Itoa(port),
		"DOMAIN":                "studio.example.com",
		"EDGE_ADMIN_ADDR":       fmt.Sprintf("127.0.0.1:%d", edgetest.FreePort(t)),
		"EDGE_STORAGE_DIR":      t.TempDir(),
		"EDGE_METRICS_PORT":     strconv.Itoa(metricsPort),
		"EDGE_EXTRA_GLOBALS":    globals,
		"EDGE_UI_DIR":           repoPath(t, "edge/ui"),
		"APP_UPSTREAMS":         app.addr,
		"TRUSTED_PROXIES":       "127.0.0.2/32", // the platform's proxy here
		"RATE_LIMIT_API_EVENTS": "3",
		"RATE_LIMIT_API_WINDOW": "1m",
	}
	edgetest.Start(t, edgetest.Options{
		Bin: edgeBin, Config: repoPath(t, "Caddyfile.railway"), Env: env,
		ReadyURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort),
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := func(sourceIP string) *http.Client {
		dialer := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(sourceIP)}}
		return &http.Client{
			Timeout:       30 * time.Second,
			Transport:     &http.Transport{Proxy: nil, DialContext: dialer.DialContext, DisableCompression: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	proxy := client("127.0.0.2")
	seen := func() (xff, proto string) {
		app.mu.Lock()
		defer app.mu.Unlock()
		return app.lastXFF, app.lastProto
	}

	t.Run("plain HTTP on $PORT, no redirect, production headers", func(t *testing.T) {
		resp, body := do(t, proxy, "GET", url+"/api/v1/datasets", nil,
			map[string]string{"X-Real-IP": "198.51.100.7", "X-Forwarded-Proto": "https", "Accept-Encoding": "gzip"})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("got %d, want 200: %s", resp.StatusCode, body)
		}
		for h, want := range map[string]string{
			"Strict-Transport-Security": "max-age=63072000; includeSubDomains",
			"X-Content-Type-Options":    "nosniff",
			"X-Frame-Options":           "DENY",
			"Content-Encoding":          "gzip",
		} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("%s = %q, want %q", h, got, want)
			}
		}
		if resp.Header.Get("X-Request-ID") == "" {
			t.Error("no X-Request-ID")
		}
		if resp.Header.Get("Server") != "" {
			t.Errorf("Server header leaked: %q", resp.Header.Get("Server"))
		}
	})

	t.Run("the app gets the client's IP and the proxy's https", func(t *testing.T) {
		do(t, proxy, "GET", url+"/api/v1/models", nil,
			map[string]string{"X-Real-IP": "198.51.100.8", "X-Forwarded-Proto": "https"})
		if xff, proto := seen(); xff != "198.51.100.8" || proto != "https" {
			t.Errorf("app saw X-Forwarded-For %q, X-Forwarded-Proto %q; want 198.51.100.8, https", xff, proto)
		}
		// Without X-Real-IP, the strict X-Forwarded-For rule: the rightmost
		// address that is not a trusted proxy.
		do(t, proxy, "GET", url+"/api/v1/models", nil,
			map[string]string{"X-Forwarded-For": "203.0.113.9, 198.51.100.9"})
		if xff, _ := seen(); xff != "198.51.100.9" {
			t.Errorf("app saw X-Forwarded-For %q, want 198.51.100.9", xff)
		}
	})

	t.Run("an untrusted peer cannot name another client", func(t *testing.T) {
		direct := client("127.0.0.3")
		do(t, direct, "GET", url+"/api/v1/models", nil,
			map[string]string{"X-Real-IP": "192.0.2.1", "X-Forwarded-For": "192.0.2.2", "X-Forwarded-Proto": "https"})
		if xff, proto := seen(); xff != "127.0.0.3" || proto != "http" {
			t.Errorf("app saw X-Forwarded-For %q, X-Forwarded-Proto %q; want the peer 127.0.0.3, http", xff, proto)
		}
	})

	t.Run("rate limits key on the client behind the proxy", func(t *testing.T) {
		limited := map[string]string{"X-Real-IP": "198.51.100.50"}
		for i := range 3 {
			if resp, body := do(t, proxy, "GET", url+"/api/v1/jobs", nil, limited); resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d: got %d, want 200: %s", i+1, resp.StatusCode, body)
			}
		}
		resp, body := do(t, proxy, "GET", url+"/api/v1/jobs", nil, limited)
		if resp.StatusCode != http.StatusTooManyRequests || errorCode(t, resp, body) != "rate_limited" {
			t.Fatalf("4th request: got %d %s, want 429 rate_limited", resp.StatusCode, body)
		}
		if resp, _ := do(t, proxy, "GET", url+"/api/v1/jobs", nil, map[string]string{"X-Real-IP": "198.51.100.51"}); resp.StatusCode != http.StatusOK {
			t.Errorf("another client behind the same proxy: got %d, want 200", resp.StatusCode)
		}
	})

	t.Run("health on $PORT for the platform's check, detail on the internal listener", func(t *testing.T) {
		resp, body := do(t, proxy, "GET", url+"/health", nil, nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"status":"pass"`) {
			t.Errorf("/health: got %d %s, want 200 pass", resp.StatusCode, body)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/livez", metricsPort), nil)
		lresp, err := client("127.0.0.1").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		lresp.Body.Close()
		if lresp.StatusCode != http.StatusOK {
			t.Errorf("/livez: got %d, want 200", lresp.StatusCode)
		}
	})
}
