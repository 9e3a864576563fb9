package kaggle_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle/kaggletest"
)

// sleeper records the delays the client asks for instead of waiting.
type sleeper struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (s *sleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.delays = append(s.delays, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeper) Delays() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.delays...)
}

func newClient(t *testing.T, srv *kaggletest.Server, tweak func(*kaggle.Config)) (*kaggle.Client, *sleeper) {
	t.Helper()
	sl := &sleeper{}
	cfg := srv.Config()
	cfg.Sleep = sl.Sleep
	cfg.BaseDelay = time.Second
	cfg.MaxDelay = 8 * time.Second
	if tweak != nil {
		tweak(&cfg)
	}
	return kaggle.New(cfg), sl
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const notebookText = `{"cells":[{"cell_type":"code","source":"print(1)","metadata":{},"outputs":[],"execution_count":null}],"metadata":{},"nbformat":4,"nbformat_minor":5}`

// TestFullFlow walks the whole path a training job takes, against the
// emulator: upload, create dataset, wait ready, push, poll, list, download.
func TestFullFlow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config func(*kaggletest.Server) kaggle.Config
	}{
		{"basic auth", (*kaggletest.Server).Config},
		{"bearer token", (*kaggletest.Server).TokenConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := kaggletest.NewServerWith(t, kaggletest.Options{DatasetPendingPolls: 2, KernelQueuedPolls: 2, KernelRunningPolls: 3})
			c := kaggle.New(tc.config(srv))
			ctx := ctxT(t)
			owner := c.Username()

			data := bytes.Repeat([]byte(`{"text":"hello \"world\"","label":"greeting"}`+"\n"), 500)
			// A plain io.Reader (not a Seeker), like an object-storage stream.
			token, err := c.UploadBlob(ctx, "train.jsonl", int64(len(data)), io.MultiReader(bytes.NewReader(data)))
			if err != nil {
				t.Fatalf("UploadBlob: %v", err)
			}
			got, err := srv.BlobData(token)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("blob bytes differ from upload (err %v, got %d bytes, want %d)", err, len(got), len(data))
			}

			ref, err := c.CreateDataset(ctx, kaggle.NewDataset{Owner: owner, Slug: "fts-job-abc", Title: "Finetune Studio job abc",
				Private: true, Files: []kaggle.UploadedFile{{Token: token, Name: "train.jsonl"}}})
			if err != nil {
				t.Fatalf("CreateDataset: %v", err)
			}
			if want := owner + "/fts-job-abc"; ref != want {
				t.Fatalf("dataset ref = %q, want %q", ref, want)
			}
			var statuses []string
			for range 3 {
				st, err := c.DatasetStatus(ctx, owner, "fts-job-abc")
				if err != nil {
					t.Fatalf("DatasetStatus: %v", err)
				}
				statuses = append(statuses, st)
			}
			if strings.Join(statuses, ",") != "pending,pending,ready" {
				t.Fatalf("dataset statuses = %v, want pending,pending,ready", statuses)
			}
			ds := srv.Datasets()
			if len(ds) != 1 || !ds[0].Private || ds[0].Files[0] != "train.jsonl" {
				t.Fatalf("emulator datasets = %+v, want one private dataset with train.jsonl", ds)
			}

			kr, err := c.PushKernel(ctx, kaggle.KernelPush{Owner: owner, Slug: "fts-job-abc", Title: "fts-job-abc", Text: notebookText,
				Private: true, EnableGPU: true, EnableInternet: true, DatasetSources: []string{ref}})
			if err != nil {
				t.Fatalf("PushKernel: %v", err)
			}
			if kr.Ref != owner+"/fts-job-abc" || kr.VersionNumber != 1 || kr.URL == "" {
				t.Fatalf("kernel ref = %+v, want %s/fts-job-abc version 1 with a URL", kr, owner)
			}
			pushes := srv.Pushes()
			if len(pushes) != 1 {
				t.Fatalf("pushes = %d, want 1", len(pushes))
			}
			p := pushes[0].Request
			if p.Language != "python" || p.KernelType != "notebook" || !*p.IsPrivate || !*p.EnableGpu || !*p.EnableInternet ||
				len(p.DatasetDataSources) != 1 || p.DatasetDataSources[0] != ref || !sameJSON(t, p.Text, notebookText) ||
				p.MachineShape != kaggle.DefaultMachineShape {
				t.Fatalf("push request = %+v, want private GPU notebook with dataset %s", p, ref)
			}

			statuses = nil
			for {
				st, err := c.KernelStatus(ctx, owner, "fts-job-abc")
				if err != nil {
					t.Fatalf("KernelStatus: %v", err)
				}
				statuses = append(statuses, st.Status)
				if st.Terminal() {
					break
				}
				if len(statuses) > 10 {
					t.Fatalf("kernel never finished: %v", statuses)
				}
			}
			if want := "queued,queued,running,running,running,complete"; strings.Join(statuses, ",") != want {
				t.Fatalf("kernel statuses = %v, want %s", statuses, want)
			}

			out, err := c.KernelOutput(ctx, owner, "fts-job-abc")
			if err != nil {
				t.Fatalf("KernelOutput: %v", err)
			}
			want := kaggletest.DefaultOutputFiles()
			if len(out.Files) != len(want) {
				t.Fatalf("output files = %d, want %d", len(out.Files), len(want))
			}
			if !strings.Contains(out.Log, "Saved adapter") {
				t.Fatalf("log = %q, want the training log", out.Log)
			}
			for i, f := range out.Files {
				if f.FileName != want[i].Name {
					t.Fatalf("file %d = %q, want %q", i, f.FileName, want[i].Name)
				}
				body, size, err := c.Download(ctx, f.URL)
				if err != nil {
					t.Fatalf("Download %s: %v", f.FileName, err)
				}
				got, err := io.ReadAll(body)
				body.Close()
				if err != nil || !bytes.Equal(got, want[i].Data) || size != int64(len(want[i].Data)) {
					t.Fatalf("download %s: got %d bytes (size %d, err %v), want %d", f.FileName, len(got), size, err, len(want[i].Data))
				}
			}
			if n := srv.PushCount(owner + "/fts-job-abc"); n != 1 {
				t.Fatalf("push count = %d, want 1", n)
			}
		})
	}
}

