package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finetune-studio/finetune-studio/app/internal/auth"
	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

// CreateToken stores a new token's id, name and secret hash. A zero
// expiresAt means the token never expires.
func (s *Store) CreateToken(ctx context.Context, id, name string, secretHash []byte, expiresAt time.Time) error {
	_, err := s.db.Exec(ctx,
		`INSERT INTO api_tokens (id, name, secret_hash, expires_at) VALUES ($1, $2, $3, $4)`,
		id, name, secretHash, nullTime(expiresAt))
	if err != nil {
		return fmt.Errorf("creating token: %w", mapErr(err))
	}
	return nil
}

// LiveToken returns the live (not revoked) token id with its secret hash,
// or an error wrapping problem.ErrNotFound. Expiry is the caller's to judge,
// so it can say "expired" rather than "unknown".
func (s *Store) LiveToken(ctx context.Context, id string) (auth.Token, error) {
	rows, err := s.db.Query(ctx, `
		SELECT id, name, secret_hash, created_at, expires_at, last_used_at, revoked_at
		FROM api_tokens WHERE id = $1 AND revoked_at IS NULL`, id)
	if err != nil {
		return auth.Token{}, fmt.Errorf("looking up token: %w", mapErr(err))
	}
	toks, err := scanTokens(rows)
	if err != nil {
		return auth.Token{}, fmt.Errorf("looking up token: %w", err)
	}
	if len(toks) == 0 {
		return auth.Token{}, fmt.Errorf("looking up token %s: %w", id, problem.ErrNotFound)
	}
	return toks[0], nil
}

// ListTokens returns every token, revoked ones included, oldest first,
// without their secret hashes.
func (s *Store) ListTokens(ctx context.Context) ([]auth.Token, error) {
	rows, err := s.db.Query(ctx, `
		SELECT id, name, NULL::bytea, created_at, expires_at, last_used_at, revoked_at
		FROM api_tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", mapErr(err))
	}
	toks, err := scanTokens(rows)
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	return toks, nil
}

// TouchToken records that token id was used at at. It writes only when the
// stored time is older than at - slack (or unset), so callers may call it
// freely; several instances racing on one token write at most once each.
func (s *Store) TouchToken(ctx context.Context, id string, at time.Time, slack time.Duration) error {
	_, err := s.db.Exec(ctx, `
		UPDATE api_tokens SET last_used_at = $2
		WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2::timestamptz - make_interval(secs => $3))`,
		id, at, slack.Seconds())
	if err != nil {
		return fmt.Errorf("recording token use: %w", mapErr(err))
	}
	return nil
}

// RevokeToken marks a token revoked; it stops working at once.
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	tag, err := s.db.Exec(ctx,
		`UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, id)
	if err != nil {
		return fmt.Errorf("revoking token: %w", mapErr(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("revoking token %s: %w", id, problem.ErrNotFound)
	}
	return nil
}

func scanTokens(rows pgx.Rows) ([]auth.Token, error) {
	defer rows.Close()
	var out []auth.Token
	for rows.Next() {
		var t auth.Token
		var expires, used, revoked *time.Time
		if err := rows.Scan(&t.ID, &t.Name, &t.SecretHash, &t.CreatedAt, &expires, &used, &revoked); err != nil {
			return nil, mapErr(err)
		}
		t.CreatedAt = t.CreatedAt.UTC()
		t.ExpiresAt, t.LastUsedAt, t.RevokedAt = utcOrZero(expires), utcOrZero(used), utcOrZero(revoked)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(err)
	}
	return out, nil
}

// nullTime maps the zero time (meaning "none") to SQL NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func utcOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
