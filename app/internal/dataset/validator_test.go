package dataset

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// validate runs input through a fresh validator in one Write.
func validate(t *testing.T, input string, opts Options) *Report {
	t.Helper()
	v := NewValidator(opts)
	if n, err := v.Write([]byte(input)); err != nil || n != len(input) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(input))
	}
	return v.Finish()
}

// validateChunks feeds input in the given chunk sizes, cycling through them.
func validateChunks(t testing.TB, input []byte, opts Options, sizes []int) *Report {
	t.Helper()
	v := NewValidator(opts)
	for i := 0; len(input) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(input))
		if w, err := v.Write(input[:n]); err != nil || w != n {
			t.Fatalf("Write = %d, %v; want %d, nil", w, err, n)
		}
		input = input[n:]
	}
	return v.Finish()
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lines builds JSON Lines input from records, one per line.
func lines(records ...string) string { return strings.Join(records, "\n") + "\n" }

// textLabels returns n valid text-label records with distinct texts.
func textLabels(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"text":"review number %d","label":"%s"}`, i, []string{"pos", "neg"}[i%2])
	}
	return out
}

func TestFixtures(t *testing.T) {
	tests := []struct {
		file     string
		format   Format
		schema   Schema
		examples int
		labels   map[string]int
	}{
		{"chat.jsonl", FormatJSONL, SchemaChat, 12, nil},
		{"instruction.json", FormatJSONArray, SchemaInstruction, 12, nil},
		{"text_label.jsonl", FormatJSONL, SchemaTextLabel, 12, map[string]int{"positive": 5, "negative": 4, "neutral": 3}},
		{"text_label_int.json", FormatJSONArray, SchemaTextLabel, 12, map[string]int{"0": 4, "1": 4, "2": 4}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			r := validate(t, string(readFixture(t, tt.file)), Options{})
			if !r.Valid || r.ErrorCount != 0 || len(r.Errors) != 0 {
				t.Fatalf("got valid=%v errors=%+v, want a valid report", r.Valid, r.Errors)
			}
			if r.Format != tt.format || r.Schema != tt.schema {
				t.Errorf("got format %q schema %q, want %q %q", r.Format, r.Schema, tt.format, tt.schema)
			}
			if r.Stats.Examples != tt.examples || r.Stats.Records != tt.examples {
				t.Errorf("got %d examples of %d records, want %d of %d", r.Stats.Examples, r.Stats.Records, tt.examples, tt.examples)
			}
			if !reflect.DeepEqual(r.Stats.LabelDistribution, tt.labels) {
				t.Errorf("got labels %v, want %v", r.Stats.LabelDistribution, tt.labels)
			}
			if len(r.Warnings) != 0 {
				t.Errorf("got warnings %+v, want none", r.Warnings)
			}
			if len(r.Preview) != 5 {
				t.Errorf("got %d preview records, want 5", len(r.Preview))
			}
		})
	}
}

// TestFixtureErrors checks files mixing many problems, located exactly.
func TestFixtureErrors(t *testing.T) {
	t.Run("errors.jsonl", func(t *testing.T) {
		r := validate(t, string(readFixture(t, "errors.jsonl")), Options{})
		assertLocations(t, r, []Issue{
			{Code: CodeInvalidUTF8, Line: 4, Record: 4},
			{Code: CodeSchemaMismatch, Line: 5, Record: 5},
			{Code: CodeNotObject, Line: 6, Record: 6},
			{Code: CodeEmptyField, Line: 7, Record: 7},
			{Code: CodeInvalidValue, Line: 8, Record: 8},
			{Code: CodeMalformedJSON, Line: 9, Record: 9},
			{Code: CodeMalformedJSON, Line: 10, Record: 10},
			{Code: CodeSchemaMismatch, Line: 12, Record: 11},
		})
		if r.Format != FormatJSONL || r.Schema != SchemaTextLabel || r.Stats.Records != 19 || r.Stats.Examples != 11 {
			t.Errorf("got %s %s, %d records, %d examples; want jsonl text_label, 19, 11", r.Format, r.Schema, r.Stats.Records, r.Stats.Examples)
		}
		if len(r.Warnings) != 1 || r.Warnings[0].Code != CodeDuplicates || r.Stats.DuplicateRatio != 10.0/11 {
			t.Errorf("got ratio %v warnings %+v, want 10/11 and a duplicates warning", r.Stats.DuplicateRatio, r.Warnings)
		}
	})
	t.Run("broken_array.json", func(t *testing.T) {
		r := validate(t, string(readFixture(t, "broken_array.json")), Options{})
		assertLocations(t, r, []Issue{
			{Code: CodeArrayNotClosed},
			{Code: CodeTooFewExamples},
			{Code: CodeEmptyRecord, Line: 2, Record: 1},
			{Code: CodeEmptyRecord, Line: 6, Record: 7},
			{Code: CodeMalformedJSON, Line: 7, Record: 8},
			{Code: CodeMalformedJSON, Line: 7, Record: 9},
			{Code: CodeNotObject, Line: 8, Record: 10},
			{Code: CodeMalformedJSON, Line: 9, Record: 12},
		})
		if r.Stats.Examples != 6 || r.Stats.Records != 12 {
			t.Errorf("got %d examples of %d records, want 6 of 12", r.Stats.Examples, r.Stats.Records)
		}
	})
}

func TestSniffing(t *testing.T) {
	ten := textLabels(10)
	tests := []struct {
		name   string
		input  string
		format Format
		code   Code // the only error expected, or "" for a valid dataset
	}{
		{"jsonl", lines(ten...), FormatJSONL, ""},
		{"array", "[" + strings.Join(ten, ",") + "]", FormatJSONArray, ""},
		{"array pretty with leading blank lines", "\n\n  [\n  " + strings.Join(ten, ",\n  ") + "\n]\n\n", FormatJSONArray, ""},
		{"jsonl with BOM", "\xEF\xBB\xBF" + lines(ten...), FormatJSONL, ""},
		{"array with BOM", "\xEF\xBB\xBF[" + strings.Join(ten, ",") + "]", FormatJSONArray, ""},
		{"jsonl CRLF", strings.Join(ten, "\r\n") + "\r\n", FormatJSONL, ""},
		{"jsonl no final newline", strings.Join(ten, "\n"), FormatJSONL, ""},
		{"jsonl blank lines", "\n \n" + strings.Join(ten, "\n\t\n\r\n") + "\n\n\n", FormatJSONL, ""},
		{"empty array", "[]", FormatJSONArray, CodeTooFewExamples},
		{"empty file", "", "", CodeEmptyInput},
		{"only whitespace", " \n\r\n\t", "", CodeEmptyInput},
		{"only BOM", "\xEF\xBB\xBF", "", CodeEmptyInput},
		{"csv", "text,label\nhello,pos\n", "", CodeUnsupportedFormat},
		{"gzip", "\x1f\x8b\x08\x00", "", CodeUnsupportedFormat},
		{"utf-16 BOM", "\xFF\xFE[\x00", "", CodeUnsupportedFormat},
		{"truncated BOM", "\xEF\xBB{}", "", CodeInvalidUTF8},
		{"BOM cut at end", "\xEF\xBB", "", CodeInvalidUTF8},
		{"top-level string", `"hello"`, "", CodeUnsupportedFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validate(t, tt.input, Options{})
			if r.Format != tt.format {
				t.Errorf("got format %q, want %q", r.Format, tt.format)
			}
			if tt.code == "" {
				if !r.Valid {
					t.Fatalf("got errors %+v, want a valid report", r.Errors)
				}
				if r.Stats.Examples != 10 {
					t.Errorf("got %d examples, want 10", r.Stats.Examples)
				}
				return
			}
			if r.ErrorCount != 1 || len(r.Errors) != 1 || r.Errors[0].Code != tt.code {
				t.Fatalf("got %d errors %+v, want exactly one %s", r.ErrorCount, r.Errors, tt.code)
			}
			if r.Valid {
				t.Error("got valid, want invalid")
			}
		})
	}
}

func TestSniffMessages(t *testing.T) {
	tests := []struct{ input, want string }{
		{"\x1f\x8b\x08", "gzip-compressed"},
		{"\xFE\xFF\x00[", "UTF-16"},
		{"PK\x03\x04", `found 'P'`},
		{"\n\n  id,text", `found 'i'`},
		{"\x00", "found byte 0x00"},
	}
	for _, tt := range tests {
		r := validate(t, tt.input, Options{})
		if len(r.Errors) != 1 || !strings.Contains(r.Errors[0].Message, tt.want) {
			t.Errorf("input %q: got %+v, want a message containing %q", tt.input, r.Errors, tt.want)
		}
	}
}

// TestRecordErrors checks each record-level error with its exact location.
// The inputs are prefixed with ten valid records so that only the record
// under test is in error.
func TestRecordErrors(t *testing.T) {
	chat := func(msgs string) string { return `{"messages":` + msgs + `}` }
	okChat := chat(`[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]`)
	okInstr := `{"instruction":"Add","input":"1 2","output":"3"}`
	okText := `{"text":"good","label":"pos"}`
	tests := []struct {
		name   string
		valid  string // a valid record of the schema, repeated 10 times first
		bad    string // the record under test, on line 11 (after 10 valid lines)
		code   Code
		inMsg  string
		schema Schema
	}{
		{"malformed json", okText, `{"text":"x","label":}`, CodeMalformedJSON, "malformed JSON at byte 21", SchemaTextLabel},
		{"truncated json hints at pretty printing", okText, `{"text":"x",`, CodeMalformedJSON, "JSON Lines needs each record complete on one line", SchemaTextLabel},
		{"two objects on one line", okText, `{"text":"x","label":"y"} {"text":"x","label":"y"}`, CodeMalformedJSON, "after top-level value", SchemaTextLabel},
		{"invalid utf-8", okText, "{\"text\":\"caf\xe9\",\"label\":\"pos\"}", CodeInvalidUTF8, "invalid UTF-8 byte 0xE9 at byte 13", SchemaTextLabel},
		{"array record", okText, `["good","pos"]`, CodeNotObject, "got an array", SchemaTextLabel},
		{"number record", okText, `42`, CodeNotObject, "got a number", SchemaTextLabel},
		{"null record", okText, `null`, CodeNotObject, "got null", SchemaTextLabel},
		{"other schema", okText, okInstr, CodeSchemaMismatch, `missing required field "text" (the dataset's schema is text_label, decided by line 1)`, SchemaTextLabel},
		{"missing label", okText, `{"text":"x"}`, CodeSchemaMismatch, `missing required field "label"`, SchemaTextLabel},
		{"null label", okText, `{"text":"x","label":null}`, CodeSchemaMismatch, `missing required field "label"`, SchemaTextLabel},
		{"empty text", okText, `{"text":"  \n ","label":"pos"}`, CodeEmptyField, `field "text" is empty`, SchemaTextLabel},
		{"empty label", okText, `{"text":"x","label":""}`, CodeEmptyField, `field "label" is empty`, SchemaTextLabel},
		{"float label", okText, `{"text":"x","label":1.5}`, CodeInvalidValue, `got the number 1.5`, SchemaTextLabel},
		{"bool label", okText, `{"text":"x","label":true}`, CodeSchemaMismatch, `got a boolean`, SchemaTextLabel},
		{"long label", okText, `{"text":"x","label":"` + strings.Repeat("é", 201) + `"}`, CodeInvalidValue, `has 201 characters; at most 200`, SchemaTextLabel},
		{"text not string", okText, `{"text":["x"],"label":"pos"}`, CodeSchemaMismatch, `field "text" must be a string, got an array`, SchemaTextLabel},
		{"missing output", okInstr, `{"instruction":"Add"}`, CodeSchemaMismatch, `missing required field "output"`, SchemaInstruction},
		{"empty instruction", okInstr, `{"instruction":"","output":"3"}`, CodeEmptyField, `field "instruction" is empty`, SchemaInstruction},
		{"input not string", okInstr, `{"instruction":"Add","input":{"a":1},"output":"3"}`, CodeSchemaMismatch, `field "input" must be a string, got an object`, SchemaInstruction},
		{"messages missing", okChat, `{"conversation":[]}`, CodeSchemaMismatch, `missing required field "messages"`, SchemaChat},
		{"messages not array", okChat, chat(`"hi"`), CodeSchemaMismatch, `field "messages" must be an array of messages, got a string`, SchemaChat},
		{"messages empty", okChat, chat(`[]`), CodeEmptyField, `field "messages" is an empty array`, SchemaChat},
		{"message not object", okChat, chat(`["hi"]`), CodeSchemaMismatch, `messages[0] must be an object`, SchemaChat},
		{"unknown role", okChat, chat(`[{"role":"user","content":"a"},{"role":"tool","content":"b"}]`), CodeInvalidValue, `messages[1].role must be "system", "user" or "assistant", got "tool"`, SchemaChat},
		{"role case matters", okChat, chat(`[{"role":"User","content":"a"},{"role":"assistant","content":"b"}]`), CodeInvalidValue, `got "User"`, SchemaChat},
		{"content missing", okChat, chat(`[{"role":"user"},{"role":"assistant","content":"b"}]`), CodeSchemaMismatch, `missing required field "messages[0].content"`, SchemaChat},
		{"content empty", okChat, chat(`[{"role":"user","content":"a"},{"role":"assistant","content":" "}]`), CodeEmptyField, `field "messages[1].content" is empty`, SchemaChat},
		{"content parts array", okChat, chat(`[{"role":"user","content":[{"type":"text","text":"a"}]},{"role":"assistant","content":"b"}]`), CodeSchemaMismatch, `field "messages[0].content" must be a string, got an array`, SchemaChat},
		{"late system", okChat, chat(`[{"role":"user","content":"a"},{"role":"system","content":"b"},{"role":"assistant","content":"c"}]`), CodeInvalidValue, `messages[1] is a system message`, SchemaChat},
		{"assistant first", okChat, chat(`[{"role":"assistant","content":"a"},{"role":"user","content":"b"}]`), CodeInvalidValue, `messages[0].role is "assistant" where "user" was expected`, SchemaChat},
		{"two users in a row", okChat, chat(`[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"assistant","content":"c"}]`), CodeInvalidValue, `messages[1].role is "user" where "assistant" was expected`, SchemaChat},
		{"ends with user", okChat, chat(`[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]`), CodeInvalidValue, `must end with an assistant message`, SchemaChat},
		{"only system", okChat, chat(`[{"role":"system","content":"a"}]`), CodeInvalidValue, `it ends with a system message`, SchemaChat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := make([]string, 0, 12)
			for range 10 {
				recs = append(recs, tt.valid)
			}
			recs = append(recs, tt.bad, tt.valid)
			r := validate(t, lines(recs...), Options{})
			want := Issue{Code: tt.code, Line: 11, Record: 11}
			if r.ErrorCount != 1 || len(r.Errors) != 1 {
				t.Fatalf("got %d errors %+v, want one", r.ErrorCount, r.Errors)
			}
			got := r.Errors[0]
			if msg := got.Message; got.Code != want.Code || got.Line != want.Line || got.Record != want.Record {
				t.Errorf("got %s at line %d record %d (%s), want %s at line 11 record 11", got.Code, got.Line, got.Record, msg, want.Code)
			}
			if !strings.Contains(got.Message, tt.inMsg) {
				t.Errorf("got message %q, want it to contain %q", got.Message, tt.inMsg)
			}
			if r.Schema != tt.schema || r.Stats.Examples != 11 || r.Stats.Records != 12 || r.Valid {
				t.Errorf("got schema %q, %d examples of %d records, valid=%v; want %q, 11 of 12, invalid",
					r.Schema, r.Stats.Examples, r.Stats.Records, r.Valid, tt.schema)
			}
		})
	}
}

