//go:build faults

package faults

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
)

// smallDisk mounts a tmpfs of size at a fresh directory and unmounts it
// when the test ends. It skips the test when this machine does not allow
// the mount (not root, or a container without CAP_SYS_ADMIN): a full disk
// cannot be made safely otherwise. In CI (CI set, as .ci/run does) it fails
// instead: a skipped scenario there would pass without proving anything.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil && os.Getenv("CI") != "" {
		t.Fatalf("CI must be able to mount a %s tmpfs to fill (run as root): %v: %s", size, err, strings.TrimSpace(string(out)))
	}
	if err != nil {
		t.Skipf("cannot mount a %s tmpfs to fill (needs root or CAP_SYS_ADMIN): %v: %s", size, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes zeros to path until the filesystem is full.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			return n
		}
		if err != nil {
			t.Fatalf("filling %s: %v", path, err)
		}
	}
}

// TestObjectStorageDiskFull runs MinIO with its data on a 64 MiB tmpfs,
// fills the filesystem, and uploads a dataset: the app must answer a clear
// JSON error that names storage (507 storage_full) instead of a generic
// 500, leave no half-made dataset behind, and keep serving the datasets
// stored before, unchanged. Once space is freed, uploads succeed again
// without a restart.
func TestObjectStorageDiskFull(t *testing.T) {
	disk := smallDisk(t, "64m")
	data := filepath.Join(disk, "data")
	mi := testenv.StartMinIOIn(t, data)
	s := newStack(t, stackOptions{apps: 1, minio: mi})
	app := s.apps[0]
	user := s.client("127.0.0.1", 2*time.Minute)

	var before struct {
		ID string `json:"id"`
	}
	s.apiJSON(t, user, s.uploadRequest("before-full"), &before)
	getDataset := func() []byte {
		resp, body, _, err := do(user, s.request("GET", "/api/v1/datasets/"+before.ID, s.token, nil, ""))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("reading the stored dataset: %v %v %.300s", err, resp, body)
		}
		return body
	}
	original := getDataset()
	countDatasets := func() int {
		var page struct {
			Data []json.RawMessage `json:"data"`
		}
		s.apiJSON(t, user, s.request("GET", "/api/v1/datasets?limit=100", s.token, nil, ""), &page)
		return len(page.Data)
	}
	n := countDatasets()
	objects := s.bucketDigests(t, "")
	if len(objects) == 0 {
		t.Fatal("no object stored for the first dataset")
	}

	filler := filepath.Join(disk, "filler")
	filled := fill(t, filler)

	resp, body, took, err := do(user, s.uploadRequest("while-full"))
	if err != nil {
		t.Fatalf("upload with the storage disk full: %v after %s", err, took)
	}
	code, err := checkError(resp, body, http.StatusInsufficientStorage, false)
	if err != nil || code != "storage_full" {
		t.Fatalf("upload with the storage disk full: %v (code %q)", err, code)
	}
	var e apiError
	_ = json.Unmarshal(body, &e)
	if !strings.Contains(e.Error.Message, "storage") {
		t.Fatalf("the error message does not name storage: %q", e.Error.Message)
	}
	if got := countDatasets(); got != n {
		t.Fatalf("%d datasets listed after the refused upload, want %d", got, n)
	}
	if got := getDataset(); !bytes.Equal(got, original) {
		t.Fatalf("the stored dataset changed while the disk was full:\n%s\nwant\n%s", got, original)
	}
	code2, status, _ := app.readyz()

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	var tries int
	waitFor(t, 2*time.Minute, "an upload to succeed after space was freed", func() bool {
		tries++
		resp, _, _, err := do(user, s.uploadRequest(fmt.Sprintf("after-free-%d", tries)))
		return err == nil && resp.StatusCode == http.StatusCreated
	})
	back := time.Since(freed)
	if got := getDataset(); !bytes.Equal(got, original) {
		t.Fatalf("the stored dataset changed after space was freed:\n%s\nwant\n%s", got, original)
	}
	for key, sum := range objects {
		if got := s.bucketDigests(t, key)[key]; got != sum {
			t.Fatalf("object %s changed after the disk was full: sha256 %s, want %s", key, got, sum)
		}
	}
	if got := countDatasets(); got != n+1 {
		t.Fatalf("%d datasets listed after recovery, want %d", got, n+1)
	}
	t.Logf("RESULT disk full: filled %d MiB; upload refused with %d %s in %s (%q); readyz meanwhile %d %s; "+
		"upload accepted %s after space was freed (%d tries); stored dataset and its %d objects unchanged",
		filled>>20, resp.StatusCode, code, took.Round(time.Millisecond), e.Error.Message, code2, status,
		back.Round(time.Millisecond), tries, len(objects))
}
