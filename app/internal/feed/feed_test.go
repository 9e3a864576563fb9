package feed

import (
	"errors"
	"testing"
)

func woken(s *Sub) bool {
	select {
	case <-s.Wake():
		return true
	default:
		return false
	}
}

func TestNotifyWakesOnlyTheJobsStreamsAndCoalesces(t *testing.T) {
	h := New(Limits{})
	a1, _ := h.Subscribe("job-a", "t1")
	a2, _ := h.Subscribe("job-a", "t2")
	b, _ := h.Subscribe("job-b", "t1")
	defer a1.Close()
	defer a2.Close()
	defer b.Close()

	h.Notify("job-a")
	h.Notify("job-a") // merged with the first: one pending wake-up
	h.Notify("job-unknown")
	if !woken(a1) || !woken(a2) {
		t.Fatal("a stream of the notified job was not woken")
	}
	if woken(a1) {
		t.Error("two notifications left two wake-ups; want them merged into one")
	}
	if woken(b) {
		t.Error("a stream of another job was woken")
	}

	h.WakeAll()
	for name, s := range map[string]*Sub{"a1": a1, "a2": a2, "b": b} {
		if !woken(s) {
			t.Errorf("WakeAll did not wake %s", name)
		}
	}
}

func TestLimits(t *testing.T) {
	h := New(Limits{Total: 3, PerToken: 2})
	s1, err1 := h.Subscribe("j", "t1")
	_, err2 := h.Subscribe("j", "t1")
	if err1 != nil || err2 != nil {
		t.Fatalf("within the limits: %v, %v", err1, err2)
	}
	if _, err := h.Subscribe("j2", "t1"); !errors.Is(err, ErrTooManyTokenStreams) {
		t.Fatalf("third stream of t1: got %v, want ErrTooManyTokenStreams", err)
	}
	if _, err := h.Subscribe("j", "t2"); err != nil {
		t.Fatalf("t2's first stream: %v", err)
	}
	if _, err := h.Subscribe("j", "t3"); !errors.Is(err, ErrTooManyStreams) {
		t.Fatalf("fourth stream in all: got %v, want ErrTooManyStreams", err)
	}
	s1.Close()
	s1.Close() // a second Close frees nothing more
	if got := h.Streams(); got != 2 {
		t.Fatalf("after closing one of 3: %d streams, want 2", got)
	}
	if _, err := h.Subscribe("j", "t1"); err != nil {
		t.Fatalf("t1 after closing one: %v", err)
	}
	if _, err := h.Subscribe("j", "t3"); !errors.Is(err, ErrTooManyStreams) {
		t.Fatalf("full again: got %v, want ErrTooManyStreams", err)
	}
}

func TestClosedStreamIsNoLongerWoken(t *testing.T) {
	h := New(Limits{})
	s, _ := h.Subscribe("j", "t")
	s.Close()
	h.Notify("j")
	h.WakeAll()
	if woken(s) {
		t.Fatal("a closed stream was woken")
	}
	if len(h.byJob) != 0 || len(h.perToken) != 0 {
		t.Fatalf("closing the last stream left state behind: %v %v", h.byJob, h.perToken)
	}
}
