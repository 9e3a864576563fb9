package api

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/auth"
	"github.com/finetune-studio/finetune-studio/app/internal/blob"
	"github.com/finetune-studio/finetune-studio/app/internal/config"
	"github.com/finetune-studio/finetune-studio/app/internal/feed"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle/kaggletest"
	"github.com/finetune-studio/finetune-studio/app/internal/runner"
	"github.com/finetune-studio/finetune-studio/app/internal/sse"
	"github.com/finetune-studio/finetune-studio/app/internal/sse/ssetest"
	"github.com/finetune-studio/finetune-studio/app/internal/store"
	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
	"github.com/finetune-studio/finetune-studio/app/internal/worker"
)

// trainingFixture is the API on real Postgres and MinIO, with the Kaggle
// emulator behind a real worker pool when startWorkers is called.
type trainingFixture struct {
	api    *API
	srv    *httptest.Server
	store  *store.Store
	blob   *blob.Store
	emu    *kaggletest.Server
	token  string
	cfg    config.Config
	logs   *testenv.SyncBuffer
	dsn    string
	hub    *feed.Hub
	closed bool
}

const testUploadLimit = 64 << 10

func newTrainingFixture(t testing.TB, withKaggle bool) *trainingFixture {
	t.Helper()
	return newTrainingFixtureWith(t, withKaggle, testUploadLimit)
}

// newTrainingFixtureWith takes extra environment variables as name, value
// pairs.
func newTrainingFixtureWith(t testing.TB, withKaggle bool, uploadLimit int64, extraEnv ...string) *trainingFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn := testenv.NewDatabase(t)
	st, token := openStoreWithToken(ctx, t, dsn)
	mio := testenv.StartMinIO(t)
	bucket := testenv.UniqueName("api")
	env := map[string]string{
		"DATABASE_URL": "postgres://x@127.0.0.1/x", "S3_ENDPOINT": mio.Endpoint, "S3_USE_TLS": "false",
		"S3_ACCESS_KEY": mio.AccessKey, "S3_SECRET_KEY": mio.SecretKey, "S3_BUCKET": bucket,
		"S3_PUBLIC_URL": "https://files.example.test", "PRESIGN_EXPIRY": "90s",
		"APP_MAX_UPLOAD_BYTES": fmt.Sprint(uploadLimit),
	}
	for i := 0; i+1 < len(extraEnv); i += 2 {
		env[extraEnv[i]] = extraEnv[i+1]
	}
	emu := kaggletest.NewServer(t)
	if withKaggle {
		env["KAGGLE_USERNAME"] = kaggletest.DefaultUsername
		env["KAGGLE_KEY"] = kaggletest.DefaultKey
		env["KAGGLE_API_URL"] = emu.BaseURL
	}
	cfg, err := config.Parse(env, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := blob.Open(blob.Options{Endpoint: mio.Endpoint, AccessKey: mio.AccessKey, SecretKey: mio.SecretKey,
		Region: cfg.S3.Region, Bucket: bucket, PublicURL: cfg.S3.PublicURL})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	// Live event streams are woken by the store's listener, as in serve.
	hub := feed.New(feed.Limits{Total: cfg.HTTP.MaxEventStreams, PerToken: cfg.HTTP.MaxEventStreamsPerToken})
	listenCtx, stopListening := context.WithCancel(context.Background())
	listenDone := make(chan struct{})
	go func() {
		defer close(listenDone)
		st.ListenJobEvents(listenCtx, hub.WakeAll, hub.Notify)
	}()
	a := New(Deps{Config: cfg, Log: slog.New(slog.NewJSONHandler(logs, nil)), Auth: auth.New(st, auth.Options{}), Repo: st, Objects: b.TrainingObjects(), Feed: hub})
	srv := httptest.NewServer(a.Handler())
	f := &trainingFixture{api: a, srv: srv, store: st, blob: b, emu: emu, token: token, cfg: cfg, logs: logs, dsn: dsn, hub: hub}
	t.Cleanup(func() {
		if !f.closed {
			a.BeginShutdown()
		}
		srv.Close()
		stopListening()
		<-listenDone
	})
	return f
}

