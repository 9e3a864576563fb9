package cors

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/finetune-studio/finetune-studio/caddy-modules/internal/adapttest"
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
			input: `finetune_cors https://a.example https://*.b.example`,
			want:  Handler{AllowedOrigins: []string{"https://a.example", "https://*.b.example"}},
		},
		{
			name: "full block",
			input: `finetune_cors https://a.example {
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
				MaxAge:           ptr(caddy.Duration(time.Hour)),
			},
		},
		{
			name:  "max_age 0 is kept apart from unset",
			input: "finetune_cors https://a.example {\nmax_age 0\n}",
			want:  Handler{AllowedOrigins: []string{"https://a.example"}, MaxAge: ptr(caddy.Duration(0))},
		},
		{name: "no origin at all", input: `finetune_cors`, wantErr: "at least one origin"},
		{name: "empty origins option", input: "finetune_cors {\norigins\n}", wantErr: "wrong argument count"},
		{name: "credentials takes no argument", input: "finetune_cors https://a.example {\ncredentials yes\n}", wantErr: "wrong argument count"},
		{name: "bad max_age", input: "finetune_cors https://a.example {\nmax_age soon\n}", wantErr: "parsing max_age"},
		{name: "unknown option", input: "finetune_cors https://a.example {\nallow_all\n}", wantErr: "unrecognized finetune_cors option"},
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

// TestAdapt checks testdata/*.caddyfiletest against the Caddyfile adapter.
func TestAdapt(t *testing.T) { adapttest.Run(t) }
