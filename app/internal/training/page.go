package training

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

// Cursor is a position in a list ordered by list position, newest first:
// the next page starts strictly after it. Positions are handed out in
// commit order (see docs/schema.md), so a walk never skips a row that was
// committed before it began, and rows committed later only ever appear
// ahead of its first page.
type Cursor struct {
	Position int64
}

// cursorPrefix marks the cursor format, so a cursor of another format (an
// older release's) is refused as malformed instead of misread.
const cursorPrefix = "p"

// Encode returns the opaque form clients pass back as ?cursor=.
func (c Cursor) Encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatInt(c.Position, 10)))
}

// ParseCursor decodes a cursor from Encode. The empty string is the start.
func ParseCursor(s string) (Cursor, bool, error) {
	if s == "" {
		return Cursor{}, false, nil
	}
	bad := problem.New(problem.CodeInvalid, "the cursor parameter is malformed: pass the next_cursor value of a previous page unchanged, or start again without a cursor").
		WithDetails(problem.Detail{Field: "cursor", Issue: "malformed"})
	if len(s) > 200 {
		return Cursor{}, false, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, false, bad
	}
	digits, ok := strings.CutPrefix(string(raw), cursorPrefix)
	if !ok {
		return Cursor{}, false, bad
	}
	pos, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || pos < 0 {
		return Cursor{}, false, bad
	}
	return Cursor{Position: pos}, true, nil
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
