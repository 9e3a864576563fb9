package dataset

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// example is what the statistics need from one valid record.
type example struct {
	length int    // characters of training text
	hash   uint64 // of the training text, for duplicate detection
	label  string // text-label only
}

// recordIssue is a problem with one record, before it is located.
type recordIssue struct {
	code Code
	msg  string
}

func issuef(code Code, format string, args ...any) *recordIssue {
	return &recordIssue{code: code, msg: fmt.Sprintf(format, args...)}
}

// The fields each schema reads; any other top-level field is ignored and
// reported once in an ignored_fields warning.
var (
	chatFields        = []string{"messages"}
	instructionFields = []string{"instruction", "input", "output"}
	textLabelFields   = []string{"text", "label"}
	messageFields     = []string{"role", "content"}
)

// checkRecord validates one complete record (whitespace trimmed) and folds
// it into the statistics or the errors.
func (v *Validator) checkRecord(raw []byte, line, rec int) {
	if off := invalidUTF8At(raw); off >= 0 {
		v.recordError(CodeInvalidUTF8, line, rec, fmt.Sprintf("invalid UTF-8 byte 0x%02X at byte %d of the record", raw[off], off+1))
		return
	}
	var obj map[string]span
	err := json.Unmarshal(raw, &obj)
	if syn := (*json.SyntaxError)(nil); errors.As(err, &syn) {
		v.recordError(CodeMalformedJSON, line, rec, v.syntaxMessage(syn, raw, line))
		return
	}
	if raw[0] != '{' {
		v.recordError(CodeNotObject, line, rec, "expected a JSON object, got "+kindOf(raw))
		return
	}
	if err != nil {
		// Unmarshal into a map of raw values only fails on syntax; keep
		// any other failure a record error rather than trusting that.
		v.recordError(CodeMalformedJSON, line, rec, "malformed JSON")
		return
	}
	v.addPreview(raw)

	schema := v.schema
	if schema == "" {
		schema = guessSchema(obj)
		if schema == "" {
			v.recordError(CodeUnknownSchema, line, rec, `the record matches none of the supported schemas: expected "messages" (chat), "instruction" and "output" (instruction), or "text" and "label" (text-label)`)
			return
		}
	}
	h := maphash.Hash{}
	h.SetSeed(v.hashSeed)
	ex, issue := checkSchema(schema, obj, &h, v.opts)
	if issue == nil && schema == SchemaTextLabel {
		if _, known := v.labels[ex.label]; !known && len(v.labels) >= v.opts.MaxLabels {
			issue = issuef(CodeTooManyLabels, "label %s would be class number %d; at most %d distinct labels are supported",
				quoteShort(ex.label), len(v.labels)+1, v.opts.MaxLabels)
		}
	}
	if issue != nil {
		if issue.code == CodeSchemaMismatch && v.schema != "" {
			issue.msg += fmt.Sprintf(" (the dataset's schema is %s, decided by %s)", v.schema, v.decided)
		}
		v.recordError(issue.code, line, rec, issue.msg)
		return
	}
	if v.schema == "" {
		v.schema = schema
		if v.format == FormatJSONL {
			v.decided = fmt.Sprintf("line %d", line)
		} else {
			v.decided = fmt.Sprintf("record %d", rec)
		}
		if schema == SchemaTextLabel {
			v.labels = make(map[string]int)
		}
	}
	v.addExample(ex, line, rec)
	v.noteIgnored(obj, schema)
}

// syntaxMessage explains a syntax error; in a pretty-printed array record it
// also names the line of the error, which may be far from the record's start.
func (v *Validator) syntaxMessage(syn *json.SyntaxError, raw []byte, line int) string {
	msg := fmt.Sprintf("malformed JSON at byte %d of the record: %s", syn.Offset, syn.Error())
	if off := min(max(syn.Offset, 0), int64(len(raw))); off > 0 {
		if n := bytes.Count(raw[:off-1], []byte("\n")); n > 0 {
			msg = fmt.Sprintf("malformed JSON on line %d, at byte %d of the record: %s", line+n, syn.Offset, syn.Error())
		}
	}
	if v.format == FormatJSONL && strings.Contains(syn.Error(), "unexpected end of JSON input") {
		msg += " (JSON Lines needs each record complete on one line; a pretty-printed file must be a JSON array)"
	}
	return msg
}

