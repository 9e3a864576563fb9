package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestEnqueueDedupeKeepsOneLiveTask(t *testing.T) {
	s := openPlatformStore(t)
	ctx := context.Background()
	id1, created, err := s.Enqueue(ctx, NewTask{Kind: "train", DedupeKey: "job-1", MaxAttempts: 3})
	if err != nil || !created {
		t.Fatalf("first enqueue: %d %v %v", id1, created, err)
	}
	// Inside a transaction too.
	var id2 int64
	err = s.InTx(ctx, func(tx *Tx) error {
		var err error
		id2, created, err = tx.Enqueue(ctx, NewTask{Kind: "train", DedupeKey: "job-1", MaxAttempts: 3})
		return err
	})
	if err != nil || created || id2 != id1 {
		t.Fatalf("duplicate enqueue: got id %d created %v err %v, want the live task %d", id2, created, err, id1)
	}
	// Another kind or key is a different task.
	if _, created, _ := s.Enqueue(ctx, NewTask{Kind: "other", DedupeKey: "job-1", MaxAttempts: 3}); !created {
		t.Error("same key, other kind was deduplicated")
	}
	// Once the live task is done, the key is free again.
	task, err := s.ClaimTask(ctx, []string{"train"}, time.Minute)
	if err != nil || task == nil || task.ID != id1 {
		t.Fatalf("claim: %+v %v", task, err)
	}
	if _, created, _ := s.Enqueue(ctx, NewTask{Kind: "train", DedupeKey: "job-1", MaxAttempts: 3}); created {
		t.Error("a running task's key was reused")
	}
	if err := s.CompleteTask(ctx, task.ID, task.LeaseToken); err != nil {
		t.Fatal(err)
	}
	id3, created, err := s.Enqueue(ctx, NewTask{Kind: "train", DedupeKey: "job-1", MaxAttempts: 3})
	if err != nil || !created || id3 == id1 {
		t.Fatalf("after completion: id %d created %v err %v", id3, created, err)
	}
}

