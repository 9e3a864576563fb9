package kaggletest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

type rawClient struct {
	t   *testing.T
	srv *Server
}

func (c rawClient) do(method, path, auth string, body string) (int, map[string]any, http.Header) {
	c.t.Helper()
	url := path
	if !strings.HasPrefix(path, "http") {
		url = c.srv.BaseURL + path
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	switch auth {
	case "basic":
		req.SetBasicAuth(DefaultUsername, DefaultKey)
	case "bearer":
		req.Header.Set("Authorization", "Bearer "+DefaultToken)
	case "":
	default:
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.srv.HTTPClient().Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m, resp.Header
}

func TestAuthAndRouting(t *testing.T) {
	srv := NewServer(t)
	c := rawClient{t, srv}
	for _, tc := range []struct {
		name, method, path, auth, body string
		want                           int
	}{
		{"no credentials", "GET", "/kernels/status?userName=a&kernelSlug=b", "", "", 401},
		{"wrong basic", "GET", "/kernels/status?userName=a&kernelSlug=b", "Basic ZW11LXVzZXI6bm9wZQ==", "", 401},
		{"wrong bearer", "GET", "/kernels/status?userName=a&kernelSlug=b", "Bearer nope", "", 401},
		{"basic ok, unknown kernel", "GET", "/kernels/status?userName=a&kernelSlug=b", "basic", "", 404},
		{"bearer ok, unknown kernel", "GET", "/kernels/status?userName=a&kernelSlug=b", "bearer", "", 404},
		{"missing query", "GET", "/kernels/status", "basic", "", 400},
		{"wrong method", "GET", "/kernels/push", "basic", "", 405},
		{"unknown path", "GET", "/competitions/list", "basic", "", 404},
		{"unknown field refused", "POST", "/blobs/upload", "basic", `{"name":"a","contentLength":1,"colour":"red"}`, 400},
		{"blob without length", "POST", "/blobs/upload", "basic", `{"name":"a"}`, 400},
		{"push with bad language", "POST", "/kernels/push", "basic", `{"slug":"emu-user/k-one","text":"x","language":"cobol","kernelType":"script"}`, 400},
		{"push for another user", "POST", "/kernels/push", "basic", `{"slug":"other/k-one","text":"x","language":"python","kernelType":"script"}`, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, _ := c.do(tc.method, tc.path, tc.auth, tc.body)
			if status != tc.want {
				t.Fatalf("status = %d (%v), want %d", status, body, tc.want)
			}
			if body["code"] != float64(tc.want) || body["message"] == "" {
				t.Fatalf("body = %v, want Kaggle's {code, message} error", body)
			}
		})
	}
}

func TestPushValidatesNotebook(t *testing.T) {
	srv := NewServer(t)
	c := rawClient{t, srv}
	status, body, _ := c.do("POST", "/kernels/push", "basic",
		`{"slug":"emu-user/k-one","text":"{\"cells\":[]}","language":"python","kernelType":"notebook"}`)
	if status != 200 || !strings.Contains(body["error"].(string), "nbformat") {
		t.Fatalf("status %d body %v, want an error about nbformat", status, body)
	}
	if len(srv.Pushes()) != 0 {
		t.Fatal("an invalid notebook was recorded as pushed")
	}
}

// TestPushLikeKaggle: list cell sources fail the way the server did, the
// 1 MB source cap answers Kaggle's 400, and the accelerator recorded is the
// machineShape, or the old P100 for a bare enableGpu.
func TestPushLikeKaggle(t *testing.T) {
	srv := NewServer(t)
	c := rawClient{t, srv}
	nb := func(source string) string {
		b, _ := json.Marshal(`{"cells":[{"cell_type":"code","metadata":{},"outputs":[],"execution_count":null,"source":` + source + `}],"metadata":{},"nbformat":4,"nbformat_minor":5}`)
		return string(b)
	}
	push := func(text, extra string) (int, map[string]any) {
		status, body, _ := c.do("POST", "/kernels/push", "basic",
			`{"slug":"emu-user/k-one","text":`+text+`,"language":"python","kernelType":"notebook"`+extra+`}`)
		return status, body
	}
	if status, body := push(nb(`["a = 1\n", "print(a)"]`), ""); status != 500 {
		t.Errorf("list source: status %d %v, want 500", status, body)
	}
	big, _ := json.Marshal(strings.Repeat("x", MaxKernelSourceBytes))
	if status, body := push(string(big), ""); status != 400 || body["message"] != "kernel source must be less than 1 megabytes" {
		t.Errorf("large source: status %d %v, want Kaggle's 400", status, body)
	}
	if len(srv.Pushes()) != 0 {
		t.Fatal("a refused push was recorded")
	}
	for _, tc := range []struct{ extra, want string }{
		{`,"enableGpu":true`, LegacyGPU},
		{`,"enableGpu":true,"machineShape":"NvidiaTeslaT4"`, "NvidiaTeslaT4"},
		{`,"enableGpu":false`, ""},
	} {
		if status, body := push(nb(`"print(1)"`), tc.extra); status != 200 || body["error"] != nil {
			t.Fatalf("%s: status %d %v", tc.extra, status, body)
		}
		pushes := srv.Pushes()
		if got := pushes[len(pushes)-1].Accelerator; got != tc.want {
			t.Errorf("%s: accelerator %q, want %q", tc.extra, got, tc.want)
		}
	}
}

func TestDatasetCreateValidation(t *testing.T) {
	srv := NewServer(t)
	c := rawClient{t, srv}
	_, start, _ := c.do("POST", "/blobs/upload", "basic", `{"type":"dataset","name":"d.jsonl","contentLength":3}`)
	token := start["token"].(string)
	// Before the bytes arrive the token is not usable.
	_, body, _ := c.do("POST", "/datasets/create/new", "basic",
		`{"title":"A fine title","slug":"my-data","ownerSlug":"emu-user","files":[{"token":"`+token+`"}]}`)
	if body["error"] == nil {
		t.Fatalf("created a dataset from an incomplete upload: %v", body)
	}
	// A PUT whose length differs from the announced one is refused.
	if status, _, _ := c.do("PUT", start["createUrl"].(string), "", "toolong"); status != 400 {
		t.Fatalf("mismatched PUT status = %d, want 400", status)
	}
	if status, _, _ := c.do("PUT", start["createUrl"].(string), "", "abc"); status != 200 {
		t.Fatalf("PUT status = %d, want 200", status)
	}
	for _, tc := range []struct{ name, body, wantErr string }{
		{"short title", `{"title":"tiny","slug":"my-data","ownerSlug":"emu-user","files":[{"token":"` + token + `"}]}`, "title"},
		{"bad slug", `{"title":"A fine title","slug":"My_Data","ownerSlug":"emu-user","files":[{"token":"` + token + `"}]}`, "slug"},
		{"no files", `{"title":"A fine title","slug":"my-data","ownerSlug":"emu-user","files":[]}`, "file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, body, _ := c.do("POST", "/datasets/create/new", "basic", tc.body)
			if e, _ := body["error"].(string); !strings.Contains(e, tc.wantErr) {
				t.Fatalf("body = %v, want an error about %s", body, tc.wantErr)
			}
		})
	}
	_, body, _ = c.do("POST", "/datasets/create/new", "basic",
		`{"title":"A fine title","slug":"my-data","ownerSlug":"emu-user","isPrivate":true,"files":[{"token":"`+token+`"}]}`)
	if body["ref"] != "emu-user/my-data" || body["error"] != nil {
		t.Fatalf("create = %v, want ref emu-user/my-data", body)
	}
}

