package kaggle_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle/kaggletest"
)

// listSourceNotebook is an nbformat 4 notebook as Jupyter writes it: cell
// sources as lists of lines, a code cell with an output.
const listSourceNotebook = `{"cells":[
 {"cell_type":"markdown","metadata":{},"source":["# Title\n","text"]},
 {"cell_type":"code","metadata":{},"execution_count":3,"outputs":[{"output_type":"stream","name":"stdout","text":["1\n"]}],
  "source":["import json\n","print(1)"]}],
 "metadata":{"kernelspec":{"name":"python3","display_name":"Python 3","language":"python"}},"nbformat":4,"nbformat_minor":5}`

func TestPushSendsMachineShape(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfgShape  string
		pushShape string
		gpu       bool
		want      string
	}{
		{name: "default is the T4", gpu: true, want: "NvidiaTeslaT4"},
		{name: "configured shape", cfgShape: "NvidiaL4", gpu: true, want: "NvidiaL4"},
		{name: "push names its own", cfgShape: "NvidiaL4", pushShape: "NvidiaTeslaA100", gpu: true, want: "NvidiaTeslaA100"},
		{name: "no GPU asks for none", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := kaggletest.NewServer(t)
			c, _ := newClient(t, srv, func(c *kaggle.Config) { c.MachineShape = tc.cfgShape })
			_, err := c.PushKernel(ctxT(t), kaggle.KernelPush{Owner: srv.Username(), Slug: "shape-kernel",
				Text: notebookText, EnableGPU: tc.gpu, MachineShape: tc.pushShape})
			if err != nil {
				t.Fatal(err)
			}
			p := srv.Pushes()[0]
			if p.Accelerator != tc.want || p.Request.MachineShape != tc.want {
				t.Errorf("got accelerator %q (machineShape %q), want %q", p.Accelerator, p.Request.MachineShape, tc.want)
			}
			if p.Accelerator == kaggletest.LegacyGPU {
				t.Error("the push got the P100 a bare enableGpu gets")
			}
		})
	}
	t.Run("refused shapes are not pushed", func(t *testing.T) {
		srv := kaggletest.NewServer(t)
		c, _ := newClient(t, srv, nil)
		for _, shape := range []string{"NvidiaTeslaP100", "TpuV5E8", "nvidiateslat4"} {
			_, err := c.PushKernel(ctxT(t), kaggle.KernelPush{Owner: srv.Username(), Slug: "shape-kernel",
				Text: notebookText, EnableGPU: true, MachineShape: shape})
			if !errors.Is(err, kaggle.ErrInvalidArgument) {
				t.Errorf("%s: got %v, want ErrInvalidArgument", shape, err)
			}
		}
		if n := srv.Calls("/kernels/push"); n != 0 {
			t.Errorf("got %d pushes, want 0", n)
		}
	})
}

func TestPushJoinsCellSources(t *testing.T) {
	srv := kaggletest.NewServer(t)
	c, _ := newClient(t, srv, nil)
	if _, err := c.PushKernel(ctxT(t), kaggle.KernelPush{Owner: srv.Username(), Slug: "list-sources", Text: listSourceNotebook}); err != nil {
		t.Fatalf("push of a notebook with list sources: %v", err)
	}
	var nb struct {
		Cells []struct {
			CellType string            `json:"cell_type"`
			Source   any               `json:"source"`
			Outputs  []json.RawMessage `json:"outputs"`
		} `json:"cells"`
		Metadata map[string]any `json:"metadata"`
		NBFormat int            `json:"nbformat"`
	}
	if err := json.Unmarshal([]byte(srv.Pushes()[0].Request.Text), &nb); err != nil {
		t.Fatal(err)
	}
	want := []string{"# Title\ntext", "import json\nprint(1)"}
	if len(nb.Cells) != 2 {
		t.Fatalf("got %d cells, want 2", len(nb.Cells))
	}
	for i, cell := range nb.Cells {
		if s, ok := cell.Source.(string); !ok || s != want[i] {
			t.Errorf("cell %d source: got %#v, want the string %q", i, cell.Source, want[i])
		}
	}
	if len(nb.Cells[1].Outputs) != 0 {
		t.Errorf("code cell outputs: got %d, want none", len(nb.Cells[1].Outputs))
	}
	if nb.NBFormat != 4 || nb.Metadata["kernelspec"] == nil {
		t.Errorf("notebook fields lost: nbformat %d metadata %v", nb.NBFormat, nb.Metadata)
	}
}

