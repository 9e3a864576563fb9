package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/backup"
	"github.com/finetune-studio/finetune-studio/app/internal/blob"
	"github.com/finetune-studio/finetune-studio/app/internal/config"
)

// backupCmd is a parsed "backup" command line.
type backupCmd struct {
	action   string // objects, restore-objects, verify-objects or postgres-offsite
	target   string // --to (objects, postgres-offsite) or --from; default BACKUP_OBJECTS_TARGET (BACKUP_POSTGRES_TARGET)
	toBucket string // restore-objects --to-bucket; default S3_BUCKET
	against  string // verify-objects --against
}

const backupUsage = "backup needs: objects [--to TARGET], restore-objects [--from TARGET] [--to-bucket BUCKET], " +
	"verify-objects --against BUCKET [--from TARGET], or postgres-offsite [--to TARGET]"

func parseBackupArgs(args []string) (backupCmd, error) {
	if len(args) == 0 {
		return backupCmd{}, usageError(backupUsage)
	}
	c := backupCmd{action: args[0]}
	fs := flag.NewFlagSet("backup "+c.action, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	switch c.action {
	case "objects", "postgres-offsite":
		fs.StringVar(&c.target, "to", "", "")
	case "restore-objects":
		fs.StringVar(&c.target, "from", "", "")
		fs.StringVar(&c.toBucket, "to-bucket", "", "")
	case "verify-objects":
		fs.StringVar(&c.target, "from", "", "")
		fs.StringVar(&c.against, "against", "", "")
	default:
		return backupCmd{}, usageError(backupUsage)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return backupCmd{}, usageError("backup %s: %v", c.action, err)
	}
	if fs.NArg() > 0 {
		return backupCmd{}, usageError("backup %s: unexpected argument %q", c.action, fs.Arg(0))
	}
	if c.target != "" {
		if _, err := blob.ParseTarget(c.target); err != nil {
			return backupCmd{}, usageError("backup %s: %v", c.action, err)
		}
	}
	for _, b := range []string{c.toBucket, c.against} {
		if b != "" && !blob.ValidBucketName(b) {
			return backupCmd{}, usageError("backup %s: %q is not a valid bucket name", c.action, b)
		}
	}
	if c.action == "verify-objects" && c.against == "" {
		return backupCmd{}, usageError("backup verify-objects needs --against BUCKET")
	}
	return c, nil
}

// backupCommand runs a parsed backup command. Only "objects" needs the
// database (it takes the backup lock and records the run); a restore or a
// verification needs only object storage and the mirror.
func backupCommand(ctx context.Context, cfg config.Config, c backupCmd, stdout io.Writer, log *slog.Logger) error {
	if c.action == "postgres-offsite" {
		return postgresOffsiteCommand(ctx, cfg, c.target, stdout, log)
	}
	raw := c.target
	if raw == "" {
		raw = cfg.Backup.ObjectsTarget
	}
	if raw == "" {
		return &exitError{code: 2, msg: "backup " + c.action + ": no target; set BACKUP_OBJECTS_TARGET or pass " +
			map[bool]string{true: "--to", false: "--from"}[c.action == "objects"]}
	}
	target, err := blob.ParseTarget(raw)
	if err != nil {
		return &exitError{code: 2, msg: "BACKUP_OBJECTS_TARGET: " + err.Error()}
	}
	bl, err := openBlob(cfg)
	if err != nil {
		return err
	}
	mirror := blob.NewMirror(target, backupS3(cfg), log)
	switch c.action {
	case "objects":
		st, err := openStore(ctx, cfg, log, true)
		if err != nil {
			return err
		}
		defer st.Close()
		stats, err := backup.NewObjects(st, mirror, bl, log).RunOnce(ctx)
		if errors.Is(err, backup.ErrBusy) {
			return &exitError{code: 1, msg: "backup objects: " + err.Error()}
		}
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "mirrored %s to %s: %d objects (%d bytes); copied %d (%d bytes), unchanged %d, removed %d; verified\n",
			bl.Bucket(), stats.Location, stats.Objects, stats.Bytes, stats.Copied, stats.BytesCopied, stats.Skipped, stats.Removed)
		return err
	case "restore-objects":
		dst := bl
		if c.toBucket != "" {
			dst = bl.WithBucket(c.toBucket)
		}
		stats, err := mirror.Restore(ctx, bl.Bucket(), dst)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "restored %d objects (%d bytes) from %s into bucket %s\n",
			stats.Objects, stats.Bytes, mirror.Location(bl.Bucket()), dst.Bucket())
		return err
	}
	diffs, err := mirror.Verify(ctx, bl.Bucket(), bl.WithBucket(c.against))
	if err != nil {
		return err
	}
	for _, d := range diffs {
		fmt.Fprintf(stdout, "DIFF %q: %s\n", d.Key, d.Problem)
	}
	if len(diffs) > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("verify-objects: bucket %s and %s differ in %d place(s)",
			c.against, mirror.Location(bl.Bucket()), len(diffs))}
	}
	_, err = fmt.Fprintf(stdout, "bucket %s matches %s byte for byte\n", c.against, mirror.Location(bl.Bucket()))
	return err
}

