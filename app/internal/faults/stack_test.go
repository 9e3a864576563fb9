//go:build faults

package faults

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
)

// The binaries under test, built once by TestMain from this checkout.
var (
	moduleRoot string
	appBin     string
	edgeBin    string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		fmt.Fprintln(os.Stderr, "locating go.mod:", err)
		return 1
	}
	moduleRoot = filepath.Dir(strings.TrimSpace(string(out)))
	dir, err := os.MkdirTemp("", "faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	appBin = filepath.Join(dir, "app")
	edgeBin = filepath.Join(dir, "edge")
	for _, b := range []struct{ out, pkg string }{{appBin, "./app"}, {edgeBin, "./edge"}} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Dir = moduleRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", b.pkg, err, out)
			return 1
		}
	}
	return testenv.Main(m)
}

// proc is a started app or edge process. Its logs are kept in memory and
// printed when the test fails; it is stopped when the test ends, whatever
// happened, and killed if the test binary dies.
type proc struct {
	name string
	cmd  *exec.Cmd
	logs *testenv.SyncBuffer
	done chan struct{}
	exit int
}

func startProc(t testing.TB, name, bin string, env map[string]string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, logs: &testenv.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Dir = t.TempDir()
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.exit = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(30 * time.Second)
		if t.Failed() {
			t.Logf("%s logs (tail):\n%s", name, tail(p.logs.String(), 6000))
		}
	})
	return p
}

// stop sends SIGTERM, waits up to grace, then kills. Safe to call twice.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitLog waits until the logs contain substr.
func (p *proc) waitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%s logging %s", p.name, substr), func() bool {
		if p.exited() {
			t.Fatalf("%s exited (%d) before logging %s", p.name, p.exit, substr)
		}
		return strings.Contains(p.logs.String(), substr)
	})
}

// waitFor polls cond every 50 ms until it holds; it fails the test after
// timeout. The timeouts are safety nets for hangs, not measurements.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// stack is the edge in front of one or more app instances sharing one
// database and one bucket.
type stack struct {
	appEnv    map[string]string
	apps      []*appInstance
	edge      *proc
	edgeEnv   map[string]string
	httpsPort int
	roots     *x509.CertPool
	token     string
}

type appInstance struct {
	addr string
	proc *proc
}

type stackOptions struct {
	apps int
	// edgeEnv overrides the edge's environment (rate limits, timeouts).
	edgeEnv map[string]string
	// appEnv adds to or overrides the apps' environment.
	appEnv map[string]string
	// upstream, if set, maps an app instance's address to the address the
	// edge proxies to instead (something put in between).
	upstream func(appAddr string) string
	// minio, if set, is the object store instead of the shared one.
	minio *testenv.MinIO
}

// newStack starts opts.apps app instances and the edge with the production
// Caddyfile in front of them. The edge keeps its production defaults for
// everything that shapes a fault (lb_try_duration 15s, health checks every
// 5s, grace period 20s, slow-client timeouts); only the rate limits are
// raised so background load is not refused, unless opts.edgeEnv says so.
func newStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	if opts.apps == 0 {
		opts.apps = 1
	}
	mi := opts.minio
	if mi == nil {
		mi = testenv.StartMinIO(t)
	}
	s := &stack{appEnv: map[string]string{
		"APP_ENV":              "development",
		"DATABASE_URL":         testenv.NewDatabase(t),
		"S3_ENDPOINT":          mi.Endpoint,
		"S3_ACCESS_KEY":        mi.AccessKey,
		"S3_SECRET_KEY":        mi.SecretKey,
		"S3_USE_TLS":           "false",
		"S3_BUCKET":            testenv.UniqueName("faults"),
		"WORKER_POLL_INTERVAL": "200ms",
		"HOME":                 os.Getenv("HOME"),
		"PATH":                 os.Getenv("PATH"),
	}}
	for k, v := range opts.appEnv {
		s.appEnv[k] = v
	}
	s.appCmd(t, "migrate", "up")
	s.token = s.newToken(t, "faults")
	var upstreams []string
	for range opts.apps {
		a := &appInstance{addr: "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))}
		s.apps = append(s.apps, a)
		s.startApp(t, a)
		if opts.upstream != nil {
			upstreams = append(upstreams, opts.upstream(a.addr))
			continue
		}
		upstreams = append(upstreams, a.addr)
	}
	s.startEdge(t, strings.Join(upstreams, " "), opts.edgeEnv)
	return s
}

