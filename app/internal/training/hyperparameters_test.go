package training

import (
	"reflect"
	"testing"
)

func ptr[T any](v T) *T { return &v }

func TestHyperparametersResolve(t *testing.T) {
	tests := []struct {
		name       string
		in         *HyperparametersInput
		want       func(*Hyperparameters)
		wantFields []string
	}{
		{name: "nil takes defaults", in: nil},
		{name: "empty takes defaults", in: &HyperparametersInput{}},
		{
			name: "all at their upper bounds",
			in: &HyperparametersInput{LoraRank: ptr(64), LoraAlpha: ptr(256), LoraDropout: ptr(0.5), Epochs: ptr(10),
				LearningRate: ptr(1e-2), BatchSize: ptr(64), MaxSeqLength: ptr(4096)},
			want: func(h *Hyperparameters) {
				*h = Hyperparameters{LoraRank: 64, LoraAlpha: 256, LoraDropout: 0.5, Epochs: 10, LearningRate: 1e-2, BatchSize: 64, MaxSeqLength: 4096, Quantization: QuantizationNone}
			},
		},
		{
			name: "all at their lower bounds",
			in: &HyperparametersInput{LoraRank: ptr(4), LoraAlpha: ptr(1), LoraDropout: ptr(0.0), Epochs: ptr(1),
				LearningRate: ptr(1e-9), BatchSize: ptr(1), MaxSeqLength: ptr(64)},
			want: func(h *Hyperparameters) {
				*h = Hyperparameters{LoraRank: 4, LoraAlpha: 1, LoraDropout: 0, Epochs: 1, LearningRate: 1e-9, BatchSize: 1, MaxSeqLength: 64, Quantization: QuantizationNone}
			},
		},
		{name: "rank not a power in the set", in: &HyperparametersInput{LoraRank: ptr(12)}, wantFields: []string{"hyperparameters.lora_rank"}},
		{name: "rank zero", in: &HyperparametersInput{LoraRank: ptr(0)}, wantFields: []string{"hyperparameters.lora_rank"}},
		{name: "epochs zero", in: &HyperparametersInput{Epochs: ptr(0)}, wantFields: []string{"hyperparameters.epochs"}},
		{name: "epochs eleven", in: &HyperparametersInput{Epochs: ptr(11)}, wantFields: []string{"hyperparameters.epochs"}},
		{name: "learning rate zero", in: &HyperparametersInput{LearningRate: ptr(0.0)}, wantFields: []string{"hyperparameters.learning_rate"}},
		{name: "learning rate negative", in: &HyperparametersInput{LearningRate: ptr(-1e-4)}, wantFields: []string{"hyperparameters.learning_rate"}},
		{name: "learning rate above 1e-2", in: &HyperparametersInput{LearningRate: ptr(0.0100001)}, wantFields: []string{"hyperparameters.learning_rate"}},
		{name: "dropout above half", in: &HyperparametersInput{LoraDropout: ptr(0.6)}, wantFields: []string{"hyperparameters.lora_dropout"}},
		{name: "alpha zero", in: &HyperparametersInput{LoraAlpha: ptr(0)}, wantFields: []string{"hyperparameters.lora_alpha"}},
		{name: "batch too large", in: &HyperparametersInput{BatchSize: ptr(65)}, wantFields: []string{"hyperparameters.batch_size"}},
		{name: "sequence too short", in: &HyperparametersInput{MaxSeqLength: ptr(63)}, wantFields: []string{"hyperparameters.max_seq_length"}},
		{name: "sequence too long", in: &HyperparametersInput{MaxSeqLength: ptr(4097)}, wantFields: []string{"hyperparameters.max_seq_length"}},
		{name: "quantization 4bit", in: &HyperparametersInput{Quantization: ptr("4bit")}, want: func(h *Hyperparameters) { h.Quantization = Quantization4Bit }},
		{name: "quantization 8bit", in: &HyperparametersInput{Quantization: ptr("8bit")}, wantFields: []string{"hyperparameters.quantization"}},
		{name: "quantization empty", in: &HyperparametersInput{Quantization: ptr("")}, wantFields: []string{"hyperparameters.quantization"}},
		{
			name:       "every problem reported at once",
			in:         &HyperparametersInput{LoraRank: ptr(3), Epochs: ptr(100), LearningRate: ptr(1.0)},
			wantFields: []string{"hyperparameters.lora_rank", "hyperparameters.epochs", "hyperparameters.learning_rate"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, details := tt.in.Resolve()
			var fields []string
			for _, d := range details {
				if d.Issue == "" {
					t.Errorf("detail for %s has no issue text", d.Field)
				}
				fields = append(fields, d.Field)
			}
			if !reflect.DeepEqual(fields, tt.wantFields) {
				t.Fatalf("fields with problems = %v, want %v", fields, tt.wantFields)
			}
			if tt.wantFields != nil {
				return
			}
			want := DefaultHyperparameters()
			if tt.want != nil {
				tt.want(&want)
			}
			if got != want {
				t.Errorf("Resolve() = %+v, want %+v", got, want)
			}
		})
	}
}