func (v *Validator) addExample(ex example, line, rec int) {
	v.examples++
	v.totalLength += int64(ex.length)
	v.maxLength = max(v.maxLength, ex.length)
	v.lengthCounts[lengthBucket(ex.length)]++
	if ex.length > v.opts.LongExampleChars {
		if v.longCount == 0 {
			v.firstLong = Issue{Code: CodeLongExamples, Line: line, Record: rec}
		}
		v.longCount++
	}
	if len(v.hashes) < v.opts.MaxTrackedExamples {
		v.hashes = append(v.hashes, ex.hash)
	}
	if v.schema == SchemaTextLabel {
		v.labels[ex.label]++
	}
}

// noteIgnored remembers, in a bounded list, the top-level fields of a valid
// record that training does not read.
func (v *Validator) noteIgnored(obj map[string]span, schema Schema) {
	known := fieldsOf(schema)
	var extra []string
	for k := range obj {
		if !slices.Contains(known, k) {
			extra = append(extra, k)
		}
	}
	if len(extra) == 0 {
		return
	}
	v.ignoredRecords++
	slices.Sort(extra) // map order is random; reports must not be
	for _, k := range extra {
		name := quoteShort(k)
		if len(v.ignored) > maxIgnoredNames {
			return
		}
		if !slices.Contains(v.ignored, name) {
			v.ignored = append(v.ignored, name)
		}
	}
}

func fieldsOf(s Schema) []string {
	switch s {
	case SchemaChat:
		return chatFields
	case SchemaInstruction:
		return instructionFields
	}
	return textLabelFields
}

// guessSchema picks the schema a record is meant to follow from the fields it
// has, so that the first records get errors specific to that schema.
func guessSchema(obj map[string]span) Schema {
	has := func(k string) bool { _, ok := obj[k]; return ok }
	switch {
	case has("messages"):
		return SchemaChat
	case has("instruction") || has("output"):
		return SchemaInstruction
	case has("text") || has("label"):
		return SchemaTextLabel
	}
	return ""
}

func checkSchema(s Schema, obj map[string]span, h *maphash.Hash, opts Options) (example, *recordIssue) {
	switch s {
	case SchemaChat:
		return checkChat(obj, h)
	case SchemaInstruction:
		return checkInstruction(obj, h)
	}
	return checkTextLabel(obj, h, opts)
}

// Roles accepted in a chat message.
const (
	roleSystem    = "system"
	roleUser      = "user"
	roleAssistant = "assistant"
)

// checkChat enforces what chat templates of common base models require: an
// optional system message first, then turns alternating user, assistant,
// user, ..., ending with an assistant reply (the text the model learns).
func checkChat(obj map[string]span, h *maphash.Hash) (example, *recordIssue) {
	raw, ok := obj["messages"]
	if !ok || isNull(raw) {
		return example{}, issuef(CodeSchemaMismatch, `missing required field "messages"`)
	}
	if raw[0] != '[' {
		return example{}, issuef(CodeSchemaMismatch, `field "messages" must be an array of messages, got %s`, kindOf(raw))
	}
	// One decode of the whole array; a message that is not an object fails
	// it, and is then located by decoding the elements one by one.
	var msgs []map[string]span
	if err := json.Unmarshal(raw, &msgs); err != nil {
		var elems []span
		if json.Unmarshal(raw, &elems) == nil {
			for i, m := range elems {
				if m[0] != '{' {
					return example{}, issuef(CodeSchemaMismatch, `messages[%d] must be an object with "role" and "content", got %s`, i, kindOf(m))
				}
			}
		}
		return example{}, issuef(CodeSchemaMismatch, `field "messages" must be an array of messages`)
	}
	if len(msgs) == 0 {
		return example{}, issuef(CodeEmptyField, `field "messages" is an empty array`)
	}
	var ex example
	want, last := roleUser, ""
	for i, msg := range msgs {
		if msg == nil { // a null element
			return example{}, issuef(CodeSchemaMismatch, `%s must be an object with "role" and "content", got null`, messageField(i))
		}
		role, issue := requiredString(msg, "role", i)
		if issue != nil {
			return example{}, issue
		}
		content, issue := requiredString(msg, "content", i)
		if issue != nil {
			return example{}, issue
		}
		switch role {
		case roleSystem:
			if i > 0 {
				return example{}, issuef(CodeInvalidValue, `%s is a system message; a system message is only allowed first`, messageField(i))
			}
		case roleUser, roleAssistant:
			if role != want {
				return example{}, issuef(CodeInvalidValue, `%s.role is %q where %q was expected: after an optional system message, turns alternate user, assistant, user, ...`, messageField(i), role, want)
			}
			if want == roleUser {
				want = roleAssistant
			} else {
				want = roleUser
			}
		default:
			return example{}, issuef(CodeInvalidValue, `%s.role must be "system", "user" or "assistant", got %s`, messageField(i), quoteShort(role))
		}
		last = role
		ex.length += utf8.RuneCountInString(content)
		h.WriteString(role)
		h.WriteByte(0)
		h.WriteString(content)
		h.WriteByte(0)
	}
	if last != roleAssistant {
		return example{}, issuef(CodeInvalidValue, `the conversation must end with an assistant message (the reply the model learns); it ends with a %s message`, last)
	}
	ex.hash = h.Sum64()
	return ex, nil
}

