package training

import (
	"fmt"
	"math"
	"slices"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

// Hyperparameters configure one LoRA fine-tuning run. The ranges are what a
// free Kaggle GPU (16 GB T4/P100) can train within a session.
type Hyperparameters struct {
	LoraRank     int     `json:"lora_rank"`
	LoraAlpha    int     `json:"lora_alpha"`
	LoraDropout  float64 `json:"lora_dropout"`
	Epochs       int     `json:"epochs"`
	LearningRate float64 `json:"learning_rate"`
	BatchSize    int     `json:"batch_size"`
	MaxSeqLength int     `json:"max_seq_length"`
	// Quantization is QuantizationNone or Quantization4Bit (QLoRA). Jobs
	// stored before it existed decode as "", which means none.
	Quantization string `json:"quantization"`
}

// HyperparametersInput is what a client sends: every field optional, absent
// fields take the defaults. Pointers tell "absent" from "zero".
type HyperparametersInput struct {
	LoraRank     *int     `json:"lora_rank"`
	LoraAlpha    *int     `json:"lora_alpha"`
	LoraDropout  *float64 `json:"lora_dropout"`
	Epochs       *int     `json:"epochs"`
	LearningRate *float64 `json:"learning_rate"`
	BatchSize    *int     `json:"batch_size"`
	MaxSeqLength *int     `json:"max_seq_length"`
	Quantization *string  `json:"quantization"`
}

// DefaultHyperparameters are sensible LoRA settings for a small model.
func DefaultHyperparameters() Hyperparameters {
	return Hyperparameters{
		LoraRank:     16,
		LoraAlpha:    32,
		LoraDropout:  0.05,
		Epochs:       3,
		LearningRate: 2e-4,
		BatchSize:    4,
		MaxSeqLength: 1024,
		Quantization: QuantizationNone,
	}
}

// Allowed ranges. Exported so the API documentation and tests use the same
// numbers as the validation.
var loraRanks = []int{4, 8, 16, 32, 64}

const (
	MinLoraAlpha    = 1
	MaxLoraAlpha    = 256
	MaxLoraDropout  = 0.5
	MinEpochs       = 1
	MaxEpochs       = 10
	MaxLearningRate = 1e-2
	MinBatchSize    = 1
	MaxBatchSize    = 64
	MinMaxSeqLength = 64
	MaxMaxSeqLength = 4096
)

// LoraRanks returns the allowed LoRA ranks.
func LoraRanks() []int { return slices.Clone(loraRanks) }

// Resolve applies defaults to absent fields and checks every range. All
// problems are reported at once, each naming its field.
func (in *HyperparametersInput) Resolve() (Hyperparameters, []problem.Detail) {
	h := DefaultHyperparameters()
	if in == nil {
		return h, nil
	}
	var details []problem.Detail
	bad := func(field, format string, args ...any) {
		details = append(details, problem.Detail{Field: "hyperparameters." + field, Issue: fmt.Sprintf(format, args...)})
	}
	if in.LoraRank != nil {
		h.LoraRank = *in.LoraRank
		if !slices.Contains(loraRanks, h.LoraRank) {
			bad("lora_rank", "must be one of 4, 8, 16, 32, 64 (got %d)", h.LoraRank)
		}
	}
	if in.LoraAlpha != nil {
		h.LoraAlpha = *in.LoraAlpha
		if h.LoraAlpha < MinLoraAlpha || h.LoraAlpha > MaxLoraAlpha {
			bad("lora_alpha", "must be between %d and %d (got %d)", MinLoraAlpha, MaxLoraAlpha, h.LoraAlpha)
		}
	}
	if in.LoraDropout != nil {
		h.LoraDropout = *in.LoraDropout
		if !finite(h.LoraDropout) || h.LoraDropout < 0 || h.LoraDropout > MaxLoraDropout {
			bad("lora_dropout", "must be between 0 and %g (got %g)", MaxLoraDropout, h.LoraDropout)
		}
	}
	if in.Epochs != nil {
		h.Epochs = *in.Epochs
		if h.Epochs < MinEpochs || h.Epochs > MaxEpochs {
			bad("epochs", "must be between %d and %d (got %d)", MinEpochs, MaxEpochs, h.Epochs)
		}
	}
	if in.LearningRate != nil {
		h.LearningRate = *in.LearningRate
		if !finite(h.LearningRate) || h.LearningRate <= 0 || h.LearningRate > MaxLearningRate {
			bad("learning_rate", "must be greater than 0 and at most %g (got %g)", MaxLearningRate, h.LearningRate)
		}
	}
	if in.BatchSize != nil {
		h.BatchSize = *in.BatchSize
		if h.BatchSize < MinBatchSize || h.BatchSize > MaxBatchSize {
			bad("batch_size", "must be between %d and %d (got %d)", MinBatchSize, MaxBatchSize, h.BatchSize)
		}
	}
	if in.MaxSeqLength != nil {
		h.MaxSeqLength = *in.MaxSeqLength
		if h.MaxSeqLength < MinMaxSeqLength || h.MaxSeqLength > MaxMaxSeqLength {
			bad("max_seq_length", "must be between %d and %d (got %d)", MinMaxSeqLength, MaxMaxSeqLength, h.MaxSeqLength)
		}
	}
	if in.Quantization != nil {
		h.Quantization = *in.Quantization
		if h.Quantization != QuantizationNone && h.Quantization != Quantization4Bit {
			bad("quantization", "must be %q or %q (got %q)", QuantizationNone, Quantization4Bit, h.Quantization)
		}
	}
	return h, details
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
