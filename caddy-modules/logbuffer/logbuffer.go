// Package logbuffer is a Caddy log writer that buffers another log writer:
// log lines are collected in memory and written in batches, when the buffer
// is full or at a fixed interval, instead of with one write(2) per line.
//
// Caddy's own writers (stdout, stderr, file, net) write every log entry as
// it comes, so a busy access log costs a system call per request, and in a
// container each of those wakes the runtime's log reader on the other end
// of the pipe. nginx has the same knob (`access_log ... buffer=32k
// flush=1s`). The price is the same as there: a line reaches the log up to
// one flush interval late, and if the process is killed without a chance
// to stop (SIGKILL, the OOM killer) the lines of the last interval are
// lost. A graceful stop or a config reload flushes everything (Cleanup).
package logbuffer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(Writer{})
}

// Defaults: a buffer that holds a few hundred access log lines, and a
// delay short enough for `tail -f` and log shippers.
const (
	defaultSize          = 64 << 10
	defaultFlushInterval = time.Second
)

// Writer buffers the log writer configured in Output.
type Writer struct {
	// The writer that receives the batches: stdout, stderr, file, net, ...
	// Required. The same shape as a log's own "writer".
	WriterRaw json.RawMessage `json:"writer,omitempty" caddy:"namespace=caddy.logging.writers inline_key=output"`

	// Buffer size in bytes; a full buffer is written at once. A single
	// entry larger than the buffer is written on its own. Default: 64 KiB.
	Size int `json:"size,omitempty"`

	// Longest time a line waits in the buffer. Default: 1s.
	FlushInterval caddy.Duration `json:"flush_interval,omitempty"`

	output caddy.WriterOpener
}

// CaddyModule returns the Caddy module information.
func (Writer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.writers.buffered",
		New: func() caddy.Module { return new(Writer) },
	}
}

// Provision loads the wrapped writer and applies the defaults.
func (w *Writer) Provision(ctx caddy.Context) error {
	if w.WriterRaw == nil {
		return errors.New("buffered log writer: output is required (for example stdout or file)")
	}
	mod, err := ctx.LoadModule(w, "WriterRaw")
	if err != nil {
		return fmt.Errorf("buffered log writer: loading output: %w", err)
	}
	w.output = mod.(caddy.WriterOpener)
	if w.Size == 0 {
		w.Size = defaultSize
	}
	if w.FlushInterval == 0 {
		w.FlushInterval = caddy.Duration(defaultFlushInterval)
	}
	return nil
}

// Validate refuses sizes and intervals that cannot work.
func (w *Writer) Validate() error {
	if w.Size < 0 {
		return fmt.Errorf("buffered log writer: size %d is negative", w.Size)
	}
	if w.FlushInterval < 0 {
		return fmt.Errorf("buffered log writer: flush_interval %s is negative", time.Duration(w.FlushInterval))
	}
	return nil
}

// String is how the writer appears in Caddy's own logs.
func (w *Writer) String() string { return "buffered " + w.output.String() }

// WriterKey identifies the writer across config reloads: an unchanged
// configuration keeps its open writer (and buffer) through a reload.
func (w *Writer) WriterKey() string {
	return fmt.Sprintf("buffered:%d:%d:%s", w.Size, w.FlushInterval, w.output.WriterKey())
}

// OpenWriter opens the wrapped writer and returns the buffer over it.
func (w *Writer) OpenWriter() (io.WriteCloser, error) {
	out, err := w.output.OpenWriter()
	if err != nil {
		return nil, err
	}
	b := newBuffer(out, w.Size, time.Duration(w.FlushInterval))
	b.key = w.WriterKey()
	open.Lock()
	open.m[b.key] = b
	open.Unlock()
	return b, nil
}

// Cleanup writes out the buffer when the config that loaded this writer
// is unloaded: on a reload, and on a graceful stop, after the servers have
// finished their last requests.
//
// Closing the writer is not enough: Caddy 2.11.9 never closes log writers
// when a config is unloaded (the cleanup that would, registered by
// openLogs on a copy of the config's context, is never run), so without
// this a graceful stop would lose everything still buffered. The buffer is
// only flushed, not closed: Caddy keeps the open writer in its pool and
// hands it to any later config with the same writer key. Nor does it keep
// anything running: with no goroutine of its own (see buffer), a buffer
// whose key the new config no longer uses costs nothing once flushed.
func (w *Writer) Cleanup() error {
	if w.output == nil {
		return nil // never provisioned
	}
	open.Lock()
	b := open.m[w.WriterKey()]
	open.Unlock()
	if b == nil {
		return nil
	}
	return b.release()
}

// open holds the open buffers by writer key. Caddy shares one open writer
// between every config (old and new, across reloads) with the same key,
// so the buffer a Writer must flush may have been opened by another
// instance; this is how Cleanup finds it. Process-wide like Caddy's own
// writer pool.
var open = struct {
	sync.Mutex
	m map[string]*buffer
}{m: make(map[string]*buffer)}