func checkInstruction(obj map[string]span, h *maphash.Hash) (example, *recordIssue) {
	instruction, issue := requiredString(obj, "instruction", -1)
	if issue != nil {
		return example{}, issue
	}
	var input string
	if raw, ok := obj["input"]; ok && !isNull(raw) {
		// input is optional and may be empty (Alpaca-style data has "input": "").
		if raw[0] != '"' {
			return example{}, issuef(CodeSchemaMismatch, `field "input" must be a string, got %s`, kindOf(raw))
		}
		var ok bool
		if input, ok = decodeString(raw); !ok {
			return example{}, issuef(CodeSchemaMismatch, `field "input" must be a string`)
		}
	}
	output, issue := requiredString(obj, "output", -1)
	if issue != nil {
		return example{}, issue
	}
	for _, s := range []string{instruction, input, output} {
		h.WriteString(s)
		h.WriteByte(0)
	}
	n := utf8.RuneCountInString(instruction) + utf8.RuneCountInString(input) + utf8.RuneCountInString(output)
	return example{length: n, hash: h.Sum64()}, nil
}

func checkTextLabel(obj map[string]span, h *maphash.Hash, opts Options) (example, *recordIssue) {
	text, issue := requiredString(obj, "text", -1)
	if issue != nil {
		return example{}, issue
	}
	raw, ok := obj["label"]
	if !ok || isNull(raw) {
		return example{}, issuef(CodeSchemaMismatch, `missing required field "label"`)
	}
	var label string
	switch c := raw[0]; {
	case c == '"':
		var ok bool
		if label, ok = decodeString(raw); !ok {
			return example{}, issuef(CodeSchemaMismatch, `field "label" must be a string or an integer`)
		}
		if strings.TrimSpace(label) == "" {
			return example{}, issuef(CodeEmptyField, `field "label" is empty`)
		}
		if strings.IndexByte(label, 0) >= 0 {
			// Labels become keys of the stored report, and jsonb rejects NUL.
			return example{}, issuef(CodeInvalidValue, `field "label" contains a NUL character (\u0000)`)
		}
		if n := utf8.RuneCountInString(label); n > opts.MaxLabelChars {
			return example{}, issuef(CodeInvalidValue, `field "label" has %d characters; at most %d are allowed (labels are class names)`, n, opts.MaxLabelChars)
		}
	case c == '-' || (c >= '0' && c <= '9'):
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return example{}, issuef(CodeInvalidValue, `field "label" must be a string or an integer, got the number %s`, truncate(string(raw), 40))
		}
		label = strconv.FormatInt(n, 10)
	default:
		return example{}, issuef(CodeSchemaMismatch, `field "label" must be a string or an integer, got %s`, kindOf(raw))
	}
	h.WriteString(text)
	h.WriteByte(0)
	h.WriteString(label)
	return example{length: utf8.RuneCountInString(text), hash: h.Sum64(), label: label}, nil
}

