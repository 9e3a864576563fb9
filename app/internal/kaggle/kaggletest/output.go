package kaggletest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
)

// The default kernel output mirrors what the training notebook (package
// notebook) writes to /kaggle/working: a PEFT LoRA adapter under adapter/
// and metrics.json.

// KaggleOutputFiles are the files Kaggle itself adds to every notebook
// run's output, whatever the notebook writes (issue 10, item 6): the
// executed notebook, which carries the job's whole configuration, and its
// rendering.
var KaggleOutputFiles = []string{"__notebook__.ipynb", "__results__.html"}

// DefaultOutputFiles returns the files a successful default kernel serves:
// a valid safetensors adapter, its PEFT adapter_config.json, a metrics.json
// with the keys the notebook writes, and Kaggle's own KaggleOutputFiles.
func DefaultOutputFiles() []File {
	return []File{
		{Name: "__notebook__.ipynb", Data: mustJSON(map[string]any{
			"nbformat": 4, "nbformat_minor": 5, "metadata": map[string]any{},
			"cells": []map[string]any{{"cell_type": "code", "metadata": map[string]any{}, "execution_count": 1,
				"source": `CONFIG = json.loads("{\"job_id\": \"00000000-0000-0000-0000-000000000000\"}")`, "outputs": []any{}}},
		})},
		{Name: "__results__.html", Data: []byte("<!DOCTYPE html><html><body><pre>train_loss 1.2345</pre></body></html>\n")},
		{Name: "adapter/adapter_model.safetensors", Data: loraSafetensors(8, 64)},
		{Name: "adapter/adapter_config.json", Data: mustJSON(map[string]any{
			"peft_type":               "LORA",
			"task_type":               "CAUSAL_LM",
			"base_model_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct",
			"r":                       8,
			"lora_alpha":              16,
			"lora_dropout":            0.05,
			"target_modules":          []string{"q_proj", "v_proj"},
			"bias":                    "none",
		})},
		{Name: "metrics.json", Data: mustJSON(map[string]any{
			"job_id":                "00000000-0000-0000-0000-000000000000",
			"schema":                "instruction",
			"lora_rank":             8,
			"train_loss":            1.2345,
			"eval_loss":             1.3021,
			"train_runtime_seconds": 812.4,
			"train_samples":         1000,
			"eval_samples":          100,
			"epochs":                3,
			"global_step":           375,
			"learning_rate":         0.0002,
			"base_model":            "Qwen/Qwen2.5-0.5B-Instruct",
		})},
	}
}

// DefaultLog is the log of a successful default kernel, in Kaggle's log
// format (a JSON array of stream records, as a string).
func DefaultLog() string {
	return logJSON([]string{
		"Loading base model Qwen/Qwen2.5-0.5B-Instruct",
		"{'loss': 1.9021, 'epoch': 1.0}",
		"{'loss': 1.4410, 'epoch': 2.0}",
		"{'loss': 1.2345, 'epoch': 3.0}",
		"Saved adapter to /kaggle/working/adapter",
	})
}

func logJSON(lines []string) string {
	type rec struct {
		StreamName string  `json:"stream_name"`
		Time       float64 `json:"time"`
		Data       string  `json:"data"`
	}
	recs := make([]rec, len(lines))
	for i, l := range lines {
		recs[i] = rec{StreamName: "stdout", Time: 1.5 + float64(i)*7.25, Data: l + "\n"}
	}
	return string(mustJSON(recs))
}

// loraSafetensors builds a valid safetensors file holding the A and B
// matrices of one LoRA-adapted projection (rank r, hidden size h), F32.
func loraSafetensors(r, h int) []byte {
	n := r * h * 4
	header := map[string]any{
		"__metadata__": map[string]string{"format": "pt"},
		"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": map[string]any{
			"dtype": "F32", "shape": []int{r, h}, "data_offsets": []int{0, n}},
		"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": map[string]any{
			"dtype": "F32", "shape": []int{h, r}, "data_offsets": []int{n, 2 * n}},
	}
	hb := mustJSON(header)
	for len(hb)%8 != 0 { // the format aligns the data section to 8 bytes
		hb = append(hb, ' ')
	}
	out := make([]byte, 8, 8+len(hb)+2*n)
	binary.LittleEndian.PutUint64(out, uint64(len(hb)))
	out = append(out, hb...)
	for i := 0; i < 2*r*h; i++ {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(float32(i%17)/100))
	}
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("kaggletest: encoding fixed output: %v", err))
	}
	return b
}
