// Package queryfilter is a Caddy log field filter that keeps only the
// query parameter values an operator listed and redacts every other one.
//
// Caddy's own `query` filter deletes or replaces parameters by exact,
// case-sensitive name: a list of credential names is never complete
// (`Token`, `access_token`, `x-amz-signature`, `sig`, `code`, `apikey`
// ... all got through one), so a secret in a query string reaches the log
// unless someone thought of its exact spelling. This filter turns the
// list around: the values of the named parameters are logged, every other
// value becomes "REDACTED", and a new credential parameter is safe by
// default.
package queryfilter

import (
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(Filter{})
}

// Redacted replaces every value the filter does not keep.
const Redacted = "REDACTED"

// Filter redacts the query of a URI field (`request>uri`, or a header that
// holds a URL such as `Referer`). Parameter names are kept, so the log
// still shows which parameters a request had; values are kept only for
// the names in Keep. A fragment (a raw "#" a client sent) is redacted too.
type Filter struct {
	// Query parameter names whose values are logged as sent, matched
	// case-insensitively after URL-decoding (so "Page", "PAGE" and
	// "p%61ge" are all "page"). Every other value is replaced with
	// "REDACTED". Default: none, every value is redacted.
	Keep []string `json:"keep,omitempty"`

	keep map[string]struct{}
}

// CaddyModule returns the Caddy module information.
func (Filter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		// Namespaced so that it cannot collide with a third-party filter.
		ID:  "caddy.logging.encoders.filter.finetune_query",
		New: func() caddy.Module { return new(Filter) },
	}
}

// Provision builds the lookup set.
func (f *Filter) Provision(caddy.Context) error {
	f.keep = make(map[string]struct{}, len(f.Keep))
	for _, k := range f.Keep {
		f.keep[strings.ToLower(k)] = struct{}{}
	}
	return nil
}

// Filter implements logging.LogFieldFilter.
func (f *Filter) Filter(in zapcore.Field) zapcore.Field {
	if array, ok := in.Interface.(caddyhttp.LoggableStringArray); ok {
		out := make(caddyhttp.LoggableStringArray, len(array))
		for i, s := range array {
			out[i] = f.redact(s)
		}
		in.Interface = out
		return in
	}
	in.String = f.redact(in.String)
	return in
}

// redact returns uri with the values of the query parameters not in keep
// replaced. It works on the raw text, not through url.Parse: a URI that
// does not parse must not be logged whole, and parameters keep their order
// and encoding. Pairs are split on "&" and ";" alike, so a value cannot
// smuggle a second pair past a kept name.
func (f *Filter) redact(uri string) string {
	path, query, ok := strings.Cut(uri, "?")
	if !ok {
		return uri
	}
	var b strings.Builder
	b.Grow(len(uri) + 16)
	b.WriteString(path)
	b.WriteByte('?')
	query, fragment, hasFragment := strings.Cut(query, "#")
	for i := 0; ; {
		end := strings.IndexAny(query[i:], "&;")
		if end < 0 {
			end = len(query)
		} else {
			end += i
		}
		f.writePair(&b, query[i:end])
		if end == len(query) {
			break
		}
		b.WriteByte(query[end])
		i = end + 1
	}
	if hasFragment && fragment != "" {
		b.WriteString("#" + Redacted)
	}
	return b.String()
}

func (f *Filter) writePair(b *strings.Builder, pair string) {
	if pair == "" {
		return
	}
	key, _, hasValue := strings.Cut(pair, "=")
	name, err := url.QueryUnescape(key)
	if err != nil {
		name = key
	}
	if _, ok := f.keep[strings.ToLower(name)]; ok {
		b.WriteString(pair)
		return
	}
	if !hasValue {
		// A bare word may be the secret itself ("?<token>").
		b.WriteString(Redacted)
		return
	}
	b.WriteString(key)
	b.WriteString("=" + Redacted)
}

// Interface guards
var (
	_ caddy.Provisioner      = (*Filter)(nil)
	_ logging.LogFieldFilter = (*Filter)(nil)
)
