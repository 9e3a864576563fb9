package queryfilter

import (
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/finetune-studio/finetune-studio/caddy-modules/internal/adapttest"
)

// TestAdapt checks testdata/*.caddyfiletest against the Caddyfile adapter.
func TestAdapt(t *testing.T) { adapttest.Run(t) }

func provisioned(t *testing.T, keep ...string) *Filter {
	t.Helper()
	f := &Filter{Keep: keep}
	if err := f.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRedact(t *testing.T) {
	f := provisioned(t, "page", "Limit", "cursor")
	for _, tc := range []struct{ name, in, want string }{
		{"no query", "/api/v1/jobs", "/api/v1/jobs"},
		{"kept names keep their values", "/api/v1/jobs?page=2&limit=50", "/api/v1/jobs?page=2&limit=50"},
		{"kept names match case-insensitively", "/x?PAGE=2&limit=5&LiMiT=6", "/x?PAGE=2&limit=5&LiMiT=6"},
		{"kept names match after decoding", "/x?p%61ge=2", "/x?p%61ge=2"},
		{"mixed-case credential names", "/x?Token=t1&access_token=t2&x-amz-signature=t3&X-Amz-Credential=t4&API_KEY=t5",
			"/x?Token=REDACTED&access_token=REDACTED&x-amz-signature=REDACTED&X-Amz-Credential=REDACTED&API_KEY=REDACTED"},
		{"names nobody listed", "/x?sig=s&code=c&secret=s&password=p&auth=a&refresh_token=r&id_token=i&apikey=k&key=k",
			"/x?sig=REDACTED&code=REDACTED&secret=REDACTED&password=REDACTED&auth=REDACTED&refresh_token=REDACTED&id_token=REDACTED&apikey=REDACTED&key=REDACTED"},
		{"encoded credential name", "/x?%54oken=t1", "/x?%54oken=REDACTED"},
		{"order and encoding are kept", "/x?b=1&page=%2F2&a=2", "/x?b=REDACTED&page=%2F2&a=REDACTED"},
		{"a semicolon cannot hide a pair behind a kept name", "/x?page=1;token=t", "/x?page=1;token=REDACTED"},
		{"a bare word may be the secret", "/x?eyJhbGciOi&page=1", "/x?REDACTED&page=1"},
		{"a bare kept name", "/x?page", "/x?page"},
		{"empty value", "/x?token=", "/x?token=REDACTED"},
		{"empty pairs", "/x?&page=1&&", "/x?&page=1&&"},
		{"empty query", "/x?", "/x?"},
		{"fragment", "/x?page=1#access_token=t", "/x?page=1#REDACTED"},
		{"value that does not decode", "/x?token=%zz&page=%zz", "/x?token=REDACTED&page=%zz"},
		{"absolute URL (Referer)", "https://app.example/cb?code=c&state=s", "https://app.example/cb?code=REDACTED&state=REDACTED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := f.redact(tc.in); got != tc.want {
				t.Errorf("redact(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestFilterStringAndArrayFields(t *testing.T) {
	f := provisioned(t, "page")
	got := f.Filter(zap.String("uri", "/x?page=1&token=t"))
	if got.String != "/x?page=1&token=REDACTED" {
		t.Errorf("string field = %q", got.String)
	}
	arr := f.Filter(zap.Array("Referer", caddyhttp.LoggableStringArray{"https://a.example/?token=t", "/y?page=3"}))
	want := caddyhttp.LoggableStringArray{"https://a.example/?token=REDACTED", "/y?page=3"}
	if !reflect.DeepEqual(arr.Interface, want) {
		t.Errorf("array field = %v, want %v", arr.Interface, want)
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
		wantErr  string
	}{
		{"no block: redact every value", "finetune_query", nil, ""},
		{"keep", "finetune_query {\nkeep page limit\n}", []string{"page", "limit"}, ""},
		{"keep twice", "finetune_query {\nkeep page\nkeep cursor\n}", []string{"page", "cursor"}, ""},
		{"empty keep (unset variable)", "finetune_query {\nkeep\n}", nil, ""},
		{"inline argument", "finetune_query page", nil, "wrong argument count"},
		{"unknown option", "finetune_query {\ndelete token\n}", nil, "unrecognized finetune_query option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f Filter
			err := f.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(f.Keep, tc.want) {
				t.Fatalf("got keep %q, err %v; want %q", f.Keep, err, tc.want)
			}
		})
	}
}
