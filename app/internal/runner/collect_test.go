package runner

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle/kaggletest"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

func TestSelectOutputs(t *testing.T) {
	model := []kaggle.OutputFile{
		{FileName: "adapter/adapter_config.json", URL: "https://storage.example/a", Size: 10},
		{FileName: "adapter/adapter_model.safetensors", URL: "https://storage.example/b", Size: 100},
		{FileName: "metrics.json", URL: "https://storage.example/c", Size: 10},
	}
	with := func(extra ...kaggle.OutputFile) []kaggle.OutputFile {
		return append(append([]kaggle.OutputFile{}, model...), extra...)
	}
	tests := []struct {
		name        string
		files       []kaggle.OutputFile
		max         int64
		wantNames   int
		wantSkipped int
		refusal     string
	}{
		{name: "a complete model", files: model, max: 1000, wantNames: 3},
		{name: "Kaggle's own files stay out", files: with(
			kaggle.OutputFile{FileName: "__notebook__.ipynb", URL: "https://storage.example/n"},
			kaggle.OutputFile{FileName: "__results__.html", URL: "https://storage.example/r"},
			kaggle.OutputFile{FileName: "__results___files/plot.png", URL: "https://storage.example/p"}), max: 1000, wantNames: 3},
		{name: "unsafe and repeated names are skipped", files: with(
			kaggle.OutputFile{FileName: "../../etc/passwd", URL: "https://storage.example/x"},
			kaggle.OutputFile{FileName: "/abs", URL: "https://storage.example/x"},
			kaggle.OutputFile{FileName: "adapter/./x", URL: "https://storage.example/x"},
			kaggle.OutputFile{FileName: "bad\x1bname", URL: "https://storage.example/x"},
			kaggle.OutputFile{FileName: "metrics.json", URL: "https://storage.example/again"}), max: 1000, wantNames: 3, wantSkipped: 5},
		{name: "a URL that is not https", files: with(kaggle.OutputFile{FileName: "tokenizer.json", URL: "http://storage.example/t"}), max: 1000, refusal: "not https"},
		{name: "a URL without a host", files: with(kaggle.OutputFile{FileName: "tokenizer.json", URL: "https:///t"}), max: 1000, refusal: "not https"},
		{name: "listed sizes over the cap", files: model, max: 100, refusal: "JOB_MAX_OUTPUT_BYTES"},
		{name: "no weights", files: []kaggle.OutputFile{model[0], model[2]}, max: 1000, refusal: "missing adapter/adapter_model.safetensors"},
		{name: "the older weight format", files: []kaggle.OutputFile{model[0], model[2],
			{FileName: "adapter/adapter_model.bin", URL: "https://storage.example/b"}}, max: 1000, wantNames: 3},
		{name: "nothing", files: nil, max: 1000, refusal: "missing adapter/adapter_config.json, adapter/adapter_model.safetensors, metrics.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chosen, skipped, refusal := selectOutputs(tt.files, tt.max)
			if tt.refusal != "" {
				if !strings.Contains(refusal, tt.refusal) {
					t.Fatalf("refusal = %q, want it to contain %q", refusal, tt.refusal)
				}
				return
			}
			if refusal != "" || len(chosen) != tt.wantNames || len(skipped) != tt.wantSkipped {
				t.Fatalf("chosen %d, skipped %v, refusal %q; want %d chosen, %d skipped", len(chosen), skipped, refusal, tt.wantNames, tt.wantSkipped)
			}
		})
	}
}

// collectFailure runs a job whose kernel writes files and returns it,
// checking that no model and no stored object was left.
func collectFailure(t *testing.T, files []kaggletest.File, cfg func(*Config), k func(Kaggle) Kaggle) training.Job {
	t.Helper()
	f := newFixture(t, nil)
	f.emu.SetDefaultOutput(files, kaggletest.DefaultLog())
	c := Config{MaxRuntime: time.Hour, PollInterval: time.Second, Now: f.clock.Now}
	if cfg != nil {
		cfg(&c)
	}
	var kc Kaggle = f.client
	if k != nil {
		kc = k(kc)
	}
	j := f.newJob(t)
	got, err := f.runUntil(t, New(f.store, f.objects, kc, c, slog.New(slog.DiscardHandler)), j.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != training.StatusFailed {
		t.Fatalf("job %s, want failed", got.Status)
	}
	if models, _, _ := f.store.ListModels(context.Background(), training.Page{Limit: 1}); len(models) != 0 {
		t.Error("a model was created")
	}
	if objs, err := f.blob.List(context.Background(), "models/"+j.ID+"/"); err != nil || len(objs) != 0 {
		t.Errorf("%d objects left under the model's prefix (err %v)", len(objs), err)
	}
	if !strings.Contains(f.events(t, j.ID), got.Error) {
		t.Error("the failure is not among the job's events")
	}
	return got
}

func defaultOutputWithout(name string) []kaggletest.File {
	var out []kaggletest.File
	for _, f := range kaggletest.DefaultOutputFiles() {
		if f.Name != name {
			out = append(out, f)
		}
	}
	return out
}

// TestCollectRefusesOutputWithoutAModel: a kernel that completed without
// writing its adapter weights fails the job, saying what is missing.
func TestCollectRefusesOutputWithoutAModel(t *testing.T) {
	got := collectFailure(t, defaultOutputWithout("adapter/adapter_model.safetensors"), nil, nil)
	if !strings.Contains(got.Error, "missing adapter/adapter_model.safetensors") {
		t.Errorf("error = %q, want it to name the missing weights", got.Error)
	}
}

// TestCollectRefusesUnusableMetrics: metrics.json must be a JSON object.
func TestCollectRefusesUnusableMetrics(t *testing.T) {
	files := append(defaultOutputWithout("metrics.json"), kaggletest.File{Name: "metrics.json", Data: []byte("[1, 2")})
	got := collectFailure(t, files, nil, nil)
	if !strings.Contains(got.Error, "metrics.json that is not a JSON object") {
		t.Errorf("error = %q", got.Error)
	}
}

// TestCollectCapsTheOutput: an output over JOB_MAX_OUTPUT_BYTES fails the
// job, whether the listing says so (nothing is downloaded) or only the
// downloads do (Kaggle listed no sizes, the storage host sent none).
func TestCollectCapsTheOutput(t *testing.T) {
	small := func(c *Config) { c.MaxOutputBytes = 2000 }
	got := collectFailure(t, kaggletest.DefaultOutputFiles(), small, nil)
	if !strings.Contains(got.Error, "JOB_MAX_OUTPUT_BYTES") {
		t.Errorf("listed sizes: error = %q", got.Error)
	}
	got = collectFailure(t, kaggletest.DefaultOutputFiles(), small, func(k Kaggle) Kaggle { return unsized{k} })
	if !strings.Contains(got.Error, "JOB_MAX_OUTPUT_BYTES") {
		t.Errorf("unlisted sizes: error = %q", got.Error)
	}
}

// unsized hides every size: the listing's and the download's.
type unsized struct{ Kaggle }

func (u unsized) KernelOutput(ctx context.Context, owner, slug string) (kaggle.KernelOutput, error) {
	out, err := u.Kaggle.KernelOutput(ctx, owner, slug)
	for i := range out.Files {
		out.Files[i].Size = 0
	}
	return out, err
}

func (u unsized) Download(ctx context.Context, fileURL string) (io.ReadCloser, int64, error) {
	body, _, err := u.Kaggle.Download(ctx, fileURL)
	return body, -1, err
}
