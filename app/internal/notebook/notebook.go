// Package notebook renders the Kaggle kernel that fine-tunes one job: a
// Jupyter (nbformat 4) notebook whose Python trains a LoRA adapter with
// transformers + peft on a Kaggle GPU, and the kernel's metadata (private,
// GPU, internet, dataset source).
//
// The notebook reads the job's dataset from /kaggle/input, formats every
// record by its schema (the model's chat template for "chat", an
// Alpaca-style prompt for "instruction", a "text -> label" prompt for
// "text_label"), trains with the job's hyperparameters and writes the
// adapter to /kaggle/working/adapter/ and metrics.json to /kaggle/working/,
// which Kaggle then serves as the kernel's output.
//
// Job values reach the Python code only as one JSON document embedded as a
// string literal and parsed with json.loads, so no value (a model id, a file
// name with quotes or newlines) can change the code.
package notebook

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/finetune-studio/finetune-studio/app/internal/dataset"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// Output locations inside the kernel; Kaggle lists files under
// /kaggle/working as output, with paths relative to it.
const (
	AdapterDir  = "adapter"
	MetricsFile = "metrics.json"
)

// Hyperparameters of one run: the job's (the API's fields, checked against
// the training package's ranges) plus knobs only the notebook has.
type Hyperparameters struct {
	training.Hyperparameters
	// GradientAccumulationSteps multiplies the effective batch. Default 1.
	GradientAccumulationSteps int `json:"gradient_accumulation_steps"`
	// WarmupRatio is the share of steps with a rising learning rate.
	// Default 0.03.
	WarmupRatio float64 `json:"warmup_ratio"`
	// EvalFraction of the examples is held out to report an eval loss;
	// 0 disables evaluation. Default 0.05 (at least one example).
	EvalFraction float64 `json:"eval_fraction"`
	// Seed makes the split and training reproducible. Default 42.
	Seed int `json:"seed"`
}

// Spec is everything the notebook needs for one job.
type Spec struct {
	// JobID is recorded in metrics.json.
	JobID string
	// BaseModel is a Hugging Face model id, e.g. "Qwen/Qwen2.5-0.5B-Instruct".
	BaseModel string
	// Schema is one of the dataset package's schemas (chat, instruction,
	// text_label).
	Schema string
	// Hyperparameters are the validated training settings.
	Hyperparameters Hyperparameters
	// DatasetSource is the Kaggle dataset "owner/slug" holding the data,
	// mounted by Kaggle under /kaggle/input/<slug>/.
	DatasetSource string
	// DatasetFile is the data file's name inside that dataset
	// ("train.jsonl" or "train.json").
	DatasetFile string
	// KernelOwner and KernelSlug name the kernel; KernelTitle defaults to
	// KernelSlug (Kaggle derives a kernel's slug from its title).
	KernelOwner string
	KernelSlug  string
	KernelTitle string
	// EnableInternet lets the kernel pip-install missing packages and
	// download the base model from Hugging Face. Default true (nil).
	EnableInternet *bool
}

// Kernel is a rendered kernel: the notebook and its metadata.
type Kernel struct {
	// Notebook is the .ipynb JSON.
	Notebook []byte
	// Metadata is kernel-metadata.json, as the Kaggle CLI reads it.
	Metadata Metadata
}

// Metadata is Kaggle's kernel-metadata.json.
type Metadata struct {
	ID                 string   `json:"id"`
	Title              string   `json:"title"`
	CodeFile           string   `json:"code_file"`
	Language           string   `json:"language"`
	KernelType         string   `json:"kernel_type"`
	IsPrivate          bool     `json:"is_private"`
	EnableGPU          bool     `json:"enable_gpu"`
	EnableTPU          bool     `json:"enable_tpu"`
	EnableInternet     bool     `json:"enable_internet"`
	DatasetSources     []string `json:"dataset_sources"`
	CompetitionSources []string `json:"competition_sources"`
	KernelSources      []string `json:"kernel_sources"`
	ModelSources       []string `json:"model_sources"`
}

// Push returns the kernel as a push request for the Kaggle client.
func (k Kernel) Push() kaggle.KernelPush {
	owner, slug, _ := strings.Cut(k.Metadata.ID, "/")
	return kaggle.KernelPush{
		Owner: owner, Slug: slug, Title: k.Metadata.Title, Text: string(k.Notebook),
		Language: k.Metadata.Language, KernelType: k.Metadata.KernelType,
		Private: k.Metadata.IsPrivate, EnableGPU: k.Metadata.EnableGPU, EnableInternet: k.Metadata.EnableInternet,
		DatasetSources: slices.Clone(k.Metadata.DatasetSources),
	}
}