// startWorkers runs the job runner in a real worker pool against the
// emulator until the test ends.
func (f *trainingFixture) startWorkers(t *testing.T) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	r := runner.New(f.store, f.blob.TrainingObjects(), kaggle.New(f.emu.Config()),
		runner.Config{MaxRuntime: time.Hour, PollInterval: 20 * time.Millisecond, MaxPollInterval: 50 * time.Millisecond}, log)
	pool := worker.New(f.store, log, worker.Options{Concurrency: 2, PollInterval: 20 * time.Millisecond})
	r.Register(pool)
	pool.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = pool.Shutdown(ctx)
	})
}

func (f *trainingFixture) request(t *testing.T, method, path string, body io.Reader, header ...string) (*http.Response, []byte) {
	t.Helper()
	return send(t, f.srv, method, path, f.token, body, header...)
}

// expect checks the status and decodes a success body into v.
func expect(t *testing.T, resp *http.Response, body []byte, status int, v any) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, body)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("decoding %s: %v", body, err)
		}
	}
}

// expectProblem checks a 4xx error's status, code and that its message
// contains want.
func expectProblem(t *testing.T, resp *http.Response, body []byte, status int, want string) errorBody {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL, resp.StatusCode, status, body)
	}
	e := decodeError(t, resp, body)
	conformsJSON(t, specSchemas(t), "Error", body)
	if !strings.Contains(e.Error.Message, want) {
		t.Errorf("message %q does not mention %q", e.Error.Message, want)
	}
	return e
}

type part struct{ name, filename, content string }

func multipartBody(t *testing.T, parts ...part) (io.Reader, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, p := range parts {
		var w io.Writer
		var err error
		if p.filename != "" {
			w, err = mw.CreateFormFile(p.name, p.filename)
		} else {
			w, err = mw.CreateFormField(p.name)
		}
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(w, p.content)
	}
	_ = mw.Close()
	return &b, mw.FormDataContentType()
}

