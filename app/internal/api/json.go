package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

// decodeJSON reads exactly one JSON value from the (already size-capped)
// body into v, strictly: unknown fields, trailing data, an empty body and a
// non-JSON content type are all client errors with a message that says
// where the problem is.
func decodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return problem.New(problem.CodeUnsupportedMedia, "Content-Type must be application/json, got %q", ct)
		}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	var extra json.RawMessage
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
		return nil
	case err == nil:
		return problem.New(problem.CodeInvalid, "request body must hold a single JSON value; found more data after it at byte offset %d", dec.InputOffset()-int64(len(extra)))
	default:
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge(mbe.Limit)
		}
		return problem.New(problem.CodeInvalid, "request body must hold a single JSON value; found trailing data after it")
	}
}

func jsonProblem(err error) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
		mbe    *http.MaxBytesError
	)
	switch {
	case errors.As(err, &mbe):
		return tooLarge(mbe.Limit)
	case errors.Is(err, io.EOF):
		return problem.New(problem.CodeInvalid, "request body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problem.New(problem.CodeInvalid, "malformed JSON: the body ends before the value is complete")
	case errors.As(err, &syntax):
		return problem.New(problem.CodeInvalid, "malformed JSON at byte offset %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return problem.New(problem.CodeInvalid, "request body must be %s, got %s", jsonKind(typ.Type.Kind().String()), typ.Value)
		}
		return problem.New(problem.CodeInvalid, "field %q must be %s, got %s", field, jsonKind(typ.Type.Kind().String()), typ.Value).
			WithDetails(problem.Detail{Field: field, Issue: fmt.Sprintf("must be %s, got %s", jsonKind(typ.Type.Kind().String()), typ.Value)})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return problem.New(problem.CodeInvalid, "unknown field %q", field).
			WithDetails(problem.Detail{Field: field, Issue: "unknown field"})
	}
	return problem.New(problem.CodeInvalid, "malformed JSON request body")
}

// jsonKind names a Go kind the way a JSON client thinks of it.
func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	}
	return "a " + k
}

// writeJSON writes v with status. Encoding happens before the header is
// sent, so an unencodable value is still a clean 500.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // JSON for API clients, not for embedding in HTML
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encoding response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// writeProblem writes the one error shape.
func writeProblem(w http.ResponseWriter, e *problem.Error) {
	// details is always an array, empty when there is nothing to point at,
	// so clients (and the edge's own errors) share one exact shape.
	details := e.Details
	if details == nil {
		details = []problem.Detail{}
	}
	body := map[string]any{"code": e.Code, "message": e.Message, "details": details}
	for k, v := range e.Extra {
		if k != "code" && k != "message" && k != "details" {
			body[k] = v
		}
	}
	// A 503 tells clients when to come back, as the edge's own 503s do: a
	// dependency outage (the database, object storage) is temporary, and a
	// client that retries at once only adds load to an instance that cannot
	// serve it. A handler that set its own Retry-After keeps it.
	if e.Status() == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", unavailableRetryAfter)
	}
	_ = writeJSON(w, e.Status(), map[string]any{"error": body})
}

// unavailableRetryAfter is the Retry-After, in seconds, of a 503: the same
// as the edge's (Caddyfile.snippets, json_errors).
const unavailableRetryAfter = "5"
