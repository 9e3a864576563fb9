package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
)

func putString(t *testing.T, s *Store, key, body string) {
	t.Helper()
	if _, err := s.Put(context.Background(), key, strings.NewReader(body), int64(len(body)), "text/plain"); err != nil {
		t.Fatal(err)
	}
}

// bucketContents reads every object of s into a map key → body.
func bucketContents(t *testing.T, s *Store) map[string]string {
	t.Helper()
	ctx := context.Background()
	infos, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, in := range infos {
		r, _, err := s.Get(ctx, in.Key)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[in.Key] = string(b)
	}
	return out
}

func mirrorRun(t *testing.T, m *Mirror, s *Store) MirrorStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := m.Run(ctx, s)
	if err != nil {
		t.Fatalf("mirror run: %v", err)
	}
	if !st.Verified {
		t.Fatalf("mirror run not verified: %+v", st)
	}
	return st
}

func checkCounts(t *testing.T, got MirrorStats, objects, copied, skipped, removed int) {
	t.Helper()
	if got.Objects != objects || got.Copied != copied || got.Skipped != skipped || got.Removed != removed {
		t.Fatalf("got objects=%d copied=%d skipped=%d removed=%d, want %d %d %d %d",
			got.Objects, got.Copied, got.Skipped, got.Removed, objects, copied, skipped, removed)
	}
}

