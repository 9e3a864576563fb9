package notebook

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/finetune-studio/finetune-studio/app/internal/dataset"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// nbformatCheck validates a notebook read from stdin against the nbformat
// v4 JSON schema with Jupyter's own library (Debian's python3-nbformat),
// then compiles every code cell.
const nbformatCheck = `
import sys
import nbformat
nb = nbformat.reads(sys.stdin.read(), as_version=nbformat.NO_CONVERT)
if nb.nbformat != 4:
    raise SystemExit("nbformat %s, want 4" % nb.nbformat)
nbformat.validate(nb)
for i, c in enumerate(nb.cells):
    if c.cell_type == "code":
        compile(c.source, "cell%d" % i, "exec")
`

// nbformatPython is the first python3 that imports nbformat: the one on
// PATH, else Debian's (python3-nbformat installs for /usr/bin/python3 only,
// and a PATH python3 may be another interpreter).
var nbformatPython = sync.OnceValue(func() string {
	var candidates []string
	if py, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, py)
	}
	for _, py := range append(candidates, "/usr/bin/python3") {
		if exec.Command(py, "-c", "import nbformat").Run() == nil {
			return py
		}
	}
	return ""
})

func validateNotebook(t *testing.T, text []byte) error {
	t.Helper()
	py := nbformatPython()
	if py == "" {
		t.Fatal("no python3 with nbformat: deploy/scripts/install-tools.sh test installs python3-nbformat")
	}
	cmd := exec.Command(py, "-c", nbformatCheck)
	cmd.Stdin = bytes.NewReader(text)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return &validationError{stderr.String()}
	}
	return nil
}

type validationError struct{ out string }

func (e *validationError) Error() string { return e.out }

func TestNotebookIsValidNBFormat(t *testing.T) {
	for _, schema := range []string{string(dataset.SchemaChat), string(dataset.SchemaInstruction), string(dataset.SchemaTextLabel)} {
		for _, quant := range []string{training.QuantizationNone, training.Quantization4Bit} {
			spec := validSpec()
			spec.Schema = schema
			spec.Hyperparameters.Quantization = quant
			k, err := Render(spec)
			if err != nil {
				t.Fatal(err)
			}
			if err := validateNotebook(t, k.Notebook); err != nil {
				t.Errorf("%s/%s: the notebook is not valid nbformat 4: %v", schema, quant, err)
			}
		}
	}
}

// The check itself must catch what Kaggle or Jupyter would reject.
func TestNotebookValidationCatchesBrokenNotebooks(t *testing.T) {
	k, err := Render(validSpec())
	if err != nil {
		t.Fatal(err)
	}
	for name, breakIt := range map[string]func(nb map[string]any){
		"code cell without outputs": func(nb map[string]any) { delete(cell0(nb, "code"), "outputs") },
		"unknown cell type":         func(nb map[string]any) { cell0(nb, "code")["cell_type"] = "python" },
		"source not text":           func(nb map[string]any) { cell0(nb, "code")["source"] = 42 },
		"syntax error in a cell":    func(nb map[string]any) { cell0(nb, "code")["source"] = "def broken(:\n    pass" },
		"no nbformat_minor":         func(nb map[string]any) { delete(nb, "nbformat_minor") },
	} {
		var nb map[string]any
		if err := json.Unmarshal(k.Notebook, &nb); err != nil {
			t.Fatal(err)
		}
		breakIt(nb)
		text, _ := json.Marshal(nb)
		if validateNotebook(t, text) == nil {
			t.Errorf("%s: the validation passed a broken notebook", name)
		}
	}
}

func cell0(nb map[string]any, kind string) map[string]any {
	for _, c := range nb["cells"].([]any) {
		if c := c.(map[string]any); c["cell_type"] == kind {
			return c
		}
	}
	panic("no " + kind + " cell")
}

// No cell may carry or fetch a credential: the models are public, and a
// token written into the source would be readable by anyone with the kernel.
func TestNotebookCarriesNoToken(t *testing.T) {
	k, err := Render(validSpec())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range codeOf(parseNotebook(t, k.Notebook)) {
		for _, bad := range []string{"token=", "use_auth_token", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "login(", "UserSecretsClient"} {
			if strings.Contains(c, bad) {
				t.Errorf("a cell contains %q:\n%s", bad, c)
			}
		}
	}
}

