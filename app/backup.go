package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/finetune-studio/finetune-studio/app/internal/backup"
	"github.com/finetune-studio/finetune-studio/app/internal/blob"
	"github.com/finetune-studio/finetune-studio/app/internal/config"
)

// backupCmd is a parsed "backup" command line.
type backupCmd struct {
	action   string // objects, restore-objects or verify-objects
	target   string // --to (objects) or --from; default BACKUP_OBJECTS_TARGET
	toBucket string // restore-objects --to-bucket; default S3_BUCKET
	against  string // verify-objects --against
}

const backupUsage = "backup needs: objects [--to TARGET], restore-objects [--from TARGET] [--to-bucket BUCKET], or verify-objects --against BUCKET [--from TARGET]"

func parseBackupArgs(args []string) (backupCmd, error) {
	if len(args) == 0 {
		return backupCmd{}, usageError(backupUsage)
	}
	c := backupCmd{action: args[0]}
	fs := flag.NewFlagSet("backup "+c.action, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	switch c.action {
	case "objects":
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

func backupS3(cfg config.Config) blob.TargetS3 {
	s := cfg.Backup.S3
	return blob.TargetS3{Endpoint: s.Endpoint, AccessKey: s.AccessKey, SecretKey: s.SecretKey, UseTLS: s.UseTLS, Region: s.Region}
}

// openBlob builds the object storage client from the S3_* settings.
func openBlob(cfg config.Config) (*blob.Store, error) {
	return blob.Open(blob.Options{
		Endpoint: cfg.S3.Endpoint, AccessKey: cfg.S3.AccessKey, SecretKey: cfg.S3.SecretKey,
		UseTLS: cfg.S3.UseTLS, CAFile: cfg.S3.CAFile, Region: cfg.S3.Region, Bucket: cfg.S3.Bucket,
		PublicURL: cfg.S3.PublicURL,
	})
}