// TestMirrorResumesAndFollowsChanges mirrors a bucket to a directory, then
// changes, adds and deletes objects: the second run copies only what
// changed (counted, not timed), drops what was deleted, and a third run
// with nothing changed copies nothing.
func TestMirrorResumesAndFollowsChanges(t *testing.T) {
	s, _ := newStore(t, nil)
	putString(t, s, "datasets/a", "alpha")
	putString(t, s, "datasets/b", "bravo")
	putString(t, s, "models/j1/adapter.bin", strings.Repeat("x", 1<<20))
	putString(t, s, "datasets/dup", "bravo") // same bytes as b: stored once
	dir := t.TempDir()
	target, err := ParseTarget(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMirror(target, TargetS3{}, slog.New(slog.DiscardHandler))

	first := mirrorRun(t, m, s)
	checkCounts(t, first, 4, 4, 0, 0)
	if first.BytesCopied != 5+5+5+1<<20 {
		t.Fatalf("bytes copied: got %d", first.BytesCopied)
	}
	data, err := filepath.Glob(filepath.Join(dir, s.Bucket(), "data", "*", "*"))
	if err != nil || len(data) != 3 {
		t.Fatalf("data files: got %v (%v), want 3 (duplicate content stored once)", data, err)
	}

	putString(t, s, "datasets/a", "alpha, changed")
	putString(t, s, "datasets/c", "charlie")
	if err := s.Remove(context.Background(), "models/j1/adapter.bin"); err != nil {
		t.Fatal(err)
	}
	second := mirrorRun(t, m, s)
	// a changed and c is new: copied; b and dup unchanged: skipped; the
	// old a and the adapter's data files are no longer named: removed.
	checkCounts(t, second, 4, 2, 2, 2)
	if second.BytesCopied != int64(len("alpha, changed")+len("charlie")) {
		t.Fatalf("second run bytes copied: got %d", second.BytesCopied)
	}
	checkCounts(t, mirrorRun(t, m, s), 4, 0, 4, 0)

	man, err := loadManifest(context.Background(), dirStore{root: filepath.Join(dir, s.Bucket())}, s.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	if !man.Complete || len(man.Objects) != 4 {
		t.Fatalf("manifest: got complete=%v %d objects, want complete with 4", man.Complete, len(man.Objects))
	}
	for _, e := range man.Objects {
		want := bucketContents(t, s)[e.Key]
		sum := sha256.Sum256([]byte(want))
		if e.SHA256 != hex.EncodeToString(sum[:]) || e.Size != int64(len(want)) || e.ETag == "" {
			t.Errorf("manifest entry %+v does not describe %q", e, want)
		}
	}

	// A data file lost from the mirror is copied again, not trusted.
	if err := os.Remove(filepath.Join(dir, s.Bucket(), "data", man.Objects[0].SHA256[:2], man.Objects[0].SHA256)); err != nil {
		t.Fatal(err)
	}
	again := mirrorRun(t, m, s)
	if again.Copied < 1 {
		t.Fatalf("a missing data file was not copied again: %+v", again)
	}
}

// TestMirrorRestoreAndVerify restores a mirror into an empty bucket and
// checks it byte for byte, then tampers with the mirror and the bucket and
// expects Verify to name each difference.
func TestMirrorRestoreAndVerify(t *testing.T) {
	for _, kind := range []string{"dir", "s3"} {
		t.Run(kind, func(t *testing.T) {
			s, mi := newStore(t, nil)
			putString(t, s, "datasets/one", "first object")
			putString(t, s, "models/j/x/weights", strings.Repeat("w", 3<<20))
			putString(t, s, "datasets/empty", "")
			raw := t.TempDir()
			s3 := TargetS3{}
			if kind == "s3" {
				raw = "s3://" + testenv.UniqueName("mirror") + "/nightly/objects"
				s3 = TargetS3{Endpoint: mi.Endpoint, AccessKey: mi.AccessKey, SecretKey: mi.SecretKey, Region: "us-east-1"}
			}
			target, err := ParseTarget(raw)
			if err != nil {
				t.Fatal(err)
			}
			m := NewMirror(target, s3, slog.New(slog.DiscardHandler))
			checkCounts(t, mirrorRun(t, m, s), 3, 3, 0, 0)
			want := bucketContents(t, s)

			ctx := context.Background()
			scratch := s.WithBucket(testenv.UniqueName("restore"))
			rs, err := m.Restore(ctx, s.Bucket(), scratch)
			if err != nil {
				t.Fatal(err)
			}
			if rs.Objects != 3 {
				t.Fatalf("restored %d objects, want 3", rs.Objects)
			}
			got := bucketContents(t, scratch)
			if len(got) != len(want) {
				t.Fatalf("restored keys: got %d, want %d", len(got), len(want))
			}
			for k, v := range want {
				if got[k] != v {
					t.Fatalf("restored %s differs (%d bytes, want %d)", k, len(got[k]), len(v))
				}
			}
			diffs, err := m.Verify(ctx, s.Bucket(), scratch)
			if err != nil || len(diffs) != 0 {
				t.Fatalf("verify after restore: got %v, %v; want no differences", diffs, err)
			}

			// Tamper: change the bucket, add to it, corrupt the mirror.
			putString(t, scratch, "datasets/one", "first object, edited")
			putString(t, scratch, "datasets/stray", "not mirrored")
			if kind == "dir" {
				sum := sha256.Sum256([]byte(strings.Repeat("w", 3<<20)))
				sha := hex.EncodeToString(sum[:])
				p := filepath.Join(raw, s.Bucket(), "data", sha[:2], sha)
				if err := os.WriteFile(p, bytes.Repeat([]byte("v"), 3<<20), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			diffs, err = m.Verify(ctx, s.Bucket(), scratch)
			if err != nil {
				t.Fatal(err)
			}
			problems := map[string]string{}
			for _, d := range diffs {
				problems[d.Key] = d.Problem
			}
			wantProblems := map[string]string{
				"datasets/one":   "bucket content differs",
				"datasets/stray": "in the bucket but not in the mirror",
			}
			if kind == "dir" {
				wantProblems["models/j/x/weights"] = "mirror data file does not match the manifest"
			}
			if len(problems) != len(wantProblems) {
				t.Fatalf("differences: got %v, want %v", diffs, wantProblems)
			}
			for k, p := range wantProblems {
				if !strings.HasPrefix(problems[k], p) {
					t.Errorf("difference for %s: got %q, want %q...", k, problems[k], p)
				}
			}
			if kind == "dir" {
				// A restore from the tampered mirror refuses that object.
				_, err := m.Restore(ctx, s.Bucket(), s.WithBucket(testenv.UniqueName("restore")))
				if err == nil || !strings.Contains(err.Error(), "models/j/x/weights") {
					t.Fatalf("restore from a tampered mirror: got %v, want an error naming the object", err)
				}
			}
		})
	}
}

// TestMirrorKeepsBackupOfEmptiedBucket: a bucket that comes back empty (a
// lost object volume) must not wipe the mirror that would restore it.
func TestMirrorKeepsBackupOfEmptiedBucket(t *testing.T) {
	s, _ := newStore(t, nil)
	putString(t, s, "datasets/one", "first object")
	putString(t, s, "datasets/two", "second object")
	m := NewMirror(Target{Dir: t.TempDir()}, TargetS3{}, slog.New(slog.DiscardHandler))
	checkCounts(t, mirrorRun(t, m, s), 2, 2, 0, 0)
	want := bucketContents(t, s)

	// The same bucket name on a fresh server: here, the objects deleted.
	ctx := context.Background()
	for k := range want {
		if err := s.Remove(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	_, err := m.Run(ctx, s)
	if err == nil || !strings.Contains(err.Error(), "is empty but the mirror") {
		t.Fatalf("mirror of an emptied bucket: got %v, want a refusal", err)
	}
	if _, err := m.Restore(ctx, s.Bucket(), s); err != nil {
		t.Fatalf("restore after the refused run: %v", err)
	}
	got := bucketContents(t, s)
	if len(got) != len(want) || got["datasets/one"] != want["datasets/one"] || got["datasets/two"] != want["datasets/two"] {
		t.Fatalf("restored %v, want %v", got, want)
	}
}

func TestRestoreWithoutMirrorFails(t *testing.T) {
	s, _ := newStore(t, nil)
	m := NewMirror(Target{Dir: t.TempDir()}, TargetS3{}, slog.New(slog.DiscardHandler))
	_, err := m.Restore(context.Background(), s.Bucket(), s.WithBucket(testenv.UniqueName("restore")))
	if err == nil || !strings.Contains(err.Error(), "no mirror") {
		t.Fatalf("got %v, want a no-mirror error", err)
	}
}

func TestEnableVersioningIsIdempotent(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	if on, err := s.Versioning(ctx); err != nil || on {
		t.Fatalf("a new bucket: got versioning=%v (%v), want off", on, err)
	}
	for range 2 {
		if err := s.EnableVersioning(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if on, err := s.Versioning(ctx); err != nil || !on {
		t.Fatalf("got versioning=%v (%v), want on", on, err)
	}
	lc, err := s.client.GetBucketLifecycle(ctx, s.bucket)
	if err != nil || len(lc.Rules) != 1 || lc.Rules[0].NoncurrentVersionExpiration.NoncurrentDays != NoncurrentVersionDays {
		t.Fatalf("lifecycle: got %+v, %v; want noncurrent versions expiring after %d days", lc, err, NoncurrentVersionDays)
	}
	// An overwritten object's previous version is kept.
	putString(t, s, "datasets/v", "one")
	putString(t, s, "datasets/v", "two")
	n := 0
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: "datasets/v", WithVersions: true, Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("versions of an overwritten object: got %d, want 2", n)
	}
}

func TestParseTarget(t *testing.T) {
	good := map[string]Target{
		"/backups/objects":            {Dir: "/backups/objects"},
		"/backups//objects/":          {Dir: "/backups/objects"},
		"s3://my-backups":             {Bucket: "my-backups"},
		"s3://my-backups/":            {Bucket: "my-backups"},
		"s3://my.backups/nightly/obj": {Bucket: "my.backups", Prefix: "nightly/obj"},
	}
	for in, want := range good {
		got, err := ParseTarget(in)
		if err != nil || got != want {
			t.Errorf("ParseTarget(%q): got %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":                                "absolute path",
		"backups":                         "absolute path",
		"./backups":                       "absolute path",
		"/":                               "root directory",
		"s3://":                           "not a valid bucket name",
		"s3://Bucket/x":                   "not a valid bucket name",
		"s3://ab/x":                       "not a valid bucket name",
		"s3://-bucket/x":                  "not a valid bucket name",
		"s3://user:pw@bucket/x":           "not a valid bucket name",
		"s3://bucket:9000/x":              "not a valid bucket name",
		"s3://bucket/a//b":                "empty, . or .. segment",
		"s3://bucket/../etc":              "empty, . or .. segment",
		"s3://bucket/x?versionId=1":       "no query",
		"s3://bucket/x#frag":              "no query",
		"http://host/bucket":              "unsupported scheme",
		"S3://bucket/x":                   "unsupported scheme",
		"/backups/\x00x":                  "control characters",
		"s3://bucket/a\nb":                "control characters",
		"s3://bucket..name/x":             "not a valid bucket name",
		"s3://" + strings.Repeat("a", 64): "not a valid bucket name",
	}
	for in, want := range bad {
		_, err := ParseTarget(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTarget(%q): got %v, want an error containing %q", in, err, want)
		}
	}
}

// FuzzParseTarget: whatever the input, a parsed target is one that can be
// used safely (an absolute clean directory, or a valid bucket with a prefix
// free of empty and dot segments) and prints back to itself.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"/backups/objects", "s3://b-1/p/q", "s3://x", "rel", "s3://a..b/", "s3://bkt/../x", "ftp://x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseTarget(s)
		if err != nil {
			return
		}
		if (tg.Dir == "") == (tg.Bucket == "") {
			t.Fatalf("%q: exactly one of Dir and Bucket must be set: %+v", s, tg)
		}
		if tg.Dir != "" && (!filepath.IsAbs(tg.Dir) || filepath.Clean(tg.Dir) != tg.Dir || tg.Dir == "/") {
			t.Fatalf("%q: unsafe directory %q", s, tg.Dir)
		}
		if tg.Bucket != "" {
			if !ValidBucketName(tg.Bucket) {
				t.Fatalf("%q: invalid bucket %q", s, tg.Bucket)
			}
			for _, seg := range strings.Split(tg.Prefix, "/") {
				if tg.Prefix != "" && (seg == "" || seg == "." || seg == "..") {
					t.Fatalf("%q: unsafe prefix %q", s, tg.Prefix)
				}
			}
		}
		again, err := ParseTarget(tg.String())
		if err != nil || again != tg {
			t.Fatalf("%q: String() %q parses to %+v, %v", s, tg.String(), again, err)
		}
	})
}
