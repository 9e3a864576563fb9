package training

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/finetune-studio/finetune-studio/app/internal/dataset"
	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

// Repository is the persistence the domain needs; the store package
// satisfies it. Methods return errors wrapping problem.ErrNotFound for
// missing rows and ErrStale for a lost conditional update.
type Repository interface {
	InsertDataset(ctx context.Context, d Dataset) (Dataset, error)
	ListDatasets(ctx context.Context, namePrefix string, page Page) ([]Dataset, string, error)
	GetDataset(ctx context.Context, id string) (Dataset, error)
	// DeleteDataset removes the row unless an unfinished job uses it
	// (problem.ErrConflict). beforeCommit runs inside the transaction, after
	// the row is deleted: if it fails nothing is deleted.
	DeleteDataset(ctx context.Context, id string, beforeCommit func(Dataset) error) error

	// InsertJob stores a queued job, its first event, and step, the worker
	// task that will run it, in one transaction.
	InsertJob(ctx context.Context, j Job, step Task) (Job, error)
	ListJobs(ctx context.Context, status Status, page Page) ([]Job, string, error)
	GetJob(ctx context.Context, id string) (Job, error)
	// Transition moves a job from one status to another if, and only if, it
	// is still in from, applies upd, and records the status event, all in
	// one transaction. It returns ErrStale when the job was not in from.
	Transition(ctx context.Context, id string, from, to Status, upd JobUpdate, message string) (Job, error)
	// UpdateJob applies upd if the job is still in status, without a
	// transition; ErrStale otherwise. A non-empty message is logged as an
	// event of kind.
	UpdateJob(ctx context.Context, id string, status Status, upd JobUpdate, kind EventKind, message string) (Job, error)
	ListEvents(ctx context.Context, jobID string, afterSeq int64, limit int) ([]Event, error)

	// CompleteJob creates the job's model and moves it from collecting to
	// succeeded in one transaction (ErrStale if it is no longer collecting).
	CompleteJob(ctx context.Context, m Model) (Model, error)
	// MarkKaggleDatasetDeleted records, once, with an event, that the job's
	// private dataset copy ref on Kaggle is deleted.
	MarkKaggleDatasetDeleted(ctx context.Context, jobID, ref string) error
	ListModels(ctx context.Context, page Page) ([]Model, string, error)
	GetModel(ctx context.Context, id string) (Model, error)
	// DeleteModel deletes the row, running beforeCommit (which removes the
	// files) inside the transaction.
	DeleteModel(ctx context.Context, id string, beforeCommit func(Model) error) error
}

// JobUpdate lists job fields to set; nil fields are left alone.
type JobUpdate struct {
	Error         *string
	KaggleDataset *string
	KaggleKernel  *string
	KaggleStatus  *string
	// PushStarted records now as the time the kernel push started.
	PushStarted bool
	// Fence, when set, makes the write apply only while the worker still
	// holds this task lease (ErrLeaseLost otherwise), in the same
	// transaction: a worker whose lease expired while it talked to Kaggle
	// cannot record what it did over the work of the worker that took the
	// task over.
	Fence *Lease
}

// Lease identifies one worker's claim of a task.
type Lease struct {
	TaskID int64
	Token  string
}

// ErrStale means a conditional update found the job in another status than
// expected: someone else (a cancel, another worker) changed it first.
var ErrStale = errors.New("job status changed concurrently")

// ErrLeaseLost means a fenced write was refused: the task's lease has
// passed to another worker.
var ErrLeaseLost = errors.New("the task's lease was lost to another worker")

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key  string
	Size int64
}

// Objects is the object storage the domain needs; the blob package
// satisfies it.
type Objects interface {
	// Put stores r (of unknown length when size < 0) under key.
	Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error
	Get(ctx context.Context, key string) (io.ReadCloser, int64, error)
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	Remove(ctx context.Context, key string) error
	RemovePrefix(ctx context.Context, prefix string) error
	// Presign returns a time-limited download URL on the public host.
	Presign(ctx context.Context, key string, expiry time.Duration) (string, error)
}

