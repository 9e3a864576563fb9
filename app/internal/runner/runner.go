// Package runner drives fine-tuning jobs through Kaggle. It is the worker
// handler for training.TaskKind: each run does the next step the job's
// persisted status calls for (upload the dataset, push the kernel, poll it,
// collect its output into a model) and asks to be run again later when it
// has to wait, so no worker is held while Kaggle trains.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/notebook"
	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// Kaggle is the part of the Kaggle client the runner uses; *kaggle.Client
// satisfies it.
type Kaggle interface {
	Username() string
	UploadBlob(ctx context.Context, name string, size int64, body io.Reader) (string, error)
	CreateDataset(ctx context.Context, d kaggle.NewDataset) (string, error)
	DatasetStatus(ctx context.Context, owner, slug string) (string, error)
	PushKernel(ctx context.Context, k kaggle.KernelPush) (kaggle.KernelRef, error)
	KernelStatus(ctx context.Context, owner, slug string) (kaggle.KernelStatus, error)
	KernelOutput(ctx context.Context, owner, slug string) (kaggle.KernelOutput, error)
	Download(ctx context.Context, fileURL string) (io.ReadCloser, int64, error)
	DeleteDataset(ctx context.Context, owner, slug string) error
}

// Config tunes the runner.
type Config struct {
	// MaxRuntime fails a job still unfinished this long after it started.
	MaxRuntime time.Duration
	// PollInterval is the first delay between status polls; it grows with
	// the time the job has waited, up to MaxPollInterval.
	PollInterval    time.Duration
	MaxPollInterval time.Duration
	// MaxOutputBytes caps the bytes copied from a kernel's output into a
	// model (JOB_MAX_OUTPUT_BYTES); a bigger output fails the job.
	// Default DefaultMaxOutputBytes.
	MaxOutputBytes int64
	// PushGrace is how long after a kernel push started the runner waits
	// for that kernel to become visible on Kaggle before it pushes again
	// (the push's answer was lost, or the worker making it lost its task
	// lease). It must exceed the worker lease, after which a stale worker
	// has stopped its own push, plus Kaggle's delay in showing a new
	// kernel. Default 3 minutes.
	PushGrace time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Runner drives one job through Kaggle, one step at a time. Each call to
// Step does what the job's persisted status says is next, so a restarted
// process resumes where the job was: the Kaggle dataset and kernel
// references are stored on the job row, and a kernel that was pushed is
// only polled again, never pushed twice.
type Runner struct {
	repo    training.Repository
	objects training.Objects
	kaggle  Kaggle
	cfg     Config
	log     *slog.Logger
}

// New returns a Runner.
func New(repo training.Repository, objects training.Objects, k Kaggle, cfg Config, log *slog.Logger) *Runner {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 10 * time.Second
	}
	if cfg.MaxPollInterval < cfg.PollInterval {
		cfg.MaxPollInterval = max(cfg.PollInterval, 2*time.Minute)
	}
	if cfg.MaxRuntime <= 0 {
		cfg.MaxRuntime = 12 * time.Hour
	}
	if cfg.MaxOutputBytes <= 0 {
		cfg.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if cfg.PushGrace <= 0 {
		cfg.PushGrace = 3 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Runner{repo: repo, objects: objects, kaggle: k, cfg: cfg, log: log}
}

// RetryError asks the caller to run the step again later. After is the
// delay the backend asked for (zero: use the caller's own backoff).
type RetryError struct {
	After time.Duration
	Err   error
}

func (e *RetryError) Error() string { return e.Err.Error() }
func (e *RetryError) Unwrap() error { return e.Err }

// Step advances job id as far as it can without waiting. It returns the
// delay after which it wants to be called again, or zero when the job is
// finished (or gone). A *RetryError means a transient backend failure;
// any other error is unexpected (storage, database) and worth a retry too.
func (r *Runner) Step(ctx context.Context, id string) (time.Duration, error) {
	for range 20 { // bounded: every pass either moves the job forward or returns
		j, err := r.repo.GetJob(ctx, id)
		if err != nil {
			return 0, err
		}
		if j.Status.Terminal() {
			return 0, nil
		}
		if j.StartedAt != nil && r.cfg.Now().Sub(*j.StartedAt) > r.cfg.MaxRuntime {
			return 0, r.fail(ctx, j, fmt.Sprintf("timeout: the job ran longer than the maximum runtime of %s (JOB_MAX_RUNTIME)", r.cfg.MaxRuntime)+kernelLeftRunning(j))
		}
		var wait time.Duration
		switch j.Status {
		case training.StatusQueued:
			_, err = r.repo.Transition(ctx, j.ID, training.StatusQueued, training.StatusUploading, training.JobUpdate{}, "started")
		case training.StatusUploading:
			wait, err = r.upload(ctx, j)
		case training.StatusSubmitted, training.StatusRunning:
			wait, err = r.poll(ctx, j)
		case training.StatusCollecting:
			err = r.collect(ctx, j)
		}
		switch {
		case errors.Is(err, training.ErrStale):
			continue // someone else moved the job; look again
		case errors.Is(err, training.ErrLeaseLost):
			return 0, err // another worker owns the job's task now
		case err != nil:
			return 0, r.classify(ctx, j, err)
		case wait > 0:
			return r.capToDeadline(j, wait), nil
		}
	}
	return r.cfg.PollInterval, nil
}

// capToDeadline makes sure a job is looked at again right after its
// runtime limit, so a timeout is noticed on time.
func (r *Runner) capToDeadline(j training.Job, wait time.Duration) time.Duration {
	if j.StartedAt == nil {
		return wait
	}
	left := j.StartedAt.Add(r.cfg.MaxRuntime).Sub(r.cfg.Now()) + time.Second
	if left > 0 && left < wait {
		return left
	}
	return wait
}

// pollDelay grows with the time since the job started: quick feedback
// early, fewer API calls during a long training run.
func (r *Runner) pollDelay(j training.Job) time.Duration {
	d := r.cfg.PollInterval
	if j.StartedAt != nil {
		d = max(d, r.cfg.Now().Sub(*j.StartedAt)/10)
	}
	return min(d, r.cfg.MaxPollInterval)
}

// slug is the Kaggle name of a job's dataset and kernel. It derives from
// the job id only, so a step that crashed after Kaggle acted but before the
// reference was saved finds its dataset or kernel again instead of
// creating a second one.
func slug(j training.Job) string { return "fts-job-" + strings.ReplaceAll(j.ID, "-", "") }

func (r *Runner) upload(ctx context.Context, j training.Job) (time.Duration, error) {
	owner, s := r.kaggle.Username(), slug(j)
	if j.DatasetID == "" {
		return 0, r.fail(ctx, j, "the job's dataset was deleted before training started")
	}
	// The dataset row is read only when this pass uses it: to upload the
	// file, then to render the notebook. Polls while Kaggle processes the
	// upload need neither.
	var (
		ds     training.Dataset
		status string // the Kaggle dataset's status, once known
		err    error
	)
	if j.KaggleDataset == "" {
		if ds, err = r.repo.GetDataset(ctx, j.DatasetID); err != nil {
			return 0, err
		}
		var ref string
		if ref, status, err = r.createKaggleDataset(ctx, j, ds, owner, s); err != nil {
			return 0, err
		}
		recorded, err := r.repo.UpdateJob(ctx, j.ID, training.StatusUploading, training.JobUpdate{KaggleDataset: &ref}, training.EventLog, "uploaded the dataset to Kaggle as "+ref)
		if err != nil {
			if errors.Is(err, training.ErrStale) {
				r.deleteUnrecordedDataset(ctx, j.ID, ref)
			}
			return 0, err
		}
		j = recorded
	}
	if status == "" {
		dsOwner, dsSlug, _ := strings.Cut(j.KaggleDataset, "/")
		if status, err = r.kaggle.DatasetStatus(ctx, dsOwner, dsSlug); err != nil {
			return 0, err
		}
	}
	switch status {
	case kaggle.DatasetReady:
	case kaggle.DatasetFailed, kaggle.DatasetError:
		return 0, r.fail(ctx, j, "Kaggle could not process the uploaded dataset (status "+status+")")
	default:
		return r.pollDelay(j), nil
	}

	// Pushed already? A kernel that exists under our slug was pushed by an
	// earlier attempt that crashed before recording it: adopt it.
	ref := owner + "/" + s
	if _, err := r.kaggle.KernelStatus(ctx, owner, s); err == nil {
		_, err = r.repo.Transition(ctx, j.ID, training.StatusUploading, training.StatusSubmitted, training.JobUpdate{KaggleKernel: &ref}, "found the kernel pushed by an earlier attempt: "+ref)
		return 0, err
	} else if !errors.Is(err, kaggle.ErrNotFound) {
		return 0, err
	}
	// A push already started (by an earlier claim of this task whose
	// answer was lost, or by a worker whose lease expired while it pushed)
	// may become visible any moment: pushing now could start a second
	// kernel version and spend the GPU quota twice.
	if j.PushStartedAt != nil {
		if left := j.PushStartedAt.Add(r.cfg.PushGrace).Sub(r.cfg.Now()); left > 0 {
			return max(min(r.pollDelay(j), left), time.Second), nil
		}
	}
	if ds.ID == "" { // not read above
		if ds, err = r.repo.GetDataset(ctx, j.DatasetID); err != nil {
			return 0, err
		}
	}
	// The notebook's own knobs (gradient accumulation, warmup, eval split,
	// seed) keep their defaults.
	kernel, err := notebook.Render(notebook.Spec{
		JobID: j.ID, BaseModel: j.BaseModel, Schema: ds.Schema,
		DatasetSource: j.KaggleDataset, DatasetFile: dataFileName(ds),
		KernelOwner: owner, KernelSlug: s,
		Hyperparameters: notebook.Hyperparameters{Hyperparameters: j.Hyperparameters},
	})
	if err != nil {
		return 0, r.fail(ctx, j, "could not generate the training notebook: "+err.Error())
	}
	// Recorded under the task lease before the push: a worker that takes
	// the task over sees it and waits for this push instead of making its
	// own. The push itself runs on the handler's context, which the worker
	// pool cancels before the lease can expire.
	if j, err = r.repo.UpdateJob(ctx, j.ID, training.StatusUploading, training.JobUpdate{PushStarted: true}, training.EventLog, ""); err != nil {
		return 0, err
	}
	pushed, err := r.kaggle.PushKernel(ctx, kernel.Push())
	if err != nil {
		return 0, err
	}
	if pushed.Ref != "" {
		ref = pushed.Ref
	}
	_, err = r.repo.Transition(ctx, j.ID, training.StatusUploading, training.StatusSubmitted, training.JobUpdate{KaggleKernel: &ref}, "pushed the training kernel "+ref)
	return 0, err
}

// dataFileName is the name the dataset file gets on Kaggle.
func dataFileName(d training.Dataset) string {
	if d.Format == "json_array" {
		return "train.json"
	}
	return "train.jsonl"
}

// createKaggleDataset uploads the job's dataset to Kaggle and returns its
// reference, with its status when it was adopted (empty when just created).
func (r *Runner) createKaggleDataset(ctx context.Context, j training.Job, ds training.Dataset, owner, s string) (ref, status string, err error) {
	// An earlier attempt may have created it and crashed before saving the
	// reference: Kaggle would refuse the slug, so adopt the dataset.
	if status, err := r.kaggle.DatasetStatus(ctx, owner, s); err == nil {
		return owner + "/" + s, status, nil
	} else if !errors.Is(err, kaggle.ErrNotFound) {
		return "", "", err
	}
	body, size, err := r.objects.Get(ctx, ds.ObjectKey)
	if err != nil {
		return "", "", fmt.Errorf("opening dataset object: %w", err)
	}
	defer body.Close()
	name := dataFileName(ds)
	token, err := r.kaggle.UploadBlob(ctx, name, size, body)
	if err != nil {
		return "", "", err
	}
	ref, err = r.kaggle.CreateDataset(ctx, kaggle.NewDataset{
		Owner: owner, Slug: s, Title: "Finetune Studio job " + j.ID[:8], Private: true,
		Files: []kaggle.UploadedFile{{Token: token, Name: name}},
	})
	if errors.Is(err, kaggle.ErrRejected) {
		// Refused, perhaps because the slug was taken in the meantime by
		// the create of a worker that lost this task's lease while making
		// it: that dataset is this job's, so adopt it. Any other refusal
		// stands.
		if status, serr := r.kaggle.DatasetStatus(ctx, owner, s); serr == nil {
			return owner + "/" + s, status, nil
		}
	}
	return ref, "", err
}

func (r *Runner) poll(ctx context.Context, j training.Job) (time.Duration, error) {
	owner, s, _ := strings.Cut(j.KaggleKernel, "/")
	st, err := r.kaggle.KernelStatus(ctx, owner, s)
	if err != nil {
		return 0, err
	}
	if st.Status != j.KaggleStatus {
		status := st.Status
		if j, err = r.repo.UpdateJob(ctx, j.ID, j.Status, training.JobUpdate{KaggleStatus: &status}, training.EventKaggleStatus, "Kaggle kernel status: "+status); err != nil {
			return 0, err
		}
	}
	switch st.Status {
	case kaggle.KernelRunning:
		if j.Status == training.StatusSubmitted {
			_, err = r.repo.Transition(ctx, j.ID, training.StatusSubmitted, training.StatusRunning, training.JobUpdate{}, "the kernel is running")
		}
		return r.pollDelay(j), err
	case kaggle.KernelComplete:
		_, err = r.repo.Transition(ctx, j.ID, j.Status, training.StatusCollecting, training.JobUpdate{}, "the kernel completed; collecting its output")
		return 0, err
	case kaggle.KernelError:
		msg := strings.TrimSpace(st.FailureMessage)
		if msg == "" {
			msg = "no message given"
		}
		r.recordLog(ctx, j, owner, s)
		return 0, r.fail(ctx, j, "the Kaggle kernel failed: "+msg)
	case kaggle.KernelCancelRequested, kaggle.KernelCancelAcknowledged:
		return 0, r.fail(ctx, j, "the Kaggle kernel was cancelled on Kaggle")
	}
	return r.pollDelay(j), nil
}

// recordLog adds a failed kernel's log (its traceback, usually) to the
// job's events. Best effort: the failure itself is recorded either way.
func (r *Runner) recordLog(ctx context.Context, j training.Job, owner, s string) {
	out, err := r.kaggle.KernelOutput(ctx, owner, s)
	if err != nil {
		r.log.Warn("fetching the failed kernel's log failed", "job_id", j.ID, "error", err.Error())
		return
	}
	if text := kernelLog(out.Log); text != "" {
		if _, err := r.repo.UpdateJob(ctx, j.ID, j.Status, training.JobUpdate{}, training.EventLog, text); err != nil && !errors.Is(err, training.ErrStale) {
			r.log.Warn("recording the failed kernel's log failed", "job_id", j.ID, "error", err.Error())
		}
	}
}

// kernelLog turns Kaggle's log (a JSON array of {"stream_name","time","data"})
// into plain text, capped. Anything unparseable is kept as is.
func kernelLog(raw string) string {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return ""
	}
	var entries []struct {
		Data string `json:"data"`
	}
	text := raw
	if json.Unmarshal([]byte(raw), &entries) == nil {
		var b strings.Builder
		for _, e := range entries {
			b.WriteString(e.Data)
		}
		text = b.String()
	}
	text = strings.TrimRight(text, "\n")
	if len(text) > maxLogBytes {
		text = "…" + text[len(text)-maxLogBytes:]
	}
	return strings.ToValidUTF8(text, "�")
}

// fail moves an unfinished job to failed with a message for the user, and
// deletes its Kaggle dataset copy when no kernel of it may still run
// (cleanup.go).
func (r *Runner) fail(ctx context.Context, j training.Job, message string) error {
	for {
		failed, err := r.repo.Transition(ctx, j.ID, j.Status, training.StatusFailed, training.JobUpdate{Error: &message}, message)
		if err == nil {
			r.deleteKaggleDatasetNow(ctx, failed)
		}
		if !errors.Is(err, training.ErrStale) {
			return err
		}
		if j, err = r.repo.GetJob(ctx, j.ID); err != nil {
			return err
		}
		if j.Status.Terminal() {
			return nil
		}
	}
}

// GiveUp fails an unfinished job whose step the queue gave up on, saying
// why: the last error, as much of it as a user may see.
func (r *Runner) GiveUp(ctx context.Context, id string, cause error) error {
	j, err := r.repo.GetJob(ctx, id)
	if errors.Is(err, problem.ErrNotFound) {
		return nil
	}
	if err != nil || j.Status.Terminal() {
		return err
	}
	r.log.Error("giving up on job", "job_id", id, "error", cause.Error())
	return r.fail(ctx, j, "the job was stopped because its "+string(j.Status)+" step kept failing; the last error was: "+userCause(cause))
}

// userCause describes a step's error for the job's user. Kaggle's errors
// carry no credentials and their URLs no signatures; every other error is
// cleaned of URLs' secrets, control characters and excess length, since
// its text was written for the operator.
func userCause(err error) string {
	if msg, ok := kaggle.UserMessage(err); ok {
		return msg
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "a step did not finish in time"
	}
	return sanitize(err.Error())
}

// urlSecrets matches a URL's user information and its query string.
var urlSecrets = regexp.MustCompile(`(?i)(\b[a-z][a-z0-9+.-]*://)[^/@\s]*@|\?[^\s"'` + "`" + `]*`)

// maxCauseLen caps an error shown to a user.
const maxCauseLen = 500

func sanitize(s string) string {
	s = urlSecrets.ReplaceAllStringFunc(s, func(m string) string {
		if strings.HasPrefix(m, "?") {
			return ""
		}
		return m[:strings.Index(m, "://")+3]
	})
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return ' '
		}
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
	s = strings.TrimSpace(s)
	if len(s) > maxCauseLen {
		s = strings.ToValidUTF8(s[:maxCauseLen], "") + "…"
	}
	return s
}

