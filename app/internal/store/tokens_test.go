package store

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/auth"
	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

func TestTokens(t *testing.T) {
	s := openPlatformStore(t)
	ctx := context.Background()
	hash := bytes.Repeat([]byte{7}, 32)
	if err := s.CreateToken(ctx, "0011223344556677", "ci", hash, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, err := s.LiveToken(ctx, "0011223344556677")
	if err != nil || !bytes.Equal(got.SecretHash, hash) || got.Name != "ci" || !got.ExpiresAt.IsZero() || !got.LastUsedAt.IsZero() {
		t.Fatalf("got %+v, %v", got, err)
	}
	if err := s.CreateToken(ctx, "0011223344556677", "again", hash, time.Time{}); !errors.Is(err, problem.ErrConflict) {
		t.Fatalf("duplicate id: got %v, want ErrConflict", err)
	}
	if _, err := s.LiveToken(ctx, "ffffffffffffffff"); !errors.Is(err, problem.ErrNotFound) {
		t.Fatalf("unknown id: got %v, want ErrNotFound", err)
	}
	if err := s.RevokeToken(ctx, "0011223344556677"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LiveToken(ctx, "0011223344556677"); !errors.Is(err, problem.ErrNotFound) {
		t.Fatalf("revoked token: got %v, want ErrNotFound", err)
	}
	if err := s.RevokeToken(ctx, "0011223344556677"); !errors.Is(err, problem.ErrNotFound) {
		t.Fatalf("revoking twice: got %v, want ErrNotFound", err)
	}
}

func TestListTokensShowsLifecycleButNoSecret(t *testing.T) {
	s := openPlatformStore(t)
	ctx := context.Background()
	expires := time.Now().Add(720 * time.Hour).UTC().Truncate(time.Second)
	for _, tok := range []struct {
		id, name string
		expires  time.Time
	}{{"aaaaaaaaaaaaaaaa", "ci", expires}, {"bbbbbbbbbbbbbbbb", "laptop", time.Time{}}} {
		if err := s.CreateToken(ctx, tok.id, tok.name, bytes.Repeat([]byte{9}, 32), tok.expires); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RevokeToken(ctx, "bbbbbbbbbbbbbbbb"); err != nil {
		t.Fatal(err)
	}
	toks, err := s.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 2 {
		t.Fatalf("got %d tokens, want 2 (revoked ones are listed too)", len(toks))
	}
	if toks[0].ID != "aaaaaaaaaaaaaaaa" || !toks[0].ExpiresAt.Equal(expires) || !toks[0].RevokedAt.IsZero() {
		t.Errorf("first token: got %+v, want ci expiring %s", toks[0], expires)
	}
	if toks[1].Name != "laptop" || toks[1].RevokedAt.IsZero() || !toks[1].ExpiresAt.IsZero() {
		t.Errorf("second token: got %+v, want revoked laptop without expiry", toks[1])
	}
	for _, tok := range toks {
		if len(tok.SecretHash) != 0 {
			t.Errorf("token %s: the listing carries its secret hash", tok.ID)
		}
	}
}

// TestAuthenticationAgainstTheTokenTable runs the authenticator on the
// real table with a fake clock: an expired token gets a 401 that says so,
// and last use is written once per interval, not on every request (the
// row's xmin changes only when it is updated).
func TestAuthenticationAgainstTheTokenTable(t *testing.T) {
	s := openPlatformStore(t)
	ctx := context.Background()
	m, err := auth.Mint()
	if err != nil {
		t.Fatal(err)
	}
	created := time.Now().UTC()
	if err := s.CreateToken(ctx, m.ID, "ci", m.SecretHash, created.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	now := created
	a := auth.New(s, auth.Options{Now: func() time.Time { return now }, TouchEvery: 5 * time.Minute})
	header := "Bearer " + m.Plaintext
	xmin := func() string {
		var x string
		if err := s.pool.QueryRow(ctx, `SELECT xmin::text FROM api_tokens WHERE id = $1`, m.ID).Scan(&x); err != nil {
			t.Fatal(err)
		}
		return x
	}
	lastUsed := func() time.Time {
		tok, err := s.LiveToken(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		return tok.LastUsedAt
	}

	if _, err := a.Authenticate(ctx, header); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); !got.Equal(now.Truncate(time.Microsecond)) {
		t.Fatalf("after the first use: last used %v, want %v", got, now)
	}
	before := xmin()
	for i := range 20 {
		now = created.Add(time.Duration(i) * 10 * time.Second) // within 5 minutes of the first use
		if _, err := a.Authenticate(ctx, header); err != nil {
			t.Fatal(err)
		}
	}
	if after := xmin(); after != before {
		t.Fatalf("20 requests within the interval updated the token row (xmin %s -> %s); want no write", before, after)
	}
	now = created.Add(6 * time.Minute)
	if _, err := a.Authenticate(ctx, header); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); !got.Equal(now.Truncate(time.Microsecond)) {
		t.Fatalf("after the interval: last used %v, want %v", got, now)
	}

	now = created.Add(time.Hour)
	_, err = a.Authenticate(ctx, header)
	var pe *problem.Error
	if !errors.As(err, &pe) || pe.Status() != 401 || !strings.Contains(pe.Message, "expired") {
		t.Fatalf("expired token: got %v, want 401 saying it expired", err)
	}
}
