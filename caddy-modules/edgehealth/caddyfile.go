package edgehealth

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("edge_health", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("edge_health", httpcaddyfile.Before, "respond")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var eh Handler
	err := eh.UnmarshalCaddyfile(h.Dispenser)
	return &eh, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	edge_health {
//	    report liveness|status|full
//	}
//
// The upstreams are those of the config's reverse_proxy handlers that
// have active health checks (the app's); there is nothing to list.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("edge_health takes no arguments (it reads the reverse proxies' upstreams), got %q", d.Val())
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "report":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Report = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			if err := h.Validate(); err != nil {
				return d.Err(err.Error())
			}
		default:
			return d.Errf("unrecognized edge_health option '%s'", d.Val())
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
