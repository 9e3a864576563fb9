package backup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/blob"
)

// PostgresOffsiteLockKey makes one off-VM dump copy run at a time across
// every app instance and CLI invocation ("ftbkpgof" in ASCII).
const PostgresOffsiteLockKey int64 = 0x6674626b70676f66

// OffsiteConfig says where the dumps are and where their copies go.
type OffsiteConfig struct {
	// Dir is where the backup service writes its dumps (the backups
	// volume, mounted read-only into the app).
	Dir string
	// Target is where the copies go: a directory or s3://bucket/prefix
	// (on S3). Each dump lands there as <name> and <name>.manifest.
	Target blob.Target
	S3     blob.TargetS3
	// Retention: a copy whose dump is no longer on disk is deleted once
	// its dump is older than this (by the time in its name). 0 keeps
	// every copy forever.
	Retention time.Duration
}

// OffsiteStats counts what a copy run did.
type OffsiteStats struct {
	Dumps       int // verified dumps on disk (those with a manifest)
	Copied      int // uploaded and read back
	Skipped     int // already there: same size and same manifest
	Removed     int // copies deleted by retention
	Bytes       int64
	BytesCopied int64
	// Corrupt are dumps whose sha256 (or size) differs from their
	// manifest: never copied, and the run fails naming them.
	Corrupt  []string
	Location string
}

// PostgresOffsite copies the backup service's verified dumps off the VM.
type PostgresOffsite struct {
	st  RunStore
	cfg OffsiteConfig
	log *slog.Logger
	now func() time.Time
}

// NewPostgresOffsite returns the off-VM copy described by cfg.
func NewPostgresOffsite(st RunStore, cfg OffsiteConfig, log *slog.Logger) *PostgresOffsite {
	return &PostgresOffsite{st: st, cfg: cfg, log: log, now: time.Now}
}

// ErrNoDumps means the dump directory holds no verified dump: nothing is
// copied and no copy is deleted (an empty directory is what a lost or
// unmounted backups volume looks like).
var ErrNoDumps = errors.New("no verified dump")

// RunOnce copies now, under the lock, and records the run in backup_runs
// whether it succeeds or not; ErrBusy when another run holds the lock.
func (p *PostgresOffsite) RunOnce(ctx context.Context) (OffsiteStats, error) {
	return p.run(ctx, nil)
}

func (p *PostgresOffsite) run(ctx context.Context, stillDue func(context.Context) (bool, error)) (OffsiteStats, error) {
	var stats OffsiteStats
	err := runLocked(ctx, p.st, PostgresOffsiteLockKey, stillDue, func(ctx context.Context) (Run, error) {
		started := p.now()
		var err error
		stats, err = p.copyAll(ctx)
		r := Run{
			Kind: KindPostgresOffsite, StartedAt: started, FinishedAt: p.now(),
			// Verified: every copy made was read back and hashed, and
			// every skipped one has the dump's manifest beside it.
			OK: err == nil, Verified: err == nil,
			Location: p.cfg.Target.String(), Bytes: stats.Bytes,
			Detail: map[string]any{
				"dumps": stats.Dumps, "copied": stats.Copied, "skipped": stats.Skipped,
				"removed": stats.Removed, "bytes_copied": stats.BytesCopied, "corrupt": stats.Corrupt,
			},
		}
		if err != nil {
			r.Error = err.Error()
		}
		return r, err
	})
	return stats, err
}

// Schedule copies every interval until ctx ends, with the schedule kept
// in backup_runs like the object mirror's (Objects.Schedule).
func (p *PostgresOffsite) Schedule(ctx context.Context, interval, retry time.Duration) {
	periodic{st: p.st, kind: KindPostgresOffsite, now: p.now, log: p.log,
		run: func(ctx context.Context, stillDue func(context.Context) (bool, error)) error {
			stats, err := p.run(ctx, stillDue)
			switch {
			case errors.Is(err, ErrBusy), ctx.Err() != nil:
			case errors.Is(err, ErrNoDumps):
				// Expected on a new installation until the first dump; the
				// run is recorded failed, and freshness reports it if it lasts.
				p.log.Warn("postgres offsite copy: no dump to copy", "error", err.Error(), "retry_in", retry.String())
			case err != nil:
				p.log.Error("postgres offsite copy failed", "error", err.Error(), "retry_in", retry.String())
			case stats.Location != "":
				p.log.Info("postgres offsite copy done", "location", stats.Location, "dumps", stats.Dumps,
					"copied", stats.Copied, "skipped", stats.Skipped, "removed", stats.Removed, "bytes_copied", stats.BytesCopied)
			}
			return err
		}}.schedule(ctx, interval, retry)
}

