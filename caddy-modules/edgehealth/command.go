package edgehealth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "healthcheck",
		Usage: "[--ready] [--url <url>] [--timeout <duration>]",
		Short: "Exits 0 if the edge is live (or, with --ready, ready)",
		Long: `
Asks one of the edge's own health endpoints and exits 0 only if it answers
200 with an application/health+json status of "pass" or "warn"; otherwise
prints why and exits 1. Meant for container HEALTHCHECKs in images without
a shell or curl.

Without --ready it asks the liveness endpoint, which passes while the edge
serves, whatever the app and the certificates: an orchestrator restarting
on it restarts a broken edge, never a healthy proxy in front of a broken
app. With --ready it asks the full health endpoint, which fails when no
app instance is healthy or a certificate has (nearly) expired.

The URL is --url, else $EDGE_HEALTHCHECK_URL, else the internal listener:
http://127.0.0.1:9180/livez (or /health with --ready).`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().Bool("ready", false, "ask readiness (/health) instead of liveness (/livez)")
			cmd.Flags().String("url", "", "health endpoint URL")
			cmd.Flags().Duration("timeout", 5*time.Second, "give up after this long")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdHealthcheck)
		},
	})
}

// The internal listener's health endpoints.
const (
	defaultLivenessURL  = "http://127.0.0.1:9180/livez"
	defaultReadinessURL = "http://127.0.0.1:9180/health"
)

func cmdHealthcheck(fl caddycmd.Flags) (int, error) {
	url := healthcheckURL(fl.String("url"), os.Getenv("EDGE_HEALTHCHECK_URL"), fl.Bool("ready"))
	ctx, cancel := context.WithTimeout(context.Background(), fl.Duration("timeout"))
	defer cancel()
	if err := healthcheck(ctx, url); err != nil {
		return 1, err
	}
	return 0, nil
}

// healthcheckURL picks the URL to ask: the flag, the environment, then
// the default endpoint for liveness or readiness.
func healthcheckURL(flag, env string, ready bool) string {
	switch {
	case flag != "":
		return flag
	case env != "":
		return env
	case ready:
		return defaultReadinessURL
	default:
		return defaultLivenessURL
	}
}

// healthcheck returns nil when url answers 200 with status pass or warn.
func healthcheck(ctx context.Context, url string) error {
	// #nosec G704 -- url is the operator's own health endpoint (the command's flag or its default on loopback), never request input.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Do(req) // #nosec G704 -- see above: the operator's own URL
	if err != nil {
		return fmt.Errorf("asking %s: %w", url, err)
	}
	defer resp.Body.Close()
	var rep Report
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&rep); err != nil {
		return fmt.Errorf("reading health answer (HTTP %d): %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || (rep.Status != statusPass && rep.Status != statusWarn) {
		return fmt.Errorf("unhealthy: HTTP %d, status %q", resp.StatusCode, rep.Status)
	}
	return nil
}
