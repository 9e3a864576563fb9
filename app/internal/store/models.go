package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

const modelColumns = `id::text, job_id::text, base_model, prefix, files::text, metrics::text, size_bytes, created_at`

func scanModel(row scanner) (training.Model, error) {
	var m training.Model
	var files, metrics string
	if err := row.Scan(&m.ID, &m.JobID, &m.BaseModel, &m.Prefix, &files, &metrics, &m.SizeBytes, &m.CreatedAt); err != nil {
		return m, err
	}
	if err := json.Unmarshal([]byte(files), &m.Files); err != nil {
		return m, fmt.Errorf("decoding files of model %s: %w", m.ID, err)
	}
	m.Metrics = json.RawMessage(metrics)
	m.CreatedAt = m.CreatedAt.UTC()
	return m, nil
}

// ListModels returns a page of models, newest first.
func (s *Store) ListModels(ctx context.Context, page training.Page) ([]training.Model, string, error) {
	q, args := listModelsQuery(page)
	return listPage(ctx, s.db, "listing models", q, args, page.Limit, scanModel)
}

// listModelsQuery builds the list query, served by models_list_position_idx
// (TestListQueriesUseTheirIndexes checks the plans).
func listModelsQuery(page training.Page) (string, []any) {
	q := `SELECT ` + modelColumns + `, list_position FROM models`
	args := []any{page.Limit + 1}
	if page.After != nil {
		q += ` WHERE list_position < $2`
		args = append(args, page.After.Position)
	}
	return q + ` ORDER BY models.list_position DESC LIMIT $1`, args
}

// GetModel returns one model.
func (s *Store) GetModel(ctx context.Context, id string) (training.Model, error) {
	if !training.ValidID(id) {
		return training.Model{}, fmt.Errorf("model %q: %w", id, problem.ErrNotFound)
	}
	m, err := scanModel(s.db.QueryRow(ctx, `SELECT `+modelColumns+` FROM models WHERE id = $1`, id))
	if err != nil {
		return training.Model{}, fmt.Errorf("getting model: %w", mapErr(err))
	}
	return m, nil
}

// DeleteModel deletes a model's row, calling beforeCommit (which removes
// its files) before the deletion commits.
func (s *Store) DeleteModel(ctx context.Context, id string, beforeCommit func(training.Model) error) error {
	if !training.ValidID(id) {
		return fmt.Errorf("model %q: %w", id, problem.ErrNotFound)
	}
	err := s.InTx(ctx, func(tx *Tx) error {
		m, err := scanModel(tx.db.QueryRow(ctx, `DELETE FROM models WHERE id = $1 RETURNING `+modelColumns, id))
		if err != nil {
			return mapErr(err)
		}
		if beforeCommit != nil {
			return beforeCommit(m)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("deleting model: %w", err)
	}
	return nil
}

// The store is the domain's repository.
var _ training.Repository = (*Store)(nil)
