// Package e2e proves the edge end to end: the built binary, the real
// Caddyfiles, a stub upstream app, and (in acme_test.go) a real ACME server.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/edge/internal/edgetest"
)

// edgeBin is the edge binary built once for this test binary.
var edgeBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "edge-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	edgeBin, err = edgetest.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func repoPath(t testing.TB, rel string) string {
	t.Helper()
	root, err := edgetest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, rel)
}

// stubApp is the upstream app: the contract's endpoints, with observable
// behaviour for the tests.
type stubApp struct {
	srv       *http.Server
	addr      string
	mu        sync.Mutex
	lastReqID string
	lastXFF   string
	lastProto string        // X-Forwarded-Proto
	release   chan struct{} // closes to finish the SSE stream
	readyHits atomic.Int64  // GET /readyz requests answered
}

func startStubApp(t testing.TB) *stubApp {
	t.Helper()
	return startStubAppAt(t, "127.0.0.1:0")
}

// startStubAppAt listens on addr (a fixed one brings an app "back" after a
// restart).
func startStubAppAt(t testing.TB, addr string) *stubApp {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &stubApp{addr: l.Addr().String(), release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		s.readyHits.Add(1)
		w.Header().Set("Content-Type", "application/health+json")
		io.WriteString(w, `{"status":"pass","checks":{}}`)
	})
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("POST /api/v1/datasets", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			// The edge cut the body off: it answers the client itself.
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"bytes":%d}`, n)
	})
	mux.HandleFunc("POST /api/v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":"job-1"}`)
	})
	mux.HandleFunc("GET /api/v1/jobs/{id}/events/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		// Big enough to be compressed if the edge wrongly did so.
		fmt.Fprintf(w, "event: status\ndata: {\"state\":\"running\",\"pad\":%q}\n\n", strings.Repeat("x", 2048))
		w.(http.Flusher).Flush()
		select {
		case <-s.release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "event: status\ndata: {\"state\":\"done\"}\n\n")
	})
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.lastReqID = r.Header.Get("X-Request-ID")
		s.lastXFF = r.Header.Get("X-Forwarded-For")
		s.lastProto = r.Header.Get("X-Forwarded-Proto")
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Server", "stub-app/1.0")
		// A secret the access log must not keep.
		w.Header().Set("Set-Cookie", "sess=setcookie-SECRET-5; HttpOnly; Secure")
		// ~8 KB of JSON, well above the compression threshold.
		items := make([]string, 100)
		for i := range items {
			items[i] = fmt.Sprintf(`{"id":%d,"name":"dataset-%d","state":"ready"}`, i, i)
		}
		fmt.Fprintf(w, `{"path":%q,"items":[%s]}`, r.URL.Path, strings.Join(items, ","))
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(l)
	t.Cleanup(s.stop)
	return s
}

// stop shuts the app down (idempotent).
func (s *stubApp) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
}

// prodEdge is the production Caddyfile running against a stub app.
type prodEdge struct {
	*edgetest.Edge
	httpsPort   int
	httpPort    int
	metricsPort int
	storage     string
	roots       *x509.CertPool
}