// TestLocations checks line and record numbers where they differ: blank
// lines in JSON Lines, multi-line records in an array.
func TestLocations(t *testing.T) {
	ok := `{"text":"good","label":"pos"}`
	t.Run("jsonl blank lines", func(t *testing.T) {
		in := "\n" + ok + "\n\n\r\n" + `{"text":1}` + "\r\n" + strings.Repeat(ok+"\n", 9) + "\n  {bad\n"
		r := validate(t, in, Options{})
		want := []Issue{
			{Code: CodeSchemaMismatch, Line: 5, Record: 2},
			{Code: CodeMalformedJSON, Line: 16, Record: 12},
		}
		assertLocations(t, r, want)
	})
	t.Run("array multi-line", func(t *testing.T) {
		in := "[\n" + ok + ",\n{\n  \"text\": \"x\",\n  \"label\": []\n},\n" + strings.Repeat(ok+",", 9) + "\n\n 17 ,\n" + ok + "\n]"
		r := validate(t, in, Options{})
		want := []Issue{
			{Code: CodeSchemaMismatch, Line: 3, Record: 2},
			{Code: CodeNotObject, Line: 9, Record: 12},
		}
		assertLocations(t, r, want)
	})
	t.Run("array structure", func(t *testing.T) {
		in := "[," + strings.Repeat(ok+",", 10) + ",\n" + ok + ",\n]\n"
		r := validate(t, in, Options{})
		want := []Issue{
			{Code: CodeEmptyRecord, Line: 1, Record: 1},
			{Code: CodeEmptyRecord, Line: 1, Record: 12},
			{Code: CodeEmptyRecord, Line: 3, Record: 14},
		}
		assertLocations(t, r, want)
		if r.Stats.Examples != 11 {
			t.Errorf("got %d examples, want 11", r.Stats.Examples)
		}
	})
	t.Run("syntax error deep in a pretty-printed record", func(t *testing.T) {
		in := "[" + strings.Join(textLabels(10), ",") + ",\n{\n  \"text\": \"x\",\n  \"label\" \"pos\"\n}\n]"
		r := validate(t, in, Options{})
		assertLocations(t, r, []Issue{{Code: CodeMalformedJSON, Line: 2, Record: 11}})
		if want := "malformed JSON on line 4, at byte 28 of the record"; !strings.Contains(r.Errors[0].Message, want) {
			t.Errorf("got %q, want it to contain %q", r.Errors[0].Message, want)
		}
	})
	t.Run("array not closed", func(t *testing.T) {
		in := "[" + strings.Repeat(ok+",", 10) + `{"text":"tr`
		r := validate(t, in, Options{})
		want := []Issue{
			{Code: CodeArrayNotClosed},
			{Code: CodeMalformedJSON, Line: 1, Record: 11},
		}
		assertLocations(t, r, want)
	})
	t.Run("trailing data", func(t *testing.T) {
		in := "[" + strings.Join(textLabels(10), ",") + "]\n\n" + ok + "\n"
		r := validate(t, in, Options{})
		assertLocations(t, r, []Issue{{Code: CodeTrailingData}})
		if !strings.Contains(r.Errors[0].Message, "on line 3") {
			t.Errorf("got %q, want the line of the trailing data", r.Errors[0].Message)
		}
	})
	t.Run("stray closing brace", func(t *testing.T) {
		in := "[}," + strings.Repeat(ok+",", 9) + "\n" + ok + "}," + ok + "]"
		r := validate(t, in, Options{})
		assertLocations(t, r, []Issue{
			{Code: CodeMalformedJSON, Line: 1, Record: 1},
			{Code: CodeMalformedJSON, Line: 2, Record: 11},
		})
		if r.Stats.Examples != 10 {
			t.Errorf("got %d examples, want 10", r.Stats.Examples)
		}
	})
	t.Run("brackets and commas inside strings", func(t *testing.T) {
		tricky := `{"text":"a, [b] {c} \"d,]\" \\","label":"pos"}`
		in := "[" + strings.Repeat(tricky+",", 9) + tricky + "]"
		r := validate(t, in, Options{})
		if !r.Valid || r.Stats.Examples != 10 {
			t.Fatalf("got %d examples, errors %+v; want 10 valid", r.Stats.Examples, r.Errors)
		}
	})
}

