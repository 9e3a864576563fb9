package notebook

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finetune-studio/finetune-studio/app/internal/dataset"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func validSpec() Spec {
	return Spec{
		JobID:     "0b9c7a52-8f7e-4c1e-9d55-3f1f2a6b7c80",
		BaseModel: "Qwen/Qwen2.5-0.5B-Instruct",
		Schema:    string(dataset.SchemaInstruction),
		Hyperparameters: Hyperparameters{Hyperparameters: training.Hyperparameters{
			LoraRank: 16, LoraAlpha: 32, LoraDropout: 0.05, Epochs: 3,
			LearningRate: 2e-4, BatchSize: 4, MaxSeqLength: 1024,
		}},
		DatasetSource: "emu-user/fts-job-0b9c7a528f7e4c1e9d553f1f2a6b7c80",
		DatasetFile:   "train.jsonl",
		KernelOwner:   "emu-user",
		KernelSlug:    "fts-job-0b9c7a528f7e4c1e9d553f1f2a6b7c80",
	}
}

// notebookDoc is the part of nbformat 4 the tests read.
type notebookDoc struct {
	NBFormat      int `json:"nbformat"`
	NBFormatMinor int `json:"nbformat_minor"`
	Cells         []struct {
		CellType       string          `json:"cell_type"`
		ID             string          `json:"id"`
		Source         string          `json:"source"`
		Outputs        []any           `json:"outputs"`
		ExecutionCount json.RawMessage `json:"execution_count"`
	} `json:"cells"`
	Metadata struct {
		Kernelspec struct {
			Name string `json:"name"`
		} `json:"kernelspec"`
	} `json:"metadata"`
}

func parseNotebook(t *testing.T, b []byte) notebookDoc {
	t.Helper()
	var nb notebookDoc
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&nb); err != nil {
		t.Fatalf("notebook is not valid JSON: %v", err)
	}
	if nb.NBFormat != 4 || nb.NBFormatMinor < 5 || nb.Metadata.Kernelspec.Name != "python3" || len(nb.Cells) < 2 {
		t.Fatalf("notebook header = nbformat %d.%d kernel %q with %d cells, want 4.5+ python3",
			nb.NBFormat, nb.NBFormatMinor, nb.Metadata.Kernelspec.Name, len(nb.Cells))
	}
	ids := map[string]bool{}
	for i, c := range nb.Cells {
		if c.ID == "" || ids[c.ID] {
			t.Fatalf("cell %d id %q is empty or repeated", i, c.ID)
		}
		ids[c.ID] = true
		if c.CellType == "code" && (c.Outputs == nil || string(c.ExecutionCount) != "null") {
			t.Fatalf("code cell %q lacks outputs/execution_count", c.ID)
		}
	}
	return nb
}

func codeOf(nb notebookDoc) []string {
	var out []string
	for _, c := range nb.Cells {
		if c.CellType == "code" {
			out = append(out, c.Source)
		}
	}
	return out
}

// pythonCheck runs a Python program that reads the code cells on stdin. It
// compiles every cell (syntax errors fail the test; the cells use no
// IPython magics, so each is plain Python) and prints the value of the
// CONFIG literal from the first cell, evaluated safely.
const pythonCheck = `
import ast, json, sys
cells = json.load(sys.stdin)
for i, src in enumerate(cells):
    compile(src, "cell%d" % i, "exec")
tree = ast.parse(cells[0])
for node in ast.walk(tree):
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CONFIG":
        call = node.value
        assert call.func.attr == "loads", "CONFIG is not json.loads(...)"
        literal = ast.literal_eval(call.args[0])
        json.dump(json.loads(literal), sys.stdout)
        break
else:
    raise SystemExit("no CONFIG assignment")
`

func runPython(t *testing.T, cells []string) map[string]any {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is needed to parse the generated code: %v", err)
	}
	in, _ := json.Marshal(cells)
	cmd := exec.Command(py, "-c", pythonCheck)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python rejected the notebook: %v\n%s", err, stderr.String())
	}
	var cfg map[string]any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("CONFIG value %q is not JSON: %v", out, err)
	}
	return cfg
}

