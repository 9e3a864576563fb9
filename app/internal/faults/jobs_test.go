//go:build faults

package faults

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle/kaggletest"
)

// jobLease is the worker lease of the crash scenario. The production
// default (WORKER_LEASE_DURATION, 30 s) is how long a task held by a
// killed process waits before another claim takes it over; a short lease
// only makes the test wait less; the mechanism is the same.
const jobLease = "3s"

// emulatorCA writes the certificate of the Kaggle emulator's storage host
// (a TLS test server, like Kaggle's signed storage URLs) to a PEM file the
// app trusts through SSL_CERT_FILE, so the app process downloads outputs
// from it as it would from Kaggle.
func emulatorCA(t *testing.T, kag *kaggletest.Server) string {
	t.Helper()
	u, err := url.Parse(kag.StorageURL)
	if err != nil {
		t.Fatal(err)
	}
	// #nosec G402 -- only reads the test server's self-signed certificate.
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("reading the emulator's certificate: %v", err)
	}
	defer conn.Close()
	var pemData []byte
	for _, c := range conn.ConnectionState().PeerCertificates {
		pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	path := filepath.Join(t.TempDir(), "kaggle-emulator-ca.pem")
	if err := os.WriteFile(path, pemData, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// apiJSON sends a request through the edge and decodes a 2xx answer into v.
func (s *stack) apiJSON(t *testing.T, c *http.Client, req *http.Request, v any) {
	t.Helper()
	resp, body, _, err := do(c, req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		t.Fatalf("%s %s: %d %.300s", req.Method, req.URL.Path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("%s %s: %v in %.300s", req.Method, req.URL.Path, err, body)
	}
}

type jobView struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Error  string `json:"error"`
}

type eventView struct {
	Seq        int64  `json:"seq"`
	Kind       string `json:"kind"`
	FromStatus string `json:"from_status"`
	ToStatus   string `json:"to_status"`
}

// jobStatus is the job's status as the API reports it ("" if the request
// failed: the app may be restarting).
func (s *stack) jobStatus(c *http.Client, id string) string {
	resp, body, _, err := do(c, s.request("GET", "/api/v1/jobs/"+id, s.token, nil, ""))
	if err != nil || resp.StatusCode != http.StatusOK {
		return ""
	}
	var j jobView
	_ = json.Unmarshal(body, &j)
	return j.Status
}

// jobEvents reads every event of job id, following the cursor.
func (s *stack) jobEvents(t *testing.T, c *http.Client, id string) []eventView {
	t.Helper()
	var all []eventView
	cursor := ""
	for {
		path := "/api/v1/jobs/" + id + "/events?limit=100"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var page struct {
			Data       []eventView `json:"data"`
			NextCursor string      `json:"next_cursor"`
		}
		s.apiJSON(t, c, s.request("GET", path, s.token, nil, ""), &page)
		all = append(all, page.Data...)
		if page.NextCursor == "" || len(page.Data) == 0 {
			break
		}
		cursor = page.NextCursor
	}
	slices.SortFunc(all, func(a, b eventView) int { return int(a.Seq - b.Seq) })
	return all
}

// killApp SIGKILLs instance a (no drain, no lease released, as a crash or
// the OOM killer) and waits until the process is gone.
func killApp(t *testing.T, a *appInstance) {
	t.Helper()
	if err := a.proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.proc.done:
	case <-time.After(30 * time.Second):
		t.Fatal("app did not die after SIGKILL")
	}
}

// TestAppKilledMidJob runs a training job against the Kaggle emulator and
// SIGKILLs the only app instance twice while the job's task is leased by a
// worker: once while the worker is inside a kernel status poll (job
// `running`), once while it downloads the kernel's output (job
// `collecting`). Each time the app is started again; the task's lease
// expires and the new process reclaims it. The job must reach `succeeded`
// exactly once: one dataset created and one kernel pushed on Kaggle, every
// status transition recorded once, one model whose objects are exactly its
// files. Reads through the edge meanwhile get 200s or, while no app
// process is up, the edge's JSON errors — never a hang.
func TestAppKilledMidJob(t *testing.T) {
	kag := kaggletest.NewServer(t)
	// The kernel stays "running" until the test says otherwise.
	kag.SetKernelProgress(0, 1<<30, "complete", "")
	s := newStack(t, stackOptions{apps: 1, appEnv: map[string]string{
		"KAGGLE_API_URL":        kag.BaseURL,
		"KAGGLE_USERNAME":       kaggletest.DefaultUsername,
		"KAGGLE_KEY":            kaggletest.DefaultKey,
		"KAGGLE_POLL_INTERVAL":  "1s",
		"WORKER_LEASE_DURATION": jobLease,
		"SSL_CERT_FILE":         emulatorCA(t, kag),
	}})
	app := s.apps[0]
	c := s.client("127.0.0.1", 60*time.Second)

	var ds struct {
		ID string `json:"id"`
	}
	s.apiJSON(t, c, s.uploadRequest("crash-job"), &ds)
	var who struct {
		Training struct {
			BaseModels []string `json:"base_models"`
		} `json:"training"`
	}
	s.apiJSON(t, c, s.request("GET", "/api/v1/whoami", s.token, nil, ""), &who)
	if len(who.Training.BaseModels) == 0 {
		t.Fatal("whoami lists no base model")
	}
	var job jobView
	s.apiJSON(t, c, s.request("POST", "/api/v1/jobs", s.token,
		[]byte(fmt.Sprintf(`{"dataset_id":%q,"base_model":%q}`, ds.ID, who.Training.BaseModels[0])), "application/json"), &job)

	// Errors the edge may answer while the only app process is dead: 502
	// for a request in flight at the kill, 503 once it gives up waiting.
	reads := s.startLoad(t, loadSpec{name: "read", workers: 2, interval: 100 * time.Millisecond,
		request: s.readRequest, accept: func(resp *http.Response, body []byte) error {
			if resp.StatusCode == http.StatusBadGateway {
				_, err := checkError(resp, body, http.StatusBadGateway, false)
				return err
			}
			_, err := checkError(resp, body, http.StatusServiceUnavailable, true)
			return err
		}})
	reads.waitOK(t, 20, 2*time.Minute)

	waitFor(t, 3*time.Minute, "the job to reach running", func() bool {
		st := s.jobStatus(c, job.ID)
		if st == "failed" || st == "cancelled" {
			t.Fatalf("job %s before the first kill", st)
		}
		return st == "running"
	})

	// Kill 1: inside a kernel status poll. The emulator holds the poll, so
	// the worker holds the task's lease when the process dies.
	polls := kag.Calls("/kernels/status")
	kag.Slow("/kernels/status", 10*time.Minute, 1)
	waitFor(t, time.Minute, "a kernel status poll held by the emulator", func() bool {
		return kag.Calls("/kernels/status") > polls
	})
	killApp(t, app)
	kill1 := time.Now()
	s.startApp(t, app)
	polls = kag.Calls("/kernels/status")
	waitFor(t, 2*time.Minute, "the restarted app to poll the kernel again", func() bool {
		return kag.Calls("/kernels/status") > polls
	})
	resumed1 := time.Since(kill1)
	if st := s.jobStatus(c, job.ID); st != "running" {
		t.Fatalf("job %q after the first restart, want running", st)
	}

	// Kill 2: inside the output download (job collecting).
	pushes := kag.Pushes()
	if len(pushes) != 1 {
		t.Fatalf("%d kernel pushes before the kernel finished, want 1", len(pushes))
	}
	downloads := kag.Calls("/_emulator/files/")
	kag.Slow("/_emulator/files/", 10*time.Minute, 1)
	kag.SetKernelStatus(pushes[0].Ref, "complete", "")
	waitFor(t, 2*time.Minute, "an output download held by the emulator", func() bool {
		return kag.Calls("/_emulator/files/") > downloads
	})
	if st := s.jobStatus(c, job.ID); st != "collecting" {
		t.Fatalf("job %q while its output downloads, want collecting", st)
	}
	killApp(t, app)
	kill2 := time.Now()
	s.startApp(t, app)
	var final string
	waitFor(t, 3*time.Minute, "the job to finish after the second restart", func() bool {
		final = s.jobStatus(c, job.ID)
		return final == "succeeded" || final == "failed" || final == "cancelled"
	})
	resumed2 := time.Since(kill2)
	if final != "succeeded" {
		var j jobView
		s.apiJSON(t, c, s.request("GET", "/api/v1/jobs/"+job.ID, s.token, nil, ""), &j)
		t.Fatalf("job %s (%s), want succeeded", final, j.Error)
	}
	reads.waitOK(t, 20, 2*time.Minute)
	reads.halt()

	// Exactly once, on Kaggle's side.
	if n := len(kag.Pushes()); n != 1 {
		t.Errorf("%d kernel pushes, want 1", n)
	}
	// The runner deletes the Kaggle dataset once the job is over, so count
	// the creations (no fault touches that path: one call is one creation).
	if n := kag.Calls("/datasets/create/new"); n != 1 {
		t.Errorf("%d Kaggle dataset creations, want 1", n)
	}
	// Exactly once, in the job's history: no transition recorded twice.
	events := s.jobEvents(t, c, job.ID)
	var path []string
	seen := map[string]bool{}
	for _, e := range events {
		if e.Kind != "status" {
			continue
		}
		step := e.FromStatus + ">" + e.ToStatus
		if seen[step] {
			t.Errorf("status transition %s recorded twice: %+v", step, events)
		}
		seen[step] = true
		path = append(path, e.ToStatus)
	}
	if len(path) == 0 || path[len(path)-1] != "succeeded" || slices.Index(path, "succeeded") != len(path)-1 {
		t.Errorf("status transitions %v: want exactly one succeeded, last", path)
	}
	// Exactly once, in storage: one model, whose objects are its files.
	var models struct {
		Data []struct {
			ID    string `json:"id"`
			JobID string `json:"job_id"`
			Files []struct {
				Name string `json:"name"`
			} `json:"files"`
		} `json:"data"`
	}
	s.apiJSON(t, c, s.request("GET", "/api/v1/models?limit=100", s.token, nil, ""), &models)
	var files []string
	n := 0
	for _, m := range models.Data {
		if m.JobID == job.ID {
			n++
			for _, f := range m.Files {
				files = append(files, "models/"+job.ID+"/"+f.Name)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d models for the job, want 1", n)
	}
	objects := s.bucketObjects(t, "models/")
	slices.Sort(files)
	if !slices.Equal(objects, files) {
		t.Errorf("objects under models/ %v, want exactly the model's files %v", objects, files)
	}
	reads.requireNoFailures(t)
	t.Logf("RESULT killed mid-job: polling resumed %s after kill 1 (lease %s); succeeded %s after kill 2; "+
		"1 push, 1 dataset, %d status transitions %v, 1 model with %d objects; reads %s",
		resumed1.Round(time.Millisecond), jobLease, resumed2.Round(time.Millisecond), len(path), path, len(objects), reads.summary())
}

// bucketClient is an S3 client of the apps' object store.
func (s *stack) bucketClient(t *testing.T) *minio.Client {
	t.Helper()
	mc, err := minio.New(s.appEnv["S3_ENDPOINT"], &minio.Options{
		Creds: credentials.NewStaticV4(s.appEnv["S3_ACCESS_KEY"], s.appEnv["S3_SECRET_KEY"], ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	return mc
}

// bucketObjects lists the app bucket's object keys under prefix, sorted.
func (s *stack) bucketObjects(t *testing.T, prefix string) []string {
	t.Helper()
	mc := s.bucketClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var keys []string
	for o := range mc.ListObjects(ctx, s.appEnv["S3_BUCKET"], minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("listing %s: %v", prefix, o.Err)
		}
		keys = append(keys, o.Key)
	}
	slices.Sort(keys)
	return keys
}

// bucketDigests returns the sha256 of every object in the app bucket under
// prefix, by key.
func (s *stack) bucketDigests(t *testing.T, prefix string) map[string]string {
	t.Helper()
	mc := s.bucketClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[string]string{}
	for _, key := range s.bucketObjects(t, prefix) {
		obj, err := mc.GetObject(ctx, s.appEnv["S3_BUCKET"], key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatalf("reading %s: %v", key, err)
		}
		h := sha256.New()
		_, err = io.Copy(h, obj)
		obj.Close()
		if err != nil {
			t.Fatalf("reading %s: %v", key, err)
		}
		out[key] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}