func assertLocations(t *testing.T, r *Report, want []Issue) {
	t.Helper()
	if len(r.Errors) != len(want) || r.ErrorCount != len(want) {
		t.Fatalf("got %d errors %+v, want %d", r.ErrorCount, r.Errors, len(want))
	}
	for i, w := range want {
		g := r.Errors[i]
		if g.Code != w.Code || g.Line != w.Line || g.Record != w.Record {
			t.Errorf("error %d: got %s line %d record %d (%s), want %s line %d record %d",
				i, g.Code, g.Line, g.Record, g.Message, w.Code, w.Line, w.Record)
		}
	}
}

func TestSchemaDecidedByFirstValidRecord(t *testing.T) {
	// The first records are broken attempts at different schemas; the schema
	// is decided by line 3, the first valid one, and line 4 is checked
	// against it.
	recs := []string{
		`{"foo":"bar"}`,
		`{"instruction":"Add"}`,
		`{"text":"good","label":"pos"}`,
		`{"instruction":"Add","output":"3"}`,
	}
	recs = append(recs, textLabels(10)...)
	r := validate(t, lines(recs...), Options{})
	if r.Schema != SchemaTextLabel {
		t.Fatalf("got schema %q, want text_label", r.Schema)
	}
	assertLocations(t, r, []Issue{
		{Code: CodeUnknownSchema, Line: 1, Record: 1},
		{Code: CodeSchemaMismatch, Line: 2, Record: 2},
		{Code: CodeSchemaMismatch, Line: 4, Record: 4},
	})
	if !strings.Contains(r.Errors[1].Message, `missing required field "output"`) {
		t.Errorf("got %q, want the instruction schema's message before a schema is decided", r.Errors[1].Message)
	}
	if !strings.Contains(r.Errors[2].Message, "decided by line 3") {
		t.Errorf("got %q, want the place the schema was decided", r.Errors[2].Message)
	}
}

