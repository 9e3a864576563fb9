package retry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestUntilReadyRetriesThenSucceeds(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	calls := 0
	err := UntilReady(context.Background(), log, "thing", func(context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("down")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("err %v after %d calls, want success on the third", err, calls)
	}
	if n := strings.Count(logs.String(), `"msg":"thing not ready"`); n != 2 {
		t.Errorf("%d 'not ready' lines, want 2:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"thing ready","attempt":3`) {
		t.Errorf("no 'ready' line after the retries:\n%s", logs.String())
	}
}

func TestUntilReadyGivesUpWithTheContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	down := errors.New("still down")
	err := UntilReady(ctx, slog.New(slog.DiscardHandler), "thing", func(context.Context) error { return down })
	if !errors.Is(err, down) || !strings.Contains(err.Error(), "thing not ready before the startup timeout") {
		t.Fatalf("err = %v, want the last probe error with the timeout message", err)
	}
}
