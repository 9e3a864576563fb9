package certmetrics

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("cert_metrics", parseGlobalOption)
}

// parseGlobalOption turns the global option into the cert_metrics app:
//
//	{
//	    cert_metrics [{
//	        max_names <n>
//	    }]
//	}
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	var a App
	if err := a.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "cert_metrics", Value: caddyconfig.JSON(a, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from Caddyfile tokens.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "max_names":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 1 {
				return d.Errf("max_names must be a positive integer, got %q", d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			a.MaxNames = n
		default:
			return d.Errf("unrecognized cert_metrics option '%s'", d.Val())
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*App)(nil)