func TestTooFewExamples(t *testing.T) {
	for _, n := range []int{0, 1, 9} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r := validate(t, lines(append(textLabels(n), `{"text":""}`)...), Options{})
			want := []Issue{{Code: CodeTooFewExamples}, {Code: CodeEmptyField, Line: n + 1, Record: n + 1}}
			assertLocations(t, r, want)
			if msg := fmt.Sprintf("has %d valid examples; at least 10", n); !strings.Contains(r.Errors[0].Message, msg) {
				t.Errorf("got %q, want it to contain %q", r.Errors[0].Message, msg)
			}
		})
	}
	r := validate(t, lines(textLabels(3)...), Options{MinExamples: 3})
	if !r.Valid {
		t.Errorf("MinExamples 3: got errors %+v, want valid", r.Errors)
	}
}

func TestErrorCap(t *testing.T) {
	recs := textLabels(10)
	for i := range 120 {
		recs = append(recs, fmt.Sprintf(`{"text":"bad %d"}`, i))
	}
	r := validate(t, lines(recs...), Options{})
	if r.ErrorCount != 120 || len(r.Errors) != 50 {
		t.Fatalf("got %d errors listed of %d, want 50 of 120", len(r.Errors), r.ErrorCount)
	}
	for i, e := range r.Errors {
		if e.Line != 11+i || e.Record != 11+i {
			t.Fatalf("error %d at line %d, want line %d (file order)", i, e.Line, 11+i)
		}
	}
	if r.Stats.Records != 130 || r.Stats.Examples != 10 {
		t.Errorf("got %d records %d examples, want 130 and 10", r.Stats.Records, r.Stats.Examples)
	}

	// File-level errors are listed even when record errors filled the cap.
	r = validate(t, lines(recs[10:]...), Options{MaxIssues: 5})
	if r.ErrorCount != 121 || len(r.Errors) != 6 || r.Errors[0].Code != CodeTooFewExamples {
		t.Fatalf("got %d listed of %d, first %+v; want too_few_examples then 5 of 121", len(r.Errors), r.ErrorCount, r.Errors[0])
	}
}