func TestClaimHandsEachTaskToOneClaimer(t *testing.T) {
	s := openPlatformStore(t)
	ctx := context.Background()
	const tasks = 60
	for range tasks {
		if _, _, err := s.Enqueue(ctx, NewTask{Kind: "k", MaxAttempts: 1}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				task, err := s.ClaimTask(ctx, []string{"k"}, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if task == nil {
					return
				}
				mu.Lock()
				seen[task.ID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != tasks {
		t.Fatalf("claimed %d distinct tasks, want %d", len(seen), tasks)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("task %d claimed %d times", id, n)
		}
	}
}

func TestLeaseTokenGuardsEveryTransition(t *testing.T) {
	s := openPlatformStore(t)
	ctx := context.Background()
	id, _, _ := s.Enqueue(ctx, NewTask{Kind: "k", MaxAttempts: 5})
	first, err := s.ClaimTask(ctx, []string{"k"}, 50*time.Millisecond)
	if err != nil || first == nil || first.Reclaimed {
		t.Fatalf("claim: %+v %v", first, err)
	}
	// Not claimable while the lease holds.
	if again, _ := s.ClaimTask(ctx, []string{"k"}, time.Minute); again != nil {
		t.Fatalf("leased task claimed again: %+v", again)
	}
	// After expiry it is reclaimed, and that counts as a failed attempt.
	var second *Task
	deadline := time.Now().Add(30 * time.Second)
	for second == nil && time.Now().Before(deadline) {
		second, err = s.ClaimTask(ctx, []string{"k"}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if second == nil || second.ID != id || !second.Reclaimed || second.Attempts != 1 {
		t.Fatalf("reclaim: got %+v", second)
	}
	// The first holder can no longer touch the task.
	for name, op := range map[string]func() error{
		"heartbeat":  func() error { return s.HeartbeatTask(ctx, id, first.LeaseToken, time.Minute) },
		"complete":   func() error { return s.CompleteTask(ctx, id, first.LeaseToken) },
		"reschedule": func() error { return s.RescheduleTask(ctx, id, first.LeaseToken, 0) },
		"release":    func() error { return s.ReleaseTask(ctx, id, first.LeaseToken) },
		"kill":       func() error { return s.KillTask(ctx, id, first.LeaseToken, "x") },
		"fail": func() error {
			_, err := s.FailTask(ctx, id, first.LeaseToken, 0, "x")
			return err
		},
	} {
		if err := op(); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("%s with a stale token: got %v, want ErrLeaseLost", name, err)
		}
	}
	if err := s.HeartbeatTask(ctx, id, second.LeaseToken, time.Minute); err != nil {
		t.Fatalf("current holder's heartbeat: %v", err)
	}
}

func TestFailTaskBacksOffThenDeadLetters(t *testing.T) {
	s := openPlatformStore(t)
	ctx := context.Background()
	id, _, _ := s.Enqueue(ctx, NewTask{Kind: "k", MaxAttempts: 2})
	task, _ := s.ClaimTask(ctx, []string{"k"}, time.Minute)
	dead, err := s.FailTask(ctx, id, task.LeaseToken, time.Hour, "first failure")
	if err != nil || dead {
		t.Fatalf("first failure: dead %v err %v", dead, err)
	}
	got, _ := s.GetTask(ctx, id)
	if got.State != TaskQueued || got.Attempts != 1 || time.Until(got.RunAt) < 50*time.Minute || got.LastError != "first failure" {
		t.Fatalf("after first failure: %+v", got)
	}
	// Not due: the backoff holds it.
	if again, _ := s.ClaimTask(ctx, []string{"k"}, time.Minute); again != nil {
		t.Fatalf("claimed before its backoff ended: %+v", again)
	}
	if _, err := s.db.Exec(ctx, `UPDATE tasks SET run_at = now() WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	task, _ = s.ClaimTask(ctx, []string{"k"}, time.Minute)
	dead, err = s.FailTask(ctx, id, task.LeaseToken, 0, "second failure")
	if err != nil || !dead {
		t.Fatalf("last attempt: dead %v err %v", dead, err)
	}
	got, _ = s.GetTask(ctx, id)
	if got.State != TaskDead || got.Attempts != 2 {
		t.Fatalf("after last attempt: %+v", got)
	}
	if again, _ := s.ClaimTask(ctx, []string{"k"}, time.Minute); again != nil {
		t.Fatalf("dead task claimed: %+v", again)
	}
}

func TestFailTaskStoresInvalidUTF8Safely(t *testing.T) {
	s := openPlatformStore(t)
	ctx := context.Background()
	id, _, _ := s.Enqueue(ctx, NewTask{Kind: "k", MaxAttempts: 3})
	task, _ := s.ClaimTask(ctx, []string{"k"}, time.Minute)
	reason := string([]byte{0xff, 'x'}) + string(make([]byte, 0)) + "é"
	for len(reason) < 3000 {
		reason += "é"
	}
	if _, err := s.FailTask(ctx, id, task.LeaseToken, 0, reason); err != nil {
		t.Fatalf("storing a long, partly invalid reason: %v", err)
	}
}

// Enqueue adds a task outside any transaction. Production code always
// enqueues inside one (Tx.Enqueue); tests need a task on its own.
func (s *Store) Enqueue(ctx context.Context, t NewTask) (id int64, created bool, err error) {
	return enqueue(ctx, s.db, t)
}

// GetTask reads one task by id; only tests look at a task row directly.
func (s *Store) GetTask(ctx context.Context, id int64) (*Task, error) {
	t, err := scanTask(s.db.QueryRow(ctx, `SELECT `+taskColumns+` FROM tasks t WHERE t.id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("getting task %d: %w", id, mapErr(err))
	}
	return t, nil
}
