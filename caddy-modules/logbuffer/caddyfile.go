package logbuffer

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
)

// UnmarshalCaddyfile sets up the writer from Caddyfile tokens:
//
//	log {
//	    output buffered {
//	        size           <bytes>     # default 64KiB
//	        flush_interval <duration>  # default 1s
//	        output         <writer> [<args...>] [{ ... }]   # required
//	    }
//	}
//
// The inner output takes the same forms as the log directive's own output
// (stdout, stderr, discard, file <path> { ... }, net <address> { ... }).
func (w *Writer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // writer name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "size":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(d.Val())
			if err != nil || n == 0 || n > 64<<20 {
				return d.Errf("size must be between 1 byte and 64MiB, got %q", d.Val())
			}
			w.Size = int(n)
		case "flush_interval":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("flush_interval must be a positive duration, got %q", d.Val())
			}
			w.FlushInterval = caddy.Duration(dur)
		case "output":
			if w.WriterRaw != nil {
				return d.Err("output given twice")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			wo, err := unmarshalWriter(d, name)
			if err != nil {
				return err
			}
			w.WriterRaw = caddyconfig.JSONModuleObject(wo, "output", name, nil)
		default:
			return d.Errf("unrecognized buffered log writer option '%s'", d.Val())
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	if w.WriterRaw == nil {
		return d.Err("buffered log writer needs an output, for example: output stdout")
	}
	return nil
}

// unmarshalWriter parses the inner writer the way the log directive does:
// the standard streams live in the caddy package and have no Caddyfile
// unmarshaler of their own.
func unmarshalWriter(d *caddyfile.Dispenser, name string) (caddy.WriterOpener, error) {
	switch name {
	case "stdout":
		return caddy.StdoutWriter{}, nil
	case "stderr":
		return caddy.StderrWriter{}, nil
	case "discard":
		return caddy.DiscardWriter{}, nil
	case "buffered":
		return nil, d.Err("a buffered writer cannot wrap another buffered writer")
	}
	modID := "caddy.logging.writers." + name
	unm, err := caddyfile.UnmarshalModule(d, modID)
	if err != nil {
		return nil, err
	}
	wo, ok := unm.(caddy.WriterOpener)
	if !ok {
		return nil, d.Errf("module %s (%T) is not a log writer", modID, unm)
	}
	return wo, nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Writer)(nil)
