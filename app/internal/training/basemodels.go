package training

import (
	"fmt"
	"slices"
	"strings"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

// BaseModel is a base model a job may fine-tune, with what the training
// notebook and the memory plan need to know about it. The architecture
// numbers are the model's config.json on Hugging Face.
type BaseModel struct {
	// ID is the Hugging Face model id the kernel downloads, without a
	// token: every model here is public and not gated.
	ID string
	// Params is the parameter count and WeightBytes the size of the
	// published bf16 weights the kernel downloads, both rounded from the
	// model card.
	Params      int64
	WeightBytes int64
	// Architecture, from config.json.
	Layers         int
	Hidden         int
	Intermediate   int
	Heads          int
	KVHeads        int
	HeadDim        int
	Vocab          int
	TiedEmbeddings bool
	// FP16Unstable marks a model whose activations overflow in float16: on
	// a GPU without bfloat16 it computes in float32 instead.
	FP16Unstable bool
}

// baseModels is every model an operator may allow (TRAINING_BASE_MODELS).
// Each is public on Hugging Face, so a Kaggle kernel loads it without a
// token: the push cannot attach Kaggle Secrets and a token must never be
// written into the kernel's source.
var baseModels = []BaseModel{
	{ID: "Qwen/Qwen2.5-0.5B-Instruct", Params: 494_000_000, WeightBytes: 988_000_000,
		Layers: 24, Hidden: 896, Intermediate: 4864, Heads: 14, KVHeads: 2, HeadDim: 64, Vocab: 151936, TiedEmbeddings: true},
	{ID: "Qwen/Qwen2.5-1.5B-Instruct", Params: 1_540_000_000, WeightBytes: 3_090_000_000,
		Layers: 28, Hidden: 1536, Intermediate: 8960, Heads: 12, KVHeads: 2, HeadDim: 128, Vocab: 151936, TiedEmbeddings: true},
	{ID: "HuggingFaceTB/SmolLM2-360M-Instruct", Params: 362_000_000, WeightBytes: 724_000_000,
		Layers: 32, Hidden: 960, Intermediate: 2560, Heads: 15, KVHeads: 5, HeadDim: 64, Vocab: 49152, TiedEmbeddings: true},
	{ID: "HuggingFaceTB/SmolLM2-1.7B-Instruct", Params: 1_710_000_000, WeightBytes: 3_420_000_000,
		Layers: 24, Hidden: 2048, Intermediate: 8192, Heads: 32, KVHeads: 32, HeadDim: 64, Vocab: 49152, TiedEmbeddings: true},
	// Not in the default allow-list (a 15 GB download; trains only with
	// quantization "4bit" on a 16 GB GPU). Qwen's maintainers say the Qwen2
	// family overflows in float16 (github.com/QwenLM/Qwen3/issues/868), which
	// bites at this size: it computes in float32 where bf16 is missing.
	{ID: "Qwen/Qwen2.5-7B-Instruct", Params: 7_610_000_000, WeightBytes: 15_200_000_000,
		Layers: 28, Hidden: 3584, Intermediate: 18944, Heads: 28, KVHeads: 4, HeadDim: 128, Vocab: 152064, FP16Unstable: true},
}

// gatedBaseModels are models earlier versions allowed by default that a
// kernel cannot load: Hugging Face answers 401 "Cannot access gated repo"
// without a token (Llama: github.com/sgl-project/sglang/pull/14644; Gemma:
// github.com/sgl-project/sglang-jax/issues/358,
// github.com/city96/ComfyUI_ExtraModels/issues/99). docs/kaggle.md explains
// why they are not offered.
var gatedBaseModels = []string{"meta-llama/", "google/gemma-"}

// DefaultBaseModelIDs is the allow-list used when TRAINING_BASE_MODELS is
// unset: the small models that train with the default hyperparameters on a
// 16 GB GPU.
func DefaultBaseModelIDs() []string {
	return []string{"Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct",
		"HuggingFaceTB/SmolLM2-360M-Instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct"}
}

// LookupBaseModel returns the known model with this id.
func LookupBaseModel(id string) (BaseModel, bool) {
	i := slices.IndexFunc(baseModels, func(m BaseModel) bool { return m.ID == id })
	if i < 0 {
		return BaseModel{}, false
	}
	return baseModels[i], true
}

// CheckBaseModel says why id cannot be allowed, or nil when it can.
func CheckBaseModel(id string) error {
	if _, ok := LookupBaseModel(id); ok {
		return nil
	}
	for _, prefix := range gatedBaseModels {
		if strings.HasPrefix(id, prefix) {
			return fmt.Errorf("%s is gated on Hugging Face: a Kaggle kernel cannot load it without a token (see docs/kaggle.md)", id)
		}
	}
	ids := make([]string, len(baseModels))
	for i, m := range baseModels {
		ids[i] = m.ID
	}
	return fmt.Errorf("%s has no recorded size, so its memory needs cannot be checked; known models: %s", id, strings.Join(ids, ", "))
}

// Quantization of the base model's weights while training.
const (
	QuantizationNone = "none"
	// Quantization4Bit is QLoRA: NF4 weights through bitsandbytes, so a
	// larger model fits a 16 GB GPU.
	Quantization4Bit = "4bit"
)

// GPU is the accelerator a kernel trains on, as the memory plan sees it.
type GPU struct {
	// Name is Kaggle's machine shape.
	Name string
	// MemoryBytes is one card's nominal memory (16 GB is 16e9 bytes, about
	// 14.9 GiB, near the 15 GiB PyTorch sees on a T4). A shape with two
	// cards is planned as one: the run must fit the first device.
	MemoryBytes int64
	// BF16 is whether the GPU computes in bfloat16 (compute capability 8.0
	// and later).
	BF16 bool
}

// defaultGPU is Kaggle's default machine shape, NvidiaTeslaT4: 16 GB T4
// cards, no bfloat16. ServiceConfig.GPU falls back to it.
func defaultGPU() GPU { return GPU{Name: "NvidiaTeslaT4", MemoryBytes: 16e9} }

// Precision names the compute dtype.
func (g GPU) Precision(m BaseModel) string {
	switch {
	case g.BF16:
		return "bf16"
	case m.FP16Unstable:
		return "fp32"
	}
	return "fp16"
}

const gib = 1 << 30

// EstimateTrainingMemory is the GPU memory, in bytes, that a LoRA run of m
// with h needs on gpu: the notebook's own setup (gradient checkpointing,
// AdamW on the adapters, loss on full logits). It errs high: refusing a
// job that would have fit costs a retry with a smaller batch, pushing one
// that does not costs a GPU session that ends in "CUDA out of memory".
func EstimateTrainingMemory(m BaseModel, h Hyperparameters, gpu GPU) int64 {
	compute := int64(2)
	if gpu.Precision(m) == "fp32" {
		compute = 4
	}
	embedding := int64(m.Vocab) * int64(m.Hidden)
	if !m.TiedEmbeddings {
		embedding *= 2 // the output head is a second matrix
	}
	var weights int64
	if h.Quantization == Quantization4Bit {
		// NF4 with double quantisation: about 4.13 bits a weight. Embeddings
		// and the output head stay unquantised, and peft's
		// prepare_model_for_kbit_training casts them to float32.
		weights = (m.Params-embedding)*413/800 + embedding*4
	} else {
		weights = m.WeightBytes / 2 * compute // published in bf16, 2 bytes a weight
	}
	// LoRA on every linear layer (q, k, v, o, gate, up, down): rank x (in +
	// out) each, float32 weight, gradient and two AdamW moments.
	q, kv := int64(m.Heads*m.HeadDim), int64(m.KVHeads*m.HeadDim)
	hidden, inter := int64(m.Hidden), int64(m.Intermediate)
	perLayer := 7*hidden + 2*q + 2*kv + 3*inter
	adapters := int64(h.LoraRank) * int64(m.Layers) * perLayer * 16
	tokens := int64(h.BatchSize) * int64(h.MaxSeqLength)
	// Gradient checkpointing keeps each layer's input and recomputes one
	// layer at a time.
	checkpoints := int64(m.Layers) * tokens * hidden * compute
	layer := tokens * (10*hidden + 4*inter) * compute
	// The loss upcasts the logits to float32 and keeps their gradient.
	logits := tokens * int64(m.Vocab) * (compute + 8)
	// CUDA context and allocator slack.
	total := weights + adapters + checkpoints + layer + logits + gib*3/4
	return total + total/10
}

// checkMemory refuses a run that cannot fit gpu, naming the fields a user
// can change.
func checkMemory(m BaseModel, h Hyperparameters, gpu GPU) []problem.Detail {
	need := EstimateTrainingMemory(m, h, gpu)
	if need <= gpu.MemoryBytes {
		return nil
	}
	issue := fmt.Sprintf("this run needs about %.1f GiB of GPU memory and the %s offers %.1f GiB (%s, %s, batch_size %d x max_seq_length %d)",
		float64(need)/gib, gpu.Name, float64(gpu.MemoryBytes)/gib, m.ID, gpu.Precision(m), h.BatchSize, h.MaxSeqLength)
	fix := "lower batch_size or max_seq_length"
	if h.Quantization != Quantization4Bit {
		fix += `, or set quantization to "4bit"`
	}
	return []problem.Detail{
		{Field: "base_model", Issue: issue},
		{Field: "hyperparameters.batch_size", Issue: "too large for this model and sequence length: " + fix},
		{Field: "hyperparameters.max_seq_length", Issue: "too long for this model and batch size: " + fix},
		{Field: "hyperparameters.quantization", Issue: quantizationIssue(h)},
	}
}

func quantizationIssue(h Hyperparameters) string {
	if h.Quantization == Quantization4Bit {
		return "4bit is not enough for this combination"
	}
	return `"none" keeps 16-bit weights; "4bit" needs about a quarter of their memory`
}
