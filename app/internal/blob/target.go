package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Target is where an object mirror is kept: a local directory (Dir) or a
// prefix in a bucket on an S3-compatible endpoint (Bucket, Prefix).
type Target struct {
	Dir    string // absolute and clean; empty for an S3 target
	Bucket string
	Prefix string // no leading or trailing slash; may be empty
}

// String is the target in the syntax ParseTarget reads.
func (t Target) String() string {
	if t.Dir != "" {
		return t.Dir
	}
	if t.Prefix == "" {
		return "s3://" + t.Bucket
	}
	return "s3://" + t.Bucket + "/" + t.Prefix
}

// ParseTarget reads a mirror target: an absolute directory such as
// /backups/objects, or s3://bucket[/prefix]. Anything else is refused with
// a reason an operator can act on: a relative path (it would depend on the
// working directory), another scheme, a malformed bucket name, a prefix
// with empty or dot segments, a query or fragment.
func ParseTarget(s string) (Target, error) {
	if strings.ContainsAny(s, "\x00\r\n") {
		return Target{}, errors.New("target contains control characters")
	}
	if rest, ok := strings.CutPrefix(s, "s3://"); ok {
		if strings.ContainsAny(rest, "?#\\") {
			return Target{}, fmt.Errorf("%q: an s3:// target takes no query, fragment or backslash", s)
		}
		bucket, prefix, _ := strings.Cut(rest, "/")
		if !ValidBucketName(bucket) {
			return Target{}, fmt.Errorf("%q: %q is not a valid bucket name (3-63 lower-case letters, digits, dots, hyphens)", s, bucket)
		}
		prefix = strings.TrimSuffix(prefix, "/")
		if prefix != "" {
			for _, seg := range strings.Split(prefix, "/") {
				if seg == "" || seg == "." || seg == ".." {
					return Target{}, fmt.Errorf("%q: the prefix has an empty, . or .. segment", s)
				}
			}
		}
		return Target{Bucket: bucket, Prefix: prefix}, nil
	}
	if i := strings.Index(s, "://"); i >= 0 {
		return Target{}, fmt.Errorf("%q: unsupported scheme %q (want an absolute directory or s3://bucket/prefix)", s, s[:i])
	}
	if !filepath.IsAbs(s) {
		return Target{}, fmt.Errorf("%q: a directory target must be an absolute path", s)
	}
	dir := filepath.Clean(s)
	if dir == string(filepath.Separator) {
		return Target{}, errors.New("the root directory cannot be a mirror target")
	}
	return Target{Dir: dir}, nil
}

// ValidBucketName reports whether s is a valid S3 bucket name: 3-63
// characters of lower-case letters, digits, dots and hyphens, starting and
// ending with a letter or digit, with no two adjacent dots.
func ValidBucketName(s string) bool {
	if len(s) < 3 || len(s) > 63 || strings.Contains(s, "..") {
		return false
	}
	for i, r := range s {
		alnum := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')
		if !alnum && (i == 0 || i == len(s)-1 || (r != '.' && r != '-')) {
			return false
		}
	}
	return true
}

// TargetS3 is the endpoint and credentials of an s3:// target.
type TargetS3 struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	UseTLS    bool
	CAFile    string // PEM bundle trusted in addition to the system roots
	Region    string
}

// targetClient connects to an s3:// target's endpoint and creates its
// bucket when missing (safe to race with another instance doing the same).
func targetClient(ctx context.Context, t Target, s3 TargetS3) (*minio.Client, error) {
	transport, err := newTransport(s3.CAFile)
	if err != nil {
		return nil, err
	}
	client, err := minio.New(s3.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(s3.AccessKey, s3.SecretKey, ""),
		Secure:    s3.UseTLS,
		Transport: transport,
		Region:    s3.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("creating backup target client: %w", err)
	}
	ok, err := client.BucketExists(ctx, t.Bucket)
	if err != nil {
		return nil, fmt.Errorf("checking backup target bucket: %w", mapErr(err))
	}
	if !ok {
		if err := client.MakeBucket(ctx, t.Bucket, minio.MakeBucketOptions{Region: s3.Region}); err != nil {
			code := minio.ToErrorResponse(err).Code
			if code != "BucketAlreadyOwnedByYou" && code != "BucketAlreadyExists" {
				return nil, fmt.Errorf("creating backup target bucket: %w", mapErr(err))
			}
		}
	}
	return client, nil
}

// mirrorStore is the storage under one mirror: content-addressed data
// files (named by their sha256) and the manifest.
type mirrorStore interface {
	location() string
	// readManifest returns the manifest's bytes, or nil when there is none.
	readManifest(ctx context.Context) ([]byte, error)
	// writeManifest replaces the manifest atomically.
	writeManifest(ctx context.Context, b []byte) error
	// stagingDir is where a copy is spooled before put; "" for the
	// system's temporary directory.
	stagingDir() string
	// put stores the spooled file f (size bytes, at offset 0) as sha.
	// It may move or delete f.
	put(ctx context.Context, sha string, f *os.File, size int64) error
	// size returns the stored size of sha, or -1 when it is absent.
	size(ctx context.Context, sha string) (int64, error)
	open(ctx context.Context, sha string) (io.ReadCloser, error)
	// list returns every stored sha.
	list(ctx context.Context) ([]string, error)
	remove(ctx context.Context, sha string) error
}

