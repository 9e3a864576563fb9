package training

import (
	"errors"
	"testing"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

func TestCursorRoundTrip(t *testing.T) {
	c := Cursor{Position: 9223372036854775807}
	got, ok, err := ParseCursor(c.Encode())
	if err != nil || !ok {
		t.Fatalf("ParseCursor(Encode()) = %v, %v", ok, err)
	}
	if got != c {
		t.Errorf("got %+v, want %+v", got, c)
	}
	if _, ok, err := ParseCursor(""); ok || err != nil {
		t.Errorf("empty cursor: ok=%v err=%v, want start of list", ok, err)
	}
}

func TestParseCursorRejects(t *testing.T) {
	for _, s := range []string{"!!!", "bm90IGEgY3Vyc29y", Cursor{Position: -1}.Encode(),
		// An older release's (created_at, id) cursor: refused, not misread.
		"MTc2NDY1MTIwMDAwMDAwMC4wMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDA",
		"cA", "cDl4"} {
		_, _, err := ParseCursor(s)
		var pe *problem.Error
		if !errors.As(err, &pe) || pe.Status() != 400 {
			t.Errorf("ParseCursor(%q) = %v, want a 400 problem", s, err)
		}
	}
}

func TestParseLimit(t *testing.T) {
	for in, want := range map[string]int{"": DefaultPageLimit, "1": 1, "100": 100} {
		if got, err := ParseLimit(in); err != nil || got != want {
			t.Errorf("ParseLimit(%q) = %d, %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "101", "-1", "abc", "1.5", "99999999999999999999"} {
		if _, err := ParseLimit(in); err == nil {
			t.Errorf("ParseLimit(%q) accepted, want an error", in)
		}
	}
}

func TestValidID(t *testing.T) {
	for range 100 {
		if id := NewID(); !ValidID(id) {
			t.Fatalf("NewID() = %q is not a ValidID", id)
		}
	}
	for _, s := range []string{"", "1", "not-a-uuid", "00000000-0000-0000-0000-00000000000g", "000000000000-0000-0000-0000-00000000", "00000000-0000-0000-0000-0000000000000"} {
		if ValidID(s) {
			t.Errorf("ValidID(%q) = true", s)
		}
	}
}