func TestFailureClassification(t *testing.T) {
	type result struct {
		err   error
		calls int
	}
	for _, tc := range []struct {
		name string
		// setup injects the failure and returns the calls path to count.
		setup      func(*kaggletest.Server)
		tweak      func(*kaggle.Config)
		call       func(context.Context, *kaggle.Client) error
		path       string
		wantIs     error
		wantStatus int
		wantCalls  int
		wantDelays []time.Duration
		retryable  bool
	}{
		{
			name:  "wrong key is unauthorized without retries",
			tweak: func(c *kaggle.Config) { c.Key = "wrong-key-7f3a" },
			call: func(ctx context.Context, c *kaggle.Client) error {
				_, err := c.KernelStatus(ctx, kaggletest.DefaultUsername, "some-kernel")
				return err
			},
			path: "/kernels/status", wantIs: kaggle.ErrUnauthorized, wantStatus: 401, wantCalls: 1,
		},
		{
			name:  "wrong bearer token is unauthorized",
			tweak: func(c *kaggle.Config) { c.Key = ""; c.Token = "KGAT_wrong_token" },
			call: func(ctx context.Context, c *kaggle.Client) error {
				_, err := c.DatasetStatus(ctx, kaggletest.DefaultUsername, "some-dataset")
				return err
			},
			path: "/datasets/status/", wantIs: kaggle.ErrUnauthorized, wantStatus: 401, wantCalls: 1,
		},
		{
			name:  "403 on a push is forbidden without retries",
			setup: func(s *kaggletest.Server) { s.Fail("/kernels/push", 403, 0) },
			call: func(ctx context.Context, c *kaggle.Client) error {
				_, err := c.PushKernel(ctx, kaggle.KernelPush{Owner: kaggletest.DefaultUsername, Slug: "k-one", Text: notebookText})
				return err
			},
			path: "/kernels/push", wantIs: kaggle.ErrForbidden, wantStatus: 403, wantCalls: 1,
		},
		{
			name: "unknown kernel is not found",
			call: func(ctx context.Context, c *kaggle.Client) error {
				_, err := c.KernelStatus(ctx, kaggletest.DefaultUsername, "nope")
				return err
			},
			path: "/kernels/status", wantIs: kaggle.ErrNotFound, wantStatus: 404, wantCalls: 4,
		},
		{
			name: "500 forever fails after MaxAttempts",
			setup: func(s *kaggletest.Server) {
				s.AddDataset(kaggletest.DefaultUsername + "/ds-one")
				s.Fail("/datasets/status/", 500, 0)
			},
			call: func(ctx context.Context, c *kaggle.Client) error {
				_, err := c.DatasetStatus(ctx, kaggletest.DefaultUsername, "ds-one")
				return err
			},
			path: "/datasets/status/", wantStatus: 500, wantCalls: 4, retryable: true,
		},
		{
			name:  "long Retry-After is handed to the caller instead of waited",
			setup: func(s *kaggletest.Server) { s.Fail("/kernels/status", 429, 0).RetryAfter("3600") },
			call: func(ctx context.Context, c *kaggle.Client) error {
				_, err := c.KernelStatus(ctx, kaggletest.DefaultUsername, "k-one")
				return err
			},
			path: "/kernels/status", wantStatus: 429, wantCalls: 1, retryable: true,
		},
		{
			name:  "push is not retried after a 500 (it may have been processed)",
			setup: func(s *kaggletest.Server) { s.Fail("/kernels/push", 500, 1) },
			call: func(ctx context.Context, c *kaggle.Client) error {
				_, err := c.PushKernel(ctx, kaggle.KernelPush{Owner: kaggletest.DefaultUsername, Slug: "k-one", Text: notebookText})
				return err
			},
			path: "/kernels/push", wantStatus: 500, wantCalls: 1, retryable: true,
		},
		{
			name: "dataset slug in use is a rejection",
			setup: func(s *kaggletest.Server) {
				s.AddDataset(kaggletest.DefaultUsername + "/taken-slug")
			},
			call: func(ctx context.Context, c *kaggle.Client) error {
				tok, err := c.UploadBlob(ctx, "a.jsonl", 2, strings.NewReader("{}"))
				if err != nil {
					return err
				}
				_, err = c.CreateDataset(ctx, kaggle.NewDataset{Owner: kaggletest.DefaultUsername, Slug: "taken-slug", Title: "Some title",
					Files: []kaggle.UploadedFile{{Token: tok}}})
				return err
			},
			path: "/datasets/create/new", wantIs: kaggle.ErrRejected, wantStatus: 200, wantCalls: 1,
		},
		{
			name: "push naming an unknown dataset is a rejection",
			call: func(ctx context.Context, c *kaggle.Client) error {
				_, err := c.PushKernel(ctx, kaggle.KernelPush{Owner: kaggletest.DefaultUsername, Slug: "k-one", Text: notebookText,
					DatasetSources: []string{kaggletest.DefaultUsername + "/missing-ds"}})
				return err
			},
			path: "/kernels/push", wantIs: kaggle.ErrRejected, wantStatus: 200, wantCalls: 1,
		},
		{
			name:  "no credentials sends nothing",
			tweak: func(c *kaggle.Config) { c.Username, c.Key, c.Token = "", "", "" },
			call: func(ctx context.Context, c *kaggle.Client) error {
				_, err := c.KernelStatus(ctx, "someone", "k-one")
				return err
			},
			path: "/", wantIs: kaggle.ErrNotConfigured, wantCalls: 0,
		},
		{
			name:  "token without username is not configured",
			tweak: func(c *kaggle.Config) { c.Username, c.Key, c.Token = "", "", kaggletest.DefaultToken },
			call: func(ctx context.Context, c *kaggle.Client) error {
				_, err := c.KernelStatus(ctx, "someone", "k-one")
				if err != nil && !strings.Contains(err.Error(), "KAGGLE_USERNAME is required") {
					return errors.New("message does not name KAGGLE_USERNAME: " + err.Error())
				}
				return err
			},
			path: "/", wantIs: kaggle.ErrNotConfigured, wantCalls: 0,
		},
		{
			name: "a name that would change the path is refused locally",
			call: func(ctx context.Context, c *kaggle.Client) error {
				_, err := c.DatasetStatus(ctx, kaggletest.DefaultUsername, "../../kernels/push")
				return err
			},
			path: "/", wantCalls: 0,
		},
		{
			name:  "oversized answer is refused",
			tweak: func(c *kaggle.Config) { c.MaxResponseBytes = 64 },
			setup: func(s *kaggletest.Server) { s.SetKernelStatus(kaggletest.DefaultUsername+"/k-one", "complete", "") },
			call: func(ctx context.Context, c *kaggle.Client) error {
				_, err := c.KernelOutput(ctx, kaggletest.DefaultUsername, "k-one")
				return err
			},
			path: "/kernels/output", wantIs: kaggle.ErrResponseTooLarge, wantStatus: 200, wantCalls: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := kaggletest.NewServer(t)
			if tc.setup != nil {
				tc.setup(srv)
			}
			c, sl := newClient(t, srv, tc.tweak)
			err := tc.call(ctxT(t), c)
			if err == nil {
				t.Fatal("got no error, want one")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("error %v, want errors.Is %v", err, tc.wantIs)
			}
			var ae *kaggle.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %T, want *kaggle.APIError", err)
			}
			if ae.Status != tc.wantStatus {
				t.Fatalf("status = %d, want %d (err %v)", ae.Status, tc.wantStatus, err)
			}
			if got := srv.Calls(tc.path); got != tc.wantCalls {
				t.Fatalf("calls to %s = %d, want %d", tc.path, got, tc.wantCalls)
			}
			if ok, _ := kaggle.Retryable(err); ok != tc.retryable {
				t.Fatalf("Retryable = %v, want %v", ok, tc.retryable)
			}
			for _, secret := range []string{kaggletest.DefaultKey, kaggletest.DefaultToken, "wrong-key-7f3a", "KGAT_wrong_token"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q leaks a credential", err)
				}
			}
			if tc.wantCalls > 1 && len(sl.Delays()) != tc.wantCalls-1 {
				t.Fatalf("slept %d times, want %d", len(sl.Delays()), tc.wantCalls-1)
			}
		})
	}
}

