package main

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSimulatorTrainsAJob runs `app serve` with KAGGLE_SIMULATOR=true and
// no Kaggle credentials: whoami says training is simulated, the log says so
// too, and a job goes from queued to succeeded with a model whose metrics
// carry a loss history.
func TestSimulatorTrainsAJob(t *testing.T) {
	env := baseEnv(t)
	env["KAGGLE_SIMULATOR"] = "true"
	token := setupDatabase(t, env)
	a := startApp(t, env)
	a.waitLog(t, `"msg":"training is SIMULATED`)

	code, body := a.get(t, "/api/v1/whoami", token)
	var who struct {
		Training struct {
			Backend    string   `json:"backend"`
			BaseModels []string `json:"base_models"`
		} `json:"training"`
	}
	if err := json.Unmarshal(body, &who); code != 200 || err != nil {
		t.Fatalf("whoami: %d %s", code, body)
	}
	if who.Training.Backend != "simulator" || len(who.Training.BaseModels) == 0 {
		t.Fatalf("whoami training = %+v, want backend simulator and the base models", who.Training)
	}

	ds := a.uploadDataset(t, token, "internal/dataset/testdata/text_label.jsonl")
	var job struct{ ID, Status string }
	a.postJSON(t, token, "/api/v1/jobs", map[string]any{"dataset_id": ds, "base_model": who.Training.BaseModels[0]}, 201, &job)

	deadline := time.Now().Add(2 * time.Minute)
	for job.Status != "succeeded" {
		if time.Now().After(deadline) || job.Status == "failed" || job.Status == "cancelled" {
			t.Fatalf("job status %q; logs:\n%s", job.Status, a.logs.String())
		}
		time.Sleep(200 * time.Millisecond)
		code, body := a.get(t, "/api/v1/jobs/"+job.ID, token)
		if code != 200 || json.Unmarshal(body, &job) != nil {
			t.Fatalf("get job: %d %s", code, body)
		}
	}
	code, body = a.get(t, "/api/v1/models", token)
	var models struct {
		Data []struct {
			JobID   string         `json:"job_id"`
			Metrics map[string]any `json:"metrics"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &models); code != 200 || err != nil || len(models.Data) != 1 {
		t.Fatalf("models: %d %s", code, body)
	}
	hist, _ := models.Data[0].Metrics["log_history"].([]any)
	if models.Data[0].JobID != job.ID || len(hist) < 2 {
		t.Fatalf("model = %+v, want the job's model with a loss history", models.Data[0])
	}
}

// setupDatabase migrates the test database and returns a new API token.
func setupDatabase(t testing.TB, env map[string]string) string {
	t.Helper()
	if out, stderr, code := runCmd(t, env, "migrate", "up"); code != 0 {
		t.Fatalf("migrate up: %d\n%s%s", code, out, stderr)
	}
	out, stderr, code := runCmd(t, env, "token", "create", "--name", "test")
	if code != 0 {
		t.Fatalf("token create: %d %s", code, stderr)
	}
	return strings.TrimSpace(out)
}

func (a *app) uploadDataset(t *testing.T, token, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("name", "reviews")
	fw, _ := mw.CreateFormFile("file", "reviews.jsonl")
	_, _ = fw.Write(data)
	_ = mw.Close()
	req, _ := http.NewRequest("POST", a.base+"/api/v1/datasets", &buf)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	var ds struct{ ID string }
	a.do(t, req, 201, &ds)
	return ds.ID
}

func (a *app) postJSON(t *testing.T, token, path string, v any, want int, out any) {
	t.Helper()
	b, _ := json.Marshal(v)
	req, _ := http.NewRequest("POST", a.base+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	a.do(t, req, want, out)
}

func (a *app) do(t *testing.T, req *http.Request, want int, out any) {
	t.Helper()
	resp, err := a.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: got %d %s, want %d", req.Method, req.URL.Path, resp.StatusCode, body, want)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("decoding %s: %v", body, err)
		}
	}
}