func validJSONL(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"instruction":"Translate %d","input":"hello","output":"bonjour %d"}`+"\n", i, i)
	}
	return b.String()
}

func (f *trainingFixture) upload(t *testing.T, name, content string) training.Dataset {
	t.Helper()
	body, ct := multipartBody(t, part{"name", "", name}, part{"file", "../../etc/passwd", content})
	resp, b := f.request(t, http.MethodPost, "/api/v1/datasets", body, "Content-Type", ct)
	var d training.Dataset
	expect(t, resp, b, http.StatusCreated, &d)
	conformsJSON(t, specSchemas(t), "DatasetDetail", b)
	return d
}

// postJob asks for a job on datasetID with the first allowed base model and
// default hyperparameters.
func (f *trainingFixture) postJob(t *testing.T, datasetID string) (*http.Response, []byte) {
	t.Helper()
	return f.request(t, http.MethodPost, "/api/v1/jobs",
		strings.NewReader(`{"dataset_id":"`+datasetID+`","base_model":"`+f.cfg.Training.BaseModels[0]+`"}`), "Content-Type", "application/json")
}

func (f *trainingFixture) objectKeys(t *testing.T, prefix string) []string {
	t.Helper()
	infos, err := f.blob.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, i := range infos {
		keys = append(keys, i.Key)
	}
	return keys
}

func TestDatasetUploadGetListDelete(t *testing.T) {
	f := newTrainingFixture(t, false)
	content := validJSONL(12)
	d := f.upload(t, "Translations", content)
	sum := sha256.Sum256([]byte(content))
	if d.SHA256 != hex.EncodeToString(sum[:]) || d.SizeBytes != int64(len(content)) || d.Examples != 12 || d.Schema != "instruction" || d.Format != "jsonl" {
		t.Errorf("dataset = %+v", d)
	}
	// The object key is generated, never the client's file name.
	keys := f.objectKeys(t, "")
	if len(keys) != 1 || keys[0] != "datasets/"+d.ID {
		t.Fatalf("objects = %v, want [datasets/%s]", keys, d.ID)
	}

	resp, b := f.request(t, http.MethodGet, "/api/v1/datasets/"+d.ID, nil)
	var got struct {
		training.Dataset
		Report struct {
			Stats struct {
				Examples int `json:"examples"`
			} `json:"stats"`
			Preview []json.RawMessage `json:"preview"`
		} `json:"report"`
	}
	expect(t, resp, b, http.StatusOK, &got)
	conformsJSON(t, specSchemas(t), "DatasetDetail", b)
	if got.Report.Stats.Examples != 12 || len(got.Report.Preview) == 0 {
		t.Errorf("report = %s", b)
	}

	f.upload(t, "Other", validJSONL(10))
	resp, b = f.request(t, http.MethodGet, "/api/v1/datasets?name=trans&limit=5", nil)
	var l list[training.Dataset]
	expect(t, resp, b, http.StatusOK, &l)
	if len(l.Data) != 1 || l.Data[0].ID != d.ID || l.NextCursor != "" {
		t.Errorf("filtered list = %s", b)
	}
	resp, b = f.request(t, http.MethodGet, "/api/v1/datasets?limit=1", nil)
	expect(t, resp, b, http.StatusOK, &l)
	if len(l.Data) != 1 || l.NextCursor == "" {
		t.Fatalf("first page = %s", b)
	}
	resp, b = f.request(t, http.MethodGet, "/api/v1/datasets?limit=1&cursor="+url.QueryEscape(l.NextCursor), nil)
	l = list[training.Dataset]{}
	expect(t, resp, b, http.StatusOK, &l)
	if len(l.Data) != 1 || l.Data[0].ID != d.ID || l.NextCursor != "" {
		t.Errorf("second page = %s", b)
	}

	resp, b = f.request(t, http.MethodDelete, "/api/v1/datasets/"+d.ID, nil)
	expect(t, resp, b, http.StatusNoContent, nil)
	if keys := f.objectKeys(t, "datasets/"+d.ID); len(keys) != 0 {
		t.Errorf("object left after delete: %v", keys)
	}
	resp, b = f.request(t, http.MethodGet, "/api/v1/datasets/"+d.ID, nil)
	expectProblem(t, resp, b, http.StatusNotFound, d.ID)
}

// TestUploadCutOffMidFileByTheBodyCapIs413: a chunked body whose file is
// under the upload limit but whose whole body passes the route's cap (here
// through a long multipart preamble) is cut off while the file streams. That
// is still a 413, not an "interrupted upload" 400, and nothing is stored.
func TestUploadCutOffMidFileByTheBodyCapIs413(t *testing.T) {
	f := newTrainingFixture(t, false)
	file := validJSONL(int(testUploadLimit * 9 / 10 / 71)) // ~90 % of the file limit
	body, ct := multipartBody(t, part{"name", "", "x"}, part{"file", "a.jsonl", file})
	// Preamble lines before the first boundary are skipped by the parser
	// but count against the body cap (upload limit + multipartOverhead).
	preamble := strings.Repeat(strings.Repeat("p", 62)+"\r\n", (multipartOverhead+testUploadLimit/5)/64)
	chunked := io.MultiReader(strings.NewReader(preamble), body) // no Content-Length
	resp, b := f.request(t, http.MethodPost, "/api/v1/datasets", chunked, "Content-Type", ct)
	expectProblem(t, resp, b, http.StatusRequestEntityTooLarge, "exceeds")
	if keys := f.objectKeys(t, ""); len(keys) != 0 {
		t.Errorf("objects left behind: %v", keys)
	}
}

func TestDatasetUploadRejectionsLeaveNoObject(t *testing.T) {
	f := newTrainingFixture(t, false)
	tooFew := validJSONL(5)
	malformed := validJSONL(12) + "{not json\n" + `{"instruction":"","output":"x"}` + "\n"
	var many strings.Builder
	for i := range 80 {
		fmt.Fprintf(&many, "{bad %d\n", i)
	}
	tests := []struct {
		name   string
		parts  []part
		ct     string
		status int
		want   string
	}{
		{"too few examples", []part{{"name", "", "x"}, {"file", "a.jsonl", tooFew}}, "", 422, "rejected"},
		{"malformed line", []part{{"name", "", "x"}, {"file", "a.jsonl", malformed}}, "", 422, "rejected"},
		{"many errors capped", []part{{"name", "", "x"}, {"file", "a.jsonl", many.String()}}, "", 422, "rejected"},
		// Just over the file limit: the streaming check stops it.
		{"file too large", []part{{"name", "", "x"}, {"file", "a.jsonl", validJSONL(1000)}}, "", 413, "maximum upload size"},
		// Far over: the declared Content-Length is refused before reading.
		{"body too large", []part{{"name", "", "x"}, {"file", "a.jsonl", validJSONL(3000)}}, "", 413, "exceeds"},
		{"missing file", []part{{"name", "", "x"}}, "", 422, "no file"},
		{"missing name", []part{{"file", "a.jsonl", validJSONL(12)}}, "", 422, "metadata"},
		{"name after file, blank", []part{{"file", "a.jsonl", validJSONL(12)}, {"name", "", "   "}}, "", 422, "metadata"},
		{"unknown field", []part{{"file", "a.jsonl", validJSONL(12)}, {"tags", "", "x"}}, "", 400, `unknown multipart field "tags"`},
		{"duplicate file", []part{{"file", "a.jsonl", validJSONL(12)}, {"file", "b.jsonl", validJSONL(12)}}, "", 400, "more than once"},
		{"not multipart", nil, "application/json", 415, "multipart/form-data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, ct := multipartBody(t, tt.parts...)
			if tt.ct != "" {
				ct = tt.ct
			}
			resp, b := f.request(t, http.MethodPost, "/api/v1/datasets", body, "Content-Type", ct)
			e := expectProblem(t, resp, b, tt.status, tt.want)
			if tt.name == "malformed line" {
				var lines []int
				var raw struct {
					Error struct {
						Details []problemDetail `json:"details"`
					} `json:"error"`
				}
				_ = json.Unmarshal(b, &raw)
				for _, d := range raw.Error.Details {
					lines = append(lines, d.Line)
				}
				if fmt.Sprint(lines) != "[13 14]" {
					t.Errorf("error lines = %v, want [13 14]; body %s", lines, b)
				}
			}
			if tt.name == "many errors capped" {
				var raw struct {
					Error struct {
						Details    []problemDetail `json:"details"`
						ErrorCount int             `json:"error_count"`
					} `json:"error"`
				}
				_ = json.Unmarshal(b, &raw)
				if len(raw.Error.Details) > 51 || raw.Error.ErrorCount < 80 {
					t.Errorf("details %d, error_count %d; want at most 50 listed (+file-level) and all counted", len(raw.Error.Details), raw.Error.ErrorCount)
				}
			}
			_ = e
			if keys := f.objectKeys(t, ""); len(keys) != 0 {
				t.Errorf("objects left behind: %v", keys)
			}
		})
	}

	t.Run("truncated body", func(t *testing.T) {
		body, ct := multipartBody(t, part{"name", "", "x"}, part{"file", "a.jsonl", validJSONL(12)})
		raw, _ := io.ReadAll(body)
		resp, b := f.request(t, http.MethodPost, "/api/v1/datasets", bytes.NewReader(raw[:len(raw)-40]), "Content-Type", ct)
		expectProblem(t, resp, b, http.StatusBadRequest, "interrupted")
		if keys := f.objectKeys(t, ""); len(keys) != 0 {
			t.Errorf("objects left behind: %v", keys)
		}
	})
}

type problemDetail struct {
	Field  string `json:"field"`
	Line   int    `json:"line"`
	Record int    `json:"record"`
	Issue  string `json:"issue"`
}

func TestJobRequestsAreValidated(t *testing.T) {
	f := newTrainingFixture(t, true)
	d := f.upload(t, "ds", validJSONL(10))
	post := func(body string) (*http.Response, []byte) {
		return f.request(t, http.MethodPost, "/api/v1/jobs", strings.NewReader(body), "Content-Type", "application/json")
	}
	model := f.cfg.Training.BaseModels[0]
	tests := []struct {
		name, body string
		status     int
		want       string
		fields     []string
	}{
		{"unknown field", `{"dataset_id":"` + d.ID + `","base_model":"` + model + `","gpu":"a100"}`, 400, `unknown field "gpu"`, nil},
		{"unknown nested field", `{"dataset_id":"` + d.ID + `","base_model":"` + model + `","hyperparameters":{"rank":8}}`, 400, `unknown field "rank"`, nil},
		{"wrong type", `{"dataset_id":"` + d.ID + `","base_model":"` + model + `","hyperparameters":{"epochs":"3"}}`, 400, "hyperparameters.epochs", nil},
		{"truncated", `{"dataset_id":"` + d.ID, 400, "malformed JSON", nil},
		{"empty", ``, 400, "empty", nil},
		{"not an object", `[1,2]`, 400, "must be an object", nil},
		{"trailing data", `{"dataset_id":"` + d.ID + `","base_model":"` + model + `"} {}`, 400, "single JSON value", nil},
		{"hyperparameters out of range",
			`{"dataset_id":"` + d.ID + `","base_model":"` + model + `","hyperparameters":{"lora_rank":12,"epochs":0,"learning_rate":0.5,"max_seq_length":99999}}`,
			422, "invalid", []string{"hyperparameters.lora_rank", "hyperparameters.epochs", "hyperparameters.learning_rate", "hyperparameters.max_seq_length"}},
		{"base model not allowed", `{"dataset_id":"` + d.ID + `","base_model":"gpt-4"}`, 422, "invalid", []string{"base_model"}},
		{"quantization unknown", `{"dataset_id":"` + d.ID + `","base_model":"` + model + `","hyperparameters":{"quantization":"8bit"}}`,
			422, "invalid", []string{"hyperparameters.quantization"}},
		// Refused before anything is pushed: 64 x 4096 tokens of logits alone
		// exceed a 16 GB GPU.
		{"does not fit the GPU", `{"dataset_id":"` + d.ID + `","base_model":"` + model + `","hyperparameters":{"batch_size":64,"max_seq_length":4096}}`,
			422, "invalid", []string{"base_model", "hyperparameters.batch_size", "hyperparameters.max_seq_length", "hyperparameters.quantization"}},
		{"missing fields", `{}`, 422, "invalid", []string{"dataset_id", "base_model"}},
		{"malformed dataset id", `{"dataset_id":"abc","base_model":"` + model + `"}`, 422, "invalid", []string{"dataset_id"}},
		{"unknown dataset", `{"dataset_id":"` + training.NewID() + `","base_model":"` + model + `"}`, 422, "invalid", []string{"dataset_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := post(tt.body)
			e := expectProblem(t, resp, b, tt.status, tt.want)
			var fields []string
			for _, d := range e.Error.Details {
				fields = append(fields, d.Field)
			}
			if tt.fields != nil && strings.Join(fields, ",") != strings.Join(tt.fields, ",") {
				t.Errorf("detail fields = %v, want %v", fields, tt.fields)
			}
		})
	}
	resp, b := post(`{"dataset_id":"` + d.ID + `","base_model":"` + model + `","hyperparameters":{"epochs":2}}`)
	var j training.Job
	expect(t, resp, b, http.StatusCreated, &j)
	if j.Status != training.StatusQueued || j.Hyperparameters.Epochs != 2 || j.Hyperparameters.LoraRank != 16 ||
		j.Hyperparameters.Quantization != training.QuantizationNone {
		t.Errorf("job = %+v", j)
	}
	var q training.Job
	resp, b = post(`{"dataset_id":"` + d.ID + `","base_model":"` + model + `","hyperparameters":{"quantization":"4bit"}}`)
	expect(t, resp, b, http.StatusCreated, &q)
	if q.Hyperparameters.Quantization != training.Quantization4Bit {
		t.Errorf("quantization = %q, want 4bit", q.Hyperparameters.Quantization)
	}
	resp, b = f.request(t, http.MethodPost, "/api/v1/jobs/"+q.ID+"/cancel", nil)
	expect(t, resp, b, http.StatusOK, &q)

	for _, tt := range []struct {
		path   string
		status int
		want   string
	}{
		{"/api/v1/jobs/not-a-uuid", 400, "malformed job id"},
		{"/api/v1/jobs/" + training.NewID(), 404, "no job"},
		{"/api/v1/jobs?status=done", 400, "unknown job status"},
		{"/api/v1/jobs?limit=0", 400, "limit"},
		{"/api/v1/jobs?limit=101", 400, "limit"},
		{"/api/v1/jobs?cursor=garbage", 400, "cursor"},
		{"/api/v1/jobs?sort=asc", 400, `unknown query parameter "sort"`},
		{"/api/v1/datasets?cursor=%zz", 400, "malformed query string"},
		{"/api/v1/jobs?status=running;limit=5", 400, "malformed query string"},
		{"/api/v1/jobs/" + j.ID + "/events?after=-1", 400, "after"},
		{"/api/v1/jobs/" + j.ID + "/events/stream?after=x", 400, "after"},
		{"/api/v1/models/123", 400, "malformed model id"},
		{"/api/v1/models/" + training.NewID(), 404, "no model"},
		{"/api/v1/models/" + training.NewID() + "/archive", 404, "no model"},
		{"/api/v1/datasets/" + training.NewID(), 404, "no dataset"},
		{"/api/v1/datasets?name=%00", 400, "name filter"},
		{"/api/v1/datasets?name=%ff%fe", 400, "name filter"},
		{"/api/v1/datasets?name=" + strings.Repeat("x", 201), 400, "name filter"},
		{"/api/v1/datasets/" + training.NewID() + "%00", 400, "malformed dataset id"},
	} {
		resp, b := f.request(t, http.MethodGet, tt.path, nil)
		expectProblem(t, resp, b, tt.status, tt.want)
	}
	resp, b = f.request(t, http.MethodGet, "/api/v1/jobs/"+j.ID+"/events/stream", nil, "Last-Event-ID", "abc")
	expectProblem(t, resp, b, 400, "Last-Event-ID")

	// A queued job holds its dataset; cancelling releases it.
	resp, b = f.request(t, http.MethodDelete, "/api/v1/datasets/"+d.ID, nil)
	expectProblem(t, resp, b, http.StatusConflict, "used by a job")
	resp, b = f.request(t, http.MethodPost, "/api/v1/jobs/"+j.ID+"/cancel", nil)
	expect(t, resp, b, http.StatusOK, &j)
	if j.Status != training.StatusCancelled {
		t.Errorf("after cancel: %s", j.Status)
	}
	resp, b = f.request(t, http.MethodPost, "/api/v1/jobs/"+j.ID+"/cancel", nil)
	expectProblem(t, resp, b, http.StatusConflict, "already finished")
	resp, b = f.request(t, http.MethodDelete, "/api/v1/datasets/"+d.ID, nil)
	expect(t, resp, b, http.StatusNoContent, nil)
}