func TestRetries(t *testing.T) {
	ref := kaggletest.DefaultUsername + "/k-one"
	for _, tc := range []struct {
		name       string
		setup      func(*kaggletest.Server)
		tweak      func(*kaggle.Config)
		wantDelays func([]time.Duration) bool
		wantDesc   string
		wantCalls  int
	}{
		{
			name:  "429 with Retry-After seconds is honoured exactly",
			setup: func(s *kaggletest.Server) { s.Fail("/kernels/status", 429, 2).RetryAfter("7") },
			wantDelays: func(d []time.Duration) bool {
				return len(d) == 2 && d[0] == 7*time.Second && d[1] == 7*time.Second
			},
			wantDesc: "[7s 7s]", wantCalls: 3,
		},
		{
			name: "429 with Retry-After HTTP-date is honoured",
			setup: func(s *kaggletest.Server) {
				s.Fail("/kernels/status", 429, 1).RetryAfter("Sun, 29 Nov 2026 12:00:42 GMT")
			},
			tweak: func(c *kaggle.Config) {
				c.Now = func() time.Time { return time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC) }
			},
			wantDelays: func(d []time.Duration) bool { return len(d) == 1 && d[0] == 42*time.Second },
			wantDesc:   "[42s]", wantCalls: 2,
		},
		{
			name:  "500 is retried with growing jittered backoff, then succeeds",
			setup: func(s *kaggletest.Server) { s.Fail("/kernels/status", 500, 3) },
			wantDelays: func(d []time.Duration) bool {
				// base 1s: [0.5s,1s], [1s,2s], [2s,4s]
				return len(d) == 3 &&
					d[0] >= 500*time.Millisecond && d[0] <= time.Second &&
					d[1] >= time.Second && d[1] <= 2*time.Second &&
					d[2] >= 2*time.Second && d[2] <= 4*time.Second
			},
			wantDesc: "three delays within [0.5s,1s], [1s,2s], [2s,4s]", wantCalls: 4,
		},
		{
			name:       "503 then success",
			setup:      func(s *kaggletest.Server) { s.Fail("/kernels/status", 503, 1) },
			wantDelays: func(d []time.Duration) bool { return len(d) == 1 },
			wantDesc:   "one delay", wantCalls: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := kaggletest.NewServer(t)
			srv.SetKernelStatus(ref, kaggle.KernelRunning, "")
			tc.setup(srv)
			c, sl := newClient(t, srv, tc.tweak)
			st, err := c.KernelStatus(ctxT(t), kaggletest.DefaultUsername, "k-one")
			if err != nil {
				t.Fatalf("KernelStatus: %v", err)
			}
			if st.Status != kaggle.KernelRunning {
				t.Fatalf("status = %q, want running", st.Status)
			}
			if d := sl.Delays(); !tc.wantDelays(d) {
				t.Fatalf("delays = %v, want %s", d, tc.wantDesc)
			}
			if got := srv.Calls("/kernels/status"); got != tc.wantCalls {
				t.Fatalf("calls = %d, want %d", got, tc.wantCalls)
			}
		})
	}
}

