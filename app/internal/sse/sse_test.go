package sse_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/finetune-studio/finetune-studio/app/internal/sse"
	"github.com/finetune-studio/finetune-studio/app/internal/sse/ssetest"
)

func TestWriteFraming(t *testing.T) {
	tests := []struct {
		name string
		ev   sse.Event
		want string
	}{
		{"single line", sse.Event{ID: "1", Data: "hello"}, "id: 1\ndata: hello\n\n"},
		{"named", sse.Event{ID: "7", Name: "status", Data: "x"}, "id: 7\nevent: status\ndata: x\n\n"},
		{"multi-line LF", sse.Event{ID: "2", Data: "a\nb\nc"}, "id: 2\ndata: a\ndata: b\ndata: c\n\n"},
		{"CRLF and CR", sse.Event{ID: "3", Data: "a\r\nb\rc"}, "id: 3\ndata: a\ndata: b\ndata: c\n\n"},
		{"trailing newline keeps an empty line", sse.Event{ID: "4", Data: "a\n"}, "id: 4\ndata: a\ndata: \n\n"},
		{"empty data still dispatches", sse.Event{ID: "5"}, "id: 5\ndata: \n\n"},
		{"data that looks like a field", sse.Event{ID: "6", Data: "x\nid: 99\n\nevent: evil"}, "id: 6\ndata: x\ndata: id: 99\ndata: \ndata: event: evil\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := sse.Write(&b, tt.ev); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got %q, want %q", b.String(), tt.want)
			}
		})
	}
}

func TestWriteRejectsInjection(t *testing.T) {
	for _, ev := range []sse.Event{{ID: "1\ndata: x"}, {ID: "1\r"}, {ID: "a\x00"}, {ID: "1", Name: "a\nb"}} {
		var b bytes.Buffer
		if err := sse.Write(&b, ev); !errors.Is(err, sse.ErrInvalidField) {
			t.Errorf("Write(%q) error = %v, want ErrInvalidField", ev, err)
		}
		if b.Len() != 0 {
			t.Errorf("Write(%q) wrote %q for an invalid event", ev, b.String())
		}
	}
}

func TestCommentIsIgnoredByReaders(t *testing.T) {
	var b bytes.Buffer
	if err := sse.Comment(&b, "heartbeat\nsecond line"); err != nil {
		t.Fatal(err)
	}
	if err := sse.Write(&b, sse.Event{ID: "9", Data: "after"}); err != nil {
		t.Fatal(err)
	}
	r := ssetest.NewReader(&b)
	ev, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != "9" || ev.Data != "after" {
		t.Errorf("got %+v, want the event after the comment", ev)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("after the last event: err = %v, want io.EOF", err)
	}
}

// normalize is what a client must see for data d: every line break as "\n".
func normalize(d string) string {
	return strings.ReplaceAll(strings.ReplaceAll(d, "\r\n", "\n"), "\r", "\n")
}

// FuzzFraming checks, for any id, name and data, that Write never panics,
// and that a standard-conforming reader gets back exactly one event with the
// same id, name and (line-break normalised) data, even after a heartbeat.
func FuzzFraming(f *testing.F) {
	f.Add("1", "", "hello")
	f.Add("42", "status", "a\nb\r\nc\rd")
	f.Add("", "log", "\n\n\n")
	f.Add("3", "x", "data: injected\n\nid: 7")
	f.Add("id\n", "evil\r", ":comment")
	f.Fuzz(func(t *testing.T, id, name, data string) {
		var b bytes.Buffer
		ev := sse.Event{ID: id, Name: name, Data: data}
		err := sse.Write(&b, ev)
		invalid := strings.ContainsAny(id, "\r\n\x00") || strings.ContainsAny(name, "\r\n")
		if invalid {
			if !errors.Is(err, sse.ErrInvalidField) || b.Len() != 0 {
				t.Fatalf("Write(%q) = %v with %d bytes written, want ErrInvalidField and nothing", ev, err, b.Len())
			}
			return
		}
		if err != nil {
			t.Fatalf("Write(%q): %v", ev, err)
		}
		if err := sse.Comment(&b, data); err != nil {
			t.Fatal(err)
		}
		r := ssetest.NewReader(&b)
		got, err := r.Next()
		if err != nil {
			t.Fatalf("reading back %q: %v", b.String(), err)
		}
		if got.ID != id || got.Name != name || got.Data != normalize(data) {
			t.Fatalf("round trip of %q gave %q", ev, got)
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("a second event appeared from one Write: err = %v", err)
		}
	})
}
