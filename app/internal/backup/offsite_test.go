package backup_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/backup"
	"github.com/finetune-studio/finetune-studio/app/internal/blob"
	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
)

// writeDump puts a dump and its manifest in dir the way backup.sh does
// (manifest format 1, tab-separated), and returns its sha256.
func writeDump(t *testing.T, dir, name, content string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(content))
	sha := hex.EncodeToString(sum[:])
	manifest := fmt.Sprintf("# Finetune Studio Postgres dump manifest, format 1 (tab-separated)\nfile\t%s\nsha256\t%s\nbytes\t%d\n"+
		"schedule\tmanual\ntable\tpublic.datasets\t3\tabc\n", name, sha, len(content))
	if err := os.WriteFile(filepath.Join(dir, name+".manifest"), []byte(manifest), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	return sha
}

// dumpAt is a dump name for time at.
func dumpAt(at time.Time, schedule string) string {
	return "studio-" + at.UTC().Format("20060102T150405Z") + "-" + schedule + ".dump"
}

// remoteFiles reads every file at target into a map name → content.
func remoteFiles(t *testing.T, target blob.Target, s3 blob.TargetS3) map[string]string {
	t.Helper()
	ctx := context.Background()
	files, err := blob.OpenFiles(ctx, target, s3)
	if err != nil {
		t.Fatal(err)
	}
	list, err := files.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range list {
		r, err := files.Open(ctx, f.Name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[f.Name] = string(b)
	}
	return out
}

func checkOffsite(t *testing.T, got backup.OffsiteStats, dumps, copied, skipped, removed int) {
	t.Helper()
	if got.Dumps != dumps || got.Copied != copied || got.Skipped != skipped || got.Removed != removed {
		t.Fatalf("got dumps=%d copied=%d skipped=%d removed=%d, want %d %d %d %d",
			got.Dumps, got.Copied, got.Skipped, got.Removed, dumps, copied, skipped, removed)
	}
}

// lastOffsiteRun is the newest postgres-offsite row: ok, verified, error.
func lastOffsiteRun(t *testing.T, st interface {
	LastBackupAttempt(context.Context, string) (time.Time, bool, error)
	LastVerifiedBackups(context.Context, []string) (map[string]time.Time, error)
}) (attempt, verified time.Time) {
	t.Helper()
	ctx := context.Background()
	attempt, ok, err := st.LastBackupAttempt(ctx, backup.KindPostgresOffsite)
	if err != nil || !ok {
		t.Fatalf("no postgres-offsite run recorded: %v %v", ok, err)
	}
	last, err := st.LastVerifiedBackups(ctx, []string{backup.KindPostgresOffsite})
	if err != nil {
		t.Fatal(err)
	}
	return attempt, last[backup.KindPostgresOffsite]
}

// TestPostgresOffsiteToMinIO copies dumps to a bucket on a real MinIO: only
// verified dumps (with a manifest) go, byte-equal with their manifest
// beside them; a rerun copies nothing; a dump whose bytes do not match its
// manifest is refused, reported by name and the run recorded as failed,
// while the good ones stay copied; an empty dump directory (a lost volume)
// fails without touching the copies.
func TestPostgresOffsiteToMinIO(t *testing.T) {
	st := openStore(t)
	m := testenv.StartMinIO(t)
	s3 := blob.TargetS3{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Region: "us-east-1"}
	target, err := blob.ParseTarget("s3://" + testenv.UniqueName("offsite") + "/studio/postgres")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	now := time.Now()
	daily, manual := dumpAt(now.Add(-26*time.Hour), "daily"), dumpAt(now.Add(-time.Hour), "manual")
	want := map[string]string{}
	for name, content := range map[string]string{daily: "PGDMP daily " + strings.Repeat("d", 70000), manual: "PGDMP manual"} {
		writeDump(t, dir, name, content)
		want[name] = content
		man, _ := os.ReadFile(filepath.Join(dir, name+".manifest"))
		want[name+".manifest"] = string(man)
	}
	// Not verified (yet): a dump without its manifest, and a partial file.
	unverified := dumpAt(now, "manual")
	if err := os.WriteFile(filepath.Join(dir, unverified), []byte("being verified"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, unverified+".partial"), []byte("half"), 0o640); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	offsite := backup.NewPostgresOffsite(st, backup.OffsiteConfig{Dir: dir, Target: target, S3: s3, Retention: 35 * 24 * time.Hour}, log)
	ctx := context.Background()

	stats, err := offsite.RunOnce(ctx)
	if err != nil {
		t.Fatalf("first copy: %v", err)
	}
	checkOffsite(t, stats, 2, 2, 0, 0)
	if got := remoteFiles(t, target, s3); !maps.Equal(got, want) {
		t.Fatalf("remote after the first copy: got %v, want the 2 verified dumps and their manifests", keys(got))
	}
	if _, verified := lastOffsiteRun(t, st); verified.IsZero() {
		t.Fatal("the first copy is not recorded as a verified postgres-offsite backup")
	}

	stats, err = offsite.RunOnce(ctx)
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	checkOffsite(t, stats, 2, 0, 2, 0)

	// One byte changed after the manifest was written: refused, named,
	// the run fails, nothing of it is uploaded.
	corrupt := dumpAt(now.Add(-30*time.Minute), "manual")
	writeDump(t, dir, corrupt, "PGDMP to be corrupted")
	if err := os.WriteFile(filepath.Join(dir, corrupt), []byte("PGDMP to be corrupteD"), 0o640); err != nil {
		t.Fatal(err)
	}
	stats, err = offsite.RunOnce(ctx)
	if err == nil || !strings.Contains(err.Error(), corrupt) || !strings.Contains(err.Error(), "do not match the sha256") {
		t.Fatalf("copy with a corrupt dump: got %v, want an error naming %s", err, corrupt)
	}
	if !slices.Equal(stats.Corrupt, []string{corrupt}) || stats.Skipped != 2 || stats.Copied != 0 {
		t.Fatalf("copy with a corrupt dump: got %+v", stats)
	}
	if got := remoteFiles(t, target, s3); !maps.Equal(got, want) {
		t.Fatalf("remote after the corrupt dump: got %v, want it unchanged", keys(got))
	}
	if attempt, verified := lastOffsiteRun(t, st); !attempt.After(verified) {
		t.Fatalf("the failed run counts as verified: attempt %v, verified %v", attempt, verified)
	}
	if err := os.Remove(filepath.Join(dir, corrupt)); err != nil {
		t.Fatal(err)
	}

	// The backups volume lost (or not mounted): refuse, keep every copy.
	for _, name := range []string{daily, manual} {
		for _, f := range []string{name, name + ".manifest"} {
			if err := os.Rename(filepath.Join(dir, f), filepath.Join(t.TempDir(), f)); err != nil {
				t.Fatal(err)
			}
		}
	}
	os.Remove(filepath.Join(dir, corrupt+".manifest"))
	if _, err := offsite.RunOnce(ctx); !errors.Is(err, backup.ErrNoDumps) {
		t.Fatalf("empty dump directory: got %v, want ErrNoDumps", err)
	}
	if got := remoteFiles(t, target, s3); !maps.Equal(got, want) {
		t.Fatalf("remote after an empty directory: got %v, want it unchanged", keys(got))
	}
}

// TestPostgresOffsiteRetention: a copy whose dump was pruned from disk is
// deleted once the dump is older than Retention, and kept before that; a
// dump still on disk is never deleted, whatever its age; Retention 0 keeps
// everything. The target here is a directory (the other kind of target).
func TestPostgresOffsiteRetention(t *testing.T) {
	st := openStore(t)
	dir := t.TempDir()
	target, err := blob.ParseTarget(filepath.Join(t.TempDir(), "offsite"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	old := dumpAt(now.Add(-60*24*time.Hour), "weekly")     // pruned, old: goes
	recent := dumpAt(now.Add(-3*24*time.Hour), "daily")    // pruned, recent: stays
	oldKept := dumpAt(now.Add(-50*24*time.Hour), "weekly") // old but still on disk: stays
	newest := dumpAt(now.Add(-time.Hour), "daily")         // on disk: stays
	for _, name := range []string{old, recent, oldKept, newest} {
		writeDump(t, dir, name, "PGDMP "+name)
	}
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	run := func(retention time.Duration) backup.OffsiteStats {
		t.Helper()
		stats, err := backup.NewPostgresOffsite(st, backup.OffsiteConfig{Dir: dir, Target: target, Retention: retention}, log).RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return stats
	}
	checkOffsite(t, run(35*24*time.Hour), 4, 4, 0, 0)
	// backup.sh's retention prunes two of them from disk.
	for _, name := range []string{old, recent} {
		os.Remove(filepath.Join(dir, name))
		os.Remove(filepath.Join(dir, name+".manifest"))
	}
	checkOffsite(t, run(0), 2, 0, 2, 0) // 0 keeps every copy
	if got := remoteFiles(t, target, blob.TargetS3{}); len(got) != 8 {
		t.Fatalf("retention 0 removed copies: %v", keys(got))
	}
	checkOffsite(t, run(35*24*time.Hour), 2, 0, 2, 1)
	got := remoteFiles(t, target, blob.TargetS3{})
	for _, name := range []string{recent, oldKept, newest} {
		if got[name] != "PGDMP "+name || got[name+".manifest"] == "" {
			t.Errorf("%s: copy or manifest missing after retention", name)
		}
	}
	if _, ok := got[old]; ok || len(got) != 6 {
		t.Fatalf("after retention: got %v, want %s gone and 3 dumps with manifests", keys(got), old)
	}
	if entries, _ := os.ReadDir(filepath.Join(target.Dir, ".staging")); len(entries) != 0 {
		t.Fatalf("staging files left behind: %v", entries)
	}
}

func keys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
