package edgehealth

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
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
//	edge_health [<upstreams...>] {
//	    upstreams      <host:port...>
//	    ready_path     <path>
//	    timeout        <duration>
//	    cache_ttl      <duration>
//	    cert_warn_days <days>
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	h.Upstreams = append(h.Upstreams, d.RemainingArgs()...)
	for d.NextBlock(0) {
		switch d.Val() {
		case "upstreams":
			h.Upstreams = append(h.Upstreams, d.RemainingArgs()...)
		case "ready_path":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.ReadyPath = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "timeout", "cache_ttl":
			opt := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("parsing %s: %v", opt, err)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			if opt == "timeout" {
				h.Timeout = caddy.Duration(dur)
			} else {
				h.CacheTTL = caddy.Duration(dur)
			}
		case "cert_warn_days":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 1 {
				return d.Errf("cert_warn_days must be a positive integer, got %q", d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			h.CertWarnDays = n
		default:
			return d.Errf("unrecognized edge_health option '%s'", d.Val())
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
