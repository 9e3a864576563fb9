// Package testenv starts the real dependencies integration tests run against:
// a throwaway PostgreSQL cluster and a throwaway MinIO server, each on a
// random loopback port with its data in a temporary directory.
//
// A test package opts in with
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
//
// and then calls NewDatabase or MinIO from its tests. Servers start lazily,
// once per test binary, and Main stops them and removes their data when the
// tests finish. Every server also gets SIGKILL if the test binary dies, so a
// crashed or timed-out run never leaves processes behind.
//
// A dependency that cannot start fails the test: it never skips, so a
// missing install step cannot turn into a green run.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// env holds the lazily started servers of one test binary.
type env struct {
	mu       sync.Mutex
	cleanups []func()

	pgOnce sync.Once
	pg     *Postgres
	pgErr  error

	minioOnce sync.Once
	minio     *MinIO
	minioErr  error
}

// current is the test binary's environment. It is package state because
// TestMain and the tests share nothing else; it lives in test code only.
var current = &env{}

// Main runs the tests and then stops every server they started.
func Main(m *testing.M) int {
	code := m.Run()
	current.stop()
	return code
}

func (e *env) addCleanup(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, f)
}

func (e *env) stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	e.cleanups = nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	return port
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ToolPath finds an executable: $NAME_BIN (upper-cased, '-' as '_'), then the
// project's tools directory, then PATH.
func ToolPath(name string) (string, error) {
	envName := ""
	for _, r := range name {
		switch {
		case r == '-':
			envName += "_"
		case r >= 'a' && r <= 'z':
			envName += string(r - 'a' + 'A')
		default:
			envName += string(r)
		}
	}
	if p := os.Getenv(envName + "_BIN"); p != "" {
		return p, nil
	}
	dirs := []string{}
	if d := os.Getenv("TOOLS_DIR"); d != "" {
		dirs = append(dirs, filepath.Join(d, "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".cache", "finetune-studio", "tools", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		// #nosec G703 -- a test harness looking a tool up on PATH.
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found (run deploy/scripts/install-tools.sh test): %w", name, err)
	}
	return p, nil
}

// process is a started server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// startProcess starts cmd in its own process group with SIGKILL as its
// parent-death signal and its output in logPath.
func startProcess(cmd *exec.Cmd, logPath string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: logFile}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop sends sig, waits up to grace, then kills the whole process group.
func (p *process) stop(sig syscall.Signal, grace time.Duration) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	p.log.Close()
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitFor polls ready until it succeeds, the process exits, or timeout.
func waitFor(p *process, logPath string, timeout time.Duration, ready func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("process exited before it was ready; log:\n%s", tail(out, 4000))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = ready(ctx)
		cancel()
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, _ := os.ReadFile(logPath)
	return errors.Join(fmt.Errorf("not ready after %s", timeout), last, fmt.Errorf("log:\n%s", tail(out, 4000)))
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
