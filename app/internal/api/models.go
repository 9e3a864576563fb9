package api

import (
	"archive/zip"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"

	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

func (h *trainingHandlers) listModels(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "limit", "cursor")
	if err != nil {
		return err
	}
	p, err := page(q)
	if err != nil {
		return err
	}
	ms, next, err := h.svc.ListModels(r.Context(), p)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list[training.Model]{Data: ms, NextCursor: next})
}

func (h *trainingHandlers) getModel(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "model")
	if err != nil {
		return err
	}
	m, err := h.svc.GetModel(r.Context(), id)
	if err != nil {
		return notFound(err, "model", id)
	}
	return writeJSON(w, http.StatusOK, m)
}

func (h *trainingHandlers) deleteModel(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "model")
	if err != nil {
		return err
	}
	if err := h.svc.DeleteModel(r.Context(), id); err != nil {
		return notFound(err, "model", id)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// modelArchive streams a zip of every object under the model's prefix,
// straight from object storage to the client: no temporary file, and
// memory bounded by the copy buffers. Entry names are relative to the
// prefix. Once the first byte is sent the status cannot change, so a
// storage failure midway aborts the connection and the client sees a
// broken download instead of a truncated zip that looks complete.
func (h *trainingHandlers) modelArchive(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "model")
	if err != nil {
		return err
	}
	m, objs, err := h.svc.ModelObjects(r.Context(), id)
	if err != nil {
		return notFound(err, "model", id)
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="model-%s.zip"`, m.ID))
	w.WriteHeader(http.StatusOK)
	zw := zip.NewWriter(w)
	for _, o := range objs {
		name := strings.TrimPrefix(o.Key, m.Prefix)
		method := zip.Store // adapter weights do not compress; spare the CPU
		switch path.Ext(name) {
		case ".json", ".txt", ".md", ".jsonl", ".csv", ".log":
			method = zip.Deflate
		}
		entry, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method, Modified: m.CreatedAt})
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		if err := h.copyObject(r, entry, o.Key); err != nil {
			h.a.log.Error("model archive aborted", "model_id", m.ID, "error", err.Error())
			panic(http.ErrAbortHandler)
		}
	}
	if err := zw.Close(); err != nil {
		panic(http.ErrAbortHandler)
	}
	return nil
}

func (h *trainingHandlers) copyObject(r *http.Request, dst io.Writer, key string) error {
	body, _, err := h.svc.OpenObject(r.Context(), key)
	if err != nil {
		return err
	}
	defer body.Close()
	_, err = io.Copy(dst, body)
	return err
}