// postgresOffsiteCommand copies the verified dumps to TARGET (default
// BACKUP_POSTGRES_TARGET). When the periodic copy in serve holds the lock
// it waits for it (up to offsiteLockWait) and then runs: a copy that
// started before the newest dump may not include it.
func postgresOffsiteCommand(ctx context.Context, cfg config.Config, raw string, stdout io.Writer, log *slog.Logger) error {
	setting := "--to"
	if raw == "" {
		raw, setting = cfg.Backup.PostgresTarget, "BACKUP_POSTGRES_TARGET"
	}
	if raw == "" {
		return &exitError{code: 2, msg: "backup postgres-offsite: no target; set BACKUP_POSTGRES_TARGET or pass --to"}
	}
	target, err := blob.ParseTarget(raw)
	if err != nil {
		return &exitError{code: 2, msg: setting + ": " + err.Error()}
	}
	st, err := openStore(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer st.Close()
	offsite := backup.NewPostgresOffsite(st, backup.OffsiteConfig{
		Dir: cfg.Backup.PostgresDir, Target: target, S3: backupS3(cfg), Retention: cfg.Backup.PostgresRetention,
	}, log)
	wctx, cancel := context.WithTimeout(ctx, offsiteLockWait)
	defer cancel()
	var stats backup.OffsiteStats
	for {
		stats, err = offsite.RunOnce(ctx)
		if !errors.Is(err, backup.ErrBusy) {
			break
		}
		t := time.NewTimer(2 * time.Second)
		select {
		case <-wctx.Done():
			t.Stop()
			return &exitError{code: 1, msg: "backup postgres-offsite: " + err.Error() + "; gave up waiting after " + offsiteLockWait.String()}
		case <-t.C:
		}
	}
	for _, name := range stats.Corrupt {
		fmt.Fprintf(stdout, "CORRUPT %s: does not match its manifest, not copied\n", name)
	}
	if err != nil {
		return &exitError{code: 1, msg: "backup postgres-offsite: " + err.Error()}
	}
	_, err = fmt.Fprintf(stdout, "copied the Postgres dumps in %s to %s: %d dumps (%d bytes); copied %d (%d bytes), already there %d, removed by retention %d; verified\n",
		cfg.Backup.PostgresDir, stats.Location, stats.Dumps, stats.Bytes, stats.Copied, stats.BytesCopied, stats.Skipped, stats.Removed)
	return err
}

// offsiteLockWait bounds how long the command waits for a periodic copy
// holding the lock.
const offsiteLockWait = 10 * time.Minute

func backupS3(cfg config.Config) blob.TargetS3 {
	s := cfg.Backup.S3
	return blob.TargetS3{Endpoint: s.Endpoint, AccessKey: s.AccessKey, SecretKey: s.SecretKey, UseTLS: s.UseTLS,
		CAFile: s.CAFile, Region: s.Region}
}

// openBlob builds the object storage client from the S3_* settings.
func openBlob(cfg config.Config) (*blob.Store, error) {
	return blob.Open(blob.Options{
		Endpoint: cfg.S3.Endpoint, AccessKey: cfg.S3.AccessKey, SecretKey: cfg.S3.SecretKey,
		UseTLS: cfg.S3.UseTLS, CAFile: cfg.S3.CAFile, Region: cfg.S3.Region, Bucket: cfg.S3.Bucket,
		PublicURL: cfg.S3.PublicURL,
	})
}
