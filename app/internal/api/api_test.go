package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/finetune-studio/finetune-studio/app/internal/auth"
	"github.com/finetune-studio/finetune-studio/app/internal/config"
	"github.com/finetune-studio/finetune-studio/app/internal/health"
	"github.com/finetune-studio/finetune-studio/app/internal/metrics"
	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/store"
	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

type fixture struct {
	api     *API
	srv     *httptest.Server
	logs    *testenv.SyncBuffer
	metrics *metrics.Metrics
	store   *store.Store
	token   string
}

// newFixture builds the API on a real database (for tokens) with a minted
// token. extra registers test-only routes before the server starts.
func newFixture(t *testing.T, extra func(a *API)) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, token := openStoreWithToken(ctx, t, testenv.NewDatabase(t))
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	cfg, err := config.Parse(map[string]string{
		"DATABASE_URL": "postgres://x@127.0.0.1/x", "S3_ENDPOINT": "127.0.0.1:1",
		"S3_ACCESS_KEY": "a", "S3_SECRET_KEY": "b", "APP_MAX_BODY_BYTES": "1024",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	met := metrics.New(metrics.BuildInfo{Version: "test", Revision: "test"})
	checker := health.New(log, health.Options{}, health.Check{Name: "database", Critical: true, Run: st.Ping})
	a := New(Deps{Config: cfg, Log: log, Auth: auth.New(st, auth.Options{}), Health: checker, Metrics: met, Repo: st})
	if extra != nil {
		extra(a)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return &fixture{api: a, srv: srv, logs: logs, metrics: met, store: st, token: token}
}

func (f *fixture) do(t *testing.T, method, path, token string, body io.Reader, header ...string) (*http.Response, []byte) {
	t.Helper()
	return send(t, f.srv, method, path, token, body, header...)
}

// openStoreWithToken opens a migrated store on dsn and mints an API token
// in it; the store closes when the test ends.
func openStoreWithToken(ctx context.Context, t testing.TB, dsn string) (*store.Store, string) {
	t.Helper()
	st, err := store.Open(ctx, store.Options{URL: dsn, Migrate: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	m, err := auth.Mint()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateToken(ctx, m.ID, "test", m.SecretHash, time.Time{}); err != nil {
		t.Fatal(err)
	}
	return st, m.Plaintext
}

// send makes one request to srv, with a bearer token unless token is empty
// and header as name/value pairs, and returns the response and its body.
func send(t testing.TB, srv *httptest.Server, method, path, token string, body io.Reader, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Field string `json:"field"`
			Issue string `json:"issue"`
		} `json:"details"`
	} `json:"error"`
}

func decodeError(t *testing.T, resp *http.Response, b []byte) errorBody {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type: got %q, want application/json; body %s", ct, b)
	}
	var e errorBody
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("not the error shape: %s (%v)", b, err)
	}
	return e
}

var varRe = regexp.MustCompile(`\{[^}]+\}`)

