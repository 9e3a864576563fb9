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
	"strings"

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

// Tokens looks up a live token's secret hash by id, returning an error
// wrapping problem.ErrNotFound when there is none.
type Tokens interface {
	TokenSecretHash(ctx context.Context, id string) ([]byte, error)
}

// Authenticator checks Authorization headers.
type Authenticator struct {
	tokens Tokens
}

// New returns an Authenticator backed by tokens.
func New(tokens Tokens) *Authenticator { return &Authenticator{tokens: tokens} }

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
	stored, err := a.tokens.TokenSecretHash(ctx, id)
	switch {
	case errors.Is(err, problem.ErrNotFound):
		subtle.ConstantTimeCompare(presented, dummyHash)
		return "", errInvalid
	case err != nil:
		return "", fmt.Errorf("checking token: %w", err)
	}
	if subtle.ConstantTimeCompare(presented, stored) != 1 {
		return "", errInvalid
	}
	return id, nil
}
