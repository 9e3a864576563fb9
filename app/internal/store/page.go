package store

import (
	"context"
	"fmt"

	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// listPage runs a keyset-paginated list query whose LIMIT is one more than
// limit and whose last column is list_position (after the columns scan
// reads), and returns at most limit rows plus the cursor of the next page
// ("" on the last page): the extra row only tells that another page exists.
func listPage[T any](ctx context.Context, db querier, what, q string, args []any, limit int,
	scan func(scanner) (T, error)) ([]T, string, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, mapErr(err))
	}
	defer rows.Close()
	out := []T{}
	var positions []int64
	for rows.Next() {
		var pos int64
		v, err := scan(positionScanner{rows, &pos})
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", what, mapErr(err))
		}
		out = append(out, v)
		positions = append(positions, pos)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, mapErr(err))
	}
	if len(out) <= limit {
		return out, "", nil
	}
	return out[:limit], training.Cursor{Position: positions[limit-1]}.Encode(), nil
}

// positionScanner reads a row's trailing list_position into pos, so the
// row scanners stay those of single-row reads.
type positionScanner struct {
	row scanner
	pos *int64
}

func (p positionScanner) Scan(dest ...any) error {
	return p.row.Scan(append(dest, p.pos)...)
}
