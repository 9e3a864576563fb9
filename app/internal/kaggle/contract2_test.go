package kaggle_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle/kaggletest"
)

// TestLookupsTolerateBriefInvisibility: right after a create or a first
// push, Kaggle can answer 404 or 403 for a while. Lookups wait it out
// (bounded), so a poll after a push does not fail the job while its kernel
// runs, and a create-or-reuse check does not act on the first answer.
func TestLookupsTolerateBriefInvisibility(t *testing.T) {
	for _, missing := range []int{http.StatusNotFound, http.StatusForbidden} {
		t.Run(http.StatusText(missing), func(t *testing.T) {
			srv := kaggletest.NewServerWith(t, kaggletest.Options{MissingStatus: missing, InvisibleLookups: 2, DatasetPendingPolls: -1})
			c, sl := newClient(t, srv, nil)
			ctx := ctxT(t)
			owner := srv.Username()
			data := []byte(`{"text":"a"}` + "\n")
			token, err := c.UploadBlob(ctx, "d.jsonl", int64(len(data)), bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.CreateDataset(ctx, kaggle.NewDataset{Owner: owner, Slug: "fresh-data", Title: "Fresh data set",
				Files: []kaggle.UploadedFile{{Token: token, Name: "d.jsonl"}}}); err != nil {
				t.Fatal(err)
			}
			if st, err := c.DatasetStatus(ctx, owner, "fresh-data"); err != nil || st != kaggle.DatasetReady {
				t.Fatalf("dataset status right after create: %q %v, want ready after the brief invisibility", st, err)
			}
			if _, err := c.PushKernel(ctx, kaggle.KernelPush{Owner: owner, Slug: "fresh-kernel", Text: notebookText,
				DatasetSources: []string{owner + "/fresh-data"}}); err != nil {
				t.Fatal(err)
			}
			st, err := c.KernelStatus(ctx, owner, "fresh-kernel")
			if err != nil || st.Status != kaggle.KernelQueued {
				t.Fatalf("kernel status right after push: %+v %v, want queued", st, err)
			}
			if n := srv.Calls("/kernels/status"); n != 3 {
				t.Errorf("kernel status calls: got %d, want 3 (two unseen, one seen)", n)
			}
			if len(sl.Delays()) != 4 {
				t.Errorf("waits: got %v, want 4 (two per lookup)", sl.Delays())
			}
		})
	}
}

// TestLookupGivesUpClearly: a kernel that never shows ends in ErrNotFound
// after MaxAttempts, with a message saying so, even when Kaggle says 403.
func TestLookupGivesUpClearly(t *testing.T) {
	srv := kaggletest.NewServerWith(t, kaggletest.Options{MissingStatus: http.StatusForbidden})
	c, _ := newClient(t, srv, nil)
	_, err := c.KernelStatus(ctxT(t), srv.Username(), "never-pushed")
	if !errors.Is(err, kaggle.ErrNotFound) || errors.Is(err, kaggle.ErrUnauthorized) || errors.Is(err, kaggle.ErrForbidden) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "still not visible after 4 tries") || !kaggle.Permanent(err) {
		t.Errorf("got %q (permanent %v), want a permanent 'still not visible after 4 tries'", err, kaggle.Permanent(err))
	}
	if n := srv.Calls("/kernels/status"); n != 4 {
		t.Errorf("calls: got %d, want MaxAttempts 4", n)
	}
	if msg, _ := kaggle.UserMessage(err); !strings.Contains(msg, "(HTTP 403): still not visible after 4 tries (Kaggle said: Permission denied)") {
		t.Errorf("user message %q does not say the kernel stayed invisible", msg)
	}
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// oneShot is a reader that cannot seek, like a stream from object storage.
type oneShot struct{ r io.Reader }

func (o *oneShot) Read(p []byte) (int, error) { return o.r.Read(p) }

// TestResumableUpload speaks the GCS resumable protocol: chunks with
// Content-Range, 308 with Range, resume after a dropped connection.
func TestResumableUpload(t *testing.T) {
	const chunk = 256 << 10
	data := bytes.Repeat([]byte("0123456789abcdef"), (4*chunk+1000)/16) // 4 chunks and a bit
	for _, tc := range []struct {
		name     string
		setup    func(*kaggletest.Server)
		minPuts  int
		wantWait bool
	}{
		{name: "chunked", minPuts: 5},
		{name: "dropped connections resume from the acknowledged byte", minPuts: 7, wantWait: true,
			setup: func(s *kaggletest.Server) { s.DropUploads(100_000, 2) }},
		{name: "partial 308 acknowledgements are resent", minPuts: 9,
			setup: func(s *kaggletest.Server) { s.KeepAtMost(150_000) }},
		{name: "server errors query the session and resume", minPuts: 6, wantWait: true,
			setup: func(s *kaggletest.Server) {
				s.Inject(kaggletest.Fault{Path: "/_emulator/upload/", Status: 503, AfterHandling: true, Times: 1})
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := kaggletest.NewServer(t)
			if tc.setup != nil {
				tc.setup(srv)
			}
			c, sl := newClient(t, srv, func(c *kaggle.Config) { c.UploadChunkSize = chunk })
			token, err := c.UploadBlob(ctxT(t), "train.jsonl", int64(len(data)), &oneShot{bytes.NewReader(data)})
			if err != nil {
				t.Fatal(err)
			}
			blobs := srv.Blobs()
			b := blobs[len(blobs)-1]
			if !b.Complete || b.Size != int64(len(data)) || b.SHA256 != sha(data) {
				t.Fatalf("blob %+v, want the %d bytes complete", b, len(data))
			}
			if b.LargestPut > chunk {
				t.Errorf("largest PUT %d bytes, want at most one chunk (%d)", b.LargestPut, chunk)
			}
			if n := srv.UploadPuts(token); n < tc.minPuts {
				t.Errorf("PUTs: got %d, want at least %d", n, tc.minPuts)
			}
			if got := len(sl.Delays()) > 0; got != tc.wantWait {
				t.Errorf("waited %v, want waiting %v", sl.Delays(), tc.wantWait)
			}
			if srv.StorageAuthHeaders() != 0 {
				t.Error("credentials were sent to the storage host")
			}
		})
	}
	t.Run("empty file", func(t *testing.T) {
		srv := kaggletest.NewServer(t)
		c, _ := newClient(t, srv, nil)
		if _, err := c.UploadBlob(ctxT(t), "empty.jsonl", 0, bytes.NewReader(nil)); err != nil {
			t.Fatal(err)
		}
		if b := srv.Blobs()[0]; !b.Complete || b.Size != 0 {
			t.Fatalf("blob %+v, want complete and empty", b)
		}
	})
	t.Run("expired session is permanent", func(t *testing.T) {
		srv := kaggletest.NewServer(t)
		srv.Fail("/_emulator/upload/", 404, 0)
		c, _ := newClient(t, srv, nil)
		_, err := c.UploadBlob(ctxT(t), "train.jsonl", int64(len(data)), bytes.NewReader(data))
		if !errors.Is(err, kaggle.ErrNotFound) || !strings.Contains(err.Error(), "start the upload again") {
			t.Fatalf("got %v, want ErrNotFound saying to start again", err)
		}
	})
	t.Run("short reader is refused", func(t *testing.T) {
		srv := kaggletest.NewServer(t)
		c, _ := newClient(t, srv, nil)
		_, err := c.UploadBlob(ctxT(t), "train.jsonl", int64(len(data))+5, bytes.NewReader(data))
		if !errors.Is(err, kaggle.ErrInvalidArgument) {
			t.Fatalf("got %v, want ErrInvalidArgument", err)
		}
	})
}

// TestOutputListing: small pages are all followed, file URLs point at the
// storage host over https, Kaggle's own files are listed, and downloads
// carry no credentials.
func TestOutputListing(t *testing.T) {
	srv := kaggletest.NewServer(t)
	ref := srv.Username() + "/done-kernel"
	srv.SetKernelStatus(ref, kaggle.KernelComplete, "")
	c, _ := newClient(t, srv, nil)
	out, err := c.KernelOutput(ctxT(t), srv.Username(), "done-kernel")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range kaggletest.DefaultOutputFiles() {
		names = append(names, f.Name)
	}
	var got []string
	api, _ := url.Parse(srv.URL)
	for _, f := range out.Files {
		got = append(got, f.FileName)
		u, err := url.Parse(f.URL)
		if err != nil || u.Scheme != "https" || u.Host == api.Host {
			t.Errorf("file URL %q, want https on another host than %s", f.URL, api.Host)
		}
	}
	if !slices.Equal(got, names) {
		t.Fatalf("listed %v, want all of %v", got, names)
	}
	for _, extra := range kaggletest.KaggleOutputFiles {
		if !slices.Contains(got, extra) {
			t.Errorf("Kaggle's own %s is not listed", extra)
		}
	}
	if n := srv.Calls("/kernels/output"); n < (len(names)+1)/2 {
		t.Errorf("listing took %d calls, want one per page of 2", n)
	}
	body, _, err := c.Download(ctxT(t), out.Files[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, body)
	body.Close()
	if srv.StorageAuthHeaders() != 0 {
		t.Error("credentials were sent with a download")
	}
}

// TestStatusSpellings: statuses arrive as the SDK serialises its enums
// (names, optionally prefixed), the dataset status as an object.
func TestStatusSpellings(t *testing.T) {
	srv := kaggletest.NewServer(t)
	c, _ := newClient(t, srv, nil)
	ref := srv.Username() + "/stopped"
	srv.SetKernelStatus(ref, kaggle.KernelCancelAcknowledged, "")
	st, err := c.KernelStatus(ctxT(t), srv.Username(), "stopped")
	if err != nil || st.Status != kaggle.KernelCancelAcknowledged || !st.Terminal() {
		t.Fatalf("got %+v %v, want cancelAcknowledged", st, err)
	}
	srv.SetDatasetStatus(srv.Username()+"/gone-data", "deleted")
	if s, err := c.DatasetStatus(ctxT(t), srv.Username(), "gone-data"); err != nil || s != kaggle.DatasetFailed {
		t.Fatalf("deleted dataset: %q %v, want failed", s, err)
	}

	answers := map[string]string{
		"/api/v1/kernels/status":        `{"status":"KERNEL_WORKER_STATUS_COMPLETE","failureMessage":null}`,
		"/api/v1/datasets/status/me/ds": `{"status":"DATABUNDLE_VERSION_STATUS_BLOBS_DECOMPRESSED"}`,
	}
	raw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answers[r.URL.Path])
	}))
	defer raw.Close()
	rc := kaggle.New(kaggle.Config{BaseURL: raw.URL + "/api/v1", Username: "me", Key: "k", HTTPClient: raw.Client(),
		Sleep: func(context.Context, time.Duration) error { return nil }})
	if st, err := rc.KernelStatus(ctxT(t), "me", "k"); err != nil || st.Status != kaggle.KernelComplete {
		t.Errorf("prefixed kernel status: %+v %v, want complete", st, err)
	}
	if s, err := rc.DatasetStatus(ctxT(t), "me", "ds"); err != nil || s != kaggle.DatasetPending {
		t.Errorf("processing dataset: %q %v, want pending", s, err)
	}
}

