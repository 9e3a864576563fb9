package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

// memTokens is an in-memory token table; the real one is tested in store.
type memTokens struct {
	tokens   map[string]Token
	err      error
	touchErr error
	touched  *[]time.Time
}

func (m memTokens) LiveToken(_ context.Context, id string) (Token, error) {
	if m.err != nil {
		return Token{}, m.err
	}
	t, ok := m.tokens[id]
	if !ok {
		return Token{}, fmt.Errorf("token %s: %w", id, problem.ErrNotFound)
	}
	return t, nil
}

func (m memTokens) TouchToken(_ context.Context, id string, at time.Time, _ time.Duration) error {
	if m.touched != nil {
		*m.touched = append(*m.touched, at)
	}
	if m.touchErr != nil {
		return m.touchErr
	}
	t := m.tokens[id]
	t.LastUsedAt = at
	m.tokens[id] = t
	return nil
}

func tokensOf(ms ...Minted) map[string]Token {
	out := map[string]Token{}
	for _, m := range ms {
		out[m.ID] = Token{ID: m.ID, SecretHash: m.SecretHash}
	}
	return out
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
	a := New(memTokens{tokens: tokensOf(good)}, Options{})
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
	a := New(memTokens{err: fmt.Errorf("query: %w", problem.ErrUnavailable)}, Options{})
	_, err := a.Authenticate(context.Background(), "Bearer "+good.Plaintext)
	if got := problem.From(err).Status(); got != 503 {
		t.Fatalf("got %d (%v), want 503: an outage must not look like a bad token", got, err)
	}
}

func TestExpiredTokenIs401ThatSaysSo(t *testing.T) {
	good, _ := Mint()
	toks := tokensOf(good)
	expires := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tok := toks[good.ID]
	tok.ExpiresAt = expires
	toks[good.ID] = tok
	now := expires.Add(-time.Second)
	a := New(memTokens{tokens: toks}, Options{Now: func() time.Time { return now }})
	if _, err := a.Authenticate(context.Background(), "Bearer "+good.Plaintext); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	now = expires
	_, err := a.Authenticate(context.Background(), "Bearer "+good.Plaintext)
	var pe *problem.Error
	if !errors.As(err, &pe) || pe.Status() != 401 || !strings.Contains(pe.Message, "expired at 2030-01-01T00:00:00Z") {
		t.Fatalf("at expiry: got %v, want 401 naming the expiry", err)
	}
	// Someone without the secret does not learn that the id expired.
	other, _ := Mint()
	wrong := "Bearer fts_" + good.ID + "_" + strings.Split(other.Plaintext, "_")[2]
	if _, err := a.Authenticate(context.Background(), wrong); err == nil || strings.Contains(err.Error(), "expired") {
		t.Fatalf("wrong secret on an expired id: got %v, want the generic 401", err)
	}
}

func TestLastUseIsRecordedOncePerInterval(t *testing.T) {
	good, _ := Mint()
	var touched []time.Time
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	a := New(memTokens{tokens: tokensOf(good), touched: &touched}, Options{Now: func() time.Time { return now }, TouchEvery: time.Minute})
	for _, offset := range []time.Duration{0, time.Second, 59 * time.Second, time.Minute, 90 * time.Second, 2 * time.Minute} {
		now = start.Add(offset)
		if _, err := a.Authenticate(context.Background(), "Bearer "+good.Plaintext); err != nil {
			t.Fatal(err)
		}
	}
	want := []time.Time{start, start.Add(time.Minute), start.Add(2 * time.Minute)}
	if len(touched) != len(want) {
		t.Fatalf("recorded use %d times (%v), want %d: %v", len(touched), touched, len(want), want)
	}
	for i := range want {
		if !touched[i].Equal(want[i]) {
			t.Errorf("write %d at %v, want %v", i, touched[i], want[i])
		}
	}
}

func TestFailureToRecordUseDoesNotFailTheRequest(t *testing.T) {
	good, _ := Mint()
	var logs strings.Builder
	a := New(memTokens{tokens: tokensOf(good), touchErr: fmt.Errorf("write: %w", problem.ErrUnavailable)},
		Options{Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	if id, err := a.Authenticate(context.Background(), "Bearer "+good.Plaintext); err != nil || id != good.ID {
		t.Fatalf("got %q, %v; want the token accepted", id, err)
	}
	if !strings.Contains(logs.String(), "recording token use failed") || strings.Contains(logs.String(), good.Plaintext) {
		t.Fatalf("log: %s", logs.String())
	}
}