// TestEveryAPIRouteRejectsMissingOrWrongToken walks the router, so a route
// added later without protection fails here.
func TestEveryAPIRouteRejectsMissingOrWrongToken(t *testing.T) {
	f := newFixture(t, nil)
	revoked, _ := auth.Mint()
	ctx := context.Background()
	if err := f.store.CreateToken(ctx, revoked.ID, "revoked", revoked.SecretHash, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := f.store.RevokeToken(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	flip := map[byte]string{'0': "1"}[f.token[len(f.token)-1]]
	if flip == "" {
		flip = "0"
	}
	wrongSecret := f.token[:len(f.token)-1] + flip // right id, well-formed, wrong secret
	unknown, _ := auth.Mint()                      // well-formed, never stored

	publicRoutes := map[string]bool{"/livez": true, "/readyz": true}
	var walked int
	err := f.api.router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tmpl, err := route.GetPathTemplate()
		if err != nil {
			return err
		}
		methods, _ := route.GetMethods()
		if publicRoutes[tmpl] {
			return nil
		}
		if !strings.HasPrefix(tmpl, "/api/") {
			t.Errorf("route %s is neither a health route nor under /api/", tmpl)
		}
		path := varRe.ReplaceAllString(tmpl, "x")
		for _, method := range methods {
			walked++
			cases := map[string]string{
				"missing":       "",
				"unknown":       unknown.Plaintext,
				"wrong secret":  wrongSecret,
				"revoked":       revoked.Plaintext,
				"malformed":     "not-a-token",
				"basic scheme:": "",
			}
			for name, token := range cases {
				var hdr []string
				if name == "basic scheme:" {
					hdr = []string{"Authorization", "Basic dXNlcjpwYXNz"}
				}
				resp, b := f.do(t, method, path, token, strings.NewReader("{}"), hdr...)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s %s with %s token: got %d, want 401", method, tmpl, name, resp.StatusCode)
					continue
				}
				if e := decodeError(t, resp, b); e.Error.Code != "unauthenticated" {
					t.Errorf("%s %s: code %q", method, tmpl, e.Error.Code)
				}
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s %s: no WWW-Authenticate challenge", method, tmpl)
				}
			}
			// The valid token gets past authentication.
			resp, _ := f.do(t, method, path, f.token, strings.NewReader("{}"))
			if resp.StatusCode == http.StatusUnauthorized {
				t.Errorf("%s %s with a valid token: got 401", method, tmpl)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if walked == 0 {
		t.Fatal("no /api/ routes walked")
	}
	// Unknown /api/ paths are not discoverable without a token either.
	if resp, _ := f.do(t, "GET", "/api/v1/no-such-thing", "", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unknown /api/ path without token: got %d, want 401", resp.StatusCode)
	}
	if resp, _ := f.do(t, "GET", "/api/v1/no-such-thing", f.token, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown /api/ path with token: got %d, want 404", resp.StatusCode)
	}
}

func TestUnmatchedRoutesAnswerJSON(t *testing.T) {
	f := newFixture(t, nil)
	resp, b := f.do(t, "GET", "/nope", "", nil)
	if resp.StatusCode != 404 || decodeError(t, resp, b).Error.Code != "not_found" {
		t.Errorf("404: got %d %s", resp.StatusCode, b)
	}
	resp, b = f.do(t, "POST", "/livez", "", nil)
	if resp.StatusCode != 405 || decodeError(t, resp, b).Error.Code != "method_not_allowed" {
		t.Errorf("405: got %d %s", resp.StatusCode, b)
	}
}

type echoReq struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
	Inner struct {
		Flag bool `json:"flag"`
	} `json:"inner"`
}

func TestDecodeJSONStrictly(t *testing.T) {
	f := newFixture(t, func(a *API) {
		a.route("POST", "/api/v1/test/echo", func(w http.ResponseWriter, r *http.Request) error {
			var req echoReq
			if err := decodeJSON(r, &req); err != nil {
				return err
			}
			return writeJSON(w, http.StatusOK, req)
		})
	})
	big := `{"name":"` + strings.Repeat("a", 2000) + `"}`
	tests := []struct {
		name, body, contentType string
		status                  int
		code, contains, field   string
	}{
		{"ok", `{"name":"a","count":2,"inner":{"flag":true}}`, "application/json", 200, "", "", ""},
		{"ok without content type", `{"name":"a"}`, "", 200, "", "", ""},
		{"empty", ``, "application/json", 400, "invalid_request", "empty", ""},
		{"syntax", `{"name": "a",}`, "application/json", 400, "invalid_request", "byte offset 14", ""},
		{"truncated", `{"name": "a"`, "application/json", 400, "invalid_request", "ends before", ""},
		{"wrong type", `{"count":"three"}`, "application/json", 400, "invalid_request", `"count" must be an integer`, "count"},
		{"wrong nested type", `{"inner":{"flag":1}}`, "application/json", 400, "invalid_request", `"inner.flag" must be a boolean`, "inner.flag"},
		{"not an object", `[1,2]`, "application/json", 400, "invalid_request", "request body must be an object", ""},
		{"unknown field", `{"nme":"a"}`, "application/json", 400, "invalid_request", `unknown field "nme"`, "nme"},
		{"trailing data", `{"name":"a"} {"name":"b"}`, "application/json", 400, "invalid_request", "single JSON value", ""},
		{"trailing garbage", `{"name":"a"} xyz`, "application/json", 400, "invalid_request", "single JSON value", ""},
		{"too large", big, "application/json", 413, "payload_too_large", "1024 bytes", ""},
		{"wrong media type", `{"name":"a"}`, "text/plain", 415, "unsupported_media", "application/json", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.contentType != "" {
				hdr = []string{"Content-Type", tt.contentType}
			}
			resp, b := f.do(t, "POST", "/api/v1/test/echo", f.token, strings.NewReader(tt.body), hdr...)
			if resp.StatusCode != tt.status {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, b, tt.status)
			}
			if tt.status == 200 {
				return
			}
			e := decodeError(t, resp, b)
			if e.Error.Code != tt.code || !strings.Contains(e.Error.Message, tt.contains) {
				t.Fatalf("got %s: %q, want %s containing %q", e.Error.Code, e.Error.Message, tt.code, tt.contains)
			}
			if tt.field != "" && (len(e.Error.Details) == 0 || e.Error.Details[0].Field != tt.field) {
				t.Fatalf("details: got %+v, want field %q", e.Error.Details, tt.field)
			}
		})
	}
	// A chunked body (no Content-Length) over the cap is caught while reading.
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte(big))
		pw.Close()
	}()
	resp, b := f.do(t, "POST", "/api/v1/test/echo", f.token, pr, "Content-Type", "application/json")
	if resp.StatusCode != 413 {
		t.Fatalf("chunked oversize body: got %d %s, want 413", resp.StatusCode, b)
	}
}

