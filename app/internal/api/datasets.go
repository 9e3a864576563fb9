package api

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// maxFieldBytes caps the text fields of a dataset upload.
const maxFieldBytes = 8 << 10

// uploadDataset streams a multipart upload (file, name, description) into
// object storage while validating it. The fields may come in any order;
// the file is never buffered.
func (h *trainingHandlers) uploadDataset(w http.ResponseWriter, r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "multipart/form-data" {
		return problem.New(problem.CodeUnsupportedMedia, "Content-Type must be multipart/form-data with the fields file, name and description, got %q", truncateForMessage(ct))
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return problem.New(problem.CodeInvalid, "malformed multipart body: %s", err.Error())
	}
	var (
		in       training.DatasetInput
		upload   training.Upload
		haveFile bool
		seen     = map[string]bool{}
		done     bool
	)
	defer func() {
		if haveFile && !done {
			h.svc.Discard(upload)
		}
	}()
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return bodyProblem(err, "malformed multipart body")
		}
		name := part.FormName()
		if seen[name] {
			return problem.New(problem.CodeInvalid, "multipart field %q is given more than once", truncateForMessage(name)).
				WithDetails(problem.Detail{Field: truncateForMessage(name), Issue: "given more than once"})
		}
		seen[name] = true
		switch name {
		case "file":
			upload, err = h.svc.StoreUpload(r.Context(), part, h.a.conf.HTTP.MaxUploadBytes)
			if err != nil {
				return err
			}
			haveFile = true
		case "name", "description":
			b, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
			if err != nil {
				return bodyProblem(err, "malformed multipart body")
			}
			if len(b) > maxFieldBytes {
				return problem.New(problem.CodeUnprocessable, "the %s field is too long", name).
					WithDetails(problem.Detail{Field: name, Issue: "must be at most 8 KiB"})
			}
			if name == "name" {
				in.Name = string(b)
			} else {
				in.Description = string(b)
			}
		default:
			return problem.New(problem.CodeInvalid, "unknown multipart field %q: send file, name and optionally description", truncateForMessage(name)).
				WithDetails(problem.Detail{Field: truncateForMessage(name), Issue: "unknown field"})
		}
	}
	if !haveFile {
		return problem.New(problem.CodeUnprocessable, "the dataset upload has no file").
			WithDetails(problem.Detail{Field: "file", Issue: "is required"})
	}
	d, err := h.svc.CreateDataset(r.Context(), in, upload)
	done = true // CreateDataset removes the object itself on failure
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/datasets/"+d.ID)
	return writeJSON(w, http.StatusCreated, d)
}

// bodyProblem describes a failure to read the request body.
func bodyProblem(err error, what string) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return tooLarge(mbe.Limit)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return problem.New(problem.CodeInvalid, "%s: the body ended before the closing boundary (truncated upload?)", what)
	}
	return problem.New(problem.CodeInvalid, "%s: %s", what, strings.TrimPrefix(err.Error(), "multipart: "))
}

func (h *trainingHandlers) listDatasets(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "limit", "cursor", "name")
	if err != nil {
		return err
	}
	p, err := page(q)
	if err != nil {
		return err
	}
	name := q.Get("name")
	if len(name) > 800 || utf8.RuneCountInString(name) > 200 || !utf8.ValidString(name) || strings.ContainsRune(name, 0) {
		return problem.New(problem.CodeInvalid, "the name filter must be UTF-8 text of at most 200 characters").
			WithDetails(problem.Detail{Field: "name", Issue: "must be UTF-8 text of at most 200 characters"})
	}
	ds, next, err := h.svc.ListDatasets(r.Context(), name, p)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list[training.Dataset]{Data: ds, NextCursor: next})
}

func (h *trainingHandlers) getDataset(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "dataset")
	if err != nil {
		return err
	}
	d, err := h.svc.GetDataset(r.Context(), id)
	if err != nil {
		return notFound(err, "dataset", id)
	}
	return writeJSON(w, http.StatusOK, d)
}

func (h *trainingHandlers) deleteDataset(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "dataset")
	if err != nil {
		return err
	}
	if err := h.svc.DeleteDataset(r.Context(), id); err != nil {
		return notFound(err, "dataset", id)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// notFound names the missing resource in a 404.
func notFound(err error, what, id string) error {
	if errors.Is(err, problem.ErrNotFound) {
		var pe *problem.Error
		if !errors.As(err, &pe) {
			return problem.Wrap(err, problem.CodeNotFound, "no "+what+" with id "+id)
		}
	}
	return err
}
