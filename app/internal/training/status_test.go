package training

import (
	"slices"
	"testing"
)

func TestCanTransition(t *testing.T) {
	allowed := map[[2]Status]bool{
		{StatusQueued, StatusUploading}:     true,
		{StatusUploading, StatusSubmitted}:  true,
		{StatusSubmitted, StatusRunning}:    true,
		{StatusSubmitted, StatusCollecting}: true,
		{StatusRunning, StatusCollecting}:   true,
		{StatusCollecting, StatusSucceeded}: true,
		{StatusQueued, StatusFailed}:        true,
		{StatusUploading, StatusFailed}:     true,
		{StatusSubmitted, StatusFailed}:     true,
		{StatusRunning, StatusFailed}:       true,
		{StatusCollecting, StatusFailed}:    true,
		{StatusQueued, StatusCancelled}:     true,
		{StatusUploading, StatusCancelled}:  true,
		{StatusSubmitted, StatusCancelled}:  true,
		{StatusRunning, StatusCancelled}:    true,
		{StatusCollecting, StatusCancelled}: true,
	}
	// Every pair is checked, so a transition added by mistake fails too.
	for _, from := range Statuses() {
		for _, to := range Statuses() {
			t.Run(string(from)+"->"+string(to), func(t *testing.T) {
				got := CanTransition(from, to)
				if want := allowed[[2]Status{from, to}]; got != want {
					t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
				}
			})
		}
	}
}

func TestTerminalStatusesNeverChange(t *testing.T) {
	for _, from := range []Status{StatusSucceeded, StatusFailed, StatusCancelled} {
		if !from.Terminal() {
			t.Errorf("%s.Terminal() = false, want true", from)
		}
		for _, to := range Statuses() {
			if CanTransition(from, to) {
				t.Errorf("CanTransition(%s, %s) = true, want false", from, to)
			}
		}
	}
	for _, s := range UnfinishedStatuses() {
		if s.Terminal() {
			t.Errorf("%s.Terminal() = true, want false", s)
		}
	}
	want := []Status{StatusQueued, StatusUploading, StatusSubmitted, StatusRunning, StatusCollecting}
	if got := UnfinishedStatuses(); !slices.Equal(got, want) {
		t.Errorf("UnfinishedStatuses() = %v, want %v", got, want)
	}
}

func TestParseStatus(t *testing.T) {
	for _, s := range Statuses() {
		if got, ok := ParseStatus(string(s)); !ok || got != s {
			t.Errorf("ParseStatus(%q) = %q, %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "QUEUED", "done", "queued "} {
		if _, ok := ParseStatus(s); ok {
			t.Errorf("ParseStatus(%q) ok, want rejected", s)
		}
	}
}
