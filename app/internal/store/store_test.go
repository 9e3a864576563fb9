package store

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
	"github.com/finetune-studio/finetune-studio/migrations"
)

func embeddedVersions(t *testing.T) int {
	t.Helper()
	entries, err := migrations.FS.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") {
			n++
		}
	}
	return n
}

// TestConcurrentStartupMigratesOnce starts several instances on one empty
// database at once: the advisory lock serialises them, every one succeeds,
// and each migration is recorded exactly once.
func TestConcurrentStartupMigratesOnce(t *testing.T) {
	dsn := testenv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const instances = 4
	stores := make([]*Store, instances)
	errs := make([]error, instances)
	var wg sync.WaitGroup
	for i := range instances {
		wg.Go(func() {
			stores[i], errs[i] = Open(ctx, Options{URL: dsn, Migrate: true}, slog.New(slog.DiscardHandler))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	var rows, distinct int
	err := stores[0].db.QueryRow(ctx,
		`SELECT count(*), count(DISTINCT version_id) FROM goose_db_version WHERE version_id > 0`).Scan(&rows, &distinct)
	if err != nil {
		t.Fatal(err)
	}
	if want := embeddedVersions(t); rows != want || distinct != want {
		t.Fatalf("goose_db_version: got %d rows (%d distinct), want %d", rows, distinct, want)
	}
	ms, err := stores[1].Migrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ms.Current != ms.Target || ms.Target < 1 {
		t.Fatalf("migration state: got %+v, want current == target", ms)
	}
}

// TestOpenRetriesWhileDatabaseDown takes the database away, starts Open,
// and brings the database back only after Open has logged failed attempts.
func TestOpenRetriesWhileDatabaseDown(t *testing.T) {
	dsn := testenv.NewDatabase(t)
	pg := testenv.StartPostgres(t)
	pg.Stop(t)
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			pg.Start(t)
		}
	})

	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type result struct {
		s   *Store
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := Open(ctx, Options{URL: dsn, Migrate: true, ConnectTimeout: time.Second}, log)
		done <- result{s, err}
	}()
	deadline := time.Now().Add(time.Minute)
	for strings.Count(logs.String(), `"msg":"database not ready"`) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no retry attempts logged; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	pg.Start(t)
	restarted = true
	r := <-done
	if r.err != nil {
		t.Fatalf("Open after the database came back: %v", r.err)
	}
	defer r.s.Close()
	if !strings.Contains(logs.String(), `"attempt":2`) || !strings.Contains(logs.String(), `"msg":"database ready"`) {
		t.Errorf("attempts not logged; logs:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "password") {
		t.Errorf("logs mention a password:\n%s", logs.String())
	}
}

// TestOpenGivesUpAtStartupTimeout bounds the retries by ctx.
func TestOpenGivesUpAtStartupTimeout(t *testing.T) {
	port := testenv.FreePort(t) // nothing listens there
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Open(ctx, Options{URL: "postgres://u:secretpw@127.0.0.1:" + strconv.Itoa(port) + "/db?sslmode=disable"}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "startup timeout") {
		t.Fatalf("got %v, want a startup timeout error", err)
	}
	if strings.Contains(err.Error(), "secretpw") {
		t.Fatalf("error leaks the password: %v", err)
	}
	if time.Since(start) > time.Minute {
		t.Fatalf("Open ignored its deadline")
	}
}

func TestOpenRejectsMalformedURLWithoutEchoingIt(t *testing.T) {
	_, err := Open(context.Background(), Options{URL: "postgres://u:topsecret@[bad"}, slog.New(slog.DiscardHandler))
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Fatalf("got %v, want an error without the password", err)
	}
}

func TestStatementTimeoutMapsToUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, Options{URL: testenv.NewDatabase(t), StatementTimeout: 200 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.db.Exec(ctx, "SELECT pg_sleep(10)")
	if err = mapErr(err); !errors.Is(err, problem.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable from statement_timeout", err)
	}
	if got := problem.From(err).Status(); got != 503 {
		t.Fatalf("status: got %d, want 503", got)
	}
}

func TestInTxRollsBackOnError(t *testing.T) {
	s := openPlatformStore(t)
	ctx := context.Background()
	boom := errors.New("boom")
	err := s.InTx(ctx, func(tx *Tx) error {
		if _, _, err := tx.Enqueue(ctx, NewTask{Kind: "k", MaxAttempts: 1}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	d, err := s.TaskQueueDepth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Queued != 0 {
		t.Fatalf("rolled-back enqueue is visible: %+v", d)
	}
}

func openPlatformStore(t *testing.T) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, Options{URL: testenv.NewDatabase(t), Migrate: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}