// localDump is a dump on disk with its manifest.
type localDump struct {
	name     string
	size     int64
	sha256   string // from the manifest
	bytes    int64  // from the manifest; -1 when it has none
	manifest []byte
}

// dumpName reports whether name is a dump's file name as backup.sh writes
// it: studio-<YYYYMMDDTHHMMSSZ>-<schedule>.dump.
func dumpName(name string) bool {
	_, ok := dumpTime(name)
	return ok && strings.HasSuffix(name, ".dump") && !strings.ContainsAny(name, "/\\")
}

// dumpTime is the UTC time in a dump's name.
func dumpTime(name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, "studio-")
	if !ok || len(rest) < len("20060102T150405Z-x.dump") || rest[16] != '-' {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102T150405Z", rest[:16])
	return t, err == nil
}

// localDumps lists the verified dumps in dir (a dump counts once its
// manifest is beside it: backup.sh writes the manifest first and renames
// the dump into place last, and deletes both when its verification fails),
// and returns every dump name present, verified or not.
func localDumps(dir string) ([]localDump, map[string]bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the dump directory: %w", err)
	}
	present := map[string]bool{}
	var out []localDump
	for _, e := range entries {
		if !e.Type().IsRegular() || !dumpName(e.Name()) {
			continue
		}
		present[e.Name()] = true
		man, err := os.ReadFile(filepath.Join(dir, e.Name()+".manifest"))
		if errors.Is(err, os.ErrNotExist) {
			continue // not (yet) verified
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading the manifest of %s: %w", e.Name(), err)
		}
		fi, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue // pruned since the listing
		}
		if err != nil {
			return nil, nil, err
		}
		d := localDump{name: e.Name(), size: fi.Size(), manifest: man, bytes: -1}
		sc := bufio.NewScanner(bytes.NewReader(man))
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), "\t")
			switch {
			case k == "sha256" && d.sha256 == "":
				d.sha256 = v
			case k == "bytes" && d.bytes < 0:
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					d.bytes = n
				}
			}
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b localDump) int { return strings.Compare(a.name, b.name) })
	return out, present, nil
}

// copyAll brings the target up to date: every verified dump that is not
// there yet is hashed (and refused when it does not match its manifest),
// uploaded, read back and hashed again, then its manifest is uploaded
// beside it; the manifest goes last, so a copy with a manifest is
// complete. Then retention deletes old copies of dumps gone from disk.
func (p *PostgresOffsite) copyAll(ctx context.Context) (OffsiteStats, error) {
	stats := OffsiteStats{Location: p.cfg.Target.String()}
	dumps, present, err := localDumps(p.cfg.Dir)
	if err != nil {
		return stats, err
	}
	stats.Dumps = len(dumps)
	if len(dumps) == 0 {
		return stats, fmt.Errorf("%w in %s (before the backup service's first dump, or the backups volume is not mounted there): "+
			"nothing copied, no copy deleted", ErrNoDumps, p.cfg.Dir)
	}
	files, err := blob.OpenFiles(ctx, p.cfg.Target, p.cfg.S3)
	if err != nil {
		return stats, err
	}
	remote := map[string]int64{}
	list, err := files.List(ctx)
	if err != nil {
		return stats, fmt.Errorf("listing %s: %w", stats.Location, err)
	}
	for _, f := range list {
		remote[f.Name] = f.Size
	}
	for _, d := range dumps {
		stats.Bytes += d.size
		if done, err := p.alreadyCopied(ctx, files, remote, d); err != nil {
			return stats, err
		} else if done {
			stats.Skipped++
			continue
		}
		err := p.copyDump(ctx, files, d)
		var bad *corruptDumpError
		if errors.As(err, &bad) {
			p.log.Error("postgres dump does not match its manifest: not copied off the VM", "dump", d.name, "error", err.Error())
			stats.Corrupt = append(stats.Corrupt, d.name)
			continue
		}
		if err != nil {
			return stats, err
		}
		stats.Copied++
		stats.BytesCopied += d.size
	}
	if err := p.prune(ctx, files, remote, present, &stats); err != nil {
		return stats, err
	}
	if len(stats.Corrupt) > 0 {
		return stats, fmt.Errorf("%d dump(s) do not match the sha256 of their manifest and were not copied: %s "+
			"(check with backup.sh verify NAME; delete a corrupt dump to clear this)",
			len(stats.Corrupt), strings.Join(stats.Corrupt, ", "))
	}
	return stats, nil
}

