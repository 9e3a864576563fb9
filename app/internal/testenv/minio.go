package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// MinIO is a running throwaway object store.
type MinIO struct {
	// Endpoint is host:port, without a scheme.
	Endpoint  string
	AccessKey string
	SecretKey string
	proc      *process
	logPath   string
	args      []string
	env       []string
}

// StartMinIO returns the test binary's MinIO server, starting it on first
// use. Tests share it, so each test should use its own bucket names.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	current.minioOnce.Do(func() {
		current.minio, current.minioErr = startMinIO()
	})
	if current.minioErr != nil {
		t.Fatalf("starting minio: %v", current.minioErr)
	}
	return current.minio
}

// Stop stops the server; Start brings it back on the same port and data.
func (m *MinIO) Stop(t testing.TB) {
	t.Helper()
	m.proc.stop(syscall.SIGTERM, 30*time.Second)
}

// Start restarts a stopped server and waits until it is live.
func (m *MinIO) Start(t testing.TB) {
	t.Helper()
	if err := m.start(); err != nil {
		t.Fatalf("restarting minio: %v", err)
	}
}

// UniqueName returns a fresh lower-case name with prefix, valid as a bucket.
func UniqueName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// StartMinIOIn starts a MinIO server of the test's own, with its data in
// dataDir (for example a small filesystem the test fills up), stopped when
// the test ends. Its logs go to a file beside the shared server's.
func StartMinIOIn(t testing.TB, dataDir string) *MinIO {
	t.Helper()
	root := t.TempDir()
	m, err := newMinIO(root, dataDir)
	if err != nil {
		t.Fatalf("starting minio in %s: %v", dataDir, err)
	}
	t.Cleanup(func() {
		if !m.proc.exited() {
			m.proc.stop(syscall.SIGTERM, 30*time.Second)
		}
	})
	return m
}

func startMinIO() (*MinIO, error) {
	root, err := os.MkdirTemp("", "testenv-minio-")
	if err != nil {
		return nil, err
	}
	current.addCleanup(func() { os.RemoveAll(root) })
	m, err := newMinIO(root, filepath.Join(root, "data"))
	if err != nil {
		return nil, err
	}
	current.addCleanup(func() {
		if !m.proc.exited() {
			m.proc.stop(syscall.SIGTERM, 30*time.Second)
		}
	})
	return m, nil
}

// newMinIO starts a server with its home and log in root and its data in
// dataDir.
func newMinIO(root, dataDir string) (*MinIO, error) {
	bin, err := ToolPath("minio")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	consolePort, err := freePort()
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	m := &MinIO{
		Endpoint:  fmt.Sprintf("127.0.0.1:%d", port),
		AccessKey: "testenv-" + hex.EncodeToString(secret[:4]),
		SecretKey: hex.EncodeToString(secret),
		logPath:   filepath.Join(root, "minio.log"),
	}
	m.args = []string{bin, "server", "--quiet",
		"--address", m.Endpoint,
		"--console-address", fmt.Sprintf("127.0.0.1:%d", consolePort),
		dataDir}
	m.env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"HOME="+root,
	)
	if err := m.start(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *MinIO) start() error {
	cmd := exec.Command(m.args[0], m.args[1:]...)
	cmd.Env = m.env
	proc, err := startProcess(cmd, m.logPath)
	if err != nil {
		return fmt.Errorf("starting minio: %w", err)
	}
	m.proc = proc
	url := "http://" + m.Endpoint + "/minio/health/ready"
	return waitFor(proc, m.logPath, 90*time.Second, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("minio readiness: %s", resp.Status)
		}
		return nil
	})
}
