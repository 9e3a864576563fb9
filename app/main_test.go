package main

// End-to-end tests of the real binary against real Postgres and MinIO:
// configuration exit codes, serving, readiness under dependency outages,
// secrets kept out of logs, and graceful shutdown under load.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
)

func TestMain(m *testing.M) {
	code := testenv.Main(m)
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	// The edge is built once per process and shared by the browser test
	// and benchmarks, so it goes only when all of them are done (never a
	// prebuilt EDGE_BIN).
	if edgeBin != "" && os.Getenv("EDGE_BIN") == "" {
		os.RemoveAll(filepath.Dir(edgeBin))
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the app once per test run.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "app-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "app")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// dbPassword is put in DATABASE_URL (the test cluster trusts local
// connections, so it is accepted and ignored) to prove it never reaches logs.
const dbPassword = "Db-Passw0rd-Must-Not-Leak"

// baseEnv is a development environment on the test's Postgres and MinIO.
func baseEnv(t testing.TB) map[string]string {
	t.Helper()
	dsn, err := url.Parse(testenv.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	dsn.User = url.UserPassword("postgres", dbPassword)
	mi := testenv.StartMinIO(t)
	return map[string]string{
		"APP_ENV":              "development",
		"APP_ADDR":             "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		"APP_METRICS_ADDR":     "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		"APP_DRAIN_DELAY":      "0s",
		"DATABASE_URL":         dsn.String(),
		"S3_ENDPOINT":          mi.Endpoint,
		"S3_ACCESS_KEY":        mi.AccessKey,
		"S3_SECRET_KEY":        mi.SecretKey,
		"S3_USE_TLS":           "false",
		"S3_BUCKET":            testenv.UniqueName("app"),
		"WORKER_POLL_INTERVAL": "50ms",
		"HOME":                 os.Getenv("HOME"),
		"PATH":                 os.Getenv("PATH"),
	}
}

func environ(env map[string]string) []string {
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// runCmd runs a one-shot subcommand in an empty directory (no .env).
func runCmd(t testing.TB, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = environ(env)
	cmd.Dir = t.TempDir()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

type app struct {
	cmd    *exec.Cmd
	env    map[string]string
	logs   *testenv.SyncBuffer
	done   chan struct{}
	exit   int
	base   string
	client *http.Client
}

// startApp runs `app serve` and waits for its ready line.
func startApp(t testing.TB, env map[string]string) *app {
	t.Helper()
	a := &app{env: env, logs: &testenv.SyncBuffer{}, done: make(chan struct{}), base: "http://" + env["APP_ADDR"],
		client: &http.Client{Timeout: 30 * time.Second}}
	a.cmd = exec.Command(binary(t), "serve")
	a.cmd.Env = environ(env)
	a.cmd.Dir = t.TempDir()
	a.cmd.Stdout = a.logs
	a.cmd.Stderr = a.logs
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = a.cmd.Wait()
		a.exit = a.cmd.ProcessState.ExitCode()
		close(a.done)
	}()
	t.Cleanup(func() {
		_ = a.cmd.Process.Kill()
		<-a.done
		if t.Failed() {
			t.Logf("app logs:\n%s", a.logs.String())
		}
	})
	a.waitLog(t, `"msg":"app ready"`)
	return a
}

func (a *app) waitLog(t testing.TB, substr string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(a.logs.String(), substr) {
		select {
		case <-a.done:
			t.Fatalf("app exited (%d) before logging %s:\n%s", a.exit, substr, a.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s in logs:\n%s", substr, a.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (a *app) get(t *testing.T, path, token string, header ...string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", a.base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := a.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// waitReady polls /readyz until it reports want.
func (a *app) waitReady(t *testing.T, want string, wantCode int) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var code int
	var body []byte
	for time.Now().Before(deadline) {
		code, body = a.get(t, "/readyz", "")
		var rep struct{ Status string }
		_ = json.Unmarshal(body, &rep)
		if code == wantCode && rep.Status == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("readyz: last %d %s, want %d %s", code, body, wantCode, want)
}

func TestConfigCheckReportsEveryProblemWithStatus2(t *testing.T) {
	_, stderr, code := runCmd(t, map[string]string{"APP_ENV": "production", "LOG_LEVEL": "debug", "S3_USE_TLS": "false"}, "config", "check")
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"DATABASE_URL: missing", "S3_ENDPOINT: missing", "S3_ACCESS_KEY: missing",
		"S3_SECRET_KEY: missing", "LOG_LEVEL: insecure", "S3_USE_TLS: insecure"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	// serve refuses the same way, before touching anything.
	if _, stderr, code := runCmd(t, map[string]string{}, "serve"); code != 2 || !strings.Contains(stderr, "DATABASE_URL: missing") {
		t.Fatalf("serve: exit %d, stderr:\n%s", code, stderr)
	}
	env := baseEnv(t)
	if out, stderr, code := runCmd(t, env, "config", "check"); code != 0 || !strings.Contains(out, "configuration OK") {
		t.Fatalf("valid config: exit %d\n%s%s", code, out, stderr)
	}
	// Production without Kaggle credentials: the server would start, but
	// config check flags it.
	prod := map[string]string{
		"APP_ENV": "production", "DATABASE_URL": "postgres://app:a-very-long-random-password@db/app?sslmode=verify-full",
		"S3_ENDPOINT": "minio:9000", "S3_ACCESS_KEY": "finetune-app", "S3_SECRET_KEY": "0123456789abcdef0123",
		"S3_PUBLIC_URL": "https://files.example.com",
	}
	if _, stderr, code := runCmd(t, prod, "config", "check"); code != 2 || !strings.Contains(stderr, "KAGGLE_API_TOKEN: missing") {
		t.Fatalf("production without kaggle: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := runCmd(t, env, "frobnicate"); code != 2 || !strings.Contains(stderr, "usage:") {
		t.Fatalf("unknown command: exit %d\n%s", code, stderr)
	}
}

// TestServeEndToEnd: migrate, mint a token, call the API, check readiness,
// the healthcheck subcommand and metrics — then grep every log line for
// the secrets that passed through.
func TestServeEndToEnd(t *testing.T) {
	env := baseEnv(t)
	out, stderr, code := runCmd(t, env, "migrate", "up")
	if code != 0 || !strings.Contains(out, "applied") {
		t.Fatalf("migrate up: %d\n%s%s", code, out, stderr)
	}
	out, _, _ = runCmd(t, env, "migrate", "status")
	if strings.Contains(out, "pending") || !strings.Contains(out, "00001") {
		t.Fatalf("migrate status:\n%s", out)
	}
	tokenOut, stderr, code := runCmd(t, env, "token", "create", "--name", "e2e")
	token := strings.TrimSpace(tokenOut)
	if code != 0 || !strings.HasPrefix(token, "fts_") || strings.Count(tokenOut, "\n") != 1 {
		t.Fatalf("token create: %d %q\n%s", code, tokenOut, stderr)
	}
	if strings.Contains(stderr, token) {
		t.Fatal("token create logged the token")
	}
	if _, _, code := runCmd(t, env, "token", "create"); code != 2 {
		t.Fatalf("token create without --name: exit %d, want 2", code)
	}
	for _, bad := range []string{"0s", "-1h", "soon", "3x"} {
		if _, _, code := runCmd(t, env, "token", "create", "--name", "x", "--expires-in", bad); code != 2 {
			t.Fatalf("token create --expires-in %s: exit %d, want 2", bad, code)
		}
	}
	expiringOut, stderr, code := runCmd(t, env, "token", "create", "--name", "expiring", "--expires-in", "30d")
	if code != 0 || !strings.HasPrefix(expiringOut, "fts_") {
		t.Fatalf("token create --expires-in 30d: %d %q\n%s", code, expiringOut, stderr)
	}

	if _, _, code := runCmd(t, env, "healthcheck"); code == 0 {
		t.Fatal("healthcheck passed with no server running")
	}
	a := startApp(t, env)
	a.waitReady(t, "pass", 200)
	waitEventListeners(t, env, 1) // serve wires the live-event listener
	hcOut, stderr, code := runCmd(t, env, "healthcheck")
	if code != 0 {
		t.Fatalf("healthcheck: exit %d\n%s", code, stderr)
	}
	// The report names the revision the instance serves (deploy reads it).
	if !strings.Contains(hcOut, `"status":"pass"`) || !strings.Contains(hcOut, `"releaseId":"`+revision+`"`) {
		t.Fatalf("healthcheck printed %q, want the readiness report with the release id", hcOut)
	}

	cookie := "sessionid=cookie-value-must-not-leak"
	if code, body := a.get(t, "/api/v1/whoami", token, "Cookie", cookie); code != 200 {
		t.Fatalf("whoami: %d %s", code, body)
	}
	if code, _ := a.get(t, "/api/v1/whoami", "fts_0000000000000000_"+strings.Repeat("a", 64)); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	code, body := a.get(t, "/api/v1/whoami?X-Amz-Signature=sig-must-not-leak", "")
	if code != 401 {
		t.Fatalf("no token: %d %s", code, body)
	}

	// The list shows both tokens, the first one used, the second expiring
	// in 30 days, and neither secret.
	listOut, stderr, code := runCmd(t, env, "token", "list")
	if code != 0 {
		t.Fatalf("token list: %d\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(listOut), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "LAST USED") {
		t.Fatalf("token list:\n%s", listOut)
	}
	e2e, expiring := strings.Fields(lines[1]), strings.Fields(lines[2])
	if e2e[0] != strings.Split(token, "_")[1] || e2e[1] != "e2e" || e2e[2] != "active" || e2e[4] == "-" || e2e[5] != "-" {
		t.Errorf("token list: e2e row %q, want it active, used, without expiry", lines[1])
	}
	if exp, err := time.Parse(time.RFC3339, expiring[5]); expiring[1] != "expiring" || expiring[4] != "-" || err != nil ||
		exp.Sub(time.Now()) < 29*24*time.Hour || exp.Sub(time.Now()) > 31*24*time.Hour {
		t.Errorf("token list: expiring row %q, want unused and expiring in 30 days", lines[2])
	}
	for _, secret := range []string{token, strings.TrimSpace(expiringOut)} {
		if strings.Contains(listOut, secret[strings.LastIndex(secret, "_")+1:]) {
			t.Fatal("token list prints a secret")
		}
	}

	resp, err := http.Get("http://" + env["APP_METRICS_ADDR"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`route="/api/v1/whoami"`, "db_pool_connections", "worker_pool_workers", "build_info{"} {
		if !strings.Contains(string(metricsBody), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The live exposition, with real label values, passes promlint too.
	problems, err := promlint.New(bytes.NewReader(metricsBody)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	// Metrics are not on the public listener.
	if code, _ := a.get(t, "/metrics", ""); code != 404 {
		t.Errorf("/metrics on the API listener: %d, want 404", code)
	}

	// Revoking the token locks it out at once.
	tokenID := strings.Split(token, "_")[1]
	if out, stderr, code := runCmd(t, env, "token", "revoke", "--id", tokenID); code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("token revoke: %d %s %s", code, out, stderr)
	}
	if code, _ := a.get(t, "/api/v1/whoami", token); code != 401 {
		t.Fatalf("revoked token: got %d, want 401", code)
	}
	if _, _, code := runCmd(t, env, "token", "revoke", "--id", tokenID); code != 1 {
		t.Fatalf("revoking twice: exit %d, want 1", code)
	}

	logs := a.logs.String()
	secrets := map[string]string{
		"API token":           token,
		"token secret":        token[strings.LastIndex(token, "_")+1:],
		"DB password":         dbPassword,
		"S3 secret key":       env["S3_SECRET_KEY"],
		"cookie":              "cookie-value-must-not-leak",
		"presigned signature": "sig-must-not-leak",
	}
	for name, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain the %s", name)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("log line is not JSON: %q", l)
		}
	}
}

// waitEventListeners waits until the database has want connections of the
// live-event listener (it connects in the background after startup).
func waitEventListeners(t *testing.T, env map[string]string, want int) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = 'finetune-studio-listener' AND datname = current_database()`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d event listener connections, want %d", n, want)
		}
	}
}

// TestReadinessFollowsDependencies takes MinIO and then Postgres away from
// a running app: storage down degrades (warn, 200), database down fails
// (503), and both recover.
func TestReadinessFollowsDependencies(t *testing.T) {
	env := baseEnv(t)
	a := startApp(t, env)
	a.waitReady(t, "pass", 200)

	mi := testenv.StartMinIO(t)
	mi.Stop(t)
	minioUp := false
	t.Cleanup(func() {
		if !minioUp {
			mi.Start(t)
		}
	})
	a.waitReady(t, "warn", 200)
	_, body := a.get(t, "/readyz", "")
	if strings.Contains(string(body), env["S3_ENDPOINT"]) || strings.Contains(string(body), "127.0.0.1") {
		t.Fatalf("readyz leaks a host: %s", body)
	}
	mi.Start(t)
	minioUp = true
	a.waitReady(t, "pass", 200)

	pg := testenv.StartPostgres(t)
	pg.Stop(t)
	pgUp := false
	t.Cleanup(func() {
		if !pgUp {
			pg.Start(t)
		}
	})
	a.waitReady(t, "fail", 503)
	// API requests answer a clean 503 while the database is down.
	code, b := a.get(t, "/api/v1/whoami", "fts_0000000000000000_"+strings.Repeat("a", 64))
	if code != 503 || !strings.Contains(string(b), "service_unavailable") {
		t.Fatalf("API with database down: %d %s", code, b)
	}
	pg.Start(t)
	pgUp = true
	a.waitReady(t, "pass", 200)
	// Connection errors were logged while the dependencies were down: they
	// must not carry credentials.
	logs := a.logs.String()
	if !strings.Contains(logs, `"msg":"health check not passing"`) {
		t.Fatalf("outages not logged:\n%s", logs)
	}
	for _, s := range []string{dbPassword, env["S3_SECRET_KEY"]} {
		if strings.Contains(logs, s) {
			t.Fatal("logs of a dependency outage contain a credential")
		}
	}
}

// TestGracefulShutdownUnderLoad keeps requests in flight across SIGTERM.
// Clients behave like the edge: they send until /readyz fails. To make
// requests genuinely in flight when http.Server.Shutdown starts, the test
// holds an exclusive lock on the token table, so every authenticated
// request blocks inside its handler; the lock is released only after the
// listener has closed. Zero failures are allowed, and the process exits 0
// after logging each shutdown step in order.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	env := baseEnv(t)
	env["APP_DRAIN_DELAY"] = "1s"
	_, _, _ = runCmd(t, env, "migrate", "up")
	tokenOut, _, _ := runCmd(t, env, "token", "create", "--name", "load")
	token := strings.TrimSpace(tokenOut)
	a := startApp(t, env)
	a.waitReady(t, "pass", 200)

	// The balancer: polls /readyz and tells clients to stop on failure.
	var drained atomic.Bool
	stopBalancer := make(chan struct{})
	var bwg sync.WaitGroup
	bwg.Go(func() {
		c := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-stopBalancer:
				return
			default:
			}
			resp, err := c.Get(a.base + "/readyz")
			if err != nil || resp.StatusCode != 200 {
				drained.Store(true)
			}
			if resp != nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			time.Sleep(25 * time.Millisecond)
		}
	})

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			c := &http.Client{Timeout: 2 * time.Minute}
			for !drained.Load() {
				req, _ := http.NewRequest("GET", a.base+"/api/v1/whoami", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := c.Do(req)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, resp.Status)
				} else {
					ok.Add(1)
				}
			}
		})
	}
	deadline := time.Now().Add(60 * time.Second)
	for ok.Load() < 200 {
		if failed.Load() > 0 || time.Now().After(deadline) {
			drained.Store(true)
			wg.Wait()
			t.Fatalf("load did not build up: %d ok, %d failed (first: %v)", ok.Load(), failed.Load(), firstErr.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Block every authenticated request inside its handler.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "LOCK TABLE api_tokens IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	// Wait until the clients' requests are queued on the lock.
	deadline = time.Now().Add(60 * time.Second)
	for {
		var waiting int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%api_tokens%'`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d requests blocked on the lock", waiting)
		}
		time.Sleep(10 * time.Millisecond)
	}
	okBefore := ok.Load()

	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Wait until the listener is closed: Shutdown is under way, with the
	// blocked requests still inside their handlers.
	deadline = time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", env["APP_ADDR"], time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener never closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(a.logs.String(), "shutdown: http server drained") {
		t.Fatal("the server drained while requests were blocked: they were not in flight")
	}
	if err := tx.Commit(ctx); err != nil { // release the requests
		t.Fatal(err)
	}
	wg.Wait()
	close(stopBalancer)
	bwg.Wait()

	select {
	case <-a.done:
	case <-time.After(90 * time.Second):
		t.Fatal("app did not exit after SIGTERM")
	}
	if a.exit != 0 {
		t.Fatalf("exit status %d, want 0", a.exit)
	}
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed across SIGTERM; first: %v", n, n+ok.Load(), firstErr.Load())
	}
	if inFlight := ok.Load() - okBefore; inFlight < 4 {
		t.Fatalf("only %d requests completed after the lock was released", inFlight)
	}
	t.Logf("%d requests succeeded; %d of them were in flight across Shutdown", ok.Load(), ok.Load()-okBefore)
	logs := a.logs.String()
	steps := []string{"shutdown: signal received", "shutdown: readiness now failing", "shutdown: http server drained",
		"shutdown: worker pool drained", "shutdown: database pool closed", "shutdown: complete"}
	last := -1
	for _, s := range steps {
		i := strings.Index(logs, s)
		if i < 0 {
			t.Fatalf("logs lack %q:\n%s", s, logs)
		}
		if i < last {
			t.Errorf("step %q logged out of order", s)
		}
		last = i
	}
}

func TestServerTimeoutsAreSet(t *testing.T) {
	srv := newServer(http.NotFoundHandler(), nil)
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Fatalf("unbounded server: %+v", srv)
	}
	if srv.ReadHeaderTimeout > 30*time.Second {
		t.Fatalf("ReadHeaderTimeout %s lets slow clients hold connections", srv.ReadHeaderTimeout)
	}
}

// BenchmarkStartupToReady measures process start to the first passing
// /readyz against a database that is already up and migrated (a restart).
func BenchmarkStartupToReady(b *testing.B) {
	env := baseEnv(b)
	cmd := exec.Command(binary(b), "migrate", "up")
	cmd.Env = environ(env)
	cmd.Dir = b.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("migrate: %v\n%s", err, out)
	}
	b.ResetTimer()
	for range b.N {
		startAndStop(b, env)
	}
}

// BenchmarkStartupFreshDatabase is the first start: an empty database, so
// startup includes applying every migration.
func BenchmarkStartupFreshDatabase(b *testing.B) {
	env := baseEnv(b)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dsn, _ := url.Parse(testenv.NewDatabase(b))
		dsn.User = url.UserPassword("postgres", dbPassword)
		env["DATABASE_URL"] = dsn.String()
		b.StartTimer()
		startAndStop(b, env)
	}
}

// startAndStop times exec to the first 200 from /readyz, then stops the
// process outside the timer.
func startAndStop(b *testing.B, env map[string]string) {
	client := &http.Client{Timeout: time.Second}
	start := time.Now()
	c := exec.Command(binary(b), "serve")
	c.Env = environ(env)
	c.Dir = b.TempDir()
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.Start(); err != nil {
		b.Fatal(err)
	}
	for {
		resp, err := client.Get("http://" + env["APP_ADDR"] + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Since(start) > time.Minute {
			_ = c.Process.Kill()
			_ = c.Wait()
			b.Fatal("not ready within a minute")
		}
		time.Sleep(2 * time.Millisecond)
	}
	b.StopTimer()
	_ = c.Process.Signal(syscall.SIGTERM)
	_ = c.Wait()
	b.StartTimer()
}
