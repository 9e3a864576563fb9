package cors

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		input   string
		want    Handler
		wantErr string
	}{
		{
			name:  "inline origins",
			input: `cors https://a.example https://*.b.example`,
			want:  Handler{AllowedOrigins: []string{"https://a.example", "https://*.b.example"}},
		},
		{
			name: "full block",
			input: `cors https://a.example {
				origins https://c.example
				methods GET POST
				headers Content-Type
				expose X-Request-ID
				credentials
				max_age 1h
			}`,
			want: Handler{
				AllowedOrigins:   []string{"https://a.example", "https://c.example"},
				AllowedMethods:   []string{"GET", "POST"},
				AllowedHeaders:   []string{"Content-Type"},
				ExposedHeaders:   []string{"X-Request-ID"},
				AllowCredentials: true,
				MaxAge:           caddy.Duration(time.Hour),
			},
		},
		{name: "no origin at all", input: `cors`, wantErr: "at least one origin"},
		{name: "empty origins option", input: "cors {\norigins\n}", wantErr: "wrong argument count"},
		{name: "credentials takes no argument", input: "cors https://a.example {\ncredentials yes\n}", wantErr: "wrong argument count"},
		{name: "bad max_age", input: "cors https://a.example {\nmax_age soon\n}", wantErr: "parsing max_age"},
		{name: "unknown option", input: "cors https://a.example {\nallow_all\n}", wantErr: "unrecognized cors option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Handler
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

var update = flag.Bool("update", false, "rewrite the expected JSON of testdata/*.caddyfiletest")

// TestAdapt compares testdata/*.caddyfiletest (Caddyfile, a line of ten
// dashes, expected JSON) with what the Caddyfile adapter produces.
func TestAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			in, want, ok := strings.Cut(string(b), "----------\n")
			if !ok {
				t.Fatalf("%s lacks the ---------- separator", f)
			}
			if *update {
				want = adaptForGolden(t, in)
				if err := os.WriteFile(f, []byte(in+"----------\n"+want), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if !caddytest.CompareAdapt(t, f, in, "caddyfile", strings.TrimRight(want, "\n")) {
				t.Fail()
			}
		})
	}
}

// adaptForGolden adapts in the way caddytest.CompareAdapt prints it.
func adaptForGolden(t *testing.T, in string) string {
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
