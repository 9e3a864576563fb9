package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// jsonlGenerator streams n distinct chat records without holding them.
type jsonlGenerator struct {
	n, i int
	buf  bytes.Buffer
}

func (g *jsonlGenerator) Read(p []byte) (int, error) {
	for g.buf.Len() < len(p) && g.i < g.n {
		fmt.Fprintf(&g.buf, `{"messages":[{"role":"user","content":"question number %d about the product, with enough words to make a realistic record of a support conversation"},{"role":"assistant","content":"answer number %d: here is a detailed explanation that goes on for a while, as assistant answers in fine-tuning data tend to do %d"}]}`+"\n", g.i, g.i, g.i)
		g.i++
	}
	if g.buf.Len() == 0 {
		return 0, io.EOF
	}
	return g.buf.Read(p)
}

// uploadMeasuringHeap streams a generated dataset of n records through the
// HTTP API and returns its size and the peak heap growth while it ran.
func uploadMeasuringHeap(t *testing.T, f *trainingFixture, records int) (size int64, growth int64) {
	t.Helper()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		_ = mw.WriteField("name", "big")
		w, err := mw.CreateFormFile("file", "big.jsonl")
		if err == nil {
			_, err = io.Copy(w, &jsonlGenerator{n: records})
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak uint64
	var wg sync.WaitGroup
	ctx, stop := context.WithCancel(context.Background())
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	resp, b := f.request(t, http.MethodPost, "/api/v1/datasets", pr, "Content-Type", mw.FormDataContentType())
	stop()
	wg.Wait()
	var d training.Dataset
	expect(t, resp, b, http.StatusCreated, &d)
	if d.Examples != records {
		t.Fatalf("uploaded %d examples, want %d", d.Examples, records)
	}
	growth = int64(peak) - int64(base.HeapAlloc)
	t.Logf("uploaded %d MiB: heap before %d MiB, peak %d MiB (+%d MiB)", d.SizeBytes>>20, base.HeapAlloc>>20, peak>>20, growth>>20)
	return d.SizeBytes, growth
}

// TestDatasetUploadMemoryIsFlat uploads about 9 MiB and then about 74 MiB
// through the HTTP API, sampling the heap: the file streams to object
// storage while it is validated, so the heap holds the storage client's one
// multipart part (16 MiB) and small buffers whatever the file's size.
func TestDatasetUploadMemoryIsFlat(t *testing.T) {
	f := newTrainingFixtureWith(t, false, 256<<20)
	smallSize, small := uploadMeasuringHeap(t, f, 30_000)
	bigSize, big := uploadMeasuringHeap(t, f, 240_000)
	// 8x the file: allow the validator's 8 bytes per example for duplicate
	// detection (under 2 MiB here) plus generous GC timing noise; a buffered
	// upload would add the 65 MiB difference itself.
	if big-small > 32<<20 {
		t.Errorf("heap growth rose from %d MiB (%d MiB file) to %d MiB (%d MiB file): memory grows with the file",
			small>>20, smallSize>>20, big>>20, bigSize>>20)
	}
	if big > 64<<20 {
		t.Errorf("heap grew by %d MiB during a %d MiB upload", big>>20, bigSize>>20)
	}
}