// defaultEnv is the environment the production Caddyfile gets in tests:
// DOMAIN=localhost served with Caddy's internal CA (no ACME here; see
// acme_test.go), small limits so they are reachable, random ports.
func defaultEnv(t testing.TB, upstream string) (map[string]string, *prodEdge) {
	t.Helper()
	pe := &prodEdge{
		httpsPort:   edgetest.FreePort(t),
		httpPort:    edgetest.FreePort(t),
		metricsPort: edgetest.FreePort(t),
		storage:     t.TempDir(),
	}
	extra := filepath.Join(t.TempDir(), "test-globals.caddy")
	if err := os.WriteFile(extra, []byte("local_certs\nskip_install_trust\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"DOMAIN":                      "localhost",
		"ACME_EMAIL":                  "ops@example.test",
		"ACME_ISSUERS":                "custom", // local_certs in the extra globals
		"EDGE_ADMIN_ADDR":             fmt.Sprintf("127.0.0.1:%d", edgetest.FreePort(t)),
		"EDGE_STORAGE_DIR":            pe.storage,
		"EDGE_HTTP_LISTEN_PORT":       strconv.Itoa(pe.httpPort),
		"EDGE_HTTPS_LISTEN_PORT":      strconv.Itoa(pe.httpsPort),
		"EDGE_METRICS_PORT":           strconv.Itoa(pe.metricsPort),
		"EDGE_METRICS_BIND":           "127.0.0.1",
		"EDGE_EXTRA_GLOBALS":          extra,
		"EDGE_UI_DIR":                 repoPath(t, "edge/ui"),
		"APP_UPSTREAMS":               upstream,
		"TRUSTED_PROXIES":             "127.0.0.2/32",
		"CORS_ORIGINS":                "https://*.example.com https://studio.example.org",
		"RATE_LIMIT_API_EVENTS":       "5",
		"RATE_LIMIT_API_WINDOW":       "1m",
		"RATE_LIMIT_EXPENSIVE_EVENTS": "2",
		"RATE_LIMIT_EXPENSIVE_WINDOW": "1m",
		"API_MAX_BODY":                "1024",
		"MAX_UPLOAD_BYTES":            "65536",
		"EDGE_LB_TRY_DURATION":        "1s",
		"EDGE_GRACE_PERIOD":           "2s",
		"EDGE_STREAM_CLOSE_DELAY":     "1s",
	}
	return env, pe
}

func startProdEdge(t testing.TB, env map[string]string, pe *prodEdge) *prodEdge {
	t.Helper()
	pe.Edge = edgetest.Start(t, edgetest.Options{
		Bin:      edgeBin,
		Config:   repoPath(t, "Caddyfile"),
		Env:      env,
		ReadyURL: pe.metricsURL("/metrics"),
	})
	rootPEM := waitFile(t, filepath.Join(pe.storage, "pki", "authorities", "local", "root.crt"), 30*time.Second)
	pe.roots = x509.NewCertPool()
	if !pe.roots.AppendCertsFromPEM(rootPEM) {
		t.Fatal("edge's local root is not PEM")
	}
	// Wait until the site certificate is issued and served.
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := pe.client("127.0.0.1").Get(pe.url("/health"))
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge not serving HTTPS: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return pe
}

func (pe *prodEdge) url(path string) string {
	return fmt.Sprintf("https://localhost:%d%s", pe.httpsPort, path)
}

func (pe *prodEdge) metricsURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", pe.metricsPort, path)
}

// client returns an HTTP/1.1 client that trusts the edge's CA, connects
// from sourceIP (loopback aliases model different clients and proxies) and
// does not decompress, so tests see Content-Encoding as sent.
func (pe *prodEdge) client(sourceIP string) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(sourceIP)}}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", pe.httpsPort))
			},
			TLSClientConfig:    &tls.Config{RootCAs: pe.roots, ServerName: "localhost"},
			DisableCompression: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func waitFile(t testing.TB, path string, timeout time.Duration) []byte {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(path)
		if err == nil && len(b) > 0 {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear: %v", path, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// do sends a request and returns the response with its body read.
func do(t testing.TB, c *http.Client, method, url string, body []byte, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, b
}

// errorCode returns error.code of an edge/app JSON error body.
func errorCode(t testing.TB, resp *http.Response, body []byte) string {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type = %q, want application/json (body %q)", ct, body)
	}
	var e struct {
		Error struct {
			Code    string             `json:"code"`
			Message string             `json:"message"`
			Details *[]json.RawMessage `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body is not JSON: %v: %q", err, body)
	}
	// The app's shape: details is always an array, empty when unused.
	if e.Error.Message == "" || e.Error.Details == nil {
		t.Errorf("error body %s lacks message or a details array", body)
	}
	return e.Error.Code
}

// healthReport is the part of an application/health+json answer the tests read.
type healthReport struct {
	Status string `json:"status"`
	Checks map[string][]struct {
		ComponentID   string  `json:"componentId"`
		Status        string  `json:"status"`
		ObservedValue float64 `json:"observedValue"`
	} `json:"checks"`
}

func getHealth(t *testing.T, c *http.Client, url string) healthReport {
	t.Helper()
	resp, body := do(t, c, "GET", url, nil, nil)
	var rep healthReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("health %d: %v: %s", resp.StatusCode, err, body)
	}
	return rep
}