// kernelLeftRunning tells the user, when a job ends while its kernel may
// still run, that the run goes on: Kaggle's public API cannot stop a
// kernel (docs/kaggle.md, "Clean-up on Kaggle"), so it keeps using the
// account's GPU quota until it ends by itself or is stopped by hand.
func kernelLeftRunning(j training.Job) string {
	if j.KaggleKernel == "" || (j.Status != training.StatusSubmitted && j.Status != training.StatusRunning) {
		return ""
	}
	return "; Kaggle's API cannot stop the kernel, so it may keep running (and using GPU quota) until it ends: stop it from https://www.kaggle.com/code/" + j.KaggleKernel
}

// classify decides what a failed step means for the job: anything Kaggle
// refused for good (credentials, a rejected request with Kaggle's message,
// a missing resource, an unusable answer) fails it now, saying so; rate
// limits, server errors and network failures are retried (after the
// server's Retry-After when it gave one).
func (r *Runner) classify(ctx context.Context, j training.Job, err error) error {
	if kaggle.Permanent(err) {
		msg, _ := kaggle.UserMessage(err)
		return r.fail(ctx, j, msg+kernelLeftRunning(j))
	}
	if ok, after := kaggle.Retryable(err); ok {
		return &RetryError{After: after, Err: err}
	}
	return err
}