func TestRecordTooLarge(t *testing.T) {
	ok := `{"text":"good","label":"pos"}`
	huge := `{"text":"` + strings.Repeat("a", 3<<20) + `","label":"pos"}`
	for _, format := range []string{"jsonl", "array"} {
		t.Run(format, func(t *testing.T) {
			recs := []string{ok, huge, ok, ok, ok, ok, ok, ok, ok, ok, ok}
			in := lines(recs...)
			if format == "array" {
				in = "[" + strings.Join(recs, ",\n") + "]"
			}
			r := validateChunks(t, []byte(in), Options{}, []int{4096, 1, 65536})
			assertLocations(t, r, []Issue{{Code: CodeRecordTooLarge, Line: 2, Record: 2}})
			if r.Stats.Examples != 10 {
				t.Errorf("got %d examples, want 10 (validation continues after the large record)", r.Stats.Examples)
			}
		})
	}
	t.Run("blank line longer than the cap is still blank", func(t *testing.T) {
		in := lines(textLabels(10)...) + strings.Repeat(" ", 100) + "\n"
		r := validate(t, in, Options{MaxRecordBytes: 64})
		if !r.Valid {
			t.Errorf("got errors %+v, want valid", r.Errors)
		}
	})
}

func TestWarnings(t *testing.T) {
	t.Run("long examples", func(t *testing.T) {
		recs := textLabels(12)
		recs[3] = `{"text":"` + strings.Repeat("é", 101) + `","label":"pos"}`
		recs[7] = `{"text":"` + strings.Repeat("x", 150) + `","label":"neg"}`
		r := validate(t, lines(recs...), Options{LongExampleChars: 100})
		if !r.Valid || len(r.Warnings) != 1 {
			t.Fatalf("got valid=%v warnings %+v, want one warning", r.Valid, r.Warnings)
		}
		w := r.Warnings[0]
		if w.Code != CodeLongExamples || w.Line != 4 || w.Record != 4 || !strings.Contains(w.Message, "2 examples are longer than 100 characters (the longest has 150)") {
			t.Errorf("got %+v", w)
		}
	})
	t.Run("duplicates over 30 percent", func(t *testing.T) {
		recs := textLabels(10)
		// 4 of 10 repeat an earlier example (whitespace and key order do
		// not matter, the training text does).
		recs[6], recs[7], recs[8] = recs[0], ` {"label":"pos", "text":"review number 0"}`, recs[1]
		recs[9] = recs[1]
		r := validate(t, lines(recs...), Options{})
		if r.Stats.DuplicateRatio != 0.4 {
			t.Errorf("got duplicate ratio %v, want 0.4", r.Stats.DuplicateRatio)
		}
		if len(r.Warnings) != 1 || r.Warnings[0].Code != CodeDuplicates || !strings.Contains(r.Warnings[0].Message, "40.0 %") {
			t.Errorf("got warnings %+v, want one duplicates warning at 40.0 %%", r.Warnings)
		}
	})
	t.Run("duplicates at 30 percent", func(t *testing.T) {
		recs := textLabels(10)
		recs[7], recs[8], recs[9] = recs[0], recs[1], recs[2]
		r := validate(t, lines(recs...), Options{})
		if r.Stats.DuplicateRatio != 0.3 || len(r.Warnings) != 0 {
			t.Errorf("got ratio %v warnings %+v, want 0.3 and none", r.Stats.DuplicateRatio, r.Warnings)
		}
	})
	t.Run("same text different label is not a duplicate", func(t *testing.T) {
		recs := textLabels(10)
		for i := range 5 {
			recs[i] = `{"text":"same","label":"pos"}`
			recs[i+5] = fmt.Sprintf(`{"text":"same","label":"l%d"}`, i)
		}
		r := validate(t, lines(recs...), Options{})
		if r.Stats.DuplicateRatio != 0.4 {
			t.Errorf("got %v, want 0.4", r.Stats.DuplicateRatio)
		}
	})
	t.Run("rare labels", func(t *testing.T) {
		recs := textLabels(200)
		recs[10] = `{"text":"odd one","label":"spam"}`
		recs[20] = `{"text":"odd two","label":7}`
		recs[30] = `{"text":"odd three","label":"7"}` // the same class as 7
		r := validate(t, lines(recs...), Options{})
		if len(r.Warnings) != 1 || r.Warnings[0].Code != CodeRareLabels {
			t.Fatalf("got warnings %+v, want one rare_labels", r.Warnings)
		}
		if want := `1 label class has under 1 % of the examples: "spam" (1)`; !strings.Contains(r.Warnings[0].Message, want) {
			t.Errorf("got %q, want it to contain %q", r.Warnings[0].Message, want)
		}
		if got := r.Stats.LabelDistribution; got["7"] != 2 || got["spam"] != 1 || got["pos"]+got["neg"] != 197 {
			t.Errorf("got distribution %v", got)
		}
	})
	t.Run("ignored fields", func(t *testing.T) {
		recs := textLabels(10)
		recs[2] = `{"id":3,"text":"x","label":"pos","meta":{}}`
		recs[5] = `{"text":"y","label":"neg","id":6}`
		r := validate(t, lines(recs...), Options{})
		if len(r.Warnings) != 1 || r.Warnings[0].Code != CodeIgnoredFields || r.Warnings[0].Message != `2 records have fields training ignores: "id", "meta"` {
			t.Errorf("got %+v", r.Warnings)
		}
	})
}