// A push answered 429 or 503 was not processed: it is retried, and the
// kernel is pushed exactly once. A push whose answer was lost after Kaggle
// processed it (500 after handling) is not retried.
func TestPushRetrySafety(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fault     kaggletest.Fault
		wantErr   bool
		wantPush  int
		wantCalls int
	}{
		{"429 before processing is retried", kaggletest.Fault{Path: "/kernels/push", Status: 429, Times: 1}, false, 1, 2},
		{"503 before processing is retried", kaggletest.Fault{Path: "/kernels/push", Status: 503, Times: 2}, false, 1, 3},
		{"502 after processing is not retried", kaggletest.Fault{Path: "/kernels/push", Status: 502, Times: 1, AfterHandling: true}, true, 1, 1},
		{"timeout-like 504 is not retried", kaggletest.Fault{Path: "/kernels/push", Status: 504, Times: 1}, true, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := kaggletest.NewServer(t)
			srv.Inject(tc.fault)
			c, _ := newClient(t, srv, nil)
			_, err := c.PushKernel(ctxT(t), kaggle.KernelPush{Owner: kaggletest.DefaultUsername, Slug: "k-one", Text: notebookText})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if n := srv.PushCount(kaggletest.DefaultUsername + "/k-one"); n != tc.wantPush {
				t.Fatalf("kernel pushed %d times, want %d", n, tc.wantPush)
			}
			if n := srv.Calls("/kernels/push"); n != tc.wantCalls {
				t.Fatalf("push calls = %d, want %d", n, tc.wantCalls)
			}
		})
	}
}

