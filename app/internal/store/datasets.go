package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// Queries of the training domain (datasets, jobs, job events, models). The
// indexes each one relies on are listed in docs/schema.md.

const datasetColumns = `id::text, name, description, object_key, size_bytes, sha256, format, schema, examples, created_at`

func scanDataset(row scanner, extra ...any) (training.Dataset, error) {
	var d training.Dataset
	err := row.Scan(append([]any{&d.ID, &d.Name, &d.Description, &d.ObjectKey, &d.SizeBytes, &d.SHA256,
		&d.Format, &d.Schema, &d.Examples, &d.CreatedAt}, extra...)...)
	d.CreatedAt = d.CreatedAt.UTC()
	return d, err
}

// InsertDataset stores a validated dataset's metadata.
func (s *Store) InsertDataset(ctx context.Context, d training.Dataset) (training.Dataset, error) {
	err := s.db.QueryRow(ctx, `
		INSERT INTO datasets (id, name, description, object_key, size_bytes, sha256, format, schema, examples, report)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		RETURNING created_at`,
		d.ID, d.Name, d.Description, d.ObjectKey, d.SizeBytes, d.SHA256, d.Format, d.Schema, d.Examples, string(d.Report),
	).Scan(&d.CreatedAt)
	if err != nil {
		return training.Dataset{}, fmt.Errorf("inserting dataset: %w", mapErr(err))
	}
	d.CreatedAt = d.CreatedAt.UTC()
	return d, nil
}

// likePrefix escapes s for use as a LIKE prefix pattern.
func likePrefix(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(strings.ToLower(s)) + "%"
}

// ListDatasets returns a page of datasets, newest first, optionally only
// those whose name starts with namePrefix (case-insensitive), and the
// cursor of the next page ("" on the last page).
func (s *Store) ListDatasets(ctx context.Context, namePrefix string, page training.Page) ([]training.Dataset, string, error) {
	q, args := listDatasetsQuery(namePrefix, page)
	return listPage(ctx, s.db, "listing datasets", q, args, page.Limit,
		func(r scanner) (training.Dataset, error) { return scanDataset(r) })
}

// listDatasetsQuery builds the list query. Served by
// datasets_list_position_idx, or datasets_lower_name_position_idx with a
// name filter
// (TestListQueriesUseTheirIndexes checks the plans).
func listDatasetsQuery(namePrefix string, page training.Page) (string, []any) {
	var where []string
	var args []any
	if namePrefix != "" {
		args = append(args, likePrefix(namePrefix))
		where = append(where, fmt.Sprintf(`lower(name) LIKE $%d`, len(args)))
	}
	if page.After != nil {
		args = append(args, page.After.Position)
		where = append(where, fmt.Sprintf(`list_position < $%d`, len(args)))
	}
	q := `SELECT ` + datasetColumns + `, list_position FROM datasets`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	args = append(args, page.Limit+1)
	q += fmt.Sprintf(` ORDER BY datasets.list_position DESC LIMIT $%d`, len(args))
	return q, args
}

// GetDataset returns one dataset with its validation report.
func (s *Store) GetDataset(ctx context.Context, id string) (training.Dataset, error) {
	if !training.ValidID(id) {
		return training.Dataset{}, fmt.Errorf("dataset %q: %w", id, problem.ErrNotFound)
	}
	var report string
	d, err := scanDataset(s.db.QueryRow(ctx, `SELECT `+datasetColumns+`, report::text FROM datasets WHERE id = $1`, id), &report)
	if err != nil {
		return training.Dataset{}, fmt.Errorf("getting dataset: %w", mapErr(err))
	}
	d.Report = []byte(report)
	return d, nil
}

// DeleteDataset deletes a dataset no unfinished job uses, calling
// beforeCommit (which removes its object) before the deletion commits. The
// row lock serialises it with job creation: the foreign key check of a
// concurrent INSERT INTO jobs waits for this transaction and then fails, so
// no job can start on a dataset being deleted.
func (s *Store) DeleteDataset(ctx context.Context, id string, beforeCommit func(training.Dataset) error) error {
	if !training.ValidID(id) {
		return fmt.Errorf("dataset %q: %w", id, problem.ErrNotFound)
	}
	err := s.InTx(ctx, func(tx *Tx) error {
		d, err := scanDataset(tx.db.QueryRow(ctx, `SELECT `+datasetColumns+` FROM datasets WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return mapErr(err)
		}
		var busy bool
		if err := tx.db.QueryRow(ctx, `
			SELECT EXISTS (SELECT 1 FROM jobs WHERE dataset_id = $1 AND status = ANY($2))`,
			id, unfinished()).Scan(&busy); err != nil {
			return mapErr(err)
		}
		if busy {
			return fmt.Errorf("dataset %s is used by an unfinished job: %w", id, problem.ErrConflict)
		}
		if _, err = tx.db.Exec(ctx, `DELETE FROM datasets WHERE id = $1`, id); err != nil {
			return mapErr(err)
		}
		if beforeCommit != nil {
			return beforeCommit(d)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("deleting dataset: %w", err)
	}
	return nil
}

func unfinished() []string {
	var out []string
	for _, st := range training.UnfinishedStatuses() {
		out = append(out, string(st))
	}
	return out
}