func TestTooManyLabels(t *testing.T) {
	var recs []string
	for i := range 14 {
		recs = append(recs, fmt.Sprintf(`{"text":"t%d","label":"c%d"}`, i, i%12))
	}
	r := validate(t, lines(recs...), Options{MaxLabels: 10})
	assertLocations(t, r, []Issue{{Code: CodeTooManyLabels, Line: 11, Record: 11}, {Code: CodeTooManyLabels, Line: 12, Record: 12}})
	if len(r.Stats.LabelDistribution) != 10 {
		t.Errorf("got %d labels, want the table capped at 10", len(r.Stats.LabelDistribution))
	}
}

func TestStats(t *testing.T) {
	recs := []string{
		`{"messages":[{"role":"system","content":"ab"},{"role":"user","content":"héllo"},{"role":"assistant","content":"日本"}]}`,                               // 2+5+2 = 9
		`{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"},{"role":"assistant","content":"dddd"}]}`, // 7
	}
	for range 8 {
		recs = append(recs, `{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]}`) // 2, 7 duplicates
	}
	r := validate(t, lines(recs...), Options{})
	want := Stats{Records: 10, Examples: 10, AvgLength: 3.2, MaxLength: 9, DuplicateRatio: 0.7, Bytes: int64(len(lines(recs...))),
		LengthHistogram: []LengthBucket{{UpTo: 32, Count: 10}}}
	if !reflect.DeepEqual(r.Stats, want) {
		t.Errorf("got %+v, want %+v", r.Stats, want)
	}
	if r.Schema != SchemaChat || !r.Valid {
		t.Errorf("got schema %q valid=%v", r.Schema, r.Valid)
	}
}