func TestSlowResponseRespectsContext(t *testing.T) {
	srv := kaggletest.NewServer(t)
	srv.SetKernelStatus(kaggletest.DefaultUsername+"/k-one", kaggle.KernelRunning, "")
	srv.Slow("/kernels/status", time.Hour, 0)
	c, sl := newClient(t, srv, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.KernelStatus(ctx, kaggletest.DefaultUsername, "k-one")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want context.DeadlineExceeded", err)
	}
	if ok, _ := kaggle.Retryable(err); ok {
		t.Fatal("a caller's expired context must not be retryable")
	}
	if len(sl.Delays()) != 0 {
		t.Fatalf("slept %v after the context expired, want no retry", sl.Delays())
	}
	// Slow but within the deadline still succeeds.
	srv.ClearFaults()
	srv.Slow("/kernels/status", 50*time.Millisecond, 1)
	if _, err := c.KernelStatus(ctxT(t), kaggletest.DefaultUsername, "k-one"); err != nil {
		t.Fatalf("slow status within the deadline: %v", err)
	}
}

func TestKernelErrorSurfacesFailureMessage(t *testing.T) {
	srv := kaggletest.NewServer(t)
	c, _ := newClient(t, srv, nil)
	ctx := ctxT(t)
	if _, err := c.PushKernel(ctx, kaggle.KernelPush{Owner: kaggletest.DefaultUsername, Slug: "k-one", Text: notebookText}); err != nil {
		t.Fatal(err)
	}
	srv.SetKernelStatus(kaggletest.DefaultUsername+"/k-one", kaggle.KernelError, "CUDA out of memory. Tried to allocate 2.00 GiB")
	st, err := c.KernelStatus(ctx, kaggletest.DefaultUsername, "k-one")
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != kaggle.KernelError || !st.Terminal() || st.FailureMessage != "CUDA out of memory. Tried to allocate 2.00 GiB" {
		t.Fatalf("status = %+v, want error with the CUDA message", st)
	}
	out, err := c.KernelOutput(ctx, kaggletest.DefaultUsername, "k-one")
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Files) != 0 || !strings.Contains(out.Log, "CUDA out of memory") {
		t.Fatalf("output = %+v, want no files and the failure in the log", out)
	}
	// The emulator's automatic progression can end in an error too.
	srv.SetKernelProgress(0, 1, kaggle.KernelError, "ValueError: bad dataset")
	if _, err := c.PushKernel(ctx, kaggle.KernelPush{Owner: kaggletest.DefaultUsername, Slug: "k-two", Text: notebookText}); err != nil {
		t.Fatal(err)
	}
	var got []kaggle.KernelStatus
	for range 2 {
		st, err := c.KernelStatus(ctx, kaggletest.DefaultUsername, "k-two")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, st)
	}
	if got[0].Status != kaggle.KernelRunning || got[1].Status != kaggle.KernelError || got[1].FailureMessage != "ValueError: bad dataset" {
		t.Fatalf("statuses = %+v, want running then error with message", got)
	}
}

