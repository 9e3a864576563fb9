package queryfilter

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the filter from Caddyfile tokens, inside a
// `format filter` block:
//
//	fields {
//	    request>uri finetune_query {
//	        keep <names...>
//	    }
//	}
//
// `keep` may be given more than once, and with no names (an unset
// environment variable): then every value is redacted.
func (f *Filter) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // filter name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "keep":
			f.Keep = append(f.Keep, d.RemainingArgs()...)
		default:
			return d.Errf("unrecognized finetune_query option '%s'", d.Val())
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Filter)(nil)
