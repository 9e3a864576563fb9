// Package sse writes Server-Sent Events frames as the WHATWG HTML standard
// defines them (section 9.2, "Server-sent events").
//
// The framing is the whole point of the package: a data payload that
// contains line breaks must become several "data:" lines, or a client sees a
// truncated event and then garbage fields; an id or event name containing a
// line break would inject fields of its own. Write makes both impossible.
package sse

import (
	"errors"
	"io"
	"strings"
)

// Event is one server-sent event.
type Event struct {
	// ID becomes the client's last event id, sent back in Last-Event-ID on
	// reconnection. Must not contain line breaks or NUL.
	ID string
	// Name is the event type ("message" when empty). No line breaks.
	Name string
	// Data is the payload; any of "\r\n", "\r" or "\n" splits it into lines,
	// which the client joins back with "\n".
	Data string
}

// ErrInvalidField is returned for an id or event name that cannot be framed.
var ErrInvalidField = errors.New("sse: id or event name contains a line break or NUL")

// Write writes ev as one complete frame. It writes nothing if ev is invalid.
func Write(w io.Writer, ev Event) error {
	if strings.ContainsAny(ev.ID, "\r\n\x00") || strings.ContainsAny(ev.Name, "\r\n") {
		return ErrInvalidField
	}
	var b strings.Builder
	if ev.ID != "" {
		field(&b, "id: ", ev.ID)
	}
	if ev.Name != "" {
		field(&b, "event: ", ev.Name)
	}
	for _, line := range splitLines(ev.Data) {
		field(&b, "data: ", line)
	}
	return end(w, &b)
}

// Comment writes a comment frame, which clients ignore. A periodic comment
// is the heartbeat that keeps proxies from closing an idle stream and lets
// the server notice a client that went away.
func Comment(w io.Writer, text string) error {
	var b strings.Builder
	for _, line := range splitLines(text) {
		field(&b, ": ", line)
	}
	return end(w, &b)
}

// field adds one "<prefix><value>" line to a frame.
func field(b *strings.Builder, prefix, value string) {
	b.WriteString(prefix)
	b.WriteString(value)
	b.WriteByte('\n')
}

// end closes the frame with its blank line and writes it in one call, so a
// frame is never split between writes.
func end(w io.Writer, b *strings.Builder) error {
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

// splitLines splits on every line terminator the standard recognises. An
// empty string is one empty line, so an event with empty data still has a
// "data:" field and is dispatched.
func splitLines(s string) []string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.Split(s, "\n")
}
