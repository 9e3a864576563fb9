// Command app is Finetune Studio's API server and its operator commands:
//
//	app [serve]                 run the API, the worker pool and the metrics listener
//	app migrate up|status       apply or list database migrations
//	app config check            validate the environment; exit 2 on any problem
//	app token create --name N [--expires-in 720h|30d]
//	                            mint an API token and print it once
//	app token list              list tokens: id, name, status, created, last used, expiry
//	app token revoke --id ID    revoke a token (its id is the part after fts_)
//	app healthcheck             exit 0 only if the local /readyz passes
//	app kaggle check            prove the Kaggle credentials work and name their account
//	app backup objects [--to TARGET]
//	                            mirror the bucket to TARGET (default BACKUP_OBJECTS_TARGET)
//	app backup restore-objects [--from TARGET] [--to-bucket BUCKET]
//	                            restore the mirror into a bucket (default S3_BUCKET)
//	app backup verify-objects --against BUCKET [--from TARGET]
//	                            compare BUCKET with the mirror byte for byte; exit 1 on a difference
//	app backup postgres-offsite [--to TARGET]
//	                            copy the verified Postgres dumps off the VM (default BACKUP_POSTGRES_TARGET)
//
// Configuration comes from the environment (see docs/configuration.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/finetune-studio/finetune-studio/app/internal/config"
)

// Set at build time with -ldflags "-X main.version=... -X main.revision=...".
var (
	version  = "dev"
	revision = "unknown"
)

func main() {
	level := new(slog.LevelVar)
	// The server logs to stdout; one-shot commands log to stderr so their
	// stdout carries only their result (a token, a status table).
	logOut := os.Stderr
	if len(os.Args) < 2 || os.Args[1] == "serve" {
		logOut = os.Stdout
	}
	log := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: level}))
	err := run(context.Background(), os.Args[1:], os.Environ(), os.Stdout, os.Stderr, log, level)
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, ee.msg)
			}
			os.Exit(ee.code)
		}
		log.Error("app failed", "error", err.Error())
		os.Exit(1)
	}
}

// exitError carries a specific exit status (2 for configuration problems
// and usage errors).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageError(format string, args ...any) error {
	return &exitError{code: 2, msg: fmt.Sprintf(format, args...) + "\n" + usage}
}

const usage = `usage: app [serve]
       app migrate up|status
       app config check
       app token create --name NAME [--expires-in DURATION]
       app token list
       app token revoke --id TOKEN_ID
       app healthcheck
       app kaggle check
       app backup objects [--to TARGET]
       app backup restore-objects [--from TARGET] [--to-bucket BUCKET]
       app backup verify-objects --against BUCKET [--from TARGET]
       app backup postgres-offsite [--to TARGET]`

// run dispatches a subcommand. Output meant for people goes to stdout and
// stderr; logs go to log.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer, log *slog.Logger, level *slog.LevelVar) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	// withConfig runs f with the parsed configuration and its log level;
	// arguments are checked before, so a usage error needs no environment.
	withConfig := func(f func(config.Config) error) error {
		cfg, err := loadConfig(environ, stderr)
		if err != nil {
			return err
		}
		level.Set(cfg.LogLevel)
		return f(cfg)
	}
	switch cmd {
	case "serve":
		if len(args) != 0 {
			return usageError("serve takes no arguments")
		}
		return withConfig(func(cfg config.Config) error { return serve(ctx, cfg, log) })
	case "migrate":
		if len(args) != 1 || (args[0] != "up" && args[0] != "status") {
			return usageError("migrate needs one of: up, status")
		}
		return withConfig(func(cfg config.Config) error { return migrate(ctx, cfg, args[0], stdout, log) })
	case "config":
		if len(args) != 1 || args[0] != "check" {
			return usageError("config needs: check")
		}
		return configCheck(environ, stdout, stderr)
	case "token":
		c, err := parseTokenArgs(args)
		if err != nil {
			return err
		}
		return withConfig(func(cfg config.Config) error { return tokenCommand(ctx, cfg, c, stdout, log) })
	case "healthcheck":
		return healthcheck(ctx, environ, stdout)
	case "kaggle":
		if len(args) != 1 || args[0] != "check" {
			return usageError("kaggle needs: check")
		}
		return withConfig(func(cfg config.Config) error { return kaggleCheck(ctx, cfg, stdout, log) })
	case "backup":
		c, err := parseBackupArgs(args)
		if err != nil {
			return err
		}
		return withConfig(func(cfg config.Config) error { return backupCommand(ctx, cfg, c, stdout, log) })
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return usageError("unknown command %q", cmd)
}