func TestFaultCounting(t *testing.T) {
	srv := NewServer(t)
	c := rawClient{t, srv}
	srv.AddDataset("emu-user/ds-one")
	srv.Fail("/datasets/status/", 503, 2).RetryAfter("9")
	var got []int
	for range 3 {
		status, _, h := c.do("GET", "/datasets/status/emu-user/ds-one", "basic", "")
		got = append(got, status)
		if status == 503 && h.Get("Retry-After") != "9" {
			t.Fatalf("Retry-After = %q, want 9", h.Get("Retry-After"))
		}
	}
	if got[0] != 503 || got[1] != 503 || got[2] != 200 {
		t.Fatalf("statuses = %v, want 503, 503, 200", got)
	}
	if n := srv.Calls("/datasets/status/"); n != 3 {
		t.Fatalf("calls = %d, want 3", n)
	}
	// A fault after handling: the push is recorded, the answer is lost.
	srv.Inject(Fault{Path: "/kernels/push", Status: 500, Times: 1, AfterHandling: true})
	nb := `{\"nbformat\":4,\"cells\":[{\"cell_type\":\"code\",\"source\":\"1\"}]}`
	status, _, _ := c.do("POST", "/kernels/push", "basic",
		`{"slug":"emu-user/k-one","text":"`+nb+`","language":"python","kernelType":"notebook"}`)
	if status != 500 || srv.PushCount("emu-user/k-one") != 1 {
		t.Fatalf("status %d pushes %d, want 500 and the push recorded", status, srv.PushCount("emu-user/k-one"))
	}
}