func TestDeleteDataset(t *testing.T) {
	srv := kaggletest.NewServer(t)
	c, _ := newClient(t, srv, nil)
	srv.AddDataset(srv.Username() + "/old-data")
	if err := c.DeleteDataset(ctxT(t), srv.Username(), "old-data"); err != nil {
		t.Fatal(err)
	}
	if len(srv.Datasets()) != 0 {
		t.Fatalf("datasets left: %v", srv.Datasets())
	}
	if err := c.DeleteDataset(ctxT(t), srv.Username(), "old-data"); err != nil {
		t.Fatalf("deleting a dataset already gone: %v, want nil", err)
	}
	if err := c.DeleteDataset(ctxT(t), "someone-else", "their-data"); !errors.Is(err, kaggle.ErrForbidden) {
		t.Fatalf("someone else's dataset: %v, want ErrForbidden", err)
	}
}

func TestCheck(t *testing.T) {
	srv := kaggletest.NewServer(t)
	for _, tc := range []struct {
		name    string
		cfg     func() kaggle.Config
		want    kaggle.Account
		wantErr string
	}{
		{name: "key", cfg: srv.Config, want: kaggle.Account{Username: kaggletest.DefaultUsername, Method: "key"}},
		{name: "token", cfg: srv.TokenConfig, want: kaggle.Account{Username: kaggletest.DefaultUsername, Method: "token"}},
		{name: "wrong key", cfg: func() kaggle.Config { c := srv.Config(); c.Key = "nope-0123"; return c }, wantErr: "HTTP 401"},
		{name: "revoked token", cfg: func() kaggle.Config { c := srv.TokenConfig(); c.Token = "KGAT_revoked"; return c }, wantErr: "HTTP 401"},
		{name: "token of another account", cfg: func() kaggle.Config { c := srv.TokenConfig(); c.Username = "someone"; return c },
			wantErr: `belongs to "emu-user", but KAGGLE_USERNAME is "someone"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acct, err := kaggle.New(tc.cfg()).Check(ctxT(t))
			if tc.wantErr != "" {
				if !errors.Is(err, kaggle.ErrUnauthorized) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want ErrUnauthorized with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || acct != tc.want {
				t.Fatalf("got %+v %v, want %+v", acct, err, tc.want)
			}
		})
	}
}
