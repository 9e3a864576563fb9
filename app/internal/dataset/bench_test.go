package dataset

import (
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The benchmarks validate generated chat datasets of growing size and report
// throughput (MB/s), the peak heap sampled during the run, garbage included
// (peak-heap-MB), the heap still live after a GC at the end of the input
// (live-heap-MB), and the process's peak RSS (maxrss-MB, meaningful when each size runs in
// its own process, as deploy/scripts/bench-dataset.sh does). The live heap
// grows only by the 8-byte duplicate hash per example.
//
//	go test -run '^$' -bench Validate -benchtime 1x -count 3 ./app/internal/dataset/
func BenchmarkValidate(b *testing.B) {
	for _, bc := range []struct {
		name  string
		size  int64
		array bool
	}{
		{"jsonl_chat_64MiB", 64 << 20, false},
		{"jsonl_chat_256MiB", 256 << 20, false},
		{"array_chat_64MiB", 64 << 20, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			gen := newChatGenerator(bc.array)
			b.SetBytes(bc.size)
			b.ReportAllocs()
			var peak peakHeap
			peak.start()
			b.ResetTimer()
			var r *Report
			var live uint64
			for range b.N {
				r, live = gen.validate(b, bc.size)
			}
			b.StopTimer()
			b.ReportMetric(float64(peak.stop())/1e6, "peak-heap-MB")
			b.ReportMetric(float64(live)/1e6, "live-heap-MB")
			b.ReportMetric(float64(r.Stats.Examples), "examples")
			b.ReportMetric(maxRSSMB(), "maxrss-MB")
			if !r.Valid || r.Stats.Examples == 0 || r.Stats.DuplicateRatio != 0 {
				b.Fatalf("generated dataset: valid=%v examples=%d duplicates=%v errors=%+v",
					r.Valid, r.Stats.Examples, r.Stats.DuplicateRatio, r.Errors)
			}
		})
	}
}

// chatGenerator streams realistic chat records without holding the file: a
// block of ~1 MiB of records is built once, and each copy gets fresh
// fixed-width ids rewritten in place, so every record is distinct.
type chatGenerator struct {
	block   []byte
	idAt    []int // offsets of the 12-digit ids in block
	array   bool
	counter int64
}

const idWidth = 12

func newChatGenerator(array bool) *chatGenerator {
	g := &chatGenerator{array: array}
	question := "I am fine-tuning a small model on support tickets. Ticket %s says the export button does nothing on Firefox 128 " +
		"while Chrome works; the console shows a blocked pop-up. What should I answer, and which logs should I ask for?"
	answer := strings.Repeat("Thanks for the detailed report. Firefox blocks pop-ups opened after an await, so the export window never appears. "+
		"Please allow pop-ups for the site, or use the download link under Settings → Exports. If it still fails, send the browser console "+
		"output and the time of the attempt so we can match it to the server logs. ", 2)
	sep := "\n"
	if array {
		sep = ",\n"
	}
	for len(g.block) < 1<<20 {
		id := strings.Repeat("0", idWidth)
		rec := fmt.Sprintf(`{"messages":[{"role":"system","content":"You are a courteous support agent for Acme Cloud."},`+
			`{"role":"user","content":%q},{"role":"assistant","content":%q}],"source":"tickets-2025"}`, fmt.Sprintf(question, id), answer)
		g.idAt = append(g.idAt, len(g.block)+strings.Index(rec, id))
		g.block = append(g.block, rec...)
		g.block = append(g.block, sep...)
	}
	return g
}

// validate writes size bytes of records (whole records, so slightly more)
// through a validator in 32 KiB writes, as io.Copy would. It also returns the
// live heap just before Finish, measured after a GC outside the timer: what
// the validator really retains once the garbage of parsing is gone.
func (g *chatGenerator) validate(b *testing.B, size int64) (*Report, uint64) {
	v := NewValidator(Options{})
	written := int64(0)
	if g.array {
		v.Write([]byte("[\n"))
	}
	for written < size {
		for _, at := range g.idAt {
			g.counter++
			s := strconv.FormatInt(g.counter, 10)
			copy(g.block[at:at+idWidth], strings.Repeat("0", idWidth-len(s))+s)
		}
		block := g.block
		if g.array && written+int64(len(block)) >= size {
			block = block[:len(block)-2] // no comma after the last record
		}
		for p := block; len(p) > 0; {
			n := min(len(p), 32<<10)
			v.Write(p[:n])
			p = p[n:]
		}
		written += int64(len(block))
	}
	if g.array {
		v.Write([]byte("\n]\n"))
	}
	b.StopTimer()
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	b.StartTimer()
	return v.Finish(), s[0].Value.Uint64()
}

// peakHeap samples the live heap every few milliseconds. runtime/metrics
// reads it without stopping the world, so sampling barely disturbs the run.
type peakHeap struct {
	done chan struct{}
	wg   sync.WaitGroup
	max  uint64
}

func (p *peakHeap) start() {
	runtime.GC()
	p.done = make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			p.max = max(p.max, s[0].Value.Uint64())
			select {
			case <-p.done:
				return
			case <-t.C:
			}
		}
	}()
}

func (p *peakHeap) stop() uint64 {
	close(p.done)
	p.wg.Wait()
	return p.max
}

// maxRSSMB reads the process's peak resident set size (Linux VmHWM).
func maxRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}