// Service implements the product's use cases on top of its dependencies.
type Service struct {
	repo          Repository
	objects       Objects
	baseModels    []string
	gpu           GPU
	backendReady  bool
	presignExpiry time.Duration
	log           *slog.Logger
}

// ServiceConfig holds the settings the service needs from configuration.
type ServiceConfig struct {
	// BaseModels is the allow-list of models a job may fine-tune.
	BaseModels []string
	// GPU is what jobs train on (the configured Kaggle machine shape's);
	// the memory check plans for it. Zero means Kaggle's default T4.
	GPU GPU
	// BackendConfigured is false when no training backend credentials are
	// set: jobs are then refused with 503 backend_not_configured.
	BackendConfigured bool
	// PresignExpiry is the lifetime of model download URLs.
	PresignExpiry time.Duration
}

// NewService returns a Service.
func NewService(repo Repository, objects Objects, cfg ServiceConfig, log *slog.Logger) *Service {
	return &Service{
		repo:          repo,
		objects:       objects,
		baseModels:    slices.Clone(cfg.BaseModels),
		gpu:           cmp.Or(cfg.GPU, defaultGPU()),
		backendReady:  cfg.BackendConfigured,
		presignExpiry: cfg.PresignExpiry,
		log:           log,
	}
}

// NewID returns a random RFC 4122 version 4 UUID.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// ValidID reports whether s is a UUID in canonical lower- or upper-case form.
func ValidID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// Upload is a dataset file that was streamed to object storage and
// validated, waiting for its metadata to be stored.
type Upload struct {
	Key    string
	Size   int64
	SHA256 string
	Report *dataset.Report
}

// errUploadTooLarge ends the read of an upload over StoreUpload's limit.
var errUploadTooLarge = errors.New("upload exceeds the size limit")

// limitedReader fails with errUploadTooLarge once more than n bytes arrive,
// and remembers that it did, whatever the consumer does with the error.
type limitedReader struct {
	r        io.Reader
	n        int64
	exceeded bool
	err      error // the last read error other than io.EOF
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		l.exceeded = true
		return 0, errUploadTooLarge
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		l.exceeded = true
		return n, errUploadTooLarge
	}
	if err != nil && err != io.EOF {
		l.err = err
	}
	return n, err
}

// StoreUpload streams body into object storage under a generated key while
// hashing and validating it, so memory does not grow with the file. Bodies
// over maxBytes fail with 413 and nothing is left in storage; so does any
// read error (a truncated upload) or a file the validator rejects (422).
func (s *Service) StoreUpload(ctx context.Context, body io.Reader, maxBytes int64) (Upload, error) {
	key := "datasets/" + NewID()
	validator := dataset.NewValidator(dataset.Options{})
	hash := sha256.New()
	limited := &limitedReader{r: body, n: maxBytes}
	src := io.TeeReader(limited, io.MultiWriter(hash, validator))

	putErr := s.objects.Put(ctx, key, src, -1, "application/octet-stream")
	switch {
	case limited.exceeded:
		s.removeQuietly(key)
		return Upload{}, problem.New(problem.CodeTooLarge, "the file exceeds the maximum upload size of %d bytes", maxBytes)
	case limited.err != nil, putErr != nil && ctx.Err() != nil:
		// A truncated body or a client that went away: its problem, not ours.
		s.removeQuietly(key)
		return Upload{}, problem.Wrap(errors.Join(limited.err, putErr), problem.CodeInvalid, "the upload was interrupted before the file was complete")
	case putErr != nil:
		s.removeQuietly(key)
		return Upload{}, fmt.Errorf("storing dataset upload: %w", putErr)
	}
	report := validator.Finish()
	if !report.Valid {
		s.removeQuietly(key)
		return Upload{}, rejection(report)
	}
	return Upload{Key: key, Size: report.Stats.Bytes, SHA256: hex.EncodeToString(hash.Sum(nil)), Report: report}, nil
}