// cellHarness executes named cells for real with a stand-in torch (CUDA
// and bfloat16 as given in argv), recording what pip would install.
const cellHarness = `
import json, sys, types, importlib.util, subprocess
cells = json.load(sys.stdin)
opts = json.loads(sys.argv[1])
torch = types.ModuleType("torch")
torch.bfloat16, torch.float16, torch.float32 = "bfloat16", "float16", "float32"
cuda = types.ModuleType("torch.cuda")
cuda.is_available = lambda: opts["cuda"]
cuda.is_bf16_supported = lambda: opts["bf16"]
cuda.get_device_name = lambda i: "stand-in"
torch.cuda = cuda
sys.modules["torch"] = torch
installed = []
importlib.util.find_spec = lambda name: None
subprocess.check_call = lambda args: installed.extend(args[args.index("--quiet") + 1:])
import contextlib
scope = {}
result = {}
with contextlib.redirect_stdout(sys.stderr):
    for name in opts["cells"]:
        try:
            exec(cells[name], scope)
        except Exception as err:
            result["error"] = str(err)
            break
result.update({"precision": scope.get("PRECISION"), "installed": installed})
json.dump(result, sys.stdout)
`

type cellResult struct {
	Precision string   `json:"precision"`
	Installed []string `json:"installed"`
	Error     string   `json:"error"`
}

func runCells(t *testing.T, spec Spec, cudaOK, bf16 bool, names ...string) cellResult {
	t.Helper()
	k, err := Render(spec)
	if err != nil {
		t.Fatal(err)
	}
	cells := map[string]string{}
	for _, c := range parseNotebook(t, k.Notebook).Cells {
		cells[c.ID] = c.Source
	}
	in, _ := json.Marshal(cells)
	opts, _ := json.Marshal(map[string]any{"cuda": cudaOK, "bf16": bf16, "cells": names})
	cmd := exec.Command("python3", "-c", cellHarness, string(opts))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("running cells %v: %v\n%s", names, err, stderr.String())
	}
	var res cellResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("harness output %q: %v", out, err)
	}
	return res
}

func TestPrecisionCellFollowsTheGPU(t *testing.T) {
	stable := validSpec() // Qwen2.5-0.5B
	unstable := validSpec()
	unstable.BaseModel = "Qwen/Qwen2.5-7B-Instruct"
	for _, tc := range []struct {
		name       string
		spec       Spec
		cuda, bf16 bool
		want       string
	}{
		{"T4 or P100: fp16 with loss scaling", stable, true, false, "fp16"},
		{"Ampere or later: bf16", stable, true, true, "bf16"},
		{"fp16-unstable model without bf16: fp32", unstable, true, false, "fp32"},
		{"fp16-unstable model with bf16: bf16", unstable, true, true, "bf16"},
		{"no GPU: fp32", stable, false, false, "fp32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runCells(t, tc.spec, tc.cuda, tc.bf16, "config", "precision")
			if res.Error != "" || res.Precision != tc.want {
				t.Fatalf("precision %q (error %q), want %q", res.Precision, res.Error, tc.want)
			}
		})
	}
	q := validSpec()
	q.Hyperparameters.Quantization = training.Quantization4Bit
	if res := runCells(t, q, false, false, "config", "precision"); !strings.Contains(res.Error, "needs a CUDA GPU") {
		t.Fatalf("4bit without a GPU: error %q, want one saying it needs a CUDA GPU", res.Error)
	}
}

func TestInstallCellAddsBitsandbytesFor4Bit(t *testing.T) {
	plain := validSpec()
	if res := runCells(t, plain, true, false, "config", "install"); strings.Join(res.Installed, ",") != "transformers,peft,accelerate" {
		t.Fatalf("installed %v, want transformers, peft, accelerate", res.Installed)
	}
	q := validSpec()
	q.Hyperparameters.Quantization = training.Quantization4Bit
	if res := runCells(t, q, true, false, "config", "install"); strings.Join(res.Installed, ",") != "transformers,peft,accelerate,bitsandbytes" {
		t.Fatalf("installed %v, want bitsandbytes too", res.Installed)
	}
}