// buffer is the open writer: safe for concurrent use, as Caddy requires.
//
// It owns no goroutine: the interval flush is a timer armed when the
// first line of a batch arrives and not re-armed once the buffer is
// empty. A buffer nobody writes to any more (its writer key changed on a
// reload, and Caddy never closes it) therefore leaves nothing running.
//
// Failures keep lines rather than drop them, within the buffer's size:
// what a failed or short write did not take stays buffered, in order, and
// goes out first on the next flush, so a line torn by a short write is
// completed rather than left torn. An entry is refused only when it does
// not fit beside what the failing output has not taken (memory stays
// bounded by size, or by one entry larger than it).
//
// zapcore.BufferedWriteSyncer does the same job but is built on
// bufio.Writer, whose first write error is sticky: every later write fails
// with it, so one transient failure (a log collector restarting behind a
// `net` output, a full disk freed again) would end the access log for
// good. It also runs a goroutine that only Stop ends, which Caddy never
// calls. docs/benchmarks.md measures both.
type buffer struct {
	out      io.WriteCloser
	size     int
	interval time.Duration
	key      string // in open

	mu     sync.Mutex
	buf    []byte
	err    error // the timer's last failed flush, reported by the next Write or Sync
	closed bool
	timer  *time.Timer // armed while buf holds lines
}

func newBuffer(out io.WriteCloser, size int, interval time.Duration) *buffer {
	return &buffer{out: out, size: size, interval: interval}
}

// errClosed is returned for writes after Close.
var errClosed = errors.New("buffered log writer is closed")

// Write adds one log entry. Entries are never split: a batch written to
// the output is always a run of whole entries (and, after a short write,
// the rest of the entry it tore).
//
// An earlier failed flush is reported here, with the entry still taken
// (n == len(p)): zap prints the error and the entry is not lost. The entry
// is refused (n == 0) only when the output is failing and the buffer has
// no room left for it.
func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errClosed
	}
	err := b.takeErr()
	if len(b.buf) > 0 && len(b.buf)+len(p) > b.size {
		if flushErr := b.flushLocked(); flushErr != nil {
			err = errors.Join(err, flushErr)
			if len(b.buf)+len(p) > b.size {
				return 0, err
			}
		}
	}
	if b.buf == nil {
		b.buf = make([]byte, 0, b.size)
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.size {
		// An entry larger than the buffer goes out on its own at once.
		err = errors.Join(err, b.flushLocked())
	}
	b.scheduleLocked()
	return len(p), err
}

// Sync writes out what is buffered; zap calls it before a fatal exit.
func (b *buffer) Sync() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.flushLocked()
	return errors.Join(b.takeErr(), err)
}

// release writes out what is buffered and, if that emptied the buffer,
// frees its memory until the next line (Cleanup: the next config may
// never write here again).
func (b *buffer) release() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := errors.Join(b.takeErr(), b.flushLocked())
	if len(b.buf) == 0 {
		b.buf = nil
	}
	return err
}

// Close writes out what is buffered and closes the output.
func (b *buffer) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	err := errors.Join(b.takeErr(), b.flushLocked())
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	b.mu.Unlock()

	open.Lock()
	if open.m[b.key] == b {
		delete(open.m, b.key)
	}
	open.Unlock()
	return errors.Join(err, b.out.Close())
}

// tick is the interval flush.
func (b *buffer) tick() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.timer = nil
	if b.closed {
		return
	}
	if err := b.flushLocked(); err != nil {
		// Nobody is waiting on this write; the next Write reports it.
		b.err = err
	}
}

// flushLocked writes the buffer out. What the output did not take stays
// at the front of the buffer for the next flush.
func (b *buffer) flushLocked() error {
	var err error
	if len(b.buf) > 0 {
		var n int
		n, err = b.out.Write(b.buf)
		if err == nil && n < len(b.buf) {
			err = io.ErrShortWrite // a writer breaking io.Writer's contract
		}
		n = min(max(n, 0), len(b.buf))
		b.buf = b.buf[:copy(b.buf, b.buf[n:])]
	}
	b.scheduleLocked()
	return err
}

// scheduleLocked arms the interval flush while anything is buffered and
// stops it once nothing is.
func (b *buffer) scheduleLocked() {
	switch {
	case len(b.buf) > 0 && b.timer == nil && !b.closed:
		b.timer = time.AfterFunc(b.interval, b.tick)
	case len(b.buf) == 0 && b.timer != nil:
		b.timer.Stop()
		b.timer = nil
	}
}

func (b *buffer) takeErr() error {
	err := b.err
	b.err = nil
	return err
}

// Interface guards
var (
	_ caddy.Provisioner  = (*Writer)(nil)
	_ caddy.Validator    = (*Writer)(nil)
	_ caddy.CleanerUpper = (*Writer)(nil)
	_ caddy.WriterOpener = (*Writer)(nil)
)