// openMirrorStore returns the store for the mirror of bucket at t.
func openMirrorStore(ctx context.Context, t Target, s3 TargetS3, bucket string) (mirrorStore, error) {
	if t.Dir != "" {
		root := filepath.Join(t.Dir, bucket)
		for _, d := range []string{root, filepath.Join(root, "data"), filepath.Join(root, ".staging")} {
			if err := os.MkdirAll(d, 0o750); err != nil {
				return nil, fmt.Errorf("preparing mirror directory: %w", err)
			}
		}
		return dirStore{root: root}, nil
	}
	client, err := targetClient(ctx, t, s3)
	if err != nil {
		return nil, err
	}
	return s3Store{client: client, target: t, prefix: path.Join(t.Prefix, bucket)}, nil
}

// dirStore keeps a mirror in a directory: manifest.json and
// data/<sha[:2]>/<sha>. Files are written under .staging and renamed into
// place, so a reader never sees a partial file.
type dirStore struct{ root string }

func (d dirStore) location() string   { return d.root }
func (d dirStore) stagingDir() string { return filepath.Join(d.root, ".staging") }

func (d dirStore) dataPath(sha string) string {
	return filepath.Join(d.root, "data", sha[:2], sha)
}

func (d dirStore) readManifest(context.Context) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(d.root, "manifest.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (d dirStore) writeManifest(_ context.Context, b []byte) error {
	f, err := os.CreateTemp(d.stagingDir(), "manifest-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	return d.place(f, filepath.Join(d.root, "manifest.json"))
}

// place makes the written file f durable and renames it to dst, then syncs
// the directory so the rename survives a crash.
func (d dirStore) place(f *os.File, dst string) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	dir, err := os.Open(filepath.Dir(dst))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

func (d dirStore) put(_ context.Context, sha string, f *os.File, _ int64) error {
	dst := d.dataPath(sha)
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	return d.place(f, dst)
}

func (d dirStore) size(_ context.Context, sha string) (int64, error) {
	fi, err := os.Stat(d.dataPath(sha))
	if errors.Is(err, os.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (d dirStore) open(_ context.Context, sha string) (io.ReadCloser, error) {
	return os.Open(d.dataPath(sha))
}

func (d dirStore) list(context.Context) ([]string, error) {
	var out []string
	err := filepath.WalkDir(filepath.Join(d.root, "data"), func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && validSHA(e.Name()) {
			out = append(out, e.Name())
		}
		return nil
	})
	return out, err
}

func (d dirStore) remove(_ context.Context, sha string) error {
	err := os.Remove(d.dataPath(sha))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// s3Store keeps a mirror under prefix in a bucket: manifest.json and
// data/<sha[:2]>/<sha>. A PUT is atomic on S3, so no staging is needed
// there; copies are spooled to a local temporary file first because the
// object's name is its hash, known only once it has been read.
type s3Store struct {
	client *minio.Client
	target Target
	prefix string
}

func (s s3Store) location() string   { return "s3://" + s.target.Bucket + "/" + s.prefix }
func (s s3Store) stagingDir() string { return "" }

func (s s3Store) dataKey(sha string) string { return s.prefix + "/data/" + sha[:2] + "/" + sha }

func (s s3Store) readManifest(ctx context.Context) ([]byte, error) {
	obj, err := s.client.GetObject(ctx, s.target.Bucket, s.prefix+"/manifest.json", minio.GetObjectOptions{})
	if err != nil {
		return nil, mapErr(err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return nil, nil
	}
	return b, mapErr(err)
}

func (s s3Store) writeManifest(ctx context.Context, b []byte) error {
	_, err := s.client.PutObject(ctx, s.target.Bucket, s.prefix+"/manifest.json", bytes.NewReader(b), int64(len(b)),
		minio.PutObjectOptions{ContentType: "application/json"})
	return mapErr(err)
}

func (s s3Store) put(ctx context.Context, sha string, f *os.File, size int64) error {
	defer func() { f.Close(); os.Remove(f.Name()) }()
	_, err := s.client.PutObject(ctx, s.target.Bucket, s.dataKey(sha), f, size,
		minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: PartSize, NumThreads: 1})
	return mapErr(err)
}

func (s s3Store) size(ctx context.Context, sha string) (int64, error) {
	st, err := s.client.StatObject(ctx, s.target.Bucket, s.dataKey(sha), minio.StatObjectOptions{})
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return -1, nil
	}
	if err != nil {
		return 0, mapErr(err)
	}
	return st.Size, nil
}

func (s s3Store) open(ctx context.Context, sha string) (io.ReadCloser, error) {
	obj, err := s.client.GetObject(ctx, s.target.Bucket, s.dataKey(sha), minio.GetObjectOptions{})
	return obj, mapErr(err)
}

func (s s3Store) list(ctx context.Context) ([]string, error) {
	var out []string
	for obj := range s.client.ListObjects(ctx, s.target.Bucket, minio.ListObjectsOptions{Prefix: s.prefix + "/data/", Recursive: true}) {
		if obj.Err != nil {
			return nil, mapErr(obj.Err)
		}
		if name := path.Base(obj.Key); validSHA(name) {
			out = append(out, name)
		}
	}
	return out, nil
}

func (s s3Store) remove(ctx context.Context, sha string) error {
	return mapErr(s.client.RemoveObject(ctx, s.target.Bucket, s.dataKey(sha), minio.RemoveObjectOptions{}))
}

// validSHA reports whether s is a lower-case hex sha256.
func validSHA(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}
