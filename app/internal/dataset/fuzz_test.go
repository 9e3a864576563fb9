package dataset

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// fuzzOptions shrinks the limits so that short fuzz inputs reach the
// oversized-record, preview-shortening and error-cap paths.
var fuzzOptions = Options{MinExamples: 2, MaxRecordBytes: 256, MaxIssues: 3, PreviewRecords: 2, PreviewRecordBytes: 96, LongExampleChars: 40, MaxLabels: 4, MaxLabelChars: 8}

// FuzzValidator checks that no input panics, that the report is always
// serialisable and consistent, and that how the input is cut into writes
// never changes the report.
func FuzzValidator(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(3))
	}
	for _, s := range []string{
		"", "\xEF\xBB\xBF", "\xEF\xBB", "[", "[,]", "[]]", "{", `[{"a":"]"}`, "\n\r\n",
		`{"text":"a","label":1}` + "\n" + `{"text":"b","label":"1"}`,
		`[{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]},{"messages":[]}] x`,
		`{"instruction":"a","input":null,"output":"b"}` + "\r\n" + `{"instruction":"a","output":"\ud800"}`,
	} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		whole := validateChunks(t, in, fuzzOptions, []int{len(in) + 1})
		checkInvariants(t, whole)
		sizes := []int{int(chunk%17) + 1, int(chunk/17) + 1, 1}
		assertSameReport(t, "chunked", validateChunks(t, in, fuzzOptions, sizes), whole)
		assertSameReport(t, "byte by byte", validateChunks(t, in, fuzzOptions, []int{1}), whole)
	})
}

func checkInvariants(t *testing.T, r *Report) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("report does not marshal: %v", err)
	}
	if !json.Valid(b) {
		t.Fatalf("report JSON invalid: %s", b)
	}
	if bad := jsonbUnsafe(b); bad != "" {
		t.Fatalf("report holds %s, which jsonb rejects: %s", bad, b)
	}
	if r.Valid != (r.ErrorCount == 0) || r.ErrorCount < len(r.Errors) {
		t.Fatalf("valid=%v with %d errors, %d listed", r.Valid, r.ErrorCount, len(r.Errors))
	}
	if r.ErrorCount > 0 && len(r.Errors) == 0 {
		t.Fatalf("%d errors but none listed", r.ErrorCount)
	}
	if r.Stats.Examples > r.Stats.Records || r.Stats.DuplicateRatio < 0 || r.Stats.DuplicateRatio >= 1 {
		t.Fatalf("inconsistent stats %+v", r.Stats)
	}
	if len(r.Preview) > fuzzOptions.PreviewRecords {
		t.Fatalf("%d preview records", len(r.Preview))
	}
	for _, p := range r.Preview {
		if len(p) > fuzzOptions.PreviewRecordBytes && string(p) != `{"preview_truncated":true}` {
			t.Fatalf("preview record of %d bytes: %s", len(p), p)
		}
	}
}