func TestJobCreationWithoutKaggleCredentials(t *testing.T) {
	f := newTrainingFixture(t, false)
	d := f.upload(t, "ds", validJSONL(10))
	resp, b := f.postJob(t, d.ID)
	e := expectProblem(t, resp, b, http.StatusServiceUnavailable, "training backend not configured")
	if e.Error.Code != "backend_not_configured" {
		t.Errorf("code = %s", e.Error.Code)
	}
}

// readStream reads SSE events until the stream ends or n events arrived.
func readStream(t *testing.T, body io.Reader, n int) []sse.Event {
	t.Helper()
	r := ssetest.NewReader(body)
	var out []sse.Event
	for n <= 0 || len(out) < n {
		ev, err := r.Next()
		if err != nil {
			break
		}
		out = append(out, ev)
		if ev.Name == "end" {
			break
		}
	}
	return out
}

func (f *trainingFixture) openStream(t *testing.T, ctx context.Context, jobID string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/api/v1/jobs/"+jobID+"/events/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.token)
	req.Header.Set("Accept-Encoding", "gzip")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: status %d content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" {
		t.Errorf("stream is compressed (%s); SSE must not be", ce)
	}
	return resp
}

// TestEndToEndTraining goes through the HTTP API only: upload, job, the
// worker pool drives the emulator's kernel to completion, model with files,
// archive with exactly those files, events and their stream, deletes.
func TestEndToEndTraining(t *testing.T) {
	f := newTrainingFixture(t, true)
	d := f.upload(t, "e2e", validJSONL(20))
	resp, b := f.request(t, http.MethodPost, "/api/v1/jobs",
		strings.NewReader(`{"dataset_id":"`+d.ID+`","base_model":"`+f.cfg.Training.BaseModels[0]+`","hyperparameters":{"lora_rank":8,"epochs":1}}`),
		"Content-Type", "application/json")
	var j training.Job
	expect(t, resp, b, http.StatusCreated, &j)
	schemas := specSchemas(t)
	conformsJSON(t, schemas, "Job", b)

	// Follow the job live over SSE from before it starts.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live := f.openStream(t, ctx, j.ID)
	f.startWorkers(t)

	events := readStream(t, live.Body, 0)
	if len(events) == 0 || events[len(events)-1].Name != "end" {
		t.Fatalf("stream ended without the end event: %+v", events)
	}
	var statuses []string
	for i, ev := range events[:len(events)-1] {
		if ev.ID != fmt.Sprint(i+1) {
			t.Errorf("event %d has id %q, want %d", i, ev.ID, i+1)
		}
		var e training.Event
		if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
			t.Fatalf("event data is not JSON: %q", ev.Data)
		}
		conformsJSON(t, schemas, "Event", []byte(ev.Data))
		if !strings.Contains(ev.Data, "\n") {
			t.Errorf("event data %q is one line; want the multi-line indented form", ev.Data)
		}
		if e.Kind == training.EventStatus {
			statuses = append(statuses, string(e.ToStatus))
		}
	}
	if got := strings.Join(statuses, ">"); got != "queued>uploading>submitted>running>collecting>succeeded" {
		t.Errorf("statuses over SSE = %s", got)
	}

	resp, b = f.request(t, http.MethodGet, "/api/v1/jobs/"+j.ID, nil)
	expect(t, resp, b, http.StatusOK, &j)
	conformsJSON(t, schemas, "Job", b)
	if j.Status != training.StatusSucceeded {
		t.Fatalf("job = %s", b)
	}
	if n := f.emu.PushCount(j.KaggleKernel); n != 1 {
		t.Errorf("kernel %s pushed %d times", j.KaggleKernel, n)
	}

	// Resume with Last-Event-ID: only the later events come.
	resumed := f.openStream(t, ctx, j.ID, "Last-Event-ID", "3")
	rest := readStream(t, resumed.Body, 0)
	if len(rest) != len(events)-3 || rest[0].ID != "4" {
		t.Errorf("resumed after 3: got %d events starting at %q, want %d starting at 4", len(rest), rest[0].ID, len(events)-3)
	}
	// The paginated list agrees with the stream.
	var page eventList
	resp, b = f.request(t, http.MethodGet, "/api/v1/jobs/"+j.ID+"/events?limit=2&after=1", nil)
	expect(t, resp, b, http.StatusOK, &page)
	if len(page.Data) != 2 || page.Data[0].Seq != 2 || page.NextAfter != 3 || !page.HasMore {
		t.Errorf("events page = %s", b)
	}

	var models list[training.Model]
	resp, b = f.request(t, http.MethodGet, "/api/v1/models", nil)
	expect(t, resp, b, http.StatusOK, &models)
	if len(models.Data) != 1 || models.Data[0].JobID != j.ID {
		t.Fatalf("models = %s", b)
	}
	var raw struct{ Data []json.RawMessage }
	_ = json.Unmarshal(b, &raw)
	conformsJSON(t, schemas, "Model", raw.Data[0])
	modelID := models.Data[0].ID
	var md training.ModelDetail
	resp, b = f.request(t, http.MethodGet, "/api/v1/models/"+modelID, nil)
	expect(t, resp, b, http.StatusOK, &md)
	conformsJSON(t, schemas, "ModelDetail", b)
	// The model keeps what the notebook wrote; Kaggle's own __notebook__.ipynb
	// and __results__.html stay out (the runner's collect).
	want := map[string][]byte{}
	for _, file := range kaggletest.DefaultOutputFiles() {
		if !strings.HasPrefix(file.Name, "__") {
			want[file.Name] = file.Data
		}
	}
	if len(md.Files) != len(want) {
		t.Errorf("model files = %+v", md.Files)
	}
	for _, file := range md.Files {
		u, err := url.Parse(file.URL)
		if err != nil || u.Host != "files.example.test" || u.Scheme != "https" {
			t.Errorf("file %s URL %q is not on the public host", file.Name, file.URL)
		}
		if exp := u.Query().Get("X-Amz-Expires"); exp != "90" {
			t.Errorf("file %s URL expires in %q s, want 90", file.Name, exp)
		}
		if file.SizeBytes != int64(len(want[file.Name])) {
			t.Errorf("file %s size %d, want %d", file.Name, file.SizeBytes, len(want[file.Name]))
		}
	}
	var metrics map[string]any
	if err := json.Unmarshal(md.Metrics, &metrics); err != nil || metrics["eval_loss"] != 1.3021 {
		t.Errorf("metrics = %s", md.Metrics)
	}

	// An object outside the model's prefix that shares its beginning must
	// not leak into the archive.
	if _, err := f.blob.Put(context.Background(), "models/"+j.ID+"-other/x.bin", strings.NewReader("no"), 2, ""); err != nil {
		t.Fatal(err)
	}
	resp, b = f.request(t, http.MethodGet, "/api/v1/models/"+modelID+"/archive", nil)
	expect(t, resp, b, http.StatusOK, nil)
	if resp.Header.Get("Content-Type") != "application/zip" {
		t.Errorf("archive content type %q", resp.Header.Get("Content-Type"))
	}
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("archive is not a zip: %v", err)
	}
	if len(zr.File) != len(want) {
		t.Errorf("archive has %d entries, want %d", len(zr.File), len(want))
	}
	for _, zf := range zr.File {
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		if exp, ok := want[zf.Name]; !ok || !bytes.Equal(data, exp) {
			t.Errorf("archive entry %s: unexpected or different content", zf.Name)
		}
	}

	resp, b = f.request(t, http.MethodDelete, "/api/v1/models/"+modelID, nil)
	expect(t, resp, b, http.StatusNoContent, nil)
	if keys := f.objectKeys(t, "models/"+j.ID+"/"); len(keys) != 0 {
		t.Errorf("model objects left after delete: %v", keys)
	}
	if keys := f.objectKeys(t, "models/"+j.ID+"-other/"); len(keys) != 1 {
		t.Errorf("delete removed objects outside the model's prefix")
	}
	resp, b = f.request(t, http.MethodGet, "/api/v1/models/"+modelID, nil)
	expectProblem(t, resp, b, http.StatusNotFound, "no model")
}

