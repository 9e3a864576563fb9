package store

import (
	"context"
	"testing"

	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// A job stored before quantization existed reads back as "none", the value
// the API documents, not "".
func TestJobWithoutQuantizationReadsAsNone(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	id := training.NewID()
	if _, err := s.pool.Exec(ctx, `INSERT INTO jobs (id, dataset_id, base_model, hyperparameters, status)
		VALUES ($1, NULL, 'Qwen/Qwen2.5-0.5B-Instruct', '{"lora_rank":16,"epochs":3}', 'queued')`, id); err != nil {
		t.Fatal(err)
	}
	j, err := s.GetJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.Hyperparameters.Quantization != training.QuantizationNone || j.Hyperparameters.LoraRank != 16 {
		t.Fatalf("hyperparameters = %+v, want quantization none and rank 16", j.Hyperparameters)
	}
}
