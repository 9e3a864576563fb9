package training

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

// The defaults must never be refused: every default model trains with the
// default hyperparameters on the default GPU.
func TestDefaultModelsFitTheT4WithDefaults(t *testing.T) {
	gpu := defaultGPU()
	for _, id := range DefaultBaseModelIDs() {
		m, ok := LookupBaseModel(id)
		if !ok {
			t.Fatalf("default model %s has no recorded size", id)
		}
		t.Logf("%s with the defaults: %.1f GiB of %.1f GiB", id, float64(EstimateTrainingMemory(m, DefaultHyperparameters(), gpu))/gib, float64(gpu.MemoryBytes)/gib)
		if d := checkMemory(m, DefaultHyperparameters(), gpu); d != nil {
			t.Errorf("%s with the defaults refused on %s: %v", id, gpu.Name, d)
		}
	}
}

// l4 is a 24 GB card with bfloat16, like Kaggle's NvidiaL4 shape.
var l4 = GPU{Name: "NvidiaL4", MemoryBytes: 24e9, BF16: true}

func TestMemoryPlan(t *testing.T) {
	t4 := defaultGPU()
	hp := func(batch, seq int, quant string) Hyperparameters {
		h := DefaultHyperparameters()
		h.BatchSize, h.MaxSeqLength, h.Quantization = batch, seq, quant
		return h
	}
	for _, tc := range []struct {
		name  string
		model string
		h     Hyperparameters
		gpu   GPU
		fits  bool
	}{
		{"small model, long and wide", "HuggingFaceTB/SmolLM2-360M-Instruct", hp(8, 2048, QuantizationNone), t4, true},
		// Qwen's 152k vocabulary: 8 x 1024 tokens of float32 logits and
		// their gradient are about 10 GB on their own.
		{"big vocabulary, batch 8", "Qwen/Qwen2.5-1.5B-Instruct", hp(8, 1024, QuantizationNone), t4, false},
		{"everything at the maximum", "Qwen/Qwen2.5-0.5B-Instruct", hp(MaxBatchSize, MaxMaxSeqLength, QuantizationNone), t4, false},
		// 7.6B parameters are 15 GB in 16 bits: only 4-bit fits.
		{"7B in 16 bits", "Qwen/Qwen2.5-7B-Instruct", hp(1, 512, QuantizationNone), t4, false},
		{"7B in 4 bits", "Qwen/Qwen2.5-7B-Instruct", hp(1, 1024, Quantization4Bit), t4, true},
		{"7B in 4 bits, batch 4", "Qwen/Qwen2.5-7B-Instruct", hp(4, 1024, Quantization4Bit), t4, false},
		{"L4 has more memory", "Qwen/Qwen2.5-1.5B-Instruct", hp(8, 1024, QuantizationNone), l4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, ok := LookupBaseModel(tc.model)
			if !ok {
				t.Fatalf("%s unknown", tc.model)
			}
			gpu := tc.gpu
			need := EstimateTrainingMemory(m, tc.h, gpu)
			details := checkMemory(m, tc.h, gpu)
			t.Logf("%s on %s: %.1f GiB of %.1f GiB", tc.model, gpu.Name, float64(need)/gib, float64(gpu.MemoryBytes)/gib)
			if (details == nil) != tc.fits {
				t.Fatalf("needs %.1f GiB of %.1f GiB: fits = %v, want %v", float64(need)/gib, float64(gpu.MemoryBytes)/gib, details == nil, tc.fits)
			}
			if !tc.fits && !strings.Contains(details[0].Issue, gpu.Name) {
				t.Errorf("issue %q does not name the GPU %s", details[0].Issue, gpu.Name)
			}
		})
	}
}

func TestPrecisionFollowsTheGPU(t *testing.T) {
	qwen, _ := LookupBaseModel("Qwen/Qwen2.5-0.5B-Instruct")
	unstable, _ := LookupBaseModel("Qwen/Qwen2.5-7B-Instruct")
	t4 := defaultGPU()
	for _, tc := range []struct {
		gpu  GPU
		m    BaseModel
		want string
	}{
		{t4, qwen, "fp16"},
		{t4, unstable, "fp32"},
		{l4, qwen, "bf16"},
		{l4, unstable, "bf16"},
	} {
		if got := tc.gpu.Precision(tc.m); got != tc.want {
			t.Errorf("%s on %s: precision %s, want %s", tc.m.ID, tc.gpu.Name, got, tc.want)
		}
	}
	// float32 doubles what the activations and weights take.
	h := DefaultHyperparameters()
	if a, b := EstimateTrainingMemory(unstable, h, t4), EstimateTrainingMemory(unstable, h, l4); a <= b {
		t.Errorf("fp32 plan %d not above the bf16 plan %d", a, b)
	}
}

func TestCheckBaseModel(t *testing.T) {
	for id, want := range map[string]string{
		"Qwen/Qwen2.5-0.5B-Instruct":       "",
		"meta-llama/Llama-3.2-1B-Instruct": "gated",
		"google/gemma-2-2b-it":             "gated",
		"someone/else":                     "no recorded size",
	} {
		err := CheckBaseModel(id)
		if (err == nil) != (want == "") || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", id, err, want)
		}
	}
}

// CreateJob refuses a run that cannot fit before it touches the store (the
// service has none here) or Kaggle.
func TestCreateJobRefusesWhatCannotFit(t *testing.T) {
	// No GPU configured: planned as Kaggle's default T4.
	s := NewService(nil, nil, ServiceConfig{BaseModels: DefaultBaseModelIDs(), BackendConfigured: true},
		slog.New(slog.NewJSONHandler(io.Discard, nil)))
	batch, seq := 16, 2048
	_, err := s.CreateJob(context.Background(), JobInput{
		DatasetID: NewID(), BaseModel: "Qwen/Qwen2.5-1.5B-Instruct",
		Hyperparameters: &HyperparametersInput{BatchSize: &batch, MaxSeqLength: &seq},
	})
	var pe *problem.Error
	if !errors.As(err, &pe) || pe.Code != problem.CodeUnprocessable {
		t.Fatalf("err = %v, want a 422 problem", err)
	}
	var fields []string
	for _, d := range pe.Details {
		fields = append(fields, d.Field)
	}
	want := "base_model,hyperparameters.batch_size,hyperparameters.max_seq_length,hyperparameters.quantization"
	if strings.Join(fields, ",") != want {
		t.Fatalf("fields %v, want %s", fields, want)
	}
	if !strings.Contains(pe.Details[1].Issue, `"4bit"`) {
		t.Errorf("batch_size issue %q does not suggest 4bit", pe.Details[1].Issue)
	}
}
