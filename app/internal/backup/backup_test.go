package backup_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/backup"
	"github.com/finetune-studio/finetune-studio/app/internal/blob"
	"github.com/finetune-studio/finetune-studio/app/internal/health"
	"github.com/finetune-studio/finetune-studio/app/internal/metrics"
	"github.com/finetune-studio/finetune-studio/app/internal/store"
	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func openStore(t *testing.T) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, store.Options{URL: testenv.NewDatabase(t), Migrate: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func record(t *testing.T, st *store.Store, kind string, finished time.Time, ok, verified bool) {
	t.Helper()
	err := st.RecordBackupRun(context.Background(), backup.Run{
		Kind: kind, StartedAt: finished.Add(-time.Minute), FinishedAt: finished, OK: ok, Verified: verified,
		Location: "/backups/x", Bytes: 42, Detail: map[string]any{"test": true},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// outcome runs the check and returns its status and output as /readyz
// would show them.
func outcome(t *testing.T, f *backup.Freshness) (health.Status, string) {
	t.Helper()
	err := f.Check(context.Background())
	if err == nil {
		return health.Pass, ""
	}
	var o *health.Outcome
	if !errors.As(err, &o) {
		t.Fatalf("check failed outright: %v", err)
	}
	return o.Status, o.Output
}

// TestFreshness inserts backup_runs rows with chosen timestamps and reads
// the check's verdict: fresh passes, stale and never-backed-up warn with
// what to do, unverified runs do not count, and MaxAge 0 turns it off.
func TestFreshness(t *testing.T) {
	st := openStore(t)
	now := time.Now().Truncate(time.Second)
	kinds := []string{backup.KindPostgres, backup.KindObjects}
	fresh := func(maxAge time.Duration, installed time.Time) *backup.Freshness {
		return backup.NewFreshness(st, backup.FreshnessConfig{Kinds: kinds, MaxAge: maxAge, InstalledAt: installed,
			Now: func() time.Time { return now }})
	}
	longAgo := now.Add(-30 * 24 * time.Hour)

	// Nothing yet, on a new installation: not overdue.
	if s, out := outcome(t, fresh(26*time.Hour, now.Add(-time.Hour))); s != health.Pass {
		t.Fatalf("new install without backups: got %s %q, want pass", s, out)
	}
	// Nothing yet, installation older than the limit: warn, per kind.
	s, out := outcome(t, fresh(26*time.Hour, longAgo))
	if s != health.Warn || !strings.Contains(out, "postgres: no verified backup yet") ||
		!strings.Contains(out, "objects: no verified backup yet") || !strings.Contains(out, backup.Advice) {
		t.Fatalf("old install without backups: got %s %q", s, out)
	}
	// Disabled: passes whatever the rows say.
	if s, out := outcome(t, fresh(0, longAgo)); s != health.Pass {
		t.Fatalf("disabled: got %s %q, want pass", s, out)
	}

	// A stale postgres backup and a fresh but unverified objects run.
	record(t, st, backup.KindPostgres, now.Add(-30*time.Hour), true, true)
	record(t, st, backup.KindObjects, now.Add(-time.Hour), true, false)
	record(t, st, backup.KindObjects, now.Add(-time.Hour), false, false)
	s, out = outcome(t, fresh(26*time.Hour, longAgo))
	if s != health.Warn || !strings.Contains(out, "postgres: newest verified backup is 30h0m0s old (limit 26h0m0s)") ||
		!strings.Contains(out, "objects: no verified backup yet") || !strings.HasSuffix(out, backup.Advice) {
		t.Fatalf("stale postgres, unverified objects: got %s %q", s, out)
	}

	// Fresh verified runs of both: pass.
	record(t, st, backup.KindPostgres, now.Add(-2*time.Hour), true, true)
	record(t, st, backup.KindObjects, now.Add(-3*time.Hour), true, true)
	if s, out := outcome(t, fresh(26*time.Hour, longAgo)); s != health.Pass {
		t.Fatalf("fresh backups: got %s %q, want pass", s, out)
	}
	// The same rows against a tighter limit: objects is now stale.
	s, out = outcome(t, fresh(150*time.Minute, longAgo))
	if s != health.Warn || !strings.Contains(out, "objects: newest verified backup is 3h0m0s old") || strings.Contains(out, "postgres") {
		t.Fatalf("tighter limit: got %s %q", s, out)
	}

	// The metric carries the newest verified finish per kind.
	m := metrics.New(metrics.BuildInfo{Version: "t", Revision: "t"})
	m.WatchBackups(fresh(26*time.Hour, longAgo).LastSuccess)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for kind, at := range map[string]time.Time{"postgres": now.Add(-2 * time.Hour), "objects": now.Add(-3 * time.Hour)} {
		line := `backup_last_success_timestamp_seconds{kind="` + kind + `"} ` + strconv.FormatFloat(float64(at.Unix()), 'g', -1, 64)
		if !strings.Contains(string(body), line) {
			t.Errorf("metrics lack %q", line)
		}
	}
}

func TestMetricIsZeroForAKindNeverBackedUp(t *testing.T) {
	st := openStore(t)
	f := backup.NewFreshness(st, backup.FreshnessConfig{Kinds: []string{backup.KindObjects}, MaxAge: time.Hour})
	m := metrics.New(metrics.BuildInfo{})
	m.WatchBackups(f.LastSuccess)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if want := `backup_last_success_timestamp_seconds{kind="objects"} 0`; !strings.Contains(string(body), want) {
		t.Fatalf("metrics lack %q", want)
	}
}

func newBucket(t *testing.T) *blob.Store {
	t.Helper()
	mi := testenv.StartMinIO(t)
	bl, err := blob.Open(blob.Options{Endpoint: mi.Endpoint, AccessKey: mi.AccessKey, SecretKey: mi.SecretKey,
		Region: "us-east-1", Bucket: testenv.UniqueName("backup")})
	if err != nil {
		t.Fatal(err)
	}
	if err := bl.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	return bl
}

// TestObjectBackupRecordsRunsAndIsSingleFlight runs the object backup
// twice (a verified row each time, the second copying nothing), and once
// while another session holds the backup lock (refused, nothing recorded).
func TestObjectBackupRecordsRunsAndIsSingleFlight(t *testing.T) {
	st := openStore(t)
	bl := newBucket(t)
	ctx := context.Background()
	if _, err := bl.Put(ctx, "datasets/d1", strings.NewReader("hello"), 5, ""); err != nil {
		t.Fatal(err)
	}
	target, _ := blob.ParseTarget(t.TempDir())
	objects := backup.NewObjects(st, blob.NewMirror(target, blob.TargetS3{}, slog.New(slog.DiscardHandler)), bl, slog.New(slog.DiscardHandler))
	for i, wantCopied := range []int{1, 0} {
		stats, err := objects.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if stats.Copied != wantCopied || stats.Objects != 1 {
			t.Fatalf("run %d: got %+v, want %d copied of 1", i, stats, wantCopied)
		}
	}
	last, err := st.LastVerifiedBackups(ctx, []string{backup.KindObjects})
	if err != nil || time.Since(last[backup.KindObjects]) > time.Minute {
		t.Fatalf("no recent verified objects row: %v, %v", last, err)
	}

	held := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := st.WithAdvisoryLock(ctx, backup.ObjectsLockKey, func(context.Context) error {
			close(held)
			<-release
			return nil
		})
		done <- err
	}()
	<-held
	_, err = objects.RunOnce(ctx)
	close(release)
	if !errors.Is(err, backup.ErrBusy) {
		t.Fatalf("run while the lock is held: got %v, want ErrBusy", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	attempt, ok, err := st.LastBackupAttempt(ctx, backup.KindObjects)
	if err != nil || !ok || attempt.After(time.Now()) {
		t.Fatalf("last attempt: %v %v %v", attempt, ok, err)
	}
}

// TestObjectBackupFailureIsRecorded points the mirror at a bucket that does
// not exist: the run fails, and its row says so (not ok, not verified, the
// error kept), so freshness does not count it.
func TestObjectBackupFailureIsRecorded(t *testing.T) {
	st := openStore(t)
	bl := newBucket(t).WithBucket(testenv.UniqueName("missing"))
	target, _ := blob.ParseTarget(t.TempDir())
	objects := backup.NewObjects(st, blob.NewMirror(target, blob.TargetS3{}, slog.New(slog.DiscardHandler)), bl, slog.New(slog.DiscardHandler))
	if _, err := objects.RunOnce(context.Background()); err == nil {
		t.Fatal("mirroring a missing bucket succeeded")
	}
	if _, ok, err := st.LastBackupAttempt(context.Background(), backup.KindObjects); err != nil || !ok {
		t.Fatalf("failed run not recorded: %v %v", ok, err)
	}
	last, err := st.LastVerifiedBackups(context.Background(), []string{backup.KindObjects})
	if err != nil || !last[backup.KindObjects].IsZero() {
		t.Fatalf("a failed run counts as a verified backup: %v %v", last, err)
	}
}

type versioner struct{ err error }

func (v *versioner) EnableVersioning(context.Context) error { return v.err }

// TestVersioningCheck: a server that refuses versioning degrades readiness
// (never fails it); one that accepts passes.
func TestVersioningCheck(t *testing.T) {
	refusing := backup.NewVersioning(&versioner{err: errors.New("NotImplemented")})
	if err := refusing.Enable(context.Background()); err == nil {
		t.Fatal("Enable hid the refusal")
	}
	var o *health.Outcome
	if err := refusing.Check(context.Background()); !errors.As(err, &o) || o.Status != health.Warn {
		t.Fatalf("refused: got %v, want a warning", err)
	}
	ok := backup.NewVersioning(&versioner{})
	if err := ok.Enable(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := ok.Check(context.Background()); err != nil {
		t.Fatalf("enabled: got %v, want pass", err)
	}
}