// Discard removes an upload that will not become a dataset.
func (s *Service) Discard(u Upload) { s.removeQuietly(u.Key) }

// removeQuietly removes an object with a context of its own: it runs on
// error paths, often because the request's context has ended.
func (s *Service) removeQuietly(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.objects.Remove(ctx, key); err != nil {
		s.log.Error("removing object failed", "object_key", key, "error", err)
	}
}

// rejection turns a failed validation report into a 422 with one detail per
// listed issue and the total count.
func rejection(r *dataset.Report) *problem.Error {
	details := make([]problem.Detail, 0, len(r.Errors))
	for _, is := range r.Errors {
		details = append(details, problem.Detail{Field: string(is.Code), Line: is.Line, Record: is.Record, Issue: is.Message})
	}
	e := problem.New(problem.CodeUnprocessable, "the dataset was rejected: %d problem(s) found", r.ErrorCount).WithDetails(details...)
	e.Extra = map[string]any{"error_count": r.ErrorCount}
	return e
}

// DatasetInput is the metadata of an upload.
type DatasetInput struct {
	Name        string
	Description string
}

// ValidateDatasetInput checks the metadata of an upload.
func ValidateDatasetInput(in DatasetInput) []problem.Detail {
	var details []problem.Detail
	name := strings.TrimSpace(in.Name)
	switch {
	case name == "":
		details = append(details, problem.Detail{Field: "name", Issue: "is required"})
	case utf8.RuneCountInString(name) > 200:
		details = append(details, problem.Detail{Field: "name", Issue: "must be at most 200 characters"})
	case !utf8.ValidString(name) || strings.ContainsAny(name, "\x00\r\n"):
		details = append(details, problem.Detail{Field: "name", Issue: "must be one line of UTF-8 text"})
	}
	switch {
	case utf8.RuneCountInString(in.Description) > 2000:
		details = append(details, problem.Detail{Field: "description", Issue: "must be at most 2000 characters"})
	case !utf8.ValidString(in.Description) || strings.ContainsRune(in.Description, 0):
		details = append(details, problem.Detail{Field: "description", Issue: "must be UTF-8 text"})
	}
	return details
}

// CreateDataset stores the metadata of a validated upload. The upload is
// removed from storage if the dataset cannot be created.
func (s *Service) CreateDataset(ctx context.Context, in DatasetInput, u Upload) (Dataset, error) {
	if details := ValidateDatasetInput(in); len(details) > 0 {
		s.Discard(u)
		return Dataset{}, problem.New(problem.CodeUnprocessable, "the dataset metadata is invalid").WithDetails(details...)
	}
	report, err := json.Marshal(u.Report)
	if err != nil {
		s.Discard(u)
		return Dataset{}, fmt.Errorf("encoding validation report: %w", err)
	}
	d, err := s.repo.InsertDataset(ctx, Dataset{
		ID:          strings.TrimPrefix(u.Key, "datasets/"),
		Name:        strings.TrimSpace(in.Name),
		Description: in.Description,
		ObjectKey:   u.Key,
		SizeBytes:   u.Size,
		SHA256:      u.SHA256,
		Format:      string(u.Report.Format),
		Schema:      string(u.Report.Schema),
		Examples:    u.Report.Stats.Examples,
		Report:      report,
	})
	if err != nil {
		s.Discard(u)
		return Dataset{}, err
	}
	return d, nil
}

// ListDatasets returns one page of datasets, newest first.
func (s *Service) ListDatasets(ctx context.Context, namePrefix string, page Page) ([]Dataset, string, error) {
	return s.repo.ListDatasets(ctx, namePrefix, page)
}

