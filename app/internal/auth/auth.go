// Package auth mints and checks the API's bearer tokens.
//
// A token reads "fts_<id>_<secret>": id is 8 random bytes in hex and is
// stored as is, so it can be looked up; secret is 32 random bytes in hex
// (so the whole token is one "word" to copy) and only its SHA-256 is stored. A presented token is checked by
// looking up its id and comparing the secret's hash in constant time. A fast
// hash is right here: the secret has 256 bits of entropy, so there is nothing
// for a slow hash to protect against, and every request pays for it.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

const (
	prefix      = "fts_"
	idBytes     = 8
	secretBytes = 32
)

// Minted is a freshly generated token. Plaintext is shown to the user once
// and never stored.
type Minted struct {
	ID         string
	Plaintext  string
	SecretHash []byte
}

// Mint generates a new random token.
func Mint() (Minted, error) {
	id := make([]byte, idBytes)
	secret := make([]byte, secretBytes)
	if _, err := rand.Read(id); err != nil {
		return Minted{}, fmt.Errorf("generating token: %w", err)
	}
	if _, err := rand.Read(secret); err != nil {
		return Minted{}, fmt.Errorf("generating token: %w", err)
	}
	m := Minted{ID: hex.EncodeToString(id)}
	enc := hex.EncodeToString(secret)
	m.Plaintext = prefix + m.ID + "_" + enc
	h := sha256.Sum256([]byte(enc))
	m.SecretHash = h[:]
	return m, nil
}

// parse splits a token into its id and the hash of its secret.
func parse(token string) (id string, secretHash []byte, ok bool) {
	rest, ok := strings.CutPrefix(token, prefix)
	if !ok {
		return "", nil, false
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 2*idBytes || len(secret) != 2*secretBytes {
		return "", nil, false
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", nil, false
	}
	if _, err := hex.DecodeString(secret); err != nil {
		return "", nil, false
	}
	h := sha256.Sum256([]byte(secret))
	return id, h[:], true
}

// Token is one API token as the token table holds it. The secret itself is
// never stored; SecretHash is empty in listings.
type Token struct {
	ID         string
	Name       string
	SecretHash []byte
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never expires
	LastUsedAt time.Time // zero: never used (or not since the column exists)
	RevokedAt  time.Time // zero: live
}

// Expired reports whether the token has an expiry that is not after now.
func (t Token) Expired(now time.Time) bool { return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) }

// Tokens is the token table.
type Tokens interface {
	// LiveToken returns the token id unless it is revoked, or an error
	// wrapping problem.ErrNotFound.
	LiveToken(ctx context.Context, id string) (Token, error)
	// TouchToken sets the token's last use to at, unless the stored value
	// is already within slack of it.
	TouchToken(ctx context.Context, id string, at time.Time, slack time.Duration) error
}

// DefaultTouchEvery is how stale a token's last-used time may get before a
// request updates it: one write per token per interval, not per request.
const DefaultTouchEvery = 5 * time.Minute

// Options tune an Authenticator; the zero value is the production default.
type Options struct {
	// TouchEvery is DefaultTouchEvery when zero.
	TouchEvery time.Duration
	// Now is time.Now when nil (tests pass a fake clock).
	Now func() time.Time
	// Log receives failures to record a token's use, which do not fail the
	// request. Discarded when nil.
	Log *slog.Logger
}

// Authenticator checks Authorization headers.
type Authenticator struct {
	tokens     Tokens
	touchEvery time.Duration
	now        func() time.Time
	log        *slog.Logger
}

// New returns an Authenticator backed by tokens.
func New(tokens Tokens, opts Options) *Authenticator {
	a := &Authenticator{tokens: tokens, touchEvery: opts.TouchEvery, now: opts.Now, log: opts.Log}
	if a.touchEvery <= 0 {
		a.touchEvery = DefaultTouchEvery
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	return a
}

// Errors the API answers with. They say what is wrong with the header, never
// whether a given token id exists.
var (
	errMissing   = problem.New(problem.CodeUnauthenticated, "missing credentials: send Authorization: Bearer <token>")
	errMalformed = problem.New(problem.CodeUnauthenticated, "malformed Authorization header: want Bearer <token>")
	errInvalid   = problem.New(problem.CodeUnauthenticated, "invalid or revoked token")
)

// dummyHash is compared against when the id is unknown, so a miss costs the
// same work as a hit.
var dummyHash = make([]byte, sha256.Size)

// Authenticate checks an Authorization header value and returns the token
// id (safe to log). Failures are *problem.Error values with code
// unauthenticated; a database outage passes through as unavailable.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (string, error) {
	if header == "" {
		return "", errMissing
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errMalformed
	}
	id, presented, ok := parse(strings.TrimSpace(token))
	if !ok {
		return "", errInvalid
	}
	stored, err := a.tokens.LiveToken(ctx, id)
	switch {
	case errors.Is(err, problem.ErrNotFound):
		subtle.ConstantTimeCompare(presented, dummyHash)
		return "", errInvalid
	case err != nil:
		return "", fmt.Errorf("checking token: %w", err)
	}
	if subtle.ConstantTimeCompare(presented, stored.SecretHash) != 1 {
		return "", errInvalid
	}
	// Only the holder of the secret learns that the token expired.
	now := a.now()
	if stored.Expired(now) {
		return "", problem.New(problem.CodeUnauthenticated,
			"token expired at %s: create a new one with app token create", stored.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if stored.LastUsedAt.IsZero() || now.Sub(stored.LastUsedAt) >= a.touchEvery {
		// Bookkeeping only: a failure is logged, the request goes on.
		if err := a.tokens.TouchToken(ctx, id, now, a.touchEvery); err != nil {
			a.log.Warn("recording token use failed", "token_id", id, "error", err.Error())
		}
	}
	return id, nil
}
