// Command stockcaddy is Caddy v2.11.9 with its standard modules and
// caddy-ratelimit, and none of the project's modules: the "stock Caddy
// configured by hand" baseline of deploy/scripts/bench-edge.sh. (The stock
// binary from caddyserver.com has no rate limiter, so it could not do the
// same job.)
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/mholt/caddy-ratelimit"
)

func main() {
	caddycmd.Main()
}
