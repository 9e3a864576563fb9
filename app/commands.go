package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/auth"
	"github.com/finetune-studio/finetune-studio/app/internal/config"
	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/store"
)

// dotenvPath is read for defaults when present in the working directory.
const dotenvPath = ".env"

// loadConfig parses the environment, printing every problem to stderr.
func loadConfig(environ []string, stderr io.Writer) (config.Config, error) {
	cfg, err := config.Load(environ, dotenvPath)
	var probs config.Problems
	if errors.As(err, &probs) {
		return cfg, problemsExit(stderr, probs)
	}
	return cfg, err
}

// problemsExit prints every configuration problem and returns exit code 2.
func problemsExit(stderr io.Writer, probs config.Problems) error {
	fmt.Fprintf(stderr, "configuration has %d problem(s):\n", len(probs))
	for _, p := range probs {
		fmt.Fprintf(stderr, "  %s: %s\n", p.Var, p.Reason)
	}
	return &exitError{code: 2}
}

// configCheck validates the environment, including the advisories that do
// not stop the server (missing Kaggle credentials in production).
func configCheck(environ []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(environ, stderr)
	if err != nil {
		return err
	}
	if adv := cfg.Advisories(); len(adv) > 0 {
		return problemsExit(stderr, adv)
	}
	fmt.Fprintf(stdout, "configuration OK (%s)\n", cfg.Env)
	return nil
}

func openStore(ctx context.Context, cfg config.Config, log *slog.Logger, migrate bool) (*store.Store, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.HTTP.StartupTimeout)
	defer cancel()
	return store.Open(ctx, store.Options{
		URL: cfg.DB.URL, MaxConns: cfg.DB.MaxConns,
		ConnectTimeout: cfg.DB.ConnectTimeout, StatementTimeout: cfg.DB.StatementTimeout,
		Migrate: migrate, TaskMaxAttempts: cfg.Worker.MaxAttempts,
	}, log)
}

func migrate(ctx context.Context, cfg config.Config, action string, stdout io.Writer, log *slog.Logger) error {
	st, err := openStore(ctx, cfg, log, action == "up")
	if err != nil {
		return err
	}
	defer st.Close()
	statuses, err := st.MigrationStatuses(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tFILE")
	for _, m := range statuses {
		state, at := "pending", "-"
		if m.Applied {
			state, at = "applied", m.AppliedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%05d\t%s\t%s\t%s\n", m.Version, state, at, m.Name)
	}
	return tw.Flush()
}

// tokenArgs parses "create --name NAME" or "revoke --id ID".
func tokenArgs(args []string) (action, value string, err error) {
	if len(args) == 0 || (args[0] != "create" && args[0] != "revoke") {
		return "", "", usageError("token needs: create --name NAME, or revoke --id TOKEN_ID")
	}
	action = args[0]
	flag := "--name"
	if action == "revoke" {
		flag = "--id"
	}
	switch rest := args[1:]; {
	case len(rest) == 2 && rest[0] == flag:
		value = rest[1]
	case len(rest) == 1 && strings.HasPrefix(rest[0], flag+"="):
		value = strings.TrimPrefix(rest[0], flag+"=")
	default:
		return "", "", usageError("token %s needs %s", action, flag)
	}
	value = strings.TrimSpace(value)
	if value == "" || len(value) > 200 {
		return "", "", usageError("%s must be 1 to 200 characters", flag)
	}
	return action, value, nil
}

// revokeToken makes a token stop working at once.
func revokeToken(ctx context.Context, cfg config.Config, id string, stdout io.Writer, log *slog.Logger) error {
	st, err := openStore(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.RevokeToken(ctx, id); err != nil {
		if errors.Is(err, problem.ErrNotFound) {
			return &exitError{code: 1, msg: "no live token with id " + id}
		}
		return err
	}
	log.Info("api token revoked", "token_id", id)
	_, err = fmt.Fprintf(stdout, "revoked %s\n", id)
	return err
}

// createToken mints a token and prints it, alone, on stdout: it is shown
// this once and only its hash is stored.
func createToken(ctx context.Context, cfg config.Config, name string, stdout io.Writer, log *slog.Logger) error {
	st, err := openStore(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer st.Close()
	m, err := auth.Mint()
	if err != nil {
		return err
	}
	if err := st.CreateToken(ctx, m.ID, name, m.SecretHash); err != nil {
		return err
	}
	log.Info("api token created", "token_id", m.ID, "name", name)
	_, err = fmt.Fprintln(stdout, m.Plaintext)
	return err
}

// healthcheck asks the local server's /readyz; for container HEALTHCHECKs
// in images without curl. It needs only APP_ADDR.
func healthcheck(ctx context.Context, environ []string) error {
	cfg, _ := config.Load(environ, dotenvPath) // other variables' problems don't matter here
	host, port, err := net.SplitHostPort(cfg.HTTP.Addr)
	if err != nil {
		return &exitError{code: 1, msg: "healthcheck: APP_ADDR is malformed"}
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return &exitError{code: 1, msg: "healthcheck: " + err.Error()}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return &exitError{code: 1, msg: "healthcheck: " + err.Error()}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return &exitError{code: 1, msg: "healthcheck: /readyz answered " + resp.Status}
	}
	return nil
}