// GetDataset returns a dataset with its report.
func (s *Service) GetDataset(ctx context.Context, id string) (Dataset, error) {
	return s.repo.GetDataset(ctx, id)
}

// DeleteDataset removes a dataset no unfinished job uses, and its object.
// The object is removed while the row's deletion is still uncommitted, so
// a storage failure leaves both in place (retry the delete) and a database
// failure at most leaves a row whose object is gone, never an object that
// nothing refers to.
func (s *Service) DeleteDataset(ctx context.Context, id string) error {
	err := s.repo.DeleteDataset(ctx, id, func(d Dataset) error {
		if err := s.objects.Remove(ctx, d.ObjectKey); err != nil {
			return fmt.Errorf("removing dataset object: %w", err)
		}
		return nil
	})
	if errors.Is(err, problem.ErrConflict) {
		return problem.Wrap(err, problem.CodeConflict, "the dataset is used by a job that has not finished; cancel the job or wait for it to end")
	}
	return err
}

// JobInput is a request to start a fine-tuning job.
type JobInput struct {
	DatasetID       string                `json:"dataset_id"`
	BaseModel       string                `json:"base_model"`
	Hyperparameters *HyperparametersInput `json:"hyperparameters"`
}

// CreateJob validates the request and queues the job.
func (s *Service) CreateJob(ctx context.Context, in JobInput) (Job, error) {
	if !s.backendReady {
		return Job{}, problem.New(problem.CodeNotConfigured, "training backend not configured: set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_USERNAME and KAGGLE_API_TOKEN) to run jobs")
	}
	var details []problem.Detail
	switch {
	case in.DatasetID == "":
		details = append(details, problem.Detail{Field: "dataset_id", Issue: "is required"})
	case !ValidID(in.DatasetID):
		details = append(details, problem.Detail{Field: "dataset_id", Issue: "must be a dataset id (a UUID)"})
	}
	switch {
	case in.BaseModel == "":
		details = append(details, problem.Detail{Field: "base_model", Issue: "is required"})
	case !slices.Contains(s.baseModels, in.BaseModel):
		details = append(details, problem.Detail{Field: "base_model", Issue: "must be one of: " + strings.Join(s.baseModels, ", ")})
	}
	hp, hpDetails := in.Hyperparameters.Resolve()
	details = append(details, hpDetails...)
	if len(details) == 0 {
		// Checked before anything reaches Kaggle: a run that cannot fit the
		// GPU would only end in "CUDA out of memory" after the model download.
		if m, ok := LookupBaseModel(in.BaseModel); ok {
			details = checkMemory(m, hp, s.gpu)
		} else {
			details = []problem.Detail{{Field: "base_model", Issue: CheckBaseModel(in.BaseModel).Error()}}
		}
	}
	if len(details) > 0 {
		return Job{}, problem.New(problem.CodeUnprocessable, "the job request is invalid").WithDetails(details...)
	}
	if _, err := s.repo.GetDataset(ctx, in.DatasetID); err != nil {
		if errors.Is(err, problem.ErrNotFound) {
			return Job{}, problem.New(problem.CodeUnprocessable, "the job request is invalid").
				WithDetails(problem.Detail{Field: "dataset_id", Issue: "no dataset has this id"})
		}
		return Job{}, err
	}
	id := NewID()
	return s.repo.InsertJob(ctx, Job{
		ID:              id,
		DatasetID:       in.DatasetID,
		BaseModel:       in.BaseModel,
		Hyperparameters: hp,
		Status:          StatusQueued,
	}, StepTask(id))
}

// ListJobs returns one page of jobs, newest first, optionally of one status.
func (s *Service) ListJobs(ctx context.Context, status Status, page Page) ([]Job, string, error) {
	return s.repo.ListJobs(ctx, status, page)
}

// GetJob returns one job.
func (s *Service) GetJob(ctx context.Context, id string) (Job, error) {
	return s.repo.GetJob(ctx, id)
}