func TestPreview(t *testing.T) {
	recs := textLabels(10)
	recs[0] = "{ \"text\" : \"spaced\",\n \"label\":\"pos\" }"
	recs[1] = `{"text":"` + strings.Repeat("long ", 2000) + `","label":"pos","tags":[` + strings.Repeat(`"t",`, 500) + `"t"]}`
	recs[2] = `{not json}`
	in := "[" + strings.Join(recs, ",") + "]"
	r := validate(t, in, Options{})
	if len(r.Preview) != 5 {
		t.Fatalf("got %d preview records, want 5", len(r.Preview))
	}
	if got := string(r.Preview[0]); got != `{"text":"spaced","label":"pos"}` {
		t.Errorf("preview 0: got %s, want the record compacted", got)
	}
	if len(r.Preview[1]) > 2048 || !json.Valid(r.Preview[1]) || !bytes.Contains(r.Preview[1], []byte("long long")) || !strings.Contains(string(r.Preview[1]), "…") {
		t.Errorf("preview 1: got %d bytes %.200s, want valid JSON under 2048 bytes, shortened", len(r.Preview[1]), r.Preview[1])
	}
	if got := string(r.Preview[2]); got != recs[3] {
		t.Errorf("preview 2: got %s, want the next well-formed record %s", got, recs[3])
	}
}

// TestReportStorableAsJSONB checks that escapes Postgres jsonb rejects
// (\u0000, lone surrogates) never reach the report, whatever the records hold.
func TestReportStorableAsJSONB(t *testing.T) {
	recs := textLabels(11)
	recs[0] = `{"text":"nul \u0000 and lone \ud800 surrogate","label":"pos","\u0000key":1}`
	recs[1] = `{"text":"fine","label":"bad\u0000label"}`
	r := validate(t, lines(recs...), Options{})
	assertLocations(t, r, []Issue{{Code: CodeInvalidValue, Line: 2, Record: 2}})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if bad := jsonbUnsafe(b); bad != "" {
		t.Fatalf("report holds %s, which jsonb rejects: %s", bad, b)
	}
	if want := `{"\uFFFDkey":1`; !strings.Contains(string(r.Preview[0]), "nul \uFFFD and lone \uFFFD surrogate") || !strings.Contains(string(r.Preview[0]), "\uFFFDkey") {
		t.Errorf("got preview %s, want NUL and the lone surrogate replaced by U+FFFD (%s)", r.Preview[0], want)
	}
}

// jsonbUnsafe returns the first \u0000 or lone-surrogate escape in a JSON
// text, or "".
func jsonbUnsafe(b []byte) string {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			continue
		}
		i++
		if b[i] != 'u' || i+4 >= len(b) {
			continue
		}
		hex := strings.ToLower(string(b[i+1 : i+5]))
		if hex == "0000" || (hex >= "d800" && hex <= "dfff") {
			return `\u` + hex
		}
		i += 4
	}
	return ""
}