func TestBodyLimitOption(t *testing.T) {
	f := newFixture(t, func(a *API) {
		a.route("PUT", "/api/v1/test/upload", func(w http.ResponseWriter, r *http.Request) error {
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				return err
			}
			return writeJSON(w, 200, map[string]int64{"bytes": n})
		}, BodyLimit(4096))
	})
	resp, b := f.do(t, "PUT", "/api/v1/test/upload", f.token, bytes.NewReader(make([]byte, 4000)))
	if resp.StatusCode != 200 {
		t.Fatalf("under the route's limit (above the default): got %d %s", resp.StatusCode, b)
	}
	resp, b = f.do(t, "PUT", "/api/v1/test/upload", f.token, bytes.NewReader(make([]byte, 5000)))
	if resp.StatusCode != 413 || decodeError(t, resp, b).Error.Code != "payload_too_large" {
		t.Fatalf("over the route's limit: got %d %s", resp.StatusCode, b)
	}
}

func TestPanicBecomes500AndIsLoggedOnce(t *testing.T) {
	f := newFixture(t, func(a *API) {
		a.route("GET", "/api/v1/test/panic", func(w http.ResponseWriter, r *http.Request) error {
			panic("kaboom")
		})
	})
	resp, b := f.do(t, "GET", "/api/v1/test/panic", f.token, nil)
	if resp.StatusCode != 500 || decodeError(t, resp, b).Error.Code != "internal" {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	if strings.Contains(string(b), "kaboom") {
		t.Errorf("panic value leaked to the client: %s", b)
	}
	logs := f.logs.String()
	if n := strings.Count(logs, `"msg":"panic recovered"`); n != 1 {
		t.Errorf("panic logged %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs, "goroutine") {
		t.Errorf("no stack in the logs")
	}
	// The server keeps serving.
	if resp, _ := f.do(t, "GET", "/livez", "", nil); resp.StatusCode != 200 {
		t.Fatalf("after panic: %d", resp.StatusCode)
	}
}

func TestErrorsMapToStatusAndLogOnce(t *testing.T) {
	f := newFixture(t, func(a *API) {
		a.route("GET", "/api/v1/test/fail", func(w http.ResponseWriter, r *http.Request) error {
			return io.ErrUnexpectedEOF // unexpected: a 500 that reveals nothing
		})
	})
	resp, b := f.do(t, "GET", "/api/v1/test/fail", f.token, nil)
	e := decodeError(t, resp, b)
	if resp.StatusCode != 500 || e.Error.Message != "internal error" {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var m map[string]any
		_ = json.Unmarshal([]byte(l), &m)
		if m["route"] == "/api/v1/test/fail" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 1 || lines[0]["level"] != "ERROR" || !strings.Contains(lines[0]["error"].(string), "unexpected EOF") {
		t.Fatalf("want exactly one ERROR line carrying the cause, got %v", lines)
	}
}

// TestUnavailableCarriesRetryAfter: a dependency outage answers 503 with
// Retry-After, so clients back off instead of hammering a degraded instance.
func TestUnavailableCarriesRetryAfter(t *testing.T) {
	f := newFixture(t, func(a *API) {
		a.route("GET", "/api/v1/test/down", func(w http.ResponseWriter, r *http.Request) error {
			return fmt.Errorf("querying: %w", problem.ErrUnavailable)
		})
		a.route("GET", "/api/v1/test/fail", func(w http.ResponseWriter, r *http.Request) error {
			return io.ErrUnexpectedEOF
		})
	})
	resp, b := f.do(t, "GET", "/api/v1/test/down", f.token, nil)
	e := decodeError(t, resp, b)
	if resp.StatusCode != 503 || e.Error.Code != "service_unavailable" || resp.Header.Get("Retry-After") != "5" {
		t.Fatalf("got %d %s, Retry-After %q; want 503 service_unavailable with Retry-After 5", resp.StatusCode, b, resp.Header.Get("Retry-After"))
	}
	if resp, _ := f.do(t, "GET", "/api/v1/test/fail", f.token, nil); resp.Header.Get("Retry-After") != "" {
		t.Fatalf("a 500 carries Retry-After %q", resp.Header.Get("Retry-After"))
	}
}

// TestRequestLogAndMetricsUseRouteTemplate checks the request log line's
// fields and that neither logs nor metrics see the raw path or query.
func TestRequestLogAndMetricsUseRouteTemplate(t *testing.T) {
	f := newFixture(t, func(a *API) {
		a.route("GET", "/api/v1/things/{id}", func(w http.ResponseWriter, r *http.Request) error {
			return writeJSON(w, 200, map[string]string{"ok": "yes"})
		})
	})
	resp, _ := f.do(t, "GET", "/api/v1/things/raw-id-4711?X-Amz-Signature=deadbeef&token=qqq", f.token, nil,
		"X-Request-ID", "edge-req-42", "Cookie", "session=cookievalue123")
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-ID") != "edge-req-42" {
		t.Fatalf("got %d, request id %q", resp.StatusCode, resp.Header.Get("X-Request-ID"))
	}
	resp, _ = f.do(t, "GET", "/livez", "", nil, "X-Request-ID", "bad id with spaces")
	if id := resp.Header.Get("X-Request-ID"); len(id) != 32 {
		t.Fatalf("invalid incoming id not replaced: %q", id)
	}

	var line map[string]any
	for _, l := range strings.Split(f.logs.String(), "\n") {
		if strings.Contains(l, "edge-req-42") {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range []string{"request_id", "method", "route", "status", "bytes", "duration_ms", "client_ip"} {
		if _, ok := line[k]; !ok {
			t.Errorf("log line lacks %s: %v", k, line)
		}
	}
	if line["route"] != "/api/v1/things/{id}" || line["msg"] != "request" || line["client_ip"] != "127.0.0.1" {
		t.Errorf("log line: %v", line)
	}
	logs := f.logs.String()
	for _, secret := range []string{"raw-id-4711", "deadbeef", "qqq", "cookievalue123", f.token, strings.Split(f.token, "_")[2]} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
	}
	scrape := httptest.NewRecorder()
	f.metrics.Handler().ServeHTTP(scrape, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if out := scrape.Body.String(); !strings.Contains(out, `route="/api/v1/things/{id}"`) || strings.Contains(out, "raw-id-4711") {
		t.Errorf("metrics must carry the template, not the raw path")
	}
}

// TestStreamingRouteOutlivesWriteTimeout runs a real server with a short
// WriteTimeout: a normal route that outlasts it is cut off, a Streaming
// route is not.
func TestStreamingRouteOutlivesWriteTimeout(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	slow := func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 4 {
			if _, err := io.WriteString(w, "data: tick\n\n"); err != nil {
				return err
			}
			if err := Flush(w); err != nil {
				return err
			}
			if i < 3 {
				time.Sleep(writeTimeout / 2)
			}
		}
		return nil
	}
	f := newFixture(t, func(a *API) {
		a.route("GET", "/api/v1/test/stream", slow, Streaming())
		a.route("GET", "/api/v1/test/slow", slow)
	})
	srv := httptest.NewUnstartedServer(f.api.Handler())
	srv.Config.WriteTimeout = writeTimeout
	srv.Start()
	defer srv.Close()
	get := func(path string) (string, error) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+f.token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	body, err := get("/api/v1/test/stream")
	if err != nil || strings.Count(body, "tick") != 4 {
		t.Fatalf("streaming route: got %q, %v; want 4 events", body, err)
	}
	body, err = get("/api/v1/test/slow")
	if err == nil && strings.Count(body, "tick") == 4 {
		t.Fatalf("the control route was not cut off by WriteTimeout, so this test proves nothing")
	}
}

// TestAnonymousUploadCannotHoldTheConnection: an unauthenticated chunked
// upload that never sends its body is answered 401 and its connection is
// closed within the server's read timeout. Deadlines used to be lifted for
// the upload route before the token was checked, so the server waited for
// the body forever.
func TestAnonymousUploadCannotHoldTheConnection(t *testing.T) {
	f := newFixture(t, nil)
	srv := httptest.NewUnstartedServer(f.api.Handler())
	srv.Config.ReadTimeout = 500 * time.Millisecond
	srv.Config.WriteTimeout = time.Minute // long enough for the 401 on a loaded machine
	srv.Start()
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A safety net only: the server must close long before this.
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = io.WriteString(conn, "POST /api/v1/datasets HTTP/1.1\r\nHost: app\r\n"+
		"Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response to an anonymous upload without a body: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("got %d %s, want 401", resp.StatusCode, b)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the 401 the connection is still open (read: %v); want it closed by the server", err)
	}
}

// TestAnonymousCallersGet401Not413: the body limit of a route is not told
// to a client without a token.
func TestAnonymousCallersGet401Not413(t *testing.T) {
	f := newFixture(t, nil)
	big := strings.NewReader(strings.Repeat("x", 4096)) // APP_MAX_BODY_BYTES is 1024 here
	for _, token := range []string{"", "fts_0000000000000000_" + strings.Repeat("0", 64)} {
		resp, b := f.do(t, http.MethodPost, "/api/v1/jobs", token, big, "Content-Type", "application/json")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("oversized body with token %q: got %d %s, want 401", token, resp.StatusCode, b)
		}
		big.Reset(strings.Repeat("x", 4096))
	}
	resp, b := f.do(t, http.MethodPost, "/api/v1/jobs", f.token, big, "Content-Type", "application/json")
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body with a valid token: got %d %s, want 413", resp.StatusCode, b)
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		remote, xff, want string
	}{
		{"203.0.113.9:1234", "", "203.0.113.9"},
		{"203.0.113.9:1234", "1.2.3.4", "203.0.113.9"},             // untrusted peer: header ignored
		{"10.0.0.5:1234", "198.51.100.7", "198.51.100.7"},          // trusted edge
		{"10.0.0.5:1234", "6.6.6.6, 198.51.100.7", "198.51.100.7"}, // spoofed left-most ignored
		{"10.0.0.5:1234", "198.51.100.7, 10.0.0.9", "198.51.100.7"},
		{"10.0.0.5:1234", "garbage", "10.0.0.5"},
		{"[::ffff:10.0.0.5]:1", "198.51.100.7", "198.51.100.7"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		if tt.xff != "" {
			r.Header.Set("X-Forwarded-For", tt.xff)
		}
		if got := clientIP(r, trusted); got != tt.want {
			t.Errorf("remote %s xff %q: got %s, want %s", tt.remote, tt.xff, got, tt.want)
		}
	}
}

func TestHealthEndpoints(t *testing.T) {
	f := newFixture(t, nil)
	resp, b := f.do(t, "GET", "/livez", "", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != health.ContentType || !strings.Contains(string(b), `"status":"pass"`) {
		t.Fatalf("livez: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	resp, b = f.do(t, "GET", "/readyz", "", nil)
	var rep health.Report
	if err := json.Unmarshal(b, &rep); err != nil || resp.StatusCode != 200 || rep.Status != health.Pass {
		t.Fatalf("readyz: %d %s", resp.StatusCode, b)
	}
	if _, ok := rep.Checks["database:responseTime"]; !ok {
		t.Fatalf("readyz lacks the database check: %s", b)
	}
	f.api.health.Drain()
	resp, b = f.do(t, "GET", "/readyz", "", nil)
	if resp.StatusCode != 503 || !strings.Contains(string(b), `"status":"fail"`) {
		t.Fatalf("readyz while draining: %d %s", resp.StatusCode, b)
	}
	if resp, _ := f.do(t, "GET", "/livez", "", nil); resp.StatusCode != 200 {
		t.Fatalf("livez while draining: %d (liveness must not fail on drain)", resp.StatusCode)
	}
}