// TestEventStreamLiveAndShutdown: an event committed while a client is
// connected reaches it without reconnecting, and server shutdown ends the
// stream.
func TestEventStreamLiveAndShutdown(t *testing.T) {
	f := newTrainingFixture(t, true)
	d := f.upload(t, "ds", validJSONL(10))
	resp, b := f.postJob(t, d.ID)
	var j training.Job
	expect(t, resp, b, http.StatusCreated, &j)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream := f.openStream(t, ctx, j.ID)
	r := ssetest.NewReader(stream.Body)
	first, err := r.Next()
	if err != nil || first.ID != "1" {
		t.Fatalf("first event = %+v, %v", first, err)
	}
	msg := "line one\nline two"
	if _, err := f.store.UpdateJob(ctx, j.ID, training.StatusQueued, training.JobUpdate{}, training.EventLog, msg); err != nil {
		t.Fatal(err)
	}
	second, err := r.Next()
	if err != nil || second.ID != "2" || second.Name != "log" {
		t.Fatalf("second event = %+v, %v", second, err)
	}
	var e training.Event
	if err := json.Unmarshal([]byte(second.Data), &e); err != nil || e.Message != msg {
		t.Errorf("log event message = %q, want %q", e.Message, msg)
	}

	f.api.BeginShutdown()
	f.closed = true
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("after shutdown: %v, want the stream to end", err)
	}
}