func TestChunkBoundaries(t *testing.T) {
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		t.Run(e.Name(), func(t *testing.T) {
			in := readFixture(t, e.Name())
			whole := validateChunks(t, in, Options{}, []int{len(in) + 1})
			assertSameReport(t, "1 byte at a time", validateChunks(t, in, Options{}, []int{1}), whole)
			for i := range 20 {
				sizes := make([]int, 7)
				for j := range sizes {
					sizes[j] = 1 + rng.IntN(64)
				}
				assertSameReport(t, fmt.Sprintf("random chunks %d %v", i, sizes), validateChunks(t, in, Options{}, sizes), whole)
			}
		})
	}
}

// assertSameReport compares reports through their JSON, the form in which
// they are stored and served.
func assertSameReport(t testing.TB, what string, got, want *Report) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("%s: marshal: %v", what, err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatalf("%s: marshal: %v", what, err)
	}
	if !bytes.Equal(g, w) {
		t.Fatalf("%s: got report\n%s\nwant\n%s", what, g, w)
	}
}

func TestFinishAndWriteAfter(t *testing.T) {
	v := NewValidator(Options{})
	if _, err := io.WriteString(v, lines(textLabels(10)...)); err != nil {
		t.Fatal(err)
	}
	r1 := v.Finish()
	if r2 := v.Finish(); r1 != r2 {
		t.Error("second Finish returned a different report")
	}
	if n, err := v.Write([]byte("{}")); n != 0 || err != ErrFinished {
		t.Errorf("Write after Finish = %d, %v; want 0, ErrFinished", n, err)
	}
}

func TestReportJSON(t *testing.T) {
	r := validate(t, string(readFixture(t, "text_label.jsonl")), Options{})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"valid", "format", "schema", "errors", "error_count", "warnings", "stats", "preview"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report JSON lacks %q: %s", k, b)
		}
	}
	if !bytes.Contains(b, []byte(`"errors":[]`)) || !bytes.Contains(b, []byte(`"warnings":[]`)) {
		t.Errorf("got %s, want empty lists as [] rather than null", b)
	}
	stats := m["stats"].(map[string]any)
	for _, k := range []string{"records", "examples", "avg_length", "max_length", "label_distribution", "duplicate_ratio", "bytes"} {
		if _, ok := stats[k]; !ok {
			t.Errorf("stats JSON lacks %q: %s", k, b)
		}
	}
}

func TestLengthHistogram(t *testing.T) {
	rec := func(n int) string {
		return fmt.Sprintf(`{"text":%q,"label":"a"}`, strings.Repeat("x", n))
	}
	recs := []string{rec(40), rec(64), rec(65), rec(300), rec(9000)}
	for range 5 {
		recs = append(recs, rec(100))
	}
	r := validate(t, lines(recs...), Options{})
	want := []LengthBucket{{UpTo: 64, Count: 2}, {UpTo: 128, Count: 6}, {UpTo: 256}, {UpTo: 512, Count: 1},
		{UpTo: 1024}, {UpTo: 2048}, {UpTo: 4096}, {UpTo: 8192}, {Count: 1}}
	if !reflect.DeepEqual(r.Stats.LengthHistogram, want) {
		t.Errorf("got %+v, want %+v", r.Stats.LengthHistogram, want)
	}
}

// TestAbandonedValidatorLeaksNothing documents that a validator runs no
// goroutine: an upload cut off half-way can drop it without calling Finish.
func TestAbandonedValidatorLeaksNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 100 {
		v := NewValidator(Options{})
		in := []byte(lines(textLabels(10)...))
		if _, err := v.Write(in[:len(in)/2]); err != nil {
			t.Fatal(err)
		}
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("got %d goroutines after abandoning validators, want at most %d", after, before)
	}
}

// TestMemoryDoesNotFollowRecordSize streams a 64 MiB line and a 64 MiB array
// element: the validator allocates for a buffer growing to MaxRecordBytes
// (1 MiB; a few MiB in all with append's growth copies), not for the record.
// Allocation counts are deterministic, unlike timings.
func TestMemoryDoesNotFollowRecordSize(t *testing.T) {
	chunk := bytes.Repeat([]byte("a"), 32<<10)
	for _, tc := range []struct{ name, head, tail string }{
		{"jsonl", `{"text":"`, `","label":"pos"}` + "\n"},
		{"array", `[{"text":"`, `","label":"pos"}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := NewValidator(Options{})
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			v.Write([]byte(tc.head))
			for range (64 << 20) / len(chunk) {
				v.Write(chunk)
			}
			v.Write([]byte(tc.tail))
			runtime.ReadMemStats(&after)
			r := v.Finish()
			if got := after.TotalAlloc - before.TotalAlloc; got > 8<<20 {
				t.Errorf("allocated %d bytes for a 64 MiB record, want under 8 MiB", got)
			}
			if len(r.Errors) < 1 || r.Errors[len(r.Errors)-1].Code != CodeRecordTooLarge {
				t.Errorf("got errors %+v, want record_too_large", r.Errors)
			}
		})
	}
}
