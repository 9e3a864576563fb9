package training

import (
	"encoding/json"
	"time"
)

// Dataset is an uploaded, validated training file.
type Dataset struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	ObjectKey   string    `json:"-"`
	SizeBytes   int64     `json:"size_bytes"`
	SHA256      string    `json:"sha256"`
	Format      string    `json:"format"`
	Schema      string    `json:"schema"`
	Examples    int       `json:"examples"`
	CreatedAt   time.Time `json:"created_at"`
	// Report is the validator's report (stats, warnings, preview), kept as
	// the raw JSON it was stored as. Lists leave it out.
	Report json.RawMessage `json:"report,omitempty"`
}

// Job is one fine-tuning run.
type Job struct {
	ID              string          `json:"id"`
	DatasetID       string          `json:"dataset_id"`
	BaseModel       string          `json:"base_model"`
	Hyperparameters Hyperparameters `json:"hyperparameters"`
	Status          Status          `json:"status"`
	Error           string          `json:"error,omitempty"`
	KaggleDataset   string          `json:"kaggle_dataset,omitempty"`
	KaggleKernel    string          `json:"kaggle_kernel,omitempty"`
	KaggleStatus    string          `json:"kaggle_status,omitempty"`
	CreatedAt       time.Time       `json:"created_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
	StartedAt       *time.Time      `json:"started_at,omitempty"`
	FinishedAt      *time.Time      `json:"finished_at,omitempty"`
	// PushStartedAt is when the runner last started pushing the kernel; a
	// push may become visible on Kaggle a while after it was made.
	PushStartedAt *time.Time `json:"-"`
}

// EventKind says what a job event records.
type EventKind string

// Event kinds.
const (
	EventStatus       EventKind = "status"        // a state-machine transition
	EventKaggleStatus EventKind = "kaggle_status" // the backend reported a new kernel status
	EventLog          EventKind = "log"           // a log line from the kernel or the runner
)

// Event is one entry of a job's event log. Seq is per job, strictly
// increasing in commit order; it doubles as the SSE event id.
type Event struct {
	JobID      string    `json:"job_id"`
	Seq        int64     `json:"seq"`
	Kind       EventKind `json:"kind"`
	FromStatus Status    `json:"from_status,omitempty"`
	ToStatus   Status    `json:"to_status,omitempty"`
	Message    string    `json:"message,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

// ModelFile is one object of a model.
type ModelFile struct {
	Name      string `json:"name"`
	SizeBytes int64  `json:"size_bytes"`
}

// Model is the output of a succeeded job: LoRA adapters and metrics.
type Model struct {
	ID        string          `json:"id"`
	JobID     string          `json:"job_id"`
	BaseModel string          `json:"base_model"`
	Prefix    string          `json:"-"`
	Files     []ModelFile     `json:"files"`
	Metrics   json.RawMessage `json:"metrics"`
	SizeBytes int64           `json:"size_bytes"`
	CreatedAt time.Time       `json:"created_at"`
}

// Page bounds a list query: at most Limit rows, starting after After (nil:
// from the newest).
type Page struct {
	Limit int
	After *Cursor
}

// Pagination limits shared by every list endpoint.
const (
	DefaultPageLimit = 20
	MaxPageLimit     = 100
)

// TaskKind is the worker task kind that runs a job's next step; its payload
// is TaskPayload and its dedupe key the job id.
const TaskKind = "training.step"

// TaskPayload is the payload of a TaskKind task.
type TaskPayload struct {
	JobID string `json:"job_id"`
}

// StrandedJob is an unfinished job that no live task will move again: its
// task was dead-lettered without the job being failed (the database was
// down when the queue gave up), or it has no task at all.
type StrandedJob struct {
	JobID  string
	Status Status
	// TaskState is the state of the job's newest task ("dead", "done"), or
	// empty when it has none.
	TaskState string
	Attempts  int
	LastError string
}

// Task is a background task the repository enqueues together with a job.
// The domain decides what it says; the repository only stores it.
type Task struct {
	Kind    string
	Payload []byte
	// DedupeKey keeps at most one live task of Kind per key.
	DedupeKey string
}

// StepTask is the TaskKind task that runs job id's next step.
func StepTask(jobID string) Task {
	payload, _ := json.Marshal(TaskPayload{JobID: jobID}) // a struct of one string cannot fail
	return Task{Kind: TaskKind, Payload: payload, DedupeKey: jobID}
}
