package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finetune-studio/finetune-studio/app/internal/auth"
	"github.com/finetune-studio/finetune-studio/app/internal/sse/ssetest"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// streamAs opens a job's live event stream with token and returns the
// response whatever its status; the body closes when the test ends.
func (f *trainingFixture) streamAs(tb testing.TB, ctx context.Context, token, jobID string) *http.Response {
	tb.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/api/v1/jobs/"+jobID+"/events/stream", nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { resp.Body.Close() })
	return resp
}

// insertJobs creates n queued jobs straight in the store (no Kaggle, no
// upload): enough for streams to follow.
func (f *trainingFixture) insertJobs(tb testing.TB, n int) []training.Job {
	tb.Helper()
	ctx := context.Background()
	id := training.NewID()
	d, err := f.store.InsertDataset(ctx, training.Dataset{
		ID: id, Name: "streams", ObjectKey: "datasets/" + id, SizeBytes: 10,
		SHA256: strings.Repeat("ab", 32), Format: "jsonl", Schema: "chat", Examples: 10,
		Report: json.RawMessage(`{"valid":true}`),
	})
	if err != nil {
		tb.Fatal(err)
	}
	jobs := make([]training.Job, n)
	for i := range jobs {
		id := training.NewID()
		jobs[i], err = f.store.InsertJob(ctx, training.Job{
			ID: id, DatasetID: d.ID, BaseModel: "m", Hyperparameters: training.DefaultHyperparameters(),
		}, training.StepTask(id))
		if err != nil {
			tb.Fatal(err)
		}
	}
	return jobs
}

// waitStreams waits until the feed holds n streams; a minute is a safety
// net, not a timing assertion.
func (f *trainingFixture) waitStreams(tb testing.TB, n int) {
	tb.Helper()
	for deadline := time.Now().Add(time.Minute); f.hub.Streams() != n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("the feed holds %d streams, want %d", f.hub.Streams(), n)
		}
	}
}

// TestEventStreamCapsAnswer429: beyond the per-token and the total caps a
// stream is refused with 429 rate_limited, Retry-After and a message that
// names the cap; a closed stream frees its place.
func TestEventStreamCapsAnswer429(t *testing.T) {
	f := newTrainingFixtureWith(t, false, testUploadLimit,
		"APP_MAX_EVENT_STREAMS", "3", "APP_MAX_EVENT_STREAMS_PER_TOKEN", "2")
	job := f.insertJobs(t, 1)[0]
	other, err := auth.Mint()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.CreateToken(context.Background(), other.ID, "other", other.SecretHash, time.Time{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	refused := func(token, want string) {
		t.Helper()
		resp, b := send(t, f.srv, http.MethodGet, "/api/v1/jobs/"+job.ID+"/events/stream", token, nil)
		e := expectProblem(t, resp, b, http.StatusTooManyRequests, want)
		if e.Error.Code != "rate_limited" || resp.Header.Get("Retry-After") == "" {
			t.Errorf("refused stream: code %q, Retry-After %q; want rate_limited with Retry-After", e.Error.Code, resp.Header.Get("Retry-After"))
		}
	}
	open := func(ctx context.Context, token string) *http.Response {
		t.Helper()
		resp := f.streamAs(t, ctx, token, job.ID)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream within the caps: got %d, want 200", resp.StatusCode)
		}
		return resp
	}

	firstCtx, closeFirst := context.WithCancel(ctx)
	open(firstCtx, f.token)
	open(ctx, f.token)
	refused(f.token, "this token already has 2 live event streams open")
	open(ctx, other.Plaintext) // another token still has room: 3 in all
	refused(other.Plaintext, "this server already has 3 live event streams open")

	closeFirst()
	f.waitStreams(t, 2)
	open(ctx, f.token)
}

// TestEventStreamCatchesUpAfterListenerReconnect: an event committed while
// the listener is disconnected (so its notification is lost) still reaches
// an open stream once the listener is back.
func TestEventStreamCatchesUpAfterListenerReconnect(t *testing.T) {
	f := newTrainingFixture(t, false)
	job := f.insertJobs(t, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stream := f.streamAs(t, ctx, f.token, job.ID)
	r := ssetest.NewReader(stream.Body)
	if ev, err := r.Next(); err != nil || ev.ID != "1" {
		t.Fatalf("first event = %+v, %v", ev, err)
	}

	u, err := url.Parse(f.dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	db := pgx.Identifier{name}.Sanitize()
	u.Path = "/postgres" // a database may not lock itself out from its own session
	admin, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	// Keep the listener out while the event is committed; connections
	// already open (the pool's, admin) stay.
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+db+" ALLOW_CONNECTIONS false"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "ALTER DATABASE "+db+" ALLOW_CONNECTIONS true") })
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'finetune-studio-listener' AND datname = $1`, name); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'finetune-studio-listener' AND datname = $1`, name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the listener's backend did not go away")
		}
	}
	if _, err := f.store.UpdateJob(ctx, job.ID, training.StatusQueued, training.JobUpdate{}, training.EventLog, "while the listener was away"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+db+" ALLOW_CONNECTIONS true"); err != nil {
		t.Fatal(err)
	}
	ev, err := r.Next()
	if err != nil || ev.ID != "2" || !strings.Contains(ev.Data, "while the listener was away") {
		t.Fatalf("after the listener reconnected: event %+v, %v; want event 2", ev, err)
	}
}

// idleWindow is how long the idle tests watch the database. It is an
// observation window, not a timing assertion: with no events an idle
// stream must do no database work at all, however long it is watched.
const idleWindow = 2 * time.Second

// TestIdleEventStreamsCostNoQueries: 50 open streams with nothing to say
// take no connection from the pool (they used to poll four times a second
// each).
func TestIdleEventStreamsCostNoQueries(t *testing.T) {
	const streams = 50
	f := newTrainingFixtureWith(t, false, testUploadLimit, "APP_MAX_EVENT_STREAMS_PER_TOKEN", fmt.Sprint(streams))
	jobs := f.insertJobs(t, 5)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readers := openIdleStreams(t, f, ctx, jobs, streams)

	before := f.store.Stats().AcquireCount
	time.Sleep(idleWindow)
	if got := f.store.Stats().AcquireCount - before; got != 0 {
		t.Fatalf("%d idle streams took %d pool connections in %s; want 0", streams, got, idleWindow)
	}
	// They are live, not stuck: an event still reaches its streams.
	if _, err := f.store.UpdateJob(ctx, jobs[0].ID, training.StatusQueued, training.JobUpdate{}, training.EventLog, "news"); err != nil {
		t.Fatal(err)
	}
	if ev, err := readers[0].Next(); err != nil || ev.ID != "2" {
		t.Fatalf("after an event: got %+v, %v; want event 2", ev, err)
	}
}

// openIdleStreams opens n streams spread over jobs, waits until each has
// sent its backlog (the "job created" event) and returns their readers.
func openIdleStreams(tb testing.TB, f *trainingFixture, ctx context.Context, jobs []training.Job, n int) []*ssetest.Reader {
	tb.Helper()
	readers := make([]*ssetest.Reader, n)
	for i := range n {
		resp := f.streamAs(tb, ctx, f.token, jobs[i%len(jobs)].ID)
		if resp.StatusCode != http.StatusOK {
			tb.Fatalf("stream %d: got %d, want 200", i, resp.StatusCode)
		}
		readers[i] = ssetest.NewReader(resp.Body)
		if ev, err := readers[i].Next(); err != nil || ev.ID != "1" {
			tb.Fatalf("stream %d: first event %+v, %v", i, ev, err)
		}
	}
	f.waitStreams(tb, n)
	return readers
}
