package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/auth"
	"github.com/finetune-studio/finetune-studio/app/internal/config"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
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

// tokenCmd is a parsed "token" command line.
type tokenCmd struct {
	action    string // create, list or revoke
	name, id  string
	expiresIn time.Duration // create only; 0: never expires
}

// #nosec G101 -- a usage message that names the token command, no credential.
const tokenUsage = "token needs: create --name NAME [--expires-in DURATION], list, or revoke --id TOKEN_ID"

// parseTokenArgs parses "create --name NAME [--expires-in 720h|30d]",
// "list" or "revoke --id ID".
func parseTokenArgs(args []string) (tokenCmd, error) {
	if len(args) == 0 {
		return tokenCmd{}, usageError(tokenUsage)
	}
	c := tokenCmd{action: args[0]}
	fs := flag.NewFlagSet("token "+c.action, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var expires string
	switch c.action {
	case "create":
		fs.StringVar(&c.name, "name", "", "")
		fs.StringVar(&expires, "expires-in", "", "")
	case "revoke":
		fs.StringVar(&c.id, "id", "", "")
	case "list":
	default:
		return tokenCmd{}, usageError(tokenUsage)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return tokenCmd{}, usageError("token %s: %v", c.action, err)
	}
	if fs.NArg() > 0 {
		return tokenCmd{}, usageError("token %s: unexpected argument %q", c.action, fs.Arg(0))
	}
	c.name, c.id = strings.TrimSpace(c.name), strings.TrimSpace(c.id)
	switch c.action {
	case "create":
		if c.name == "" || len(c.name) > 200 {
			return tokenCmd{}, usageError("token create needs --name, 1 to 200 characters")
		}
		if expires != "" {
			d, err := parseDays(expires)
			if err != nil || d <= 0 {
				return tokenCmd{}, usageError("--expires-in must be a positive duration such as 720h or 30d, got %q", expires)
			}
			c.expiresIn = d
		}
	case "revoke":
		if c.id == "" || len(c.id) > 200 {
			return tokenCmd{}, usageError("token revoke needs --id, the hex part after fts_")
		}
	}
	return c, nil
}

// parseDays is time.ParseDuration that also takes whole days ("30d"),
// the unit token lifetimes are thought of in.
func parseDays(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n > 100*365 {
			return 0, errors.New("bad day count")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// tokenCommand runs a parsed token command.
func tokenCommand(ctx context.Context, cfg config.Config, c tokenCmd, stdout io.Writer, log *slog.Logger) error {
	st, err := openStore(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer st.Close()
	switch c.action {
	case "create":
		return createToken(ctx, st, c, stdout, log)
	case "revoke":
		return revokeToken(ctx, st, c.id, stdout, log)
	}
	return listTokens(ctx, st, stdout)
}

// revokeToken makes a token stop working at once.
func revokeToken(ctx context.Context, st *store.Store, id string, stdout io.Writer, log *slog.Logger) error {
	if err := st.RevokeToken(ctx, id); err != nil {
		if errors.Is(err, problem.ErrNotFound) {
			return &exitError{code: 1, msg: "no live token with id " + id}
		}
		return err
	}
	log.Info("api token revoked", "token_id", id)
	_, err := fmt.Fprintf(stdout, "revoked %s\n", id)
	return err
}

// createToken mints a token and prints it, alone, on stdout: it is shown
// this once and only its hash is stored.
func createToken(ctx context.Context, st *store.Store, c tokenCmd, stdout io.Writer, log *slog.Logger) error {
	m, err := auth.Mint()
	if err != nil {
		return err
	}
	var expires time.Time
	if c.expiresIn > 0 {
		expires = time.Now().Add(c.expiresIn).UTC().Truncate(time.Second)
	}
	if err := st.CreateToken(ctx, m.ID, c.name, m.SecretHash, expires); err != nil {
		return err
	}
	attrs := []any{"token_id", m.ID, "name", c.name}
	if !expires.IsZero() {
		attrs = append(attrs, "expires_at", expires.Format(time.RFC3339))
	}
	log.Info("api token created", attrs...)
	_, err = fmt.Fprintln(stdout, m.Plaintext)
	return err
}

// listTokens prints every token's id, name, status and times; never a
// secret (the table holds only hashes, and those are not printed either).
func listTokens(ctx context.Context, st *store.Store, stdout io.Writer) error {
	toks, err := st.ListTokens(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tCREATED\tLAST USED\tEXPIRES")
	for _, t := range toks {
		status := "active"
		switch {
		case !t.RevokedAt.IsZero():
			status = "revoked"
		case t.Expired(now):
			status = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, status,
			stamp(t.CreatedAt), stamp(t.LastUsedAt), stamp(t.ExpiresAt))
	}
	return tw.Flush()
}

// healthcheck asks the local server's /readyz; for container HEALTHCHECKs
// in images without curl. It needs only APP_ADDR. On a 200 it prints the
// report (status, version, releaseId) to stdout, so a deploy can tell
// which revision an instance serves without a shell or curl in the image.
func healthcheck(ctx context.Context, environ []string, stdout io.Writer) error {
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
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return &exitError{code: 1, msg: "healthcheck: /readyz answered " + resp.Status}
	}
	_, _ = stdout.Write(body)
	return nil
}

// kaggleCheckTimeout bounds `app kaggle check`, retries included.
const kaggleCheckTimeout = time.Minute

// kaggleCheck makes one cheap authenticated call to Kaggle and prints the
// account the credentials belong to and the GPU jobs will ask for. Missing
// credentials exit 2 (a configuration problem); refused ones exit 1 with
// Kaggle's answer.
func kaggleCheck(ctx context.Context, cfg config.Config, stdout io.Writer, log *slog.Logger) error {
	if !cfg.Kaggle.Configured() {
		return &exitError{code: 2, msg: "Kaggle credentials are not configured: set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_USERNAME and KAGGLE_API_TOKEN"}
	}
	ctx, cancel := context.WithTimeout(ctx, kaggleCheckTimeout)
	defer cancel()
	acct, err := kaggle.New(kaggleConfig(cfg, log)).Check(ctx)
	if err != nil {
		msg, ok := kaggle.UserMessage(err)
		if !ok {
			msg = err.Error()
		}
		return &exitError{code: 1, msg: "Kaggle check failed: " + msg}
	}
	method := "KAGGLE_KEY"
	if acct.Method == "token" {
		method = "KAGGLE_API_TOKEN"
	}
	shape, _ := kaggle.LookupMachineShape(cfg.Kaggle.MachineShape)
	fmt.Fprintf(stdout, "Kaggle credentials OK: account %s (%s, %s)\n", acct.Username, method, cfg.Kaggle.APIURL)
	fmt.Fprintf(stdout, "training kernels will ask for %s (%s)\n", shape.Name, shape.GPU)
	return nil
}
