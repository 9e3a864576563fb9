// Package ssetest reads server-sent events as a browser's EventSource does,
// for tests of the streams the application writes with package sse.
package ssetest

import (
	"bufio"
	"io"
	"strings"

	"github.com/finetune-studio/finetune-studio/app/internal/sse"
)

// Reader parses a stream of events, as a browser's EventSource would.
type Reader struct {
	r      *bufio.Reader
	LastID string
}

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReader(r)} }

// Next returns the next dispatched event (comments and events without data
// are skipped, as the standard says). It returns io.EOF at the end of the
// stream; an unterminated last event is discarded, as a browser does.
func (r *Reader) Next() (sse.Event, error) {
	var (
		data    strings.Builder
		hasData bool
		name    string
	)
	for {
		line, err := r.readLine()
		if err != nil {
			return sse.Event{}, err
		}
		if line == "" {
			if !hasData {
				name = ""
				continue
			}
			return sse.Event{ID: r.LastID, Name: name, Data: strings.TrimSuffix(data.String(), "\n")}, nil
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
			hasData = true
		case "event":
			name = value
		case "id":
			if !strings.Contains(value, "\x00") {
				r.LastID = value
			}
		}
	}
}

// readLine reads one line ending in "\r\n", "\n" or "\r".
func (r *Reader) readLine() (string, error) {
	var b strings.Builder
	for {
		c, err := r.r.ReadByte()
		if err != nil {
			return "", err
		}
		switch c {
		case '\n':
			return b.String(), nil
		case '\r':
			if next, err := r.r.Peek(1); err == nil && next[0] == '\n' {
				_, _ = r.r.ReadByte()
			}
			return b.String(), nil
		}
		b.WriteByte(c)
	}
}