// TestKaggleRefusalsArePermanent: every answer that says the request itself
// is wrong fails at once, once, with Kaggle's own message in a text a user
// can read.
func TestKaggleRefusalsArePermanent(t *testing.T) {
	push := func(text string) func(*kaggle.Client, *kaggletest.Server) error {
		return func(c *kaggle.Client, s *kaggletest.Server) error {
			_, err := c.PushKernel(ctxT(t), kaggle.KernelPush{Owner: s.Username(), Slug: "refused", Text: text, EnableGPU: true})
			return err
		}
	}
	big := `{"cells":[{"cell_type":"code","metadata":{},"outputs":[],"execution_count":null,"source":"# ` +
		strings.Repeat("x", kaggletest.MaxKernelSourceBytes) + `"}],"metadata":{},"nbformat":4,"nbformat_minor":5}`
	for _, tc := range []struct {
		name     string
		setup    func(*kaggletest.Server)
		call     func(*kaggle.Client, *kaggletest.Server) error
		path     string
		wantIs   error
		status   int
		wantText string
	}{
		{name: "400 source too large", call: push(big), path: "/kernels/push",
			wantIs: kaggle.ErrRejected, status: 400, wantText: "Kaggle refused the kernel push (HTTP 400): kernel source must be less than 1 megabytes"},
		{name: "403 on a push is a denial", path: "/kernels/push", call: push(notebookText),
			setup: func(s *kaggletest.Server) {
				s.Inject(kaggletest.Fault{Path: "/kernels/push", Status: 403, Message: "Phone verification is required to use GPUs"})
			},
			wantIs: kaggle.ErrForbidden, status: 403, wantText: "Kaggle denied the kernel push (HTTP 403): Phone verification is required to use GPUs"},
		{name: "409", path: "/kernels/push", call: push(notebookText),
			setup: func(s *kaggletest.Server) {
				s.Inject(kaggletest.Fault{Path: "/kernels/push", Status: 409, Message: "conflict on kernel"})
			},
			wantIs: kaggle.ErrRejected, status: 409, wantText: "(HTTP 409): conflict on kernel"},
		{name: "413", path: "/kernels/push", call: push(notebookText),
			setup: func(s *kaggletest.Server) {
				s.Inject(kaggletest.Fault{Path: "/kernels/push", Status: 413, Message: "too large"})
			},
			wantIs: kaggle.ErrRejected, status: 413, wantText: "(HTTP 413): too large"},
		{name: "422", path: "/datasets/create/new",
			setup: func(s *kaggletest.Server) {
				s.Inject(kaggletest.Fault{Path: "/datasets/create/new", Status: 422, Message: "unprocessable dataset"})
			},
			call: func(c *kaggle.Client, s *kaggletest.Server) error {
				_, err := c.CreateDataset(ctxT(t), kaggle.NewDataset{Owner: s.Username(), Slug: "some-data", Title: "Some data set",
					Files: []kaggle.UploadedFile{{Token: "t", Name: "a.jsonl"}}})
				return err
			},
			wantIs: kaggle.ErrRejected, status: 422, wantText: "Kaggle refused the dataset creation (HTTP 422): unprocessable dataset"},
		{name: "200 with error on push", path: "/kernels/push",
			call:   push(`{"cells":[],"metadata":{},"nbformat":4,"nbformat_minor":5}`),
			wantIs: kaggle.ErrRejected, status: 200, wantText: "Kaggle refused the kernel push: Notebook is invalid: no cells"},
		{name: "200 with invalid sources on push", path: "/kernels/push",
			call: func(c *kaggle.Client, s *kaggletest.Server) error {
				_, err := c.PushKernel(ctxT(t), kaggle.KernelPush{Owner: s.Username(), Slug: "refused", Text: notebookText,
					DatasetSources: []string{s.Username() + "/missing-data"}})
				return err
			},
			wantIs: kaggle.ErrRejected, status: 200, wantText: "invalid data sources: " + kaggletest.DefaultUsername + "/missing-data"},
		{name: "200 with error on dataset create", path: "/datasets/create/new",
			call: func(c *kaggle.Client, s *kaggletest.Server) error {
				_, err := c.CreateDataset(ctxT(t), kaggle.NewDataset{Owner: s.Username(), Slug: "some-data", Title: "short",
					Files: []kaggle.UploadedFile{{Token: "t", Name: "a.jsonl"}}})
				return err
			},
			wantIs: kaggle.ErrRejected, status: 200, wantText: "Kaggle refused the dataset creation: The dataset title must be between 6 and 50 characters"},
		{name: "401", path: "/kernels/push", call: push(notebookText),
			setup:  func(s *kaggletest.Server) { s.SetCredentials("", "another-key-0123", "") },
			wantIs: kaggle.ErrUnauthorized, status: 401, wantText: "check KAGGLE_USERNAME and KAGGLE_KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := kaggletest.NewServer(t)
			c, sl := newClient(t, srv, nil)
			if tc.setup != nil {
				tc.setup(srv)
			}
			err := tc.call(c, srv)
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("got %v, want %v", err, tc.wantIs)
			}
			var ae *kaggle.APIError
			if !errors.As(err, &ae) || ae.Status != tc.status {
				t.Fatalf("got %#v, want an *APIError with status %d", err, tc.status)
			}
			if !kaggle.Permanent(err) {
				t.Error("Permanent is false")
			}
			if ok, _ := kaggle.Retryable(err); ok {
				t.Error("Retryable is true")
			}
			msg, ok := kaggle.UserMessage(err)
			if !ok || !strings.Contains(msg, tc.wantText) {
				t.Errorf("user message %q, want it to contain %q", msg, tc.wantText)
			}
			if strings.Contains(msg, kaggletest.DefaultKey) {
				t.Error("user message carries the key")
			}
			if n := srv.Calls(tc.path); n != 1 || len(sl.Delays()) != 0 {
				t.Errorf("got %d calls and delays %v, want one call, no retry", n, sl.Delays())
			}
		})
	}
}

