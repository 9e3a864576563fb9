// Package adapttest runs the golden Caddyfile-to-JSON adapt tests that every
// module in caddy-modules keeps in its testdata directory.
//
// A golden file, testdata/*.caddyfiletest, holds a Caddyfile, a line of ten
// dashes, and the JSON the Caddyfile adapter must produce for it. Run the
// tests with UPDATE_GOLDEN=1 to rewrite the expected JSON after an intended
// change, then review the diff.
package adapttest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

const separator = "----------\n"

// Run compares every testdata/*.caddyfiletest of the calling package with
// what the Caddyfile adapter produces, one subtest per file.
func Run(t *testing.T) {
	t.Helper()
	files, err := filepath.Glob("testdata/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	update := os.Getenv("UPDATE_GOLDEN") == "1"
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			in, want, ok := strings.Cut(string(b), separator)
			if !ok {
				t.Fatalf("%s lacks the ---------- separator", f)
			}
			if update {
				want = adapt(t, in)
				// #nosec G703 G306 -- a test helper rewriting its own golden file (-update).
				if err := os.WriteFile(f, []byte(in+separator+want), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if !caddytest.CompareAdapt(t, f, in, "caddyfile", strings.TrimRight(want, "\n")) {
				t.Fail()
			}
		})
	}
}

// adapt adapts in the way caddytest.CompareAdapt prints it.
func adapt(t *testing.T, in string) string {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(in), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		t.Fatal(err)
	}
	return buf.String() + "\n"
}
