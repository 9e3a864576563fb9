package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// clientError fails unless err is a problem the client caused (4xx).
func clientError(t *testing.T, err error, input string) {
	t.Helper()
	var pe *problem.Error
	if !errors.As(err, &pe) {
		t.Fatalf("input %q: error %v is not a problem.Error (it would be a 500)", input, err)
	}
	if s := pe.Status(); s < 400 || s > 499 {
		t.Fatalf("input %q: status %d, want 4xx", input, s)
	}
	if pe.Message == "" {
		t.Fatalf("input %q: empty message", input)
	}
}

// FuzzJobRequest feeds arbitrary bodies through the strict JSON decoder and
// the hyperparameter validation, as POST /api/v1/jobs does: nothing may
// panic, every refusal is a 4xx with a message, and anything accepted is
// within the documented ranges.
func FuzzJobRequest(f *testing.F) {
	f.Add(`{"dataset_id":"3f1c2a9e-5b7d-4c1e-9a2f-0e8d6b4c7a11","base_model":"m","hyperparameters":{"epochs":3}}`)
	f.Add(`{"hyperparameters":{"lora_rank":8,"learning_rate":1e-3,"lora_dropout":0.1,"max_seq_length":512}}`)
	f.Add(`{"hyperparameters":{"learning_rate":1e400}}`)
	f.Add(`{"hyperparameters":{"epochs":1.5}}`)
	f.Add(`{"hyperparameters":null,"dataset_id":null}`)
	f.Add(`{"a":1}`)
	f.Add(`[`)
	f.Add(`{"dataset_id":"x"} trailing`)
	f.Add("\xff\xfe")
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/api/v1/jobs", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Body = http.MaxBytesReader(rec, r.Body, 1024)
		var in training.JobInput
		if err := decodeJSON(r, &in); err != nil {
			clientError(t, err, body)
			return
		}
		hp, details := in.Hyperparameters.Resolve()
		for _, d := range details {
			if !strings.HasPrefix(d.Field, "hyperparameters.") || d.Issue == "" {
				t.Fatalf("input %q: detail %+v does not name its field", body, d)
			}
		}
		if len(details) > 0 {
			return
		}
		if !slices.Contains(training.LoraRanks(), hp.LoraRank) || hp.Epochs < training.MinEpochs || hp.Epochs > training.MaxEpochs ||
			!(hp.LearningRate > 0 && hp.LearningRate <= training.MaxLearningRate) ||
			hp.LoraDropout < 0 || hp.LoraDropout > training.MaxLoraDropout ||
			hp.BatchSize < training.MinBatchSize || hp.BatchSize > training.MaxBatchSize ||
			hp.MaxSeqLength < training.MinMaxSeqLength || hp.MaxSeqLength > training.MaxMaxSeqLength ||
			hp.LoraAlpha < training.MinLoraAlpha || hp.LoraAlpha > training.MaxLoraAlpha {
			t.Fatalf("input %q: accepted out-of-range hyperparameters %+v", body, hp)
		}
	})
}

// FuzzListParameters covers the query parsing of every list endpoint:
// limit, cursor and event sequence numbers.
func FuzzListParameters(f *testing.F) {
	f.Add("20", "", "0")
	f.Add("0", "garbage", "-1")
	f.Add("100", training.Cursor{Position: 42}.Encode(), "9223372036854775807")
	f.Add("1e3", "MTIzLjAwMDAwMDAwLTAwMDAtNDAwMC04MDAwLTAwMDAwMDAwMDAwMA", "9223372036854775808")
	f.Fuzz(func(t *testing.T, limit, cursor, after string) {
		q := url.Values{"limit": {limit}, "cursor": {cursor}}
		p, err := page(q)
		if err != nil {
			clientError(t, err, limit+" "+cursor)
		} else if p.Limit < 1 || p.Limit > training.MaxPageLimit || (p.After != nil && p.After.Position < 0) {
			t.Fatalf("accepted page %+v from %q %q", p, limit, cursor)
		}
		if n, err := parseSeq(after, "after"); err != nil {
			clientError(t, err, after)
		} else if n < 0 {
			t.Fatalf("accepted negative seq %d from %q", n, after)
		}
	})
}