// Allowed names. The hyperparameter ranges are the training package's.
var (
	refRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}/[a-z0-9][a-z0-9-]{1,48}[a-z0-9]$`)
	slugRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,48}[a-z0-9]$`)
	ownerRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)
)

// Validate reports the first problem with s, after defaults are applied.
func (s Spec) Validate() error {
	h := s.Hyperparameters
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(strings.TrimSpace(s.BaseModel) != "" && len(s.BaseModel) <= 200 && !strings.ContainsAny(s.BaseModel, "\x00\r\n"),
		"base model must be a model id of at most 200 characters")
	schema := dataset.Schema(s.Schema)
	check(schema == dataset.SchemaChat || schema == dataset.SchemaInstruction || schema == dataset.SchemaTextLabel,
		"schema must be %s, %s or %s (got %q)", dataset.SchemaChat, dataset.SchemaInstruction, dataset.SchemaTextLabel, s.Schema)
	ranks := training.LoraRanks()
	check(slices.Contains(ranks, h.LoraRank), "lora_rank must be one of %s (got %d)", joinInts(ranks), h.LoraRank)
	check(h.LoraAlpha >= training.MinLoraAlpha && h.LoraAlpha <= training.MaxLoraAlpha,
		"lora_alpha must be between %d and %d (got %d)", training.MinLoraAlpha, training.MaxLoraAlpha, h.LoraAlpha)
	check(h.LoraDropout >= 0 && h.LoraDropout <= training.MaxLoraDropout,
		"lora_dropout must be between 0 and %g (got %g)", training.MaxLoraDropout, h.LoraDropout)
	check(h.Epochs >= training.MinEpochs && h.Epochs <= training.MaxEpochs,
		"epochs must be between %d and %d (got %d)", training.MinEpochs, training.MaxEpochs, h.Epochs)
	check(h.LearningRate > 0 && h.LearningRate <= training.MaxLearningRate && !math.IsNaN(h.LearningRate),
		"learning_rate must be in (0, %g] (got %g)", training.MaxLearningRate, h.LearningRate)
	check(h.BatchSize >= training.MinBatchSize && h.BatchSize <= training.MaxBatchSize,
		"batch_size must be between %d and %d (got %d)", training.MinBatchSize, training.MaxBatchSize, h.BatchSize)
	check(h.MaxSeqLength >= training.MinMaxSeqLength && h.MaxSeqLength <= training.MaxMaxSeqLength,
		"max_seq_length must be between %d and %d (got %d)", training.MinMaxSeqLength, training.MaxMaxSeqLength, h.MaxSeqLength)
	check(h.Quantization == training.QuantizationNone || h.Quantization == training.Quantization4Bit,
		"quantization must be %q or %q (got %q)", training.QuantizationNone, training.Quantization4Bit, h.Quantization)
	check(h.GradientAccumulationSteps >= 0 && h.GradientAccumulationSteps <= 64,
		"gradient_accumulation_steps must be between 1 and 64 (got %d)", h.GradientAccumulationSteps)
	check(h.WarmupRatio >= 0 && h.WarmupRatio <= 0.5, "warmup_ratio must be between 0 and 0.5 (got %g)", h.WarmupRatio)
	check(h.EvalFraction >= 0 && h.EvalFraction <= 0.5, "eval_fraction must be between 0 and 0.5 (got %g)", h.EvalFraction)
	check(refRE.MatchString(s.DatasetSource), "dataset source must be a Kaggle dataset reference owner/slug (got %q)", s.DatasetSource)
	check(s.DatasetFile != "" && len(s.DatasetFile) <= 255 && !strings.ContainsAny(s.DatasetFile, "/\\\x00\r\n") &&
		s.DatasetFile != "." && s.DatasetFile != "..", "dataset file must be a plain file name (got %q)", s.DatasetFile)
	check(ownerRE.MatchString(s.KernelOwner), "kernel owner must be a Kaggle user name (got %q)", s.KernelOwner)
	check(slugRE.MatchString(s.KernelSlug), "kernel slug must be 3 to 50 lowercase letters, digits or dashes (got %q)", s.KernelSlug)
	check(len(s.KernelTitle) <= 50, "kernel title must be at most 50 characters")
	return errors.Join(errs...)
}

// joinInts lists ns as "4, 8, 16".
func joinInts(ns []int) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ", ")
}

func (s Spec) withDefaults() Spec {
	h := &s.Hyperparameters
	if h.GradientAccumulationSteps == 0 {
		h.GradientAccumulationSteps = 1
	}
	if h.WarmupRatio == 0 {
		h.WarmupRatio = 0.03
	}
	if h.EvalFraction == 0 {
		h.EvalFraction = 0.05
	}
	if h.Seed == 0 {
		h.Seed = 42
	}
	if h.Quantization == "" { // a job stored before quantization existed
		h.Quantization = training.QuantizationNone
	}
	if s.KernelTitle == "" {
		s.KernelTitle = s.KernelSlug
	}
	if s.EnableInternet == nil {
		on := true
		s.EnableInternet = &on
	}
	return s
}

