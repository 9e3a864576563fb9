package cors

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	// Namespaced like the module ID: a plugin registering "cors" cannot
	// collide with it.
	httpcaddyfile.RegisterHandlerDirective("finetune_cors", parseCaddyfile)
	// After `header` so security headers are on preflight answers too, and
	// before `rate_limit`/`request_body` so preflights are cheap.
	httpcaddyfile.RegisterDirectiveOrder("finetune_cors", httpcaddyfile.After, "header")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var c Handler
	err := c.UnmarshalCaddyfile(h.Dispenser)
	return &c, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	finetune_cors [<origins...>] {
//	    origins     <origins...>
//	    methods     <methods...>
//	    headers     <headers...>
//	    expose      <headers...>
//	    credentials
//	    max_age     <duration>   # 0: browsers must not cache the preflight
//	}
//
// Origins may be given inline, in the block, or both; an empty inline list
// (e.g. an unset environment variable) is allowed as long as the block names
// some.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	h.AllowedOrigins = append(h.AllowedOrigins, d.RemainingArgs()...)
	for d.NextBlock(0) {
		switch d.Val() {
		case "origins":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.AllowedOrigins = append(h.AllowedOrigins, args...)
		case "methods":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.AllowedMethods = append(h.AllowedMethods, args...)
		case "headers":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.AllowedHeaders = append(h.AllowedHeaders, args...)
		case "expose":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.ExposedHeaders = append(h.ExposedHeaders, args...)
		case "credentials":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.AllowCredentials = true
		case "max_age":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("parsing max_age: %v", err)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			maxAge := caddy.Duration(dur)
			h.MaxAge = &maxAge
		default:
			return d.Errf("unrecognized finetune_cors option '%s'", d.Val())
		}
	}
	if len(h.AllowedOrigins) == 0 {
		return d.Err("finetune_cors needs at least one origin")
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
