package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

// memTokens is an in-memory token table; the real one is tested in store.
type memTokens struct {
	hashes map[string][]byte
	err    error
}

func (m memTokens) TokenSecretHash(_ context.Context, id string) ([]byte, error) {
	if m.err != nil {
		return nil, m.err
	}
	h, ok := m.hashes[id]
	if !ok {
		return nil, fmt.Errorf("token %s: %w", id, problem.ErrNotFound)
	}
	return h, nil
}

func TestMintIsRandomAndLongEnough(t *testing.T) {
	a, err := Mint()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Mint()
	if a.Plaintext == b.Plaintext || a.ID == b.ID {
		t.Fatal("two mints collided")
	}
	if !strings.HasPrefix(a.Plaintext, "fts_"+a.ID+"_") || len(a.SecretHash) != 32 {
		t.Fatalf("shape: %q hash %d bytes", a.Plaintext, len(a.SecretHash))
	}
	secret := strings.Split(a.Plaintext, "_")[2]
	if len(secret) != 64 { // 32 bytes in hex
		t.Fatalf("secret %q is not 32 random bytes", secret)
	}
	if strings.Contains(string(a.SecretHash), secret) {
		t.Fatal("the hash contains the secret")
	}
}

func TestAuthenticate(t *testing.T) {
	good, _ := Mint()
	other, _ := Mint()
	a := New(memTokens{hashes: map[string][]byte{good.ID: good.SecretHash}})
	ctx := context.Background()
	if id, err := a.Authenticate(ctx, "Bearer "+good.Plaintext); err != nil || id != good.ID {
		t.Fatalf("valid token: %q %v", id, err)
	}
	if _, err := a.Authenticate(ctx, "bearer "+good.Plaintext); err != nil {
		t.Fatalf("scheme is case-insensitive: %v", err)
	}
	wrongSecret := "fts_" + good.ID + "_" + strings.Split(other.Plaintext, "_")[2]
	for name, header := range map[string]string{
		"missing":      "",
		"basic":        "Basic dXNlcjpwYXNz",
		"no scheme":    good.Plaintext,
		"unknown id":   "Bearer " + other.Plaintext,
		"wrong secret": "Bearer " + wrongSecret,
		"truncated":    "Bearer " + good.Plaintext[:len(good.Plaintext)-1],
		"not hex id":   "Bearer fts_zzzzzzzzzzzzzzzz_" + strings.Split(good.Plaintext, "_")[2],
		"garbage":      "Bearer hello",
		"empty bearer": "Bearer ",
		"bad base64":   "Bearer fts_" + good.ID + "_" + strings.Repeat("*", 43),
	} {
		_, err := a.Authenticate(ctx, header)
		var pe *problem.Error
		if !errors.As(err, &pe) || pe.Code != problem.CodeUnauthenticated || pe.Status() != 401 {
			t.Errorf("%s: got %v, want 401 unauthenticated", name, err)
			continue
		}
		if strings.Contains(pe.Message, good.ID) || strings.Contains(pe.Message, other.ID) {
			t.Errorf("%s: message reveals a token id: %q", name, pe.Message)
		}
	}
}

func TestDatabaseOutageIsNotA401(t *testing.T) {
	good, _ := Mint()
	a := New(memTokens{err: fmt.Errorf("query: %w", problem.ErrUnavailable)})
	_, err := a.Authenticate(context.Background(), "Bearer "+good.Plaintext)
	if got := problem.From(err).Status(); got != 503 {
		t.Fatalf("got %d (%v), want 503: an outage must not look like a bad token", got, err)
	}
}
