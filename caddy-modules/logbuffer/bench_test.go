package logbuffer

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"
)

// accessLine is the size of one production access log line (~430 bytes:
// the short JSON line of docs/edge.md "Access log").
var accessLine = []byte(`{"level":"info","ts":1764650000.123456,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"203.0.113.7","client_ip":"203.0.113.7","proto":"HTTP/2.0","method":"GET","host":"studio.example.org","uri":"/api/v1/jobs?limit=20&cursor=REDACTED"},"bytes_read":0,"user_id":"","duration":0.000734,"size":1053,"status":200,"uuid":"6f1c2a9e-4b7d-4f3e-9a51-0c2d8e7b1a44","user_agent":"Mozilla/5.0 (X11; Linux x86_64)"}` + "\n")

// pipeToReader is stdout as a container has it: a pipe whose other end
// another process reads (the runtime's log driver; here cat).
func pipeToReader(b *testing.B) io.WriteCloser {
	b.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command("cat")
	cmd.Stdin, cmd.Stdout = r, devnull
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	r.Close()
	b.Cleanup(func() {
		w.Close() // idempotent with the writer's own Close
		cmd.Wait()
		devnull.Close()
	})
	return w
}

func fileOutput(b *testing.B) io.WriteCloser {
	b.Helper()
	f, err := os.Create(filepath.Join(b.TempDir(), "access.log"))
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// zapBuffered is zapcore.BufferedWriteSyncer over out.
type zapBuffered struct {
	*zapcore.BufferedWriteSyncer
	out io.Closer
}

func (z zapBuffered) Close() error { return errors.Join(z.Stop(), z.out.Close()) }

// BenchmarkAccessLog writes access log lines from parallel goroutines, as
// Caddy's request goroutines do, through
//
//	direct    one write(2) per line: Caddy's own stdout and file writers
//	buffered  this package (64 KiB, 1 s)
//	zap       zapcore.BufferedWriteSyncer (64 KiB, 1 s)
//
// into stdout as production has it (a pipe read by another process) and
// into a file. ns/op is the cost of one line, the final flush included.
func BenchmarkAccessLog(b *testing.B) {
	outputs := []struct {
		name string
		open func(*testing.B) io.WriteCloser
	}{
		{"stdout-pipe", pipeToReader},
		{"file", fileOutput},
	}
	writers := []struct {
		name string
		wrap func(io.WriteCloser) io.WriteCloser
	}{
		{"direct", func(w io.WriteCloser) io.WriteCloser { return w }},
		{"buffered", func(w io.WriteCloser) io.WriteCloser { return newBuffer(w, defaultSize, defaultFlushInterval) }},
		{"zap", func(w io.WriteCloser) io.WriteCloser {
			// struct{io.Writer} hides *os.File's Sync: Stop would fsync
			// (EINVAL on a pipe), which the other writers do not do.
			ws := zapcore.AddSync(struct{ io.Writer }{w})
			return zapBuffered{&zapcore.BufferedWriteSyncer{WS: ws, Size: defaultSize, FlushInterval: defaultFlushInterval}, w}
		}},
	}
	for _, o := range outputs {
		for _, w := range writers {
			b.Run(o.name+"/"+w.name, func(b *testing.B) {
				out := w.wrap(o.open(b))
				b.SetBytes(int64(len(accessLine)))
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := out.Write(accessLine); err != nil {
							b.Error(err)
							return
						}
					}
				})
				if err := out.Close(); err != nil && !strings.Contains(err.Error(), "file already closed") {
					b.Fatal(err)
				}
			})
		}
	}
}