// messageField names the i-th chat message in messages; built only when a
// message is in error, as it costs an allocation.
func messageField(i int) string { return "messages[" + strconv.Itoa(i) + "]" }

// requiredString reads obj[key] as a string that must be present and not
// blank. obj is the record, or chat message number msg when msg >= 0.
func requiredString(obj map[string]span, key string, msg int) (string, *recordIssue) {
	prefix := func() string {
		if msg < 0 {
			return ""
		}
		return messageField(msg) + "."
	}
	raw, ok := obj[key]
	if !ok || isNull(raw) {
		return "", issuef(CodeSchemaMismatch, `missing required field "%s%s"`, prefix(), key)
	}
	if raw[0] != '"' {
		return "", issuef(CodeSchemaMismatch, `field "%s%s" must be a string, got %s`, prefix(), key, kindOf(raw))
	}
	s, ok := decodeString(raw)
	if !ok {
		return "", issuef(CodeSchemaMismatch, `field "%s%s" must be a string`, prefix(), key)
	}
	if strings.TrimSpace(s) == "" {
		return "", issuef(CodeEmptyField, `field "%s%s" is empty`, prefix(), key)
	}
	return s, nil
}

// span is a JSON value inside the record being checked. Unlike
// json.RawMessage it aliases the record instead of copying it, which is safe
// because no span outlives checkRecord.
type span []byte

// UnmarshalJSON keeps b without copying; see span.
func (s *span) UnmarshalJSON(b []byte) error {
	*s = b
	return nil
}

// decodeString decodes a JSON string literal. Most strings have no escape,
// and those are sliced directly: the record is already known to be valid
// JSON and valid UTF-8.
func decodeString(raw span) (string, bool) {
	if len(raw) >= 2 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err == nil
}

func isNull(raw span) bool { return bytes.Equal(raw, []byte("null")) }

// kindOf names the JSON type of a valid JSON value for messages.
func kindOf(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// quoteShort quotes a user-supplied string for a message, cut so that a
// message stays short whatever the input.
func quoteShort(s string) string { return strconv.Quote(truncate(s, 40)) }

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for k := range s {
		if i == n {
			return s[:k] + "…"
		}
		i++
	}
	return s
}

// addPreview keeps a compact copy of the first records for the dataset's
// detail page, shortening long ones so each stays under PreviewRecordBytes.
func (v *Validator) addPreview(raw []byte) {
	if len(v.preview) >= v.opts.PreviewRecords {
		return
	}
	var out bytes.Buffer
	// A record without escapes is kept as written, compacted. Escapes go
	// through decoding: Postgres jsonb, where reports are stored, rejects
	// \u0000 and lone surrogates such as \ud800, which JSON allows.
	if len(raw) <= 4*v.opts.PreviewRecordBytes {
		if err := json.Compact(&out, raw); err == nil && out.Len() <= v.opts.PreviewRecordBytes && !bytes.Contains(out.Bytes(), []byte(`\u`)) {
			v.preview = append(v.preview, out.Bytes())
			return
		}
	}
	var val any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep numbers as written
	if err := dec.Decode(&val); err != nil {
		return
	}
	for _, limit := range []int{math.MaxInt, 500, 100, 20} {
		b, err := json.Marshal(shorten(val, limit))
		if err == nil && len(b) <= v.opts.PreviewRecordBytes {
			v.preview = append(v.preview, b)
			return
		}
	}
	v.preview = append(v.preview, []byte(`{"preview_truncated":true}`))
}

// shorten cuts strings to limit characters and arrays to limit/10+1 items,
// and replaces NUL characters, which jsonb cannot store.
func shorten(val any, limit int) any {
	switch t := val.(type) {
	case string:
		return strings.ReplaceAll(truncate(t, limit), "\x00", "\uFFFD")
	case []any:
		n := min(len(t), limit/10+1)
		out := make([]any, n)
		for i := range n {
			out[i] = shorten(t[i], limit)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[shorten(k, limit).(string)] = shorten(e, limit)
		}
		return out
	}
	return val
}

func (v *Validator) previewRecords() []json.RawMessage {
	out := make([]json.RawMessage, len(v.preview))
	for i, p := range v.preview {
		out[i] = p
	}
	return out
}