// trainConfig is the JSON document the notebook's code reads.
type trainConfig struct {
	JobID           string          `json:"job_id"`
	BaseModel       string          `json:"base_model"`
	Schema          string          `json:"schema"`
	DatasetSource   string          `json:"dataset_source"`
	DatasetFile     string          `json:"dataset_file"`
	Hyperparameters Hyperparameters `json:"hyperparameters"`
	OutputDir       string          `json:"output_dir"`
	AdapterDir      string          `json:"adapter_dir"`
	MetricsFile     string          `json:"metrics_file"`
	// FP16Unstable: compute in float32 where the GPU lacks bfloat16.
	FP16Unstable bool `json:"fp16_unstable"`
}

// Render validates spec and renders its kernel.
func Render(spec Spec) (Kernel, error) {
	spec = spec.withDefaults()
	if err := spec.Validate(); err != nil {
		return Kernel{}, fmt.Errorf("invalid notebook spec: %w", err)
	}
	cfg := trainConfig{
		JobID: spec.JobID, BaseModel: spec.BaseModel, Schema: spec.Schema,
		DatasetSource: spec.DatasetSource, DatasetFile: spec.DatasetFile,
		Hyperparameters: spec.Hyperparameters,
		OutputDir:       "/kaggle/working", AdapterDir: "/kaggle/working/" + AdapterDir,
		MetricsFile: "/kaggle/working/" + MetricsFile,
	}
	if m, ok := training.LookupBaseModel(spec.BaseModel); ok {
		cfg.FP16Unstable = m.FP16Unstable
	}
	literal, err := pythonStringLiteral(cfg)
	if err != nil {
		return Kernel{}, err
	}
	cells := []cell{markdownCell("intro", introMarkdown)}
	for i, c := range codeCells {
		src := c.source
		if i == 0 {
			src = strings.Replace(src, configPlaceholder, literal, 1)
		}
		cells = append(cells, codeCell(c.id, src))
	}
	nb := ipynb{
		Cells: cells,
		Metadata: map[string]any{
			"kernelspec":    map[string]string{"display_name": "Python 3", "language": "python", "name": "python3"},
			"language_info": map[string]string{"name": "python"},
		},
		NBFormat:      4,
		NBFormatMinor: 5,
	}
	text, err := json.MarshalIndent(nb, "", " ")
	if err != nil {
		return Kernel{}, fmt.Errorf("encoding notebook: %w", err)
	}
	return Kernel{
		Notebook: append(text, '\n'),
		Metadata: Metadata{
			ID: spec.KernelOwner + "/" + spec.KernelSlug, Title: spec.KernelTitle,
			CodeFile: "train.ipynb", Language: "python", KernelType: "notebook",
			IsPrivate: true, EnableGPU: true, EnableInternet: *spec.EnableInternet,
			DatasetSources:     []string{spec.DatasetSource},
			CompetitionSources: []string{}, KernelSources: []string{}, ModelSources: []string{},
		},
	}, nil
}

// pythonStringLiteral encodes v as JSON and then that JSON text as a JSON
// string. Go's encoder only emits the escapes \" \\ \n \r \t \b \f and
// \uXXXX, which mean the same in a Python string literal, so the result is
// a valid Python literal whose value is exactly the JSON document.
func pythonStringLiteral(v any) (string, error) {
	doc, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding notebook config: %w", err)
	}
	lit, err := json.Marshal(string(doc))
	if err != nil {
		return "", fmt.Errorf("encoding notebook config: %w", err)
	}
	return string(lit), nil
}

type ipynb struct {
	Cells         []cell         `json:"cells"`
	Metadata      map[string]any `json:"metadata"`
	NBFormat      int            `json:"nbformat"`
	NBFormatMinor int            `json:"nbformat_minor"`
}

// cell is a notebook cell. A map keeps code-only keys (execution_count,
// outputs, which nbformat requires even when empty) off markdown cells;
// encoding/json sorts map keys, so output stays deterministic.
type cell map[string]any

// A cell's source is one string, not nbformat's alternative list of lines:
// Kaggle's official client joins each cell's lines before pushing, and the
// server answered 500 to a list.
func codeCell(id, src string) cell {
	return cell{"cell_type": "code", "id": id, "execution_count": nil, "metadata": map[string]any{},
		"outputs": []any{}, "source": strings.Trim(src, "\n")}
}

func markdownCell(id, src string) cell {
	return cell{"cell_type": "markdown", "id": id, "metadata": map[string]any{}, "source": strings.Trim(src, "\n")}
}
