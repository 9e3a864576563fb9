package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
// backup recorded, an object mirror and an off-VM dump copy due: /readyz
// warns about postgres only once the periodic runs are done, the metric
// carries all three kinds, and bucket versioning is on.
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
	// The off-VM dump copy runs next to the mirror, as its own kind.
	dumps, offsite := t.TempDir(), t.TempDir()
	dump := "studio-" + time.Now().UTC().Format("20060102T150405Z") + "-daily.dump"
	sum := sha256.Sum256([]byte("PGDMP"))
	if err := os.WriteFile(filepath.Join(dumps, dump+".manifest"), []byte("sha256\t"+hex.EncodeToString(sum[:])+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dumps, dump), []byte("PGDMP"), 0o640); err != nil {
		t.Fatal(err)
	}
	env["BACKUP_POSTGRES_DIR"] = dumps
	env["BACKUP_POSTGRES_TARGET"] = offsite
	a := startApp(t, env)
	a.waitLog(t, `"msg":"object backup done"`)
	a.waitLog(t, `"msg":"postgres offsite copy done"`)
	if b, err := os.ReadFile(filepath.Join(offsite, dump)); err != nil || string(b) != "PGDMP" {
		t.Fatalf("no copy of the dump after the periodic run: %q, %v", b, err)
	}
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
		strings.Contains(b[0].Output, "objects") || strings.Contains(b[0].Output, "postgres-offsite") || !strings.Contains(b[0].Output, "run deploy/studio backup; see docs/backups.md") {
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
		`backup_last_success_timestamp_seconds{kind="postgres-offsite"} `,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	for _, kind := range []string{"objects", "postgres-offsite"} {
		if strings.Contains(string(metrics), `backup_last_success_timestamp_seconds{kind="`+kind+`"} 0`+"\n") {
			t.Errorf("%s backup time is 0 after a run", kind)
		}
	}
}

// TestBackupPostgresOffsiteCommand drives `app backup postgres-offsite` as
// deploy/studio backup does: a verified dump is copied with its manifest
// (exit 0), a rerun copies nothing, a dump that does not match its
// manifest is named and makes it exit 1, and a missing target is a usage
// error.
func TestBackupPostgresOffsiteCommand(t *testing.T) {
	env := baseEnv(t)
	dumps, target := t.TempDir(), t.TempDir()
	writeTestDump := func(name, content, manifestContent string) {
		sum := sha256.Sum256([]byte(manifestContent))
		man := "file\t" + name + "\nsha256\t" + hex.EncodeToString(sum[:]) + "\nbytes\t" + strconv.Itoa(len(manifestContent)) + "\n"
		if err := os.WriteFile(filepath.Join(dumps, name+".manifest"), []byte(man), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dumps, name), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	good := "studio-" + time.Now().UTC().Format("20060102T150405Z") + "-manual.dump"
	writeTestDump(good, "PGDMP good", "PGDMP good")

	if _, errOut, code := runCmd(t, env, "backup", "postgres-offsite"); code != 2 || !strings.Contains(errOut, "BACKUP_POSTGRES_TARGET") {
		t.Fatalf("without a target: exit %d, stderr %s; want 2 naming BACKUP_POSTGRES_TARGET", code, errOut)
	}
	env["BACKUP_POSTGRES_DIR"] = dumps
	out, errOut, code := runCmd(t, env, "backup", "postgres-offsite", "--to", target)
	if code != 0 || !strings.Contains(out, "1 dumps") || !strings.Contains(out, "copied 1") {
		t.Fatalf("postgres-offsite: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(target, good)); err != nil || string(b) != "PGDMP good" {
		t.Fatalf("the copy: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(target, good+".manifest")); err != nil {
		t.Fatalf("no manifest beside the copy: %v", err)
	}
	env["BACKUP_POSTGRES_TARGET"] = target
	out, errOut, code = runCmd(t, env, "backup", "postgres-offsite")
	if code != 0 || !strings.Contains(out, "copied 0") || !strings.Contains(out, "already there 1") {
		t.Fatalf("rerun: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	bad := "studio-" + time.Now().UTC().Add(time.Second).Format("20060102T150405Z") + "-manual.dump"
	writeTestDump(bad, "PGDMP flipped", "PGDMP original")
	out, errOut, code = runCmd(t, env, "backup", "postgres-offsite")
	if code != 1 || !strings.Contains(out, "CORRUPT "+bad) || !strings.Contains(errOut, "do not match") {
		t.Fatalf("corrupt dump: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(target, bad)); !os.IsNotExist(err) {
		t.Fatalf("the corrupt dump was copied: %v", err)
	}
	if _, errOut, code := runCmd(t, env, "backup", "postgres-offsite", "--to", "s3://Bad_Bucket/x"); code != 2 {
		t.Fatalf("bad --to: exit %d, stderr %s", code, errOut)
	}
}
