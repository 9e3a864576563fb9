// Package edgetest starts the real edge binary for end-to-end tests: it
// builds it once per test binary, runs it with a Caddyfile and an
// environment, waits for it to serve, and stops it when the test ends.
//
// It exists because the app's harness (app/internal/testenv) is not
// importable from edge/, and the edge needs different things: a built
// binary, admin-API reloads and captured JSON logs.
package edgetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build compiles ./edge from the module root into dir and returns the
// binary's path. Call it once from TestMain.
func Build(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "edge")
	cmd := exec.Command("go", "build", "-o", bin, "./edge")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building edge: %w\n%s", err, out)
	}
	return bin, nil
}

// ModuleRoot returns the directory holding go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("locating go.mod: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	return filepath.Dir(mod), nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Edge is a running edge process.
type Edge struct {
	Bin       string
	Config    string
	AdminAddr string
	Env       []string

	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	err  error
}

// Options configure Start.
type Options struct {
	Bin    string
	Config string            // path to the Caddyfile
	Env    map[string]string // added to a minimal environment
	// ReadyURL is polled until it answers (any HTTP status) before Start
	// returns. Use a plain-HTTP URL, e.g. the metrics listener.
	ReadyURL string
	// StartTimeout bounds the wait for ReadyURL. Default: 60s.
	StartTimeout time.Duration
}

// Start runs `edge run`, waits until opts.ReadyURL answers, and registers
// its shutdown with t.Cleanup.
func Start(t testing.TB, opts Options) *Edge {
	t.Helper()
	e := launch(t, opts)
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	if err := e.WaitHTTP(opts.ReadyURL, timeout); err != nil {
		t.Fatalf("edge did not start: %v\nlogs:\n%s", err, e.Logs())
	}
	return e
}

// launch runs `edge run` without waiting for it to serve.
func launch(t testing.TB, opts Options) *Edge {
	t.Helper()
	home := t.TempDir()
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"XDG_DATA_HOME=" + filepath.Join(home, "data"),
		"XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
	}
	for k, v := range opts.Env {
		env = append(env, k+"="+v)
	}
	e := &Edge{Bin: opts.Bin, Config: opts.Config, AdminAddr: opts.Env["EDGE_ADMIN_ADDR"], Env: env,
		logs: &syncBuffer{}, done: make(chan struct{})}
	e.cmd = exec.Command(opts.Bin, "run", "--config", opts.Config, "--adapter", "caddyfile")
	e.cmd.Env = env
	e.cmd.Stdout = e.logs
	e.cmd.Stderr = e.logs
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("starting edge: %v", err)
	}
	go func() {
		e.err = e.cmd.Wait()
		close(e.done)
	}()
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			t.Logf("edge logs:\n%s", tail(e.Logs(), 3000))
		}
	})
	return e
}

// WaitHTTP polls url until it answers or the edge exits.
func (e *Edge) WaitHTTP(url string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-e.done:
			return fmt.Errorf("edge exited: %v", e.err)
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering after %s: %v", url, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits (then SIGKILL after 20s). Safe to call twice.
func (e *Edge) Stop() {
	select {
	case <-e.done:
		return
	default:
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(20 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
}

// Run runs another edge subcommand (validate, reload, healthcheck...) with
// the same environment and returns its combined output.
func (e *Edge) Run(ctx context.Context, args ...string) (string, error) {
	return RunCommand(ctx, e.Bin, e.Env, args...)
}

// RunCommand runs the edge binary with args and env.
func RunCommand(ctx context.Context, bin string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Logs returns everything the edge wrote so far.
func (e *Edge) Logs() string { return e.logs.String() }

// WaitLog polls the logs until one line contains every substring.
func (e *Edge) WaitLog(timeout time.Duration, substrings ...string) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(e.Logs(), "\n") {
			if containsAll(line, substrings) {
				return line, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no log line with %q after %s", substrings, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
