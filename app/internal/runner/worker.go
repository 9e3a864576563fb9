package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/finetune-studio/finetune-studio/app/internal/blob"
	"github.com/finetune-studio/finetune-studio/app/internal/config"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"

	"github.com/finetune-studio/finetune-studio/app/internal/training"
	"github.com/finetune-studio/finetune-studio/app/internal/worker"
)

// Handle is the worker handler for training.TaskKind.
func (r *Runner) Handle(ctx context.Context, t worker.Task) error {
	var p training.TaskPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil || !training.ValidID(p.JobID) {
		return worker.Permanent(fmt.Errorf("malformed %s task payload", training.TaskKind))
	}
	wait, err := r.Step(ctx, p.JobID)
	var retry *RetryError
	switch {
	case errors.As(err, &retry) && retry.After > 0:
		// The backend said when to come back: that is not a failure.
		return worker.Reschedule(retry.After)
	case err != nil && ctx.Err() == nil && t.Attempts+1 >= t.MaxAttempts:
		// The queue gives up after this attempt: fail the job too, so it
		// does not stay unfinished forever.
		if failErr := r.GiveUp(ctx, p.JobID, err); failErr != nil {
			return errors.Join(err, failErr)
		}
		return worker.Permanent(err)
	case err != nil:
		return err
	case wait > 0:
		return worker.Reschedule(wait)
	}
	return nil
}

// Register makes the pool run training jobs with r.
func (r *Runner) Register(p *worker.Pool) { p.Handle(training.TaskKind, r.Handle) }

// KaggleConfig is the Kaggle client configuration from the KAGGLE_*
// settings: the runner's, and what `app kaggle check` tests.
func KaggleConfig(cfg config.Config, log *slog.Logger) kaggle.Config {
	kc := kaggle.Config{
		Username: cfg.Kaggle.Username, Key: cfg.Kaggle.Key, Token: cfg.Kaggle.APIToken,
		MachineShape: cfg.Kaggle.MachineShape,
		Logger:       log.With("component", "kaggle"),
	}
	if cfg.Kaggle.APIURL != nil {
		kc.BaseURL = cfg.Kaggle.APIURL.String()
	}
	return kc
}

// FromConfig builds the production runner: the Kaggle client from the
// KAGGLE_* settings, object storage through BlobObjects, and the runtime
// limit from JOB_MAX_RUNTIME.
func FromConfig(cfg config.Config, repo training.Repository, b *blob.Store, log *slog.Logger) *Runner {
	return New(repo, BlobObjects(b), kaggle.New(KaggleConfig(cfg, log)), Config{MaxRuntime: cfg.Training.MaxRuntime, PollInterval: cfg.Kaggle.PollInterval}, log.With("component", "runner"))
}