// TestDownloadStreams downloads a file larger than the client's response
// cap (so it cannot have been buffered) and checks every byte.
func TestDownloadStreams(t *testing.T) {
	const size = 48 << 20
	srv := kaggletest.NewServer(t)
	ref := kaggletest.DefaultUsername + "/k-big"
	srv.SetKernelStatus(ref, kaggle.KernelComplete, "")
	srv.SetKernelOutput(ref, []kaggletest.File{{Name: "adapter/adapter_model.safetensors", Size: size}}, nil)
	c, _ := newClient(t, srv, func(c *kaggle.Config) { c.MaxResponseBytes = 1 << 20 })
	ctx := ctxT(t)
	out, err := c.KernelOutput(ctx, kaggletest.DefaultUsername, "k-big")
	if err != nil {
		t.Fatal(err)
	}
	body, n, err := c.Download(ctx, out.Files[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	if n != size {
		t.Fatalf("size = %d, want %d", n, size)
	}
	got, want := sha256.New(), sha256.New()
	copied, err := io.Copy(got, body)
	if err != nil || copied != size {
		t.Fatalf("copied %d bytes (err %v), want %d", copied, err, size)
	}
	_, _ = io.Copy(want, kaggletest.PatternReader(size))
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("downloaded bytes differ from the served ones")
	}
	// A tampered signature is refused, permanently.
	_, _, err = c.Download(ctx, strings.Replace(out.Files[0].URL, "sig=", "sig=x", 1))
	if !errors.Is(err, kaggle.ErrForbidden) || !kaggle.Permanent(err) {
		t.Fatalf("tampered URL: err = %v, want a permanent ErrForbidden", err)
	}
	if strings.Contains(err.Error(), "sig=") {
		t.Fatalf("error %q shows the URL's signature", err)
	}
}

// Credentials go to the API host only, never to the storage hosts Kaggle's
// signed URLs point at.
func TestNoCredentialsToOtherHosts(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		_, _ = io.WriteString(w, "payload")
	}))
	t.Cleanup(other.Close)
	srv := kaggletest.NewServer(t)
	c, _ := newClient(t, srv, nil)
	body, _, err := c.Download(ctxT(t), other.URL+"/file?sig=abc")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(body)
	body.Close()
	mu.Lock()
	defer mu.Unlock()
	if string(b) != "payload" || len(seen) != 1 || seen[0] != "" {
		t.Fatalf("body %q, Authorization headers %q; want payload and no credentials", b, seen)
	}
}

