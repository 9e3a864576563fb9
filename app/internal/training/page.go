package training

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

// Cursor is a position in a list ordered by (created_at DESC, id DESC):
// the next page starts strictly after it. Keyset pagination stays fast at
// any depth and never skips or repeats rows when new ones arrive.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// Encode returns the opaque form clients pass back as ?cursor=.
func (c Cursor) Encode() string {
	raw := strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + "." + c.ID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// ParseCursor decodes a cursor from Encode. The empty string is the start.
func ParseCursor(s string) (Cursor, bool, error) {
	if s == "" {
		return Cursor{}, false, nil
	}
	bad := problem.New(problem.CodeInvalid, "the cursor parameter is malformed: pass the next_cursor value of a previous page unchanged").
		WithDetails(problem.Detail{Field: "cursor", Issue: "malformed"})
	if len(s) > 200 {
		return Cursor{}, false, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, false, bad
	}
	micros, id, ok := strings.Cut(string(raw), ".")
	if !ok || !ValidID(id) {
		return Cursor{}, false, bad
	}
	us, err := strconv.ParseInt(micros, 10, 64)
	if err != nil || us < 0 {
		return Cursor{}, false, bad
	}
	return Cursor{CreatedAt: time.UnixMicro(us).UTC(), ID: id}, true, nil
}

// ParseLimit reads a page size: empty means DefaultPageLimit; anything
// outside 1..MaxPageLimit is refused rather than silently clamped.
func ParseLimit(s string) (int, error) {
	if s == "" {
		return DefaultPageLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxPageLimit {
		return 0, problem.New(problem.CodeInvalid, "the limit parameter must be an integer between 1 and %d", MaxPageLimit).
			WithDetails(problem.Detail{Field: "limit", Issue: "must be an integer between 1 and " + strconv.Itoa(MaxPageLimit)})
	}
	return n, nil
}
