package logbuffer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/finetune-studio/finetune-studio/caddy-modules/internal/adapttest"
)

// TestAdapt checks testdata/*.caddyfiletest against the Caddyfile adapter.
func TestAdapt(t *testing.T) { adapttest.Run(t) }

// sink is the wrapped output: it records every batch it is given.
type sink struct {
	mu      sync.Mutex
	batches [][]byte
	closed  bool
	fail    error
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	s.batches = append(s.batches, bytes.Clone(p))
	return len(p), nil
}

func (s *sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *sink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(bytes.Join(s.batches, nil))
}

func (s *sink) writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.batches)
}

// An interval no test waits for: only a full buffer, Sync or Close flush.
const never = time.Hour

func TestLinesWaitForCloseAndKeepTheirOrder(t *testing.T) {
	out := &sink{}
	b := newBuffer(out, 1024, never)
	var want strings.Builder
	for i := range 10 {
		line := fmt.Sprintf("{\"n\":%d}\n", i)
		want.WriteString(line)
		if n, err := b.Write([]byte(line)); err != nil || n != len(line) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if got := out.writes(); got != 0 {
		t.Fatalf("%d writes reached the output before a flush; want 0 (buffered)", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.text(); got != want.String() {
		t.Fatalf("after Close the output holds %q, want %q", got, want.String())
	}
	if out.writes() != 1 {
		t.Fatalf("%d writes for 10 small lines, want 1 batch", out.writes())
	}
	if !out.closed {
		t.Fatal("Close did not close the output")
	}
	if _, err := b.Write([]byte("late\n")); !errors.Is(err, errClosed) {
		t.Fatalf("Write after Close = %v, want errClosed", err)
	}
}

func TestFullBufferFlushesWholeEntries(t *testing.T) {
	out := &sink{}
	b := newBuffer(out, 100, never)
	defer b.Close()
	line := strings.Repeat("x", 29) + "\n" // 30 bytes: 3 fit in 100
	for range 7 {
		if _, err := b.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	out.mu.Lock()
	batches := out.batches
	out.mu.Unlock()
	if len(batches) != 2 {
		t.Fatalf("7 lines of 30 bytes through a 100-byte buffer gave %d batches, want 2", len(batches))
	}
	for i, batch := range batches {
		if len(batch) != 90 || strings.Count(string(batch), "\n") != 3 {
			t.Fatalf("batch %d is %q; want 3 whole lines", i, batch)
		}
	}
}

func TestEntryLargerThanBufferIsWrittenInOrder(t *testing.T) {
	out := &sink{}
	b := newBuffer(out, 16, never)
	big := strings.Repeat("b", 40) + "\n"
	for _, s := range []string{"small1\n", big, "small2\n"} {
		if _, err := b.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.text(), "small1\n"+big+"small2\n"; got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
}

func TestIntervalFlushes(t *testing.T) {
	out := &sink{}
	b := newBuffer(out, 1<<20, 10*time.Millisecond)
	defer b.Close()
	if _, err := b.Write([]byte("tick\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for out.text() != "tick\n" {
		if time.Now().After(deadline) {
			t.Fatal("the line never reached the output without a Close")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSyncFlushes(t *testing.T) {
	out := &sink{}
	b := newBuffer(out, 1<<20, never)
	defer b.Close()
	if _, err := b.Write([]byte("fatal\n")); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if out.text() != "fatal\n" {
		t.Fatalf("after Sync the output holds %q", out.text())
	}
}

func TestConcurrentWritersLoseNothing(t *testing.T) {
	out := &sink{}
	b := newBuffer(out, 512, time.Millisecond)
	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				if _, err := fmt.Fprintf(b, "{\"w\":%d,\"i\":%d}\n", w, i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(out.text(), "\n"), "\n") {
		seen[line]++
	}
	if len(seen) != writers*lines {
		t.Fatalf("%d distinct lines, want %d", len(seen), writers*lines)
	}
	for w := range writers {
		for i := range lines {
			if n := seen[fmt.Sprintf("{\"w\":%d,\"i\":%d}", w, i)]; n != 1 {
				t.Fatalf("line w=%d i=%d seen %d times, want once", w, i, n)
			}
		}
	}
}

func TestOutputErrorIsReported(t *testing.T) {
	broken := errors.New("disk full")
	out := &sink{fail: broken}
	b := newBuffer(out, 1<<20, 5*time.Millisecond)
	defer b.Close()
	if _, err := b.Write([]byte("lost\n")); err != nil {
		t.Fatalf("the first Write only buffers; got %v", err)
	}
	// The flusher's failure has no caller; the next Write must report it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := b.Write([]byte("next\n"))
		if errors.Is(err, broken) {
			return
		}
		if err != nil {
			t.Fatalf("Write = %v, want the output's error", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the output's error was never reported")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"buffered", "needs an output"},
		{"buffered {\n}", "needs an output"},
		{"buffered {\nsize 0\noutput stdout\n}", "size must be"},
		{"buffered {\nsize lots\noutput stdout\n}", "size must be"},
		{"buffered {\nflush_interval -1s\noutput stdout\n}", "flush_interval must be"},
		{"buffered {\noutput stdout\noutput stderr\n}", "output given twice"},
		{"buffered {\noutput buffered {\noutput stdout\n}\n}", "cannot wrap another buffered"},
		{"buffered {\noutput nosuchwriter\n}", "nosuchwriter"},
		{"buffered {\nmystery 1\noutput stdout\n}", "unrecognized"},
		{"buffered extra {\noutput stdout\n}", "wrong argument count"},
	} {
		var w Writer
		err := w.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.in, err, tc.want)
		}
	}
}

// sinkOpener is a log writer module stand-in that opens one sink.
type sinkOpener struct{ s *sink }

func (o sinkOpener) String() string                      { return "sink" }
func (o sinkOpener) WriterKey() string                   { return fmt.Sprintf("sink:%p", o.s) }
func (o sinkOpener) OpenWriter() (io.WriteCloser, error) { return o.s, nil }

func TestCleanupFlushesTheSharedBufferAndKeepsItOpen(t *testing.T) {
	out := &sink{}
	w := &Writer{Size: 1 << 20, FlushInterval: caddy.Duration(never), output: sinkOpener{out}}
	wc, err := w.OpenWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wc.Write([]byte("before reload\n")); err != nil {
		t.Fatal(err)
	}
	// The instance of the next config has the same key but never opened
	// the writer (Caddy's pool hands it the open one); its Cleanup, like
	// the old one's, must find and flush the buffer.
	next := &Writer{Size: w.Size, FlushInterval: w.FlushInterval, output: w.output}
	if err := next.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if out.text() != "before reload\n" {
		t.Fatalf("after Cleanup the output holds %q", out.text())
	}
	if _, err := wc.Write([]byte("after reload\n")); err != nil {
		t.Fatalf("the buffer must stay open after Cleanup: %v", err)
	}
	if err := wc.Close(); err != nil {
		t.Fatal(err)
	}
	if out.text() != "before reload\nafter reload\n" {
		t.Fatalf("after Close the output holds %q", out.text())
	}
	open.Lock()
	_, still := open.m[w.WriterKey()]
	open.Unlock()
	if still {
		t.Fatal("a closed buffer is still registered")
	}
	if err := (&Writer{}).Cleanup(); err != nil {
		t.Fatalf("Cleanup of an unprovisioned writer: %v", err)
	}
}

// flaky is an output that fails, or takes only part of a write, when told.
type flaky struct {
	sink
	failNext  error // the next write fails with this, taking nothing
	shortNext int   // the next write takes this many bytes, then fails
}

var errFlaky = errors.New("output unavailable")

func (f *flaky) Write(p []byte) (int, error) {
	f.mu.Lock()
	if err := f.failNext; err != nil {
		f.failNext = nil
		f.mu.Unlock()
		return 0, err
	}
	if n := f.shortNext; n > 0 && n < len(p) {
		f.shortNext = 0
		f.batches = append(f.batches, bytes.Clone(p[:n]))
		f.mu.Unlock()
		return n, errFlaky
	}
	f.mu.Unlock()
	return f.sink.Write(p)
}

// The interval flush failed with nobody to tell; the next Write reports
// it, and must neither drop its own entry nor the failed batch.
func TestEarlierFlushErrorKeepsTheEntry(t *testing.T) {
	out := &flaky{failNext: errFlaky}
	b := newBuffer(out, 1024, never)
	if _, err := b.Write([]byte("first\n")); err != nil {
		t.Fatal(err)
	}
	b.tick() // the interval flush, failing
	n, err := b.Write([]byte("second\n"))
	if !errors.Is(err, errFlaky) {
		t.Fatalf("Write after a failed flush = %v, want the flush's error reported", err)
	}
	if n != len("second\n") {
		t.Fatalf("Write reported %d bytes taken, want %d (the entry is kept)", n, len("second\n"))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.text(), "first\nsecond\n"; got != want {
		t.Fatalf("output %q, want %q: nothing lost", got, want)
	}
}

// A short write must not drop the rest of the batch nor leave the line it
// tore half-written: the next flush starts with the rest of that line.
func TestShortWriteCompletesTheTornLine(t *testing.T) {
	out := &flaky{shortNext: 10}
	b := newBuffer(out, 1024, never)
	lines := "{\"n\":1,\"pad\":\"xxxx\"}\n{\"n\":2}\n{\"n\":3}\n"
	for _, l := range strings.SplitAfter(lines, "\n") {
		if _, err := b.Write([]byte(l)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Sync(); !errors.Is(err, errFlaky) {
		t.Fatalf("Sync over a short write = %v, want its error", err)
	}
	if _, err := b.Write([]byte("{\"n\":4}\n")); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.text(), lines+"{\"n\":4}\n"; got != want {
		t.Fatalf("output %q, want %q: whole lines, in order, none lost", got, want)
	}
	b.Close()
}

// With the output failing and the buffer full, memory stays bounded: the
// new entry is refused (and reported), the buffered ones are kept.
func TestFailingOutputBoundsMemory(t *testing.T) {
	out := &sink{fail: errFlaky}
	b := newBuffer(out, 64, never)
	line := []byte(strings.Repeat("x", 29) + "\n")
	for i := range 2 {
		if _, err := b.Write(line); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	n, err := b.Write(line)
	if n != 0 || !errors.Is(err, errFlaky) {
		t.Fatalf("third line into a full buffer over a failing output: %d, %v; want 0 and the output's error", n, err)
	}
	if len(b.buf) > b.size {
		t.Fatalf("buffer holds %d bytes, over its size %d", len(b.buf), b.size)
	}
	out.mu.Lock()
	out.fail = nil
	out.mu.Unlock()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.text(), strings.Repeat(string(line), 2); got != want {
		t.Fatalf("output %q, want the two buffered lines", got)
	}
}

// bufferGoroutines counts goroutines running this package's buffer code.
func bufferGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "logbuffer.(*buffer)") {
			n++
		}
	}
	return n
}

// A reload that changes the writer key (here the interval) leaves the old
// buffer open forever (Caddy never closes log writers); once its config is
// cleaned up, nothing of it may keep running.
func TestChangedWriterKeyLeavesNothingRunning(t *testing.T) {
	out := &sink{}
	old := &Writer{Size: 1 << 10, FlushInterval: caddy.Duration(10 * time.Millisecond), output: sinkOpener{out}}
	wc, err := old.OpenWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wc.Write([]byte("before reload\n")); err != nil {
		t.Fatal(err)
	}
	// The new config's writer has another key: Caddy opens a new one.
	next := &Writer{Size: old.Size, FlushInterval: caddy.Duration(20 * time.Millisecond), output: old.output}
	nwc, err := next.OpenWriter()
	if err != nil {
		t.Fatal(err)
	}
	defer nwc.Close()
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if out.text() != "before reload\n" {
		t.Fatalf("after Cleanup the output holds %q", out.text())
	}
	deadline := time.Now().Add(10 * time.Second)
	for bufferGoroutines() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of the replaced buffer still running after its Cleanup", bufferGoroutines())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
