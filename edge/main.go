// Package main is the Finetune Studio edge: a Caddy build with the standard
// modules, caddy-ratelimit and the project's own modules from caddy-modules/.
//
// It is Caddy, so every Caddy command works (run, validate, reload,
// list-modules, ...); the project adds the `healthcheck` command so a
// distroless image can check itself without a shell or curl.
package main

import (
	_ "time/tzdata"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules, as in cmd/caddy/main.go.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// Third-party modules, pinned in go.mod.
	_ "github.com/mholt/caddy-ratelimit"

	// The project's own modules.
	_ "github.com/finetune-studio/finetune-studio/caddy-modules/certmetrics"
	_ "github.com/finetune-studio/finetune-studio/caddy-modules/cors"
	_ "github.com/finetune-studio/finetune-studio/caddy-modules/edgehealth"
	_ "github.com/finetune-studio/finetune-studio/caddy-modules/logbuffer"
	_ "github.com/finetune-studio/finetune-studio/caddy-modules/queryfilter"
)

func main() {
	caddycmd.Main()
}