// CancelJob cancels an unfinished job. The transition is conditional, so a
// worker moving the job at the same moment either loses (and sees the job
// cancelled at its next step) or wins and the cancel is retried from the
// new status.
func (s *Service) CancelJob(ctx context.Context, id string) (Job, error) {
	for {
		j, err := s.repo.GetJob(ctx, id)
		if err != nil {
			return Job{}, err
		}
		if j.Status.Terminal() {
			return Job{}, problem.New(problem.CodeConflict, "the job has already finished (%s) and cannot be cancelled", j.Status)
		}
		j, err = s.repo.Transition(ctx, id, j.Status, StatusCancelled, JobUpdate{}, "cancelled by the user")
		if errors.Is(err, ErrStale) {
			continue
		}
		return j, err
	}
}

// ListEvents returns up to limit events of a job after seq.
func (s *Service) ListEvents(ctx context.Context, jobID string, afterSeq int64, limit int) ([]Event, error) {
	if _, err := s.repo.GetJob(ctx, jobID); err != nil {
		return nil, err
	}
	return s.EventsAfter(ctx, jobID, afterSeq, limit)
}

// EventsAfter is ListEvents for a job the caller has already found: a live
// stream polls it several times a second and must not look the job up on
// every poll.
func (s *Service) EventsAfter(ctx context.Context, jobID string, afterSeq int64, limit int) ([]Event, error) {
	return s.repo.ListEvents(ctx, jobID, afterSeq, limit)
}

// ListModels returns one page of models, newest first.
func (s *Service) ListModels(ctx context.Context, page Page) ([]Model, string, error) {
	return s.repo.ListModels(ctx, page)
}

// ModelFileLink is a model file with a time-limited download URL.
type ModelFileLink struct {
	ModelFile
	URL string `json:"url"`
}

// ModelDetail is a model with download links for its files.
type ModelDetail struct {
	Model
	Files     []ModelFileLink `json:"files"`
	ExpiresAt time.Time       `json:"urls_expire_at"`
}

// GetModel returns a model with presigned download URLs for its files.
func (s *Service) GetModel(ctx context.Context, id string) (ModelDetail, error) {
	m, err := s.repo.GetModel(ctx, id)
	if err != nil {
		return ModelDetail{}, err
	}
	d := ModelDetail{Model: m, Files: make([]ModelFileLink, 0, len(m.Files)), ExpiresAt: time.Now().Add(s.presignExpiry).UTC()}
	for _, f := range m.Files {
		u, err := s.objects.Presign(ctx, m.Prefix+f.Name, s.presignExpiry)
		if err != nil {
			return ModelDetail{}, fmt.Errorf("presigning %s: %w", f.Name, err)
		}
		d.Files = append(d.Files, ModelFileLink{ModelFile: f, URL: u})
	}
	return d, nil
}

// ModelObjects returns a model's row and the objects under its prefix.
func (s *Service) ModelObjects(ctx context.Context, id string) (Model, []ObjectInfo, error) {
	m, err := s.repo.GetModel(ctx, id)
	if err != nil {
		return Model{}, nil, err
	}
	objs, err := s.objects.List(ctx, m.Prefix)
	if err != nil {
		return Model{}, nil, fmt.Errorf("listing model objects: %w", err)
	}
	return m, objs, nil
}

// OpenObject opens one stored object for reading.
func (s *Service) OpenObject(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	return s.objects.Get(ctx, key)
}

// DeleteModel removes a model's row and every object under its prefix.
// The files go while the row's deletion is uncommitted: if storage fails,
// the row stays and the delete can be retried.
func (s *Service) DeleteModel(ctx context.Context, id string) error {
	return s.repo.DeleteModel(ctx, id, func(m Model) error {
		if err := s.objects.RemovePrefix(ctx, m.Prefix); err != nil {
			return fmt.Errorf("removing model objects: %w", err)
		}
		return nil
	})
}
