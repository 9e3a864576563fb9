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
		Usage: "[--url <url>] [--timeout <duration>]",
		Short: "Exits 0 if the edge's health endpoint reports pass or warn",
		Long: `
Asks the edge's own health endpoint and exits 0 only if it answers 200 with
an application/health+json status of "pass" or "warn"; otherwise prints why
and exits 1. Meant for container HEALTHCHECKs in images without a shell or
curl. The URL defaults to $EDGE_HEALTHCHECK_URL, then to the internal
listener at http://127.0.0.1:9180/health.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("url", "", "health endpoint URL")
			cmd.Flags().Duration("timeout", 5*time.Second, "give up after this long")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdHealthcheck)
		},
	})
}

const defaultHealthcheckURL = "http://127.0.0.1:9180/health"

func cmdHealthcheck(fl caddycmd.Flags) (int, error) {
	url := fl.String("url")
	if url == "" {
		url = os.Getenv("EDGE_HEALTHCHECK_URL")
	}
	if url == "" {
		url = defaultHealthcheckURL
	}
	timeout := fl.Duration("timeout")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := healthcheck(ctx, url); err != nil {
		return 1, err
	}
	return 0, nil
}

// healthcheck returns nil when url answers 200 with status pass or warn.
func healthcheck(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Do(req)
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
