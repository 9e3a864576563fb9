package store

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

func TestTokens(t *testing.T) {
	s := openPlatformStore(t)
	ctx := context.Background()
	hash := bytes.Repeat([]byte{7}, 32)
	if err := s.CreateToken(ctx, "0011223344556677", "ci", hash); err != nil {
		t.Fatal(err)
	}
	got, err := s.TokenSecretHash(ctx, "0011223344556677")
	if err != nil || !bytes.Equal(got, hash) {
		t.Fatalf("got %x, %v", got, err)
	}
	if err := s.CreateToken(ctx, "0011223344556677", "again", hash); !errors.Is(err, problem.ErrConflict) {
		t.Fatalf("duplicate id: got %v, want ErrConflict", err)
	}
	if _, err := s.TokenSecretHash(ctx, "ffffffffffffffff"); !errors.Is(err, problem.ErrNotFound) {
		t.Fatalf("unknown id: got %v, want ErrNotFound", err)
	}
	if err := s.RevokeToken(ctx, "0011223344556677"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TokenSecretHash(ctx, "0011223344556677"); !errors.Is(err, problem.ErrNotFound) {
		t.Fatalf("revoked token: got %v, want ErrNotFound", err)
	}
	if err := s.RevokeToken(ctx, "0011223344556677"); !errors.Is(err, problem.ErrNotFound) {
		t.Fatalf("revoking twice: got %v, want ErrNotFound", err)
	}
}