// appCmd runs a one-shot app subcommand and returns its stdout.
func (s *stack) appCmd(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(appBin, args...)
	for k, v := range s.appEnv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("app %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

func (s *stack) newToken(t testing.TB, name string) string {
	t.Helper()
	tok := strings.TrimSpace(s.appCmd(t, "token", "create", "--name", name))
	if tok == "" {
		t.Fatal("token create printed no token")
	}
	return tok
}

// startApp (re)starts instance a on its address and waits until it is ready.
func (s *stack) startApp(t testing.TB, a *appInstance) {
	t.Helper()
	env := map[string]string{
		"APP_ADDR":         a.addr,
		"APP_METRICS_ADDR": "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
	}
	for k, v := range s.appEnv {
		env[k] = v
	}
	a.proc = startProc(t, "app "+a.addr, appBin, env, "serve")
	a.proc.waitLog(t, `"msg":"app ready"`, 2*time.Minute)
}

// readyz is the app instance's own readiness answer (not through the edge).
func (a *appInstance) readyz() (code int, status string, err error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + a.addr + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var rep struct{ Status string }
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return resp.StatusCode, "", err
	}
	return resp.StatusCode, rep.Status, nil
}

func (s *stack) startEdge(t *testing.T, upstreams string, overrides map[string]string) {
	t.Helper()
	local := testenv.NewLocalEdge(t, filepath.Join(moduleRoot, "edge", "ui"))
	s.httpsPort = local.HTTPSPort
	s.edgeEnv = local.Env
	for k, v := range map[string]string{
		"APP_UPSTREAMS":               upstreams,
		"RATE_LIMIT_API_EVENTS":       "1000000",
		"RATE_LIMIT_EXPENSIVE_EVENTS": "1000000",
		"RATE_LIMIT_STATIC_EVENTS":    "1000000",
	} {
		s.edgeEnv[k] = v
	}
	for k, v := range overrides {
		s.edgeEnv[k] = v
	}
	s.runEdge(t)
	rootPath := filepath.Join(s.edgeEnv["EDGE_STORAGE_DIR"], "pki", "authorities", "local", "root.crt")
	var rootPEM []byte
	waitFor(t, time.Minute, "the edge's local CA", func() bool {
		b, err := os.ReadFile(rootPath)
		rootPEM = b
		return err == nil && len(b) > 0
	})
	s.roots = x509.NewCertPool()
	if !s.roots.AppendCertsFromPEM(rootPEM) {
		t.Fatal("edge's local root is not PEM")
	}
	s.waitEdgeRouting(t)
}

// runEdge starts the edge process with s.edgeEnv and waits for its
// internal listener.
func (s *stack) runEdge(t testing.TB) {
	t.Helper()
	s.edge = startProc(t, "edge", edgeBin, s.edgeEnv,
		"run", "--config", filepath.Join(moduleRoot, "Caddyfile"), "--adapter", "caddyfile")
	waitFor(t, 2*time.Minute, "the edge's internal listener", func() bool {
		if s.edge.exited() {
			t.Fatalf("edge exited (%d)", s.edge.exit)
		}
		resp, err := http.Get("http://127.0.0.1:" + s.edgeEnv["EDGE_METRICS_PORT"] + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
}

// waitEdgeRouting waits until an API request through the edge succeeds.
func (s *stack) waitEdgeRouting(t testing.TB) {
	t.Helper()
	c := s.client("127.0.0.1", 10*time.Second)
	waitFor(t, 2*time.Minute, "the edge routing to a ready app", func() bool {
		resp, err := c.Do(s.request("GET", "/api/v1/whoami", s.token, nil, ""))
		if err != nil {
			return false
		}
		drain(resp)
		return resp.StatusCode == http.StatusOK
	})
}

// reload applies the Caddyfile again with env changes, as an operator's
// `edge reload` does.
func (s *stack) reload(t testing.TB, changes map[string]string) {
	t.Helper()
	env := map[string]string{}
	for k, v := range s.edgeEnv {
		env[k] = v
	}
	for k, v := range changes {
		env[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, edgeBin, "reload", "--config", filepath.Join(moduleRoot, "Caddyfile"),
		"--adapter", "caddyfile", "--address", s.edgeEnv["EDGE_ADMIN_ADDR"])
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("edge reload: %v\n%s", err, out)
	}
}

// client is an HTTP/1.1 client of the edge, as a user's would be, that
// connects from sourceIP (loopback aliases are distinct clients to the
// edge's rate limits) and gives up after timeout: a request that hangs
// fails instead of stalling the suite.
func (s *stack) client(sourceIP string, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(sourceIP)}}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", s.httpsPort))
			},
			TLSClientConfig:     &tls.Config{RootCAs: s.roots, ServerName: "localhost"},
			MaxIdleConnsPerHost: 16,
		},
	}
}

func (s *stack) url(path string) string {
	return fmt.Sprintf("https://localhost:%d%s", s.httpsPort, path)
}

func (s *stack) request(method, path, token string, body []byte, contentType string) *http.Request {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url(path), rd)
	if err != nil {
		panic(err) // a malformed URL here is a bug in the test
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

// uploadRequest is a small valid dataset upload.
func (s *stack) uploadRequest(name string) *http.Request {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("name", name)
	fw, _ := mw.CreateFormFile("file", "reviews.jsonl")
	for i := range 20 {
		label := []string{"positive", "negative"}[i%2]
		fmt.Fprintf(fw, "{\"text\": \"review number %d of %s\", \"label\": %q}\n", i, name, label)
	}
	_ = mw.Close()
	return s.request("POST", "/api/v1/datasets", s.token, buf.Bytes(), mw.FormDataContentType())
}

// apiError is the JSON error shape shared by the app and the edge.
type apiError struct {
	Error struct {
		Code    string            `json:"code"`
		Message string            `json:"message"`
		Details []json.RawMessage `json:"details"`
	} `json:"error"`
}

// checkError returns nil when resp/body is a JSON error with status want,
// a message, a details array and (if retryAfter) a Retry-After header.
func checkError(resp *http.Response, body []byte, want int, retryAfter bool) (code string, err error) {
	if resp.StatusCode != want {
		return "", fmt.Errorf("status %d, want %d: %.200s", resp.StatusCode, want, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return "", fmt.Errorf("%d with Content-Type %q, want JSON: %.200s", want, ct, body)
	}
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" || e.Error.Details == nil {
		return "", fmt.Errorf("%d body is not the JSON error shape: %.200s", want, body)
	}
	if retryAfter {
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n <= 0 {
			return "", fmt.Errorf("%d %s without a Retry-After in seconds (%q)", want, e.Error.Code, resp.Header.Get("Retry-After"))
		}
	}
	return e.Error.Code, nil
}

// do sends req and reads the whole answer.
func do(c *http.Client, req *http.Request) (*http.Response, []byte, time.Duration, error) {
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, time.Since(start), err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, time.Since(start), err
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

var errHang = errors.New("no answer before the client's timeout")

// isTimeout reports whether err is a client timeout (a hang).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
