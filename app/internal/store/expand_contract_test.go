package store

import (
	"context"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
	"github.com/finetune-studio/finetune-studio/migrations"
)

// previousRelease is the embedded migrations without the newest file: the
// set the release before this one shipped.
func previousRelease(t *testing.T) (fs.FS, string) {
	t.Helper()
	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil || len(names) < 2 {
		t.Fatalf("embedded migrations: %v %v", names, err)
	}
	slices.Sort(names)
	prev := fstest.MapFS{}
	for _, n := range names[:len(names)-1] {
		b, err := fs.ReadFile(migrations.FS, n)
		if err != nil {
			t.Fatal(err)
		}
		prev[n] = &fstest.MapFile{Data: b}
	}
	return prev, names[len(names)-1]
}

// TestPreviousReleaseStartsOnNewerSchema is the rollback guarantee at the
// store's edge: a database migrated by release N (every embedded migration)
// is opened by a store that knows only release N-1's migrations, as it is
// during a rolling deploy and after a rollback. It must start (not refuse
// the newer schema, not try to apply or undo anything), log it, report the
// versions, and serve reads and writes.
func TestPreviousReleaseStartsOnNewerSchema(t *testing.T) {
	dsn := testenv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	latest, err := Open(ctx, Options{URL: dsn, Migrate: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("release N: %v", err)
	}
	newest, err := latest.Migrations(ctx)
	latest.Close()
	if err != nil {
		t.Fatal(err)
	}

	prevFS, newestFile := previousRelease(t)
	var logs testenv.SyncBuffer
	prev, err := Open(ctx, Options{URL: dsn, Migrate: true, Migrations: prevFS},
		slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("release N-1 refused release N's schema (newest migration %s): %v", newestFile, err)
	}
	defer prev.Close()
	ms, err := prev.Migrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ms.Current != newest.Current || ms.Target != newest.Current-1 {
		t.Fatalf("release N-1 sees %+v, want current %d and target %d", ms, newest.Current, newest.Current-1)
	}
	if !strings.Contains(logs.String(), "database schema is newer than this release") {
		t.Fatalf("running on a newer schema was not logged:\n%s", logs.String())
	}

	// Its queries work: tokens (authentication) and the training lists.
	if err := prev.CreateToken(ctx, "a1b2c3d4e5f60718", "rollback", make([]byte, 32), time.Time{}); err != nil {
		t.Fatalf("release N-1 writing a token: %v", err)
	}
	if _, err := prev.LiveToken(ctx, "a1b2c3d4e5f60718"); err != nil {
		t.Fatalf("release N-1 reading a token: %v", err)
	}
	d := insertTestDataset(t, prev, "written-by-n-1")
	got, err := prev.GetDataset(ctx, d.ID)
	if err != nil || got.Name != d.Name {
		t.Fatalf("release N-1 reading its dataset: %+v %v", got, err)
	}
	ids := walk(t, datasetIDs(prev), "", 10, "")
	if !slices.Contains(ids, d.ID) {
		t.Fatalf("release N-1 does not list its dataset: %v", ids)
	}
}