// alreadyCopied: the target holds the dump with the same size and a
// manifest equal to the local one (uploaded only after the dump's
// read-back matched).
func (p *PostgresOffsite) alreadyCopied(ctx context.Context, files *blob.Files, remote map[string]int64, d localDump) (bool, error) {
	size, ok := remote[d.name]
	msize, mok := remote[d.name+".manifest"]
	if !ok || !mok || size != d.size || msize != int64(len(d.manifest)) {
		return false, nil
	}
	r, err := files.Open(ctx, d.name+".manifest")
	if blob.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the copy of %s.manifest: %w", d.name, err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, int64(len(d.manifest))+1))
	if err != nil {
		return false, fmt.Errorf("reading the copy of %s.manifest: %w", d.name, err)
	}
	return bytes.Equal(b, d.manifest), nil
}

// corruptDumpError is a dump on disk that does not match its manifest.
type corruptDumpError struct{ msg string }

func (e *corruptDumpError) Error() string { return e.msg }

func (p *PostgresOffsite) copyDump(ctx context.Context, files *blob.Files, d localDump) error {
	f, err := os.Open(filepath.Join(p.cfg.Dir, d.name))
	if err != nil {
		return fmt.Errorf("opening %s: %w", d.name, err)
	}
	defer f.Close()
	sha, n, err := hashReader(f)
	if err != nil {
		return fmt.Errorf("reading %s: %w", d.name, err)
	}
	switch {
	case d.sha256 == "":
		return &corruptDumpError{d.name + ": the manifest has no sha256 line"}
	case sha != d.sha256:
		return &corruptDumpError{fmt.Sprintf("%s: sha256 %s differs from the manifest's %s", d.name, sha, d.sha256)}
	case d.bytes >= 0 && n != d.bytes:
		return &corruptDumpError{fmt.Sprintf("%s: %d bytes, the manifest says %d", d.name, n, d.bytes)}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	// The upload is hashed as it is read: a file that changed since it was
	// checked is caught here rather than stored.
	h := sha256.New()
	if err := files.Put(ctx, d.name, io.TeeReader(f, h), n, sha); err != nil {
		return fmt.Errorf("uploading %s to %s: %w", d.name, files.Location(), err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		_ = files.Remove(ctx, d.name)
		return &corruptDumpError{fmt.Sprintf("%s changed while it was uploaded (sha256 %s, manifest %s)", d.name, got, sha)}
	}
	r, err := files.Open(ctx, d.name)
	if err != nil {
		return fmt.Errorf("reading back the copy of %s: %w", d.name, err)
	}
	got, gotN, err := hashReader(r)
	r.Close()
	if err != nil {
		return fmt.Errorf("reading back the copy of %s: %w", d.name, err)
	}
	if got != sha || gotN != n {
		return fmt.Errorf("the copy of %s at %s does not match after writing (sha256 %s, %d bytes; want %s, %d)",
			d.name, files.Location(), got, gotN, sha, n)
	}
	if err := files.PutBytes(ctx, d.name+".manifest", d.manifest); err != nil {
		return fmt.Errorf("uploading %s.manifest: %w", d.name, err)
	}
	return nil
}

// prune deletes the copies (and their manifests) of dumps no longer on
// disk once they are older than Retention. The manifest goes first, so a
// half-deleted copy never looks complete.
func (p *PostgresOffsite) prune(ctx context.Context, files *blob.Files, remote map[string]int64, present map[string]bool, stats *OffsiteStats) error {
	if p.cfg.Retention <= 0 {
		return nil
	}
	copies := map[string]bool{}
	for name := range remote {
		if base := strings.TrimSuffix(name, ".manifest"); dumpName(base) {
			copies[base] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(copies)) {
		at, _ := dumpTime(name)
		if present[name] || p.now().Sub(at) <= p.cfg.Retention {
			continue
		}
		for _, f := range []string{name + ".manifest", name} {
			if _, ok := remote[f]; !ok {
				continue
			}
			if err := files.Remove(ctx, f); err != nil {
				return fmt.Errorf("retention: removing %s from %s: %w", f, files.Location(), err)
			}
		}
		stats.Removed++
		p.log.Info("postgres offsite copy: retention removed a copy", "dump", name, "retention", p.cfg.Retention.String())
	}
	return nil
}

func hashReader(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}
