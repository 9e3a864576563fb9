package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/backup"
	"github.com/finetune-studio/finetune-studio/app/internal/blob"
	"github.com/finetune-studio/finetune-studio/app/internal/store"
)

// bucketOf opens env's bucket (creating it) for the test to fill.
func bucketOf(t *testing.T, env map[string]string) *blob.Store {
	t.Helper()
	bl, err := blob.Open(blob.Options{Endpoint: env["S3_ENDPOINT"], AccessKey: env["S3_ACCESS_KEY"],
		SecretKey: env["S3_SECRET_KEY"], Region: "us-east-1", Bucket: env["S3_BUCKET"]})
	if err != nil {
		t.Fatal(err)
	}
	if err := bl.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	return bl
}

// TestBackupCommands drives the object backup CLI the way an operator (and
// the restore drill) does: mirror, restore into a scratch bucket, verify
// byte for byte (exit 0), tamper, verify again (exit 1, differences listed).
func TestBackupCommands(t *testing.T) {
	env := baseEnv(t)
	bl := bucketOf(t, env)
	ctx := context.Background()
	for key, body := range map[string]string{"datasets/a.jsonl": "{\"x\":1}\n", "models/j/adapter.bin": strings.Repeat("m", 70000)} {
		if _, err := bl.Put(ctx, key, strings.NewReader(body), int64(len(body)), ""); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()

	out, errOut, code := runCmd(t, env, "backup", "objects", "--to", dir)
	if code != 0 || !strings.Contains(out, "2 objects") || !strings.Contains(out, "copied 2") {
		t.Fatalf("backup objects: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	// The mirror target can come from the environment instead.
	env["BACKUP_OBJECTS_TARGET"] = dir
	out, errOut, code = runCmd(t, env, "backup", "objects")
	if code != 0 || !strings.Contains(out, "copied 0") || !strings.Contains(out, "unchanged 2") {
		t.Fatalf("second backup objects: exit %d, stdout %q, stderr %s", code, out, errOut)
	}

	scratch := "drill-" + strings.TrimPrefix(env["S3_BUCKET"], "app-")
	out, errOut, code = runCmd(t, env, "backup", "restore-objects", "--from", dir, "--to-bucket", scratch)
	if code != 0 || !strings.Contains(out, "restored 2 objects") {
		t.Fatalf("restore-objects: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	out, errOut, code = runCmd(t, env, "backup", "verify-objects", "--against", scratch)
	if code != 0 || !strings.Contains(out, "matches") {
		t.Fatalf("verify-objects: exit %d, stdout %q, stderr %s", code, out, errOut)
	}

	tampered := "{\"x\":2}\n"
	if _, err := bl.WithBucket(scratch).Put(ctx, "datasets/a.jsonl", strings.NewReader(tampered), int64(len(tampered)), ""); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCmd(t, env, "backup", "verify-objects", "--against", scratch, "--from", dir)
	if code != 1 || !strings.Contains(out, `DIFF "datasets/a.jsonl": bucket content differs`) || strings.Contains(out, "adapter.bin") {
		t.Fatalf("verify-objects after tampering: exit %d, stdout %q, stderr %s", code, out, errOut)
	}

	for _, args := range [][]string{
		{"backup", "verify-objects"},
		{"backup", "objects", "--to", "s3://Bad_Bucket/x"},
		{"backup", "objects", "--to", "relative/dir"},
		{"backup", "restore-objects", "--to-bucket", "NO"},
		{"backup", "frobnicate"},
	} {
		if _, errOut, code := runCmd(t, env, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage); stderr %s", args, code, errOut)
		}
	}
}

// TestServeBackupFreshnessAndMirror starts serve with a stale Postgres
// backup recorded and an object mirror due: /readyz warns about postgres
// only once the periodic mirror has run, the metric carries both kinds, and
// bucket versioning is on.
func TestServeBackupFreshnessAndMirror(t *testing.T) {
	env := baseEnv(t)
	bl := bucketOf(t, env)
	ctx := context.Background()
	if _, err := bl.Put(ctx, "datasets/seed", strings.NewReader("seed"), 4, ""); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, store.Options{URL: env["DATABASE_URL"], Migrate: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	stale := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	err = st.RecordBackupRun(ctx, backup.Run{Kind: backup.KindPostgres, StartedAt: stale, FinishedAt: stale, OK: true, Verified: true})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env["BACKUP_MAX_AGE"] = "2h"
	env["BACKUP_OBJECTS_TARGET"] = dir
	env["BACKUP_OBJECTS_INTERVAL"] = "1h"
	a := startApp(t, env)
	a.waitLog(t, `"msg":"object backup done"`)
	if _, err := os.Stat(filepath.Join(dir, env["S3_BUCKET"], "manifest.json")); err != nil {
		t.Fatalf("no manifest after the periodic mirror: %v", err)
	}
	a.waitReady(t, "warn", 200)
	_, body := a.get(t, "/readyz", "")
	var rep struct {
		Checks map[string][]struct{ Status, Output string }
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	b := rep.Checks["backups:responseTime"]
	if len(b) != 1 || b[0].Status != "warn" || !strings.Contains(b[0].Output, "postgres: newest verified backup is 3h") ||
		strings.Contains(b[0].Output, "objects") || !strings.Contains(b[0].Output, "run deploy/studio backup; see docs/backups.md") {
		t.Fatalf("backups check: got %+v", b)
	}
	if v := rep.Checks["bucketVersioning:responseTime"]; len(v) != 1 || v[0].Status != "pass" {
		t.Fatalf("bucketVersioning check: got %+v", v)
	}
	if on, err := bl.Versioning(ctx); err != nil || !on {
		t.Fatalf("bucket versioning: got %v, %v; want on", on, err)
	}

	resp, err := http.Get("http://" + env["APP_METRICS_ADDR"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`backup_last_success_timestamp_seconds{kind="postgres"} ` + strconv.FormatFloat(float64(stale.Unix()), 'g', -1, 64),
		`backup_last_success_timestamp_seconds{kind="objects"} `,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(string(metrics), `backup_last_success_timestamp_seconds{kind="objects"} 0`+"\n") {
		t.Error("objects backup time is 0 after a mirror")
	}
}
