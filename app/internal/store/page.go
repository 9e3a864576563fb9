package store

import (
	"context"
	"fmt"

	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// listPage runs a keyset-paginated list query whose LIMIT is one more than
// limit, and returns at most limit rows plus the cursor of the next page
// ("" on the last page): the extra row only tells that another page exists.
func listPage[T any](ctx context.Context, db querier, what, q string, args []any, limit int,
	scan func(scanner) (T, error), cursorOf func(T) training.Cursor) ([]T, string, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, mapErr(err))
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", what, mapErr(err))
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, mapErr(err))
	}
	if len(out) <= limit {
		return out, "", nil
	}
	out = out[:limit]
	return out, cursorOf(out[len(out)-1]).Encode(), nil
}