// TestTransientFailuresAreRetried: 429 and 5xx on reads are retried,
// honouring Retry-After, and are never Permanent.
func TestTransientFailuresAreRetried(t *testing.T) {
	for _, status := range []int{http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout} {
		srv := kaggletest.NewServer(t)
		srv.SetKernelStatus(srv.Username()+"/busy", kaggle.KernelRunning, "")
		srv.Fail("/kernels/status", status, 2).RetryAfter("4")
		c, sl := newClient(t, srv, nil)
		st, err := c.KernelStatus(ctxT(t), srv.Username(), "busy")
		if err != nil || st.Status != kaggle.KernelRunning {
			t.Fatalf("%d: got %+v %v, want running after retries", status, st, err)
		}
		if d := sl.Delays(); len(d) != 2 || d[0].Seconds() != 4 || d[1].Seconds() != 4 {
			t.Errorf("%d: delays %v, want two waits of Retry-After 4s", status, d)
		}
		srv.Fail("/kernels/status", status, 0)
		_, err = c.KernelStatus(ctxT(t), srv.Username(), "busy")
		if err == nil || kaggle.Permanent(err) {
			t.Errorf("%d forever: got %v (permanent %v), want a retryable error", status, err, kaggle.Permanent(err))
		}
	}
}

// TestNetworkErrorsAreRetried: a connection closed without an answer is
// retried like a server error; a push whose answer was lost this way is
// not (the kernel may be running), and the error says to look first.
func TestNetworkErrorsAreRetried(t *testing.T) {
	srv := kaggletest.NewServer(t)
	srv.SetKernelStatus(srv.Username()+"/busy", kaggle.KernelRunning, "")
	srv.Inject(kaggletest.Fault{Path: "/kernels/status", Drop: true, Times: 2})
	c, sl := newClient(t, srv, nil)
	st, err := c.KernelStatus(ctxT(t), srv.Username(), "busy")
	if err != nil || st.Status != kaggle.KernelRunning || len(sl.Delays()) != 2 {
		t.Fatalf("got %+v %v after waits %v, want running after two retries", st, err, sl.Delays())
	}
	srv.Inject(kaggletest.Fault{Path: "/kernels/push", Drop: true, AfterHandling: true, Times: 1})
	_, err = c.PushKernel(ctxT(t), kaggle.KernelPush{Owner: srv.Username(), Slug: "lost-answer", Text: notebookText, EnableGPU: true})
	if ok, _ := kaggle.Retryable(err); err == nil || !ok || kaggle.Permanent(err) {
		t.Fatalf("lost push answer: got %v, want a retryable, non-permanent error", err)
	}
	if n := srv.PushCount(srv.Username() + "/lost-answer"); n != 1 {
		t.Errorf("kernel pushed %d times, want 1 (no blind retry)", n)
	}
}
