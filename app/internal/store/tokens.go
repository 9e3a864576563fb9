package store

import (
	"context"
	"fmt"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

// CreateToken stores a new token's id, name and secret hash.
func (s *Store) CreateToken(ctx context.Context, id, name string, secretHash []byte) error {
	_, err := s.db.Exec(ctx,
		`INSERT INTO api_tokens (id, name, secret_hash) VALUES ($1, $2, $3)`, id, name, secretHash)
	if err != nil {
		return fmt.Errorf("creating token: %w", mapErr(err))
	}
	return nil
}

// TokenSecretHash returns the secret hash of the live (not revoked) token
// id, or an error wrapping problem.ErrNotFound.
func (s *Store) TokenSecretHash(ctx context.Context, id string) ([]byte, error) {
	var h []byte
	err := s.db.QueryRow(ctx,
		`SELECT secret_hash FROM api_tokens WHERE id = $1 AND revoked_at IS NULL`, id).Scan(&h)
	if err != nil {
		return nil, fmt.Errorf("looking up token: %w", mapErr(err))
	}
	return h, nil
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