func TestRenderGolden(t *testing.T) {
	for _, schema := range []string{string(dataset.SchemaChat), string(dataset.SchemaInstruction), string(dataset.SchemaTextLabel)} {
		t.Run(schema, func(t *testing.T) {
			spec := validSpec()
			spec.Schema = schema
			k, err := Render(spec)
			if err != nil {
				t.Fatal(err)
			}
			meta, _ := json.MarshalIndent(k.Metadata, "", "  ")
			for name, got := range map[string][]byte{
				"train-" + schema + ".ipynb":          k.Notebook,
				"kernel-metadata-" + schema + ".json": append(meta, '\n'),
			} {
				path := filepath.Join("testdata", name)
				if *update {
					if err := os.WriteFile(path, got, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("reading golden file (run go test -update once): %v", err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s differs from the golden file; rerun with -update if the change is intended", name)
				}
			}
			nb := parseNotebook(t, k.Notebook)
			cfg := runPython(t, codeOf(nb))
			if cfg["schema"] != schema || cfg["base_model"] != spec.BaseModel || cfg["adapter_dir"] != "/kaggle/working/adapter" ||
				cfg["metrics_file"] != "/kaggle/working/metrics.json" {
				t.Fatalf("CONFIG = %v, want the spec's values", cfg)
			}
			hp := cfg["hyperparameters"].(map[string]any)
			if hp["lora_rank"] != 16.0 || hp["epochs"] != 3.0 || hp["learning_rate"] != 2e-4 || hp["batch_size"] != 4.0 ||
				hp["max_seq_length"] != 1024.0 || hp["lora_alpha"] != 32.0 || hp["lora_dropout"] != 0.05 {
				t.Fatalf("hyperparameters = %v, want the spec's", hp)
			}
		})
	}
}

// Hostile values must neither break the JSON nor the Python, and must reach
// the code unchanged.
func TestRenderHostileValuesRoundTrip(t *testing.T) {
	hostile := []string{
		`x"); import os; os.system("rm -rf /"); ("`,
		"line1\nline2\r\n\"quoted\" 'single' \\backslash\\ \\u0041 \\n",
		`'''triple''' """triple""" {braces} %s %(x)s`,
		"unicode é 漢字 🚀 \u2028 \u2029 \x7f",
		"</script><!-- -->&amp;",
		`__FTS_CONFIG_LITERAL__`,
	}
	for i, v := range hostile {
		spec := validSpec()
		spec.JobID = v
		spec.BaseModel = strings.ReplaceAll(strings.ReplaceAll(v, "\n", " "), "\r", " ")
		spec.DatasetFile = strings.NewReplacer("\n", " ", "\r", " ", "/", "_", "\\", "_").Replace(v)
		k, err := Render(spec)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		nb := parseNotebook(t, k.Notebook)
		cfg := runPython(t, codeOf(nb))
		if cfg["job_id"] != spec.JobID || cfg["base_model"] != spec.BaseModel || cfg["dataset_file"] != spec.DatasetFile {
			t.Fatalf("case %d: values changed on the way: got job %q model %q file %q", i, cfg["job_id"], cfg["base_model"], cfg["dataset_file"])
		}
	}
}

func TestRenderRejectsInvalidSpecs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Spec)
		want   string
	}{
		{"unknown schema", func(s *Spec) { s.Schema = "csv" }, "schema"},
		{"rank not allowed", func(s *Spec) { s.Hyperparameters.LoraRank = 12 }, "lora_rank"},
		{"zero epochs", func(s *Spec) { s.Hyperparameters.Epochs = 0 }, "epochs"},
		{"eleven epochs", func(s *Spec) { s.Hyperparameters.Epochs = 11 }, "epochs"},
		{"learning rate zero", func(s *Spec) { s.Hyperparameters.LearningRate = 0 }, "learning_rate"},
		{"learning rate too high", func(s *Spec) { s.Hyperparameters.LearningRate = 0.02 }, "learning_rate"},
		{"batch zero", func(s *Spec) { s.Hyperparameters.BatchSize = 0 }, "batch_size"},
		{"sequence too short", func(s *Spec) { s.Hyperparameters.MaxSeqLength = 10 }, "max_seq_length"},
		{"empty model", func(s *Spec) { s.BaseModel = " " }, "base model"},
		{"model with newline", func(s *Spec) { s.BaseModel = "a\nb" }, "base model"},
		{"dataset file with path", func(s *Spec) { s.DatasetFile = "../etc/passwd" }, "dataset file"},
		{"dataset source without owner", func(s *Spec) { s.DatasetSource = "just-a-slug" }, "dataset source"},
		{"kernel slug uppercase", func(s *Spec) { s.KernelSlug = "Bad_Slug" }, "kernel slug"},
		{"dropout too high", func(s *Spec) { s.Hyperparameters.LoraDropout = 0.9 }, "lora_dropout"},
		{"quantization unknown", func(s *Spec) { s.Hyperparameters.Quantization = "8bit" }, "quantization"},
		{"alpha above the API's", func(s *Spec) { s.Hyperparameters.LoraAlpha = training.MaxLoraAlpha + 1 }, "lora_alpha"},
		{"sequence above the API's", func(s *Spec) { s.Hyperparameters.MaxSeqLength = training.MaxMaxSeqLength + 1 }, "max_seq_length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := validSpec()
			tc.mutate(&spec)
			_, err := Render(spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// TestRenderAcceptsTheAPIsLimits renders a job at both ends of every range
// the API accepts: a job the API took is never refused here.
func TestRenderAcceptsTheAPIsLimits(t *testing.T) {
	for _, rank := range training.LoraRanks() {
		low, high := validSpec(), validSpec()
		low.Hyperparameters.Hyperparameters = training.Hyperparameters{
			LoraRank: rank, LoraAlpha: training.MinLoraAlpha, LoraDropout: 0, Epochs: training.MinEpochs,
			LearningRate: 1e-9, BatchSize: training.MinBatchSize, MaxSeqLength: training.MinMaxSeqLength,
		}
		high.Hyperparameters.Hyperparameters = training.Hyperparameters{
			LoraRank: rank, LoraAlpha: training.MaxLoraAlpha, LoraDropout: training.MaxLoraDropout, Epochs: training.MaxEpochs,
			LearningRate: training.MaxLearningRate, BatchSize: training.MaxBatchSize, MaxSeqLength: training.MaxMaxSeqLength,
		}
		for _, spec := range []Spec{low, high} {
			if _, err := Render(spec); err != nil {
				t.Errorf("%+v: %v", spec.Hyperparameters, err)
			}
		}
	}
}

func TestKernelPushFields(t *testing.T) {
	spec := validSpec()
	k, err := Render(spec)
	if err != nil {
		t.Fatal(err)
	}
	p := k.Push()
	want := kaggle.KernelPush{
		Owner: spec.KernelOwner, Slug: spec.KernelSlug, Title: spec.KernelSlug, Text: string(k.Notebook),
		Language: "python", KernelType: "notebook", Private: true, EnableGPU: true, EnableInternet: true,
		DatasetSources: []string{spec.DatasetSource},
	}
	if p.Owner != want.Owner || p.Slug != want.Slug || p.Title != want.Title || p.Text != want.Text ||
		p.Language != want.Language || p.KernelType != want.KernelType || !p.Private || !p.EnableGPU || !p.EnableInternet ||
		len(p.DatasetSources) != 1 || p.DatasetSources[0] != spec.DatasetSource {
		t.Fatalf("push = %+v, want %+v", p, want)
	}
	off := false
	spec.EnableInternet = &off
	if k, _ := Render(spec); k.Metadata.EnableInternet {
		t.Fatal("EnableInternet false was ignored")
	}
}