// TestEventStreamHeartbeatAndClientGone: an idle stream carries a heartbeat
// comment (every 15 s), and the handler returns as soon as the client goes
// away (its request log line is written then).
func TestEventStreamHeartbeatAndClientGone(t *testing.T) {
	f := newTrainingFixture(t, true)
	d := f.upload(t, "ds", validJSONL(10))
	resp, b := f.postJob(t, d.ID)
	var j training.Job
	expect(t, resp, b, http.StatusCreated, &j)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := f.openStream(t, ctx, j.ID)
	lines := make(chan string)
	go func() {
		defer close(lines)
		buf := make([]byte, 4096)
		var pending string
		for {
			n, err := stream.Body.Read(buf)
			pending += string(buf[:n])
			for {
				i := strings.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				select {
				case lines <- pending[:i]:
				case <-ctx.Done():
					return
				}
				pending = pending[i+1:]
			}
			if err != nil {
				return
			}
		}
	}()
	deadline := time.After(heartbeatInterval + 30*time.Second)
	for heartbeat := false; !heartbeat; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("stream ended before a heartbeat")
			}
			heartbeat = l == ": heartbeat"
		case <-deadline:
			t.Fatal("no heartbeat on an idle stream")
		}
	}

	const streamRoute = `"route":"/api/v1/jobs/{id}/events/stream"`
	if strings.Contains(f.logs.String(), streamRoute) {
		t.Fatal("the stream's request finished before the client left")
	}
	cancel()
	for wait := time.Now().Add(30 * time.Second); !strings.Contains(f.logs.String(), streamRoute); {
		if time.Now().After(wait) {
			t.Fatal("the stream handler kept running after the client went away")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The memory plan uses the configured machine shape's card.
func TestTrainingGPUFollowsTheMachineShape(t *testing.T) {
	for shape, want := range map[string]training.GPU{
		"NvidiaTeslaT4":   {Name: "NvidiaTeslaT4", MemoryBytes: 16e9},
		"NvidiaL4":        {Name: "NvidiaL4", MemoryBytes: 24e9, BF16: true},
		"NvidiaTeslaP100": {}, // refused by config; the service then plans the T4
	} {
		if got := trainingGPU(shape); got != want {
			t.Errorf("%s: %+v, want %+v", shape, got, want)
		}
	}
}