// A failed blob PUT is resumed, whatever the reader, and the stored bytes
// are exactly the file.
func TestUploadRetry(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 10000)
	for _, tc := range []struct {
		name    string
		body    func() io.Reader
		wantErr bool
	}{
		{"seekable body", func() io.Reader { return bytes.NewReader(data) }, false},
		{"one-shot body resumes from the chunk in memory", func() io.Reader { return io.MultiReader(bytes.NewReader(data)) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := kaggletest.NewServer(t)
			srv.Fail("/_emulator/upload/", 503, 1)
			c, _ := newClient(t, srv, nil)
			token, err := c.UploadBlob(ctxT(t), "train.jsonl", int64(len(data)), tc.body())
			if tc.wantErr {
				if ok, _ := kaggle.Retryable(err); err == nil || !ok {
					t.Fatalf("err = %v, want a retryable error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := srv.BlobData(token)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("stored %d bytes (err %v), want the %d uploaded", len(got), err, len(data))
			}
		})
	}
}

// The blob PUT goes through the same retry path as every other call: a
// Retry-After beyond MaxRetryAfter ends the call with the delay instead of
// being replaced by ordinary backoff, and a sleep cut short by the context
// reports the context's error, not an invalid argument.
func TestUploadSharesRetryPath(t *testing.T) {
	data := []byte(`{"text":"hello"}` + "\n")
	t.Run("long Retry-After is handed to the caller", func(t *testing.T) {
		srv := kaggletest.NewServer(t)
		srv.Fail("/_emulator/upload/", 429, 0).RetryAfter("3600")
		c, sl := newClient(t, srv, nil)
		_, err := c.UploadBlob(ctxT(t), "train.jsonl", int64(len(data)), bytes.NewReader(data))
		var ae *kaggle.APIError
		if !errors.As(err, &ae) || ae.Status != 429 {
			t.Fatalf("err = %v, want a 429 *kaggle.APIError", err)
		}
		if ok, after := kaggle.Retryable(err); !ok || after != time.Hour {
			t.Fatalf("Retryable = %v, %v; want true, 1h", ok, after)
		}
		if n := srv.Calls("/_emulator/upload/"); n != 1 {
			t.Fatalf("PUT sent %d times, want 1", n)
		}
		if d := sl.Delays(); len(d) != 0 {
			t.Fatalf("slept %v, want no waiting", d)
		}
	})
	t.Run("failed sleep reports the context error", func(t *testing.T) {
		srv := kaggletest.NewServer(t)
		srv.Fail("/_emulator/upload/", 503, 0)
		c, _ := newClient(t, srv, func(cfg *kaggle.Config) {
			cfg.Sleep = func(context.Context, time.Duration) error { return context.Canceled }
		})
		_, err := c.UploadBlob(ctxT(t), "train.jsonl", int64(len(data)), bytes.NewReader(data))
		if !errors.Is(err, context.Canceled) || errors.Is(err, kaggle.ErrInvalidArgument) {
			t.Fatalf("err = %v, want context.Canceled and not ErrInvalidArgument", err)
		}
		if n := srv.Calls("/_emulator/upload/"); n != 1 {
			t.Fatalf("PUT sent %d times, want 1", n)
		}
	})
}

// sameJSON reports whether two JSON texts hold the same value.
func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	return reflect.DeepEqual(va, vb)
}
