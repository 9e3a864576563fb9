package api

import (
	"net/http"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

func (h *trainingHandlers) createJob(w http.ResponseWriter, r *http.Request) error {
	var in training.JobInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	j, err := h.svc.CreateJob(r.Context(), in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/jobs/"+j.ID)
	return writeJSON(w, http.StatusCreated, j)
}

func (h *trainingHandlers) listJobs(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "limit", "cursor", "status")
	if err != nil {
		return err
	}
	p, err := page(q)
	if err != nil {
		return err
	}
	var status training.Status
	if s := q.Get("status"); s != "" {
		var ok bool
		if status, ok = training.ParseStatus(s); !ok {
			return problem.New(problem.CodeInvalid, "unknown job status %q: want one of queued, uploading, submitted, running, collecting, succeeded, failed, cancelled", truncateForMessage(s)).
				WithDetails(problem.Detail{Field: "status", Issue: "unknown status"})
		}
	}
	jobs, next, err := h.svc.ListJobs(r.Context(), status, p)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list[training.Job]{Data: jobs, NextCursor: next})
}

func (h *trainingHandlers) getJob(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "job")
	if err != nil {
		return err
	}
	j, err := h.svc.GetJob(r.Context(), id)
	if err != nil {
		return notFound(err, "job", id)
	}
	return writeJSON(w, http.StatusOK, j)
}

func (h *trainingHandlers) cancelJob(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "job")
	if err != nil {
		return err
	}
	j, err := h.svc.CancelJob(r.Context(), id)
	if err != nil {
		return notFound(err, "job", id)
	}
	return writeJSON(w, http.StatusOK, j)
}
