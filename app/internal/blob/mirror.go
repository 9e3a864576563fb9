package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

// A mirror is a copy of one bucket kept at a Target:
//
//	<target>/<bucket>/manifest.json         every object: key, size, sha256, etag, version id
//	<target>/<bucket>/data/<sha[:2]>/<sha>  the objects' bytes, named by their sha256
//
// Data files are content-addressed, so a data file never changes once
// written, identical objects are stored once, and object keys (which may
// hold any character) never become file paths. The manifest is replaced
// atomically and only names files that exist: a run that dies half way
// leaves the previous manifest (or a checkpoint) and every file it names.
// Files no manifest names are removed only after a complete run's manifest
// is written.

// manifestVersion is the manifest format; a reader refuses another.
const manifestVersion = 1

// Manifest lists a mirror's objects, sorted by key.
type Manifest struct {
	Version   int             `json:"version"`
	Bucket    string          `json:"bucket"`
	UpdatedAt time.Time       `json:"updated_at"`
	Complete  bool            `json:"complete"` // false for a checkpoint of an unfinished run
	Objects   []ManifestEntry `json:"objects"`
}

// ManifestEntry is one mirrored object.
type ManifestEntry struct {
	Key         string `json:"key"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	ETag        string `json:"etag"`
	VersionID   string `json:"version_id,omitempty"`
	ContentType string `json:"content_type,omitempty"`
}

// checkpointEvery bounds the work a crash can lose: the manifest is
// rewritten after this many copies, so a rerun skips what was copied.
const checkpointEvery = 200

// MirrorStats counts what a mirror run did.
type MirrorStats struct {
	Objects     int   // in the bucket, and so in the new manifest
	Copied      int   // read from the bucket and written to the target
	Skipped     int   // unchanged since the previous manifest
	Removed     int   // data files no longer named by the manifest
	Bytes       int64 // total size of the bucket's objects
	BytesCopied int64
	// Verified: every copied object was read back from the target and
	// its sha256 matched what was read from the bucket.
	Verified bool
	Location string
}

// Mirror copies a bucket to a target and back.
type Mirror struct {
	target Target
	s3     TargetS3
	log    *slog.Logger
}

// NewMirror returns a Mirror for target; s3 is used when target is s3://.
func NewMirror(target Target, s3 TargetS3, log *slog.Logger) *Mirror {
	return &Mirror{target: target, s3: s3, log: log}
}

// Location is the mirror of bucket: the target and the bucket's name.
func (m *Mirror) Location(bucket string) string {
	if m.target.Dir != "" {
		return m.target.Dir + "/" + bucket
	}
	return m.target.String() + "/" + bucket
}

// Run brings the mirror of src's bucket up to date. An object whose size
// and ETag match the previous manifest, and whose data file is present
// with that size, is skipped; every other object is read once, hashed,
// written to the target and read back to check its sha256. Objects gone
// from the bucket leave the manifest, and their data files are removed.
func (m *Mirror) Run(ctx context.Context, src *Store) (MirrorStats, error) {
	ms, err := openMirrorStore(ctx, m.target, m.s3, src.bucket)
	if err != nil {
		return MirrorStats{}, err
	}
	stats := MirrorStats{Verified: true, Location: ms.location()}
	prev, err := loadManifest(ctx, ms, src.bucket)
	if err != nil {
		return stats, err
	}
	prevByKey := map[string]ManifestEntry{}
	for _, e := range prev.Objects {
		prevByKey[e.Key] = e
	}
	cleanStaging(ms)

	var entries []ManifestEntry
	done := map[string]bool{}
	checkpoint := func() error {
		// Entries done so far, plus the previous manifest's others: every
		// file named exists, nothing is removed yet.
		cp := slices.Clone(entries)
		for _, e := range prev.Objects {
			if !done[e.Key] {
				cp = append(cp, e)
			}
		}
		return saveManifest(ctx, ms, src.bucket, cp, false)
	}
	sinceCheckpoint := 0
	for obj := range src.client.ListObjects(ctx, src.bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			return stats, fmt.Errorf("listing %s: %w", src.bucket, mapErr(obj.Err))
		}
		stats.Objects++
		stats.Bytes += obj.Size
		done[obj.Key] = true
		if p, ok := prevByKey[obj.Key]; ok && p.Size == obj.Size && p.ETag == obj.ETag {
			n, err := ms.size(ctx, p.SHA256)
			if err != nil {
				return stats, fmt.Errorf("checking mirror of %s: %w", obj.Key, err)
			}
			if n == p.Size {
				stats.Skipped++
				entries = append(entries, p)
				continue
			}
		}
		e, err := m.copyObject(ctx, src, ms, obj.Key)
		if errors.Is(err, problem.ErrNotFound) {
			// Deleted since it was listed: it is not part of this mirror.
			stats.Objects--
			stats.Bytes -= obj.Size
			continue
		}
		if err != nil {
			var mismatch *mismatchError
			if errors.As(err, &mismatch) {
				stats.Verified = false
			}
			return stats, err
		}
		// The size may differ from the listing's if the object changed
		// since: the manifest records what was copied.
		stats.Bytes += e.Size - obj.Size
		stats.Copied++
		stats.BytesCopied += e.Size
		entries = append(entries, e)
		if sinceCheckpoint++; sinceCheckpoint >= checkpointEvery {
			if err := checkpoint(); err != nil {
				return stats, fmt.Errorf("writing mirror checkpoint: %w", err)
			}
			sinceCheckpoint = 0
		}
	}
	if err := ctx.Err(); err != nil {
		return stats, err
	}
	// An empty bucket over a mirror that holds objects is what a lost
	// object volume looks like right after the stack comes back up (the
	// periodic run starts at once when the restored-from-nothing database
	// has no backup_runs): replacing the mirror would delete the backup
	// that is about to be restored. Refuse; the operator restores first.
	if stats.Objects == 0 && len(prev.Objects) > 0 {
		return stats, fmt.Errorf("bucket %s is empty but the mirror at %s holds %d objects: not replacing the mirror "+
			"(restore it with app backup restore-objects; to really start the mirror over, delete its manifest.json)",
			src.bucket, ms.location(), len(prev.Objects))
	}
	if err := saveManifest(ctx, ms, src.bucket, entries, true); err != nil {
		return stats, fmt.Errorf("writing mirror manifest: %w", err)
	}
	// Only now, with the new manifest in place, drop unnamed data files.
	keep := map[string]bool{}
	for _, e := range entries {
		keep[e.SHA256] = true
	}
	stored, err := ms.list(ctx)
	if err != nil {
		return stats, fmt.Errorf("listing mirror data: %w", err)
	}
	for _, sha := range stored {
		if keep[sha] {
			continue
		}
		if err := ms.remove(ctx, sha); err != nil {
			return stats, fmt.Errorf("removing stale mirror data: %w", err)
		}
		stats.Removed++
	}
	return stats, nil
}

// mismatchError is a copy whose read-back did not match.
type mismatchError struct{ key string }

func (e *mismatchError) Error() string {
	return "mirror copy of " + e.key + " does not match the bucket after writing (sha256 differs)"
}

// copyObject spools key from the bucket to a temporary file while hashing
// it, stores it under its sha256 (unless that content is stored already),
// then reads the stored file back and compares hashes.
func (m *Mirror) copyObject(ctx context.Context, src *Store, ms mirrorStore, key string) (ManifestEntry, error) {
	obj, err := src.client.GetObject(ctx, src.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return ManifestEntry{}, fmt.Errorf("reading %s: %w", key, mapErr(err))
	}
	defer obj.Close()
	st, err := obj.Stat()
	if err != nil {
		return ManifestEntry{}, fmt.Errorf("reading %s: %w", key, mapErr(err))
	}
	f, err := os.CreateTemp(ms.stagingDir(), "object-*")
	if err != nil {
		return ManifestEntry{}, fmt.Errorf("spooling %s: %w", key, err)
	}
	placed := false
	defer func() {
		if !placed {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), obj)
	if err != nil {
		return ManifestEntry{}, fmt.Errorf("copying %s: %w", key, mapErr(err))
	}
	if n != st.Size {
		return ManifestEntry{}, fmt.Errorf("copying %s: read %d bytes, the bucket says %d", key, n, st.Size)
	}
	sha := hex.EncodeToString(h.Sum(nil))
	e := ManifestEntry{Key: key, Size: n, SHA256: sha, ETag: st.ETag, VersionID: st.VersionID, ContentType: st.ContentType}
	have, err := ms.size(ctx, sha)
	if err != nil {
		return e, fmt.Errorf("checking mirror of %s: %w", key, err)
	}
	if have != n {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return e, err
		}
		placed = true // put owns f now
		if err := ms.put(ctx, sha, f, n); err != nil {
			return e, fmt.Errorf("writing mirror of %s: %w", key, err)
		}
	}
	got, _, err := hashStored(ctx, ms, sha)
	if err != nil {
		return e, fmt.Errorf("reading back mirror of %s: %w", key, err)
	}
	if got != sha {
		return e, &mismatchError{key: key}
	}
	return e, nil
}

// hashStored reads a data file and returns its sha256 and size.
func hashStored(ctx context.Context, ms mirrorStore, sha string) (string, int64, error) {
	r, err := ms.open(ctx, sha)
	if err != nil {
		return "", 0, err
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", 0, mapErr(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// cleanStaging removes spooled files a killed run left behind; nothing
// else writes there while the caller holds the mirror lock.
func cleanStaging(ms mirrorStore) {
	dir := ms.stagingDir()
	if dir == "" {
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		os.Remove(filepath.Join(dir, e.Name()))
	}
}

func loadManifest(ctx context.Context, ms mirrorStore, bucket string) (Manifest, error) {
	b, err := ms.readManifest(ctx)
	if err != nil {
		return Manifest{}, fmt.Errorf("reading mirror manifest: %w", err)
	}
	if b == nil {
		return Manifest{Version: manifestVersion, Bucket: bucket}, nil
	}
	var man Manifest
	if err := json.Unmarshal(b, &man); err != nil {
		return Manifest{}, fmt.Errorf("mirror manifest at %s is corrupt: %w", ms.location(), err)
	}
	if man.Version != manifestVersion {
		return Manifest{}, fmt.Errorf("mirror manifest at %s has version %d; this build reads %d", ms.location(), man.Version, manifestVersion)
	}
	for _, e := range man.Objects {
		if !validSHA(e.SHA256) {
			return Manifest{}, fmt.Errorf("mirror manifest at %s is corrupt: bad sha256 for %q", ms.location(), e.Key)
		}
	}
	return man, nil
}

func saveManifest(ctx context.Context, ms mirrorStore, bucket string, entries []ManifestEntry, complete bool) error {
	slices.SortFunc(entries, func(a, b ManifestEntry) int { return strings.Compare(a.Key, b.Key) })
	b, err := json.MarshalIndent(Manifest{
		Version: manifestVersion, Bucket: bucket, UpdatedAt: time.Now().UTC(), Complete: complete, Objects: entries,
	}, "", " ")
	if err != nil {
		return err
	}
	return ms.writeManifest(ctx, append(b, '\n'))
}

// RestoreStats counts what a restore did.
type RestoreStats struct {
	Objects int
	Bytes   int64
}

// Restore writes every object of the mirror of bucket into dst's bucket
// (created if missing), checking each data file's sha256 against the
// manifest as it streams. Objects already in dst under other keys are left
// alone; an object the mirror holds replaces dst's. A data file whose hash
// does not match is not restored: the object is removed again and the
// restore fails naming it, after restoring every other object.
func (m *Mirror) Restore(ctx context.Context, bucket string, dst *Store) (RestoreStats, error) {
	var stats RestoreStats
	ms, err := openMirrorStore(ctx, m.target, m.s3, bucket)
	if err != nil {
		return stats, err
	}
	man, err := loadManifest(ctx, ms, bucket)
	if err != nil {
		return stats, err
	}
	if len(man.Objects) == 0 && !man.Complete {
		return stats, fmt.Errorf("no mirror of %s at %s", bucket, ms.location())
	}
	if err := dst.EnsureBucket(ctx); err != nil {
		return stats, err
	}
	var bad []string
	for _, e := range man.Objects {
		if err := restoreOne(ctx, ms, dst, e); err != nil {
			var mismatch *mismatchError
			if !errors.As(err, &mismatch) {
				return stats, err
			}
			bad = append(bad, e.Key)
			continue
		}
		stats.Objects++
		stats.Bytes += e.Size
	}
	if len(bad) > 0 {
		return stats, fmt.Errorf("%d mirror file(s) do not match the manifest and were not restored: %v", len(bad), bad)
	}
	return stats, nil
}

func restoreOne(ctx context.Context, ms mirrorStore, dst *Store, e ManifestEntry) error {
	r, err := ms.open(ctx, e.SHA256)
	if err != nil {
		return fmt.Errorf("opening mirror of %s: %w", e.Key, err)
	}
	defer r.Close()
	h := sha256.New()
	ct := e.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	_, err = dst.client.PutObject(ctx, dst.bucket, e.Key, io.TeeReader(r, h), e.Size,
		minio.PutObjectOptions{ContentType: ct, PartSize: PartSize, NumThreads: 1})
	if err != nil {
		return fmt.Errorf("restoring %s: %w", e.Key, mapErr(err))
	}
	if hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
		_ = dst.Remove(ctx, e.Key)
		return &mismatchError{key: e.Key}
	}
	return nil
}

// Difference is one way a bucket and a mirror disagree.
type Difference struct {
	Key     string
	Problem string
}

// Verify compares the bucket of against, byte for byte, with the mirror of
// bucket: every object the manifest lists must be in the bucket with the
// manifest's sha256, and its data file in the mirror must hash to the same;
// the bucket must hold nothing else. It returns every difference, sorted by
// key; none means they are equal.
func (m *Mirror) Verify(ctx context.Context, bucket string, against *Store) ([]Difference, error) {
	ms, err := openMirrorStore(ctx, m.target, m.s3, bucket)
	if err != nil {
		return nil, err
	}
	man, err := loadManifest(ctx, ms, bucket)
	if err != nil {
		return nil, err
	}
	var diffs []Difference
	if !man.Complete {
		diffs = append(diffs, Difference{Problem: "the mirror's last run did not complete (or there is no mirror)"})
	}
	inBucket := map[string]int64{}
	for obj := range against.client.ListObjects(ctx, against.bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("listing %s: %w", against.bucket, mapErr(obj.Err))
		}
		inBucket[obj.Key] = obj.Size
	}
	inManifest := map[string]bool{}
	for _, e := range man.Objects {
		inManifest[e.Key] = true
		if _, ok := inBucket[e.Key]; !ok {
			diffs = append(diffs, Difference{e.Key, "missing from the bucket"})
		} else if sha, n, err := hashObject(ctx, against, e.Key); err != nil {
			return nil, err
		} else if sha != e.SHA256 || n != e.Size {
			diffs = append(diffs, Difference{e.Key, fmt.Sprintf("bucket content differs (%d bytes, sha256 %s; mirror %d bytes, %s)", n, sha, e.Size, e.SHA256)})
		}
		switch sha, n, err := hashStored(ctx, ms, e.SHA256); {
		case err != nil && isNotExist(err):
			diffs = append(diffs, Difference{e.Key, "mirror data file missing"})
		case err != nil:
			return nil, fmt.Errorf("reading mirror of %s: %w", e.Key, err)
		case sha != e.SHA256 || n != e.Size:
			diffs = append(diffs, Difference{e.Key, "mirror data file does not match the manifest (tampered or corrupt)"})
		}
	}
	for key := range inBucket {
		if !inManifest[key] {
			diffs = append(diffs, Difference{key, "in the bucket but not in the mirror"})
		}
	}
	slices.SortStableFunc(diffs, func(a, b Difference) int { return strings.Compare(a.Key, b.Key) })
	return diffs, nil
}

func hashObject(ctx context.Context, s *Store, key string) (string, int64, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return "", 0, fmt.Errorf("reading %s: %w", key, mapErr(err))
	}
	defer obj.Close()
	h := sha256.New()
	n, err := io.Copy(h, obj)
	if err != nil {
		return "", 0, fmt.Errorf("reading %s: %w", key, mapErr(err))
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func isNotExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, problem.ErrNotFound)
}

// WithBucket returns a Store for another bucket on the same server and
// credentials (restores and drills write to a scratch bucket).
func (s *Store) WithBucket(bucket string) *Store {
	return &Store{client: s.client, public: s.public, bucket: bucket}
}