func TestSlowRequestReleasedByContext(t *testing.T) {
	srv := NewServer(t)
	srv.Slow("/kernels/status", time.Hour, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.BaseURL+"/kernels/status?userName=a&kernelSlug=b", nil)
	req.SetBasicAuth(DefaultUsername, DefaultKey)
	_, err := srv.HTTPClient().Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the client's deadline", err)
	}
	// t.Cleanup closes the server; a handler still waiting would hang it.
}

func TestDefaultOutputIsValid(t *testing.T) {
	files := DefaultOutputFiles()
	names := map[string][]byte{}
	for _, f := range files {
		names[f.Name] = f.Data
	}
	st := names["adapter/adapter_model.safetensors"]
	if len(st) < 8 {
		t.Fatal("no safetensors file")
	}
	n := binary.LittleEndian.Uint64(st[:8])
	var header map[string]json.RawMessage
	if n > uint64(len(st)-8) || json.Unmarshal(st[8:8+n], &header) != nil {
		t.Fatal("safetensors header is not JSON")
	}
	type tensor struct {
		Shape       []int `json:"shape"`
		DataOffsets []int `json:"data_offsets"`
	}
	var end int
	for name, raw := range header {
		if name == "__metadata__" {
			continue
		}
		var tt tensor
		if err := json.Unmarshal(raw, &tt); err != nil || len(tt.DataOffsets) != 2 {
			t.Fatalf("tensor %s: %s", name, raw)
		}
		if tt.DataOffsets[1]-tt.DataOffsets[0] != tt.Shape[0]*tt.Shape[1]*4 {
			t.Fatalf("tensor %s size does not match its shape", name)
		}
		end = max(end, tt.DataOffsets[1])
	}
	if 8+int(n)+end != len(st) {
		t.Fatalf("safetensors data is %d bytes, header says %d", len(st)-8-int(n), end)
	}
	var metrics map[string]any
	if err := json.Unmarshal(names["metrics.json"], &metrics); err != nil || metrics["train_loss"] == nil || metrics["eval_loss"] == nil {
		t.Fatalf("metrics.json = %s, want train and eval loss", names["metrics.json"])
	}
	var logRecs []map[string]any
	if err := json.Unmarshal([]byte(DefaultLog()), &logRecs); err != nil || len(logRecs) == 0 {
		t.Fatalf("default log is not Kaggle's JSON record list: %v", err)
	}
	if !bytes.Contains(names["adapter/adapter_config.json"], []byte(`"peft_type":"LORA"`)) {
		t.Fatal("adapter_config.json is not a LoRA config")
	}
}
