package api

import (
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// heldUpload is a dataset upload whose body has sent its first chunk and
// then blocks until finish or abort (or the end of the test).
type heldUpload struct {
	pw      *io.PipeWriter
	mw      *multipart.Writer
	file    io.Writer
	started chan struct{} // the first chunk's writer is done
	done    chan struct{} // the response was read (or the request failed)
	resp    *http.Response
	body    []byte
	err     error
}

// holdUpload starts an upload of a valid dataset named name and leaves it
// open mid-file. It is released when the test ends, even on failure.
func (f *trainingFixture) holdUpload(t *testing.T, name string) *heldUpload {
	t.Helper()
	pr, pw := io.Pipe()
	h := &heldUpload{pw: pw, mw: multipart.NewWriter(pw), started: make(chan struct{}), done: make(chan struct{})}
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/api/v1/datasets", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.token)
	req.Header.Set("Content-Type", h.mw.FormDataContentType())
	go func() {
		defer close(h.done)
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			h.err = err
			return
		}
		defer resp.Body.Close()
		h.resp = resp
		h.body, h.err = io.ReadAll(resp.Body)
	}()
	// The pipe blocks each write until the server reads it: write from a
	// goroutine so a server that never reads cannot hang the test.
	go func() {
		defer close(h.started)
		if h.mw.WriteField("name", name) != nil {
			return
		}
		fw, err := h.mw.CreateFormFile("file", "held.jsonl")
		if err != nil {
			return
		}
		h.file = fw
		_, _ = io.WriteString(fw, validJSONL(6))
	}()
	t.Cleanup(func() {
		_ = pw.CloseWithError(errors.New("the test ended"))
		<-h.started
		<-h.done
	})
	return h
}

// finish sends the rest of a valid dataset and returns the response.
func (h *heldUpload) finish(t *testing.T) (*http.Response, []byte) {
	t.Helper()
	<-h.started
	if h.file == nil {
		t.Fatal("the held upload's first chunk was never sent")
	}
	if _, err := io.WriteString(h.file, validJSONL(12)[len(validJSONL(6)):]); err != nil {
		t.Fatalf("finishing a held upload: %v", err)
	}
	if err := h.mw.Close(); err != nil {
		t.Fatal(err)
	}
	_ = h.pw.Close()
	<-h.done
	if h.err != nil {
		t.Fatalf("held upload: %v", h.err)
	}
	return h.resp, h.body
}

// abort breaks the upload off mid-file, as a client that goes away.
func (h *heldUpload) abort() {
	_ = h.pw.CloseWithError(errors.New("client went away"))
	<-h.started
	<-h.done
}

// waitUploads waits until n upload slots are taken; a minute is a safety
// net, not a timing assertion.
func (f *trainingFixture) waitUploads(tb testing.TB, n int) {
	tb.Helper()
	for deadline := time.Now().Add(time.Minute); f.api.UploadsInFlight() != n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("%d uploads hold a slot, want %d", f.api.UploadsInFlight(), n)
		}
	}
}

// TestConcurrentUploadsAreCapped: with APP_MAX_CONCURRENT_UPLOADS=2 and two
// uploads held open mid-file, a third is refused with 429 rate_limited and
// Retry-After before its body is read (it never sends one); a held upload
// still completes normally, and an ended upload, finished or aborted, frees
// its slot.
func TestConcurrentUploadsAreCapped(t *testing.T) {
	f := newTrainingFixtureWith(t, false, testUploadLimit, "APP_MAX_CONCURRENT_UPLOADS", "2")
	first, second := f.holdUpload(t, "held 1"), f.holdUpload(t, "held 2")
	f.waitUploads(t, 2)

	// Over the cap, with a body that never arrives: only an answer given
	// before reading the body can come back.
	// The safety net closes the body rather than cancelling the request:
	// the client only gives up once its body writer returns.
	pr, pw := io.Pipe()
	safety := time.AfterFunc(time.Minute, func() { _ = pw.CloseWithError(errors.New("no answer within a minute")) })
	t.Cleanup(func() { safety.Stop(); _ = pw.CloseWithError(errors.New("the test ended")) })
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/api/v1/datasets", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.token)
	req.Header.Set("Content-Type", "multipart/form-data; boundary=b")
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("upload over the cap: %v (want a 429 without the body being read)", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	e := expectProblem(t, resp, b, http.StatusTooManyRequests, "this server already has 2 dataset uploads in progress")
	if e.Error.Code != "rate_limited" || resp.Header.Get("Retry-After") != uploadRetryAfter {
		t.Errorf("refused upload: code %q, Retry-After %q; want rate_limited with Retry-After %s",
			e.Error.Code, resp.Header.Get("Retry-After"), uploadRetryAfter)
	}
	if n := f.api.UploadsInFlight(); n != 2 {
		t.Errorf("after the refusal %d uploads hold a slot, want 2", n)
	}

	resp, b = first.finish(t)
	var d training.Dataset
	expect(t, resp, b, http.StatusCreated, &d)
	if d.Name != "held 1" || d.Examples != 12 {
		t.Errorf("held upload stored %q with %d examples, want \"held 1\" with 12", d.Name, d.Examples)
	}
	f.waitUploads(t, 1)
	f.upload(t, "in the freed slot", validJSONL(12))

	second.abort()
	f.waitUploads(t, 0)
}
