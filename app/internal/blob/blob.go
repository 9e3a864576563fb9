// Package blob is the application's object storage (S3 / MinIO) and the only
// package that imports minio-go. Objects are streamed both ways: uploads of
// unknown size go up in fixed-size multipart parts, so memory per upload is
// bounded by PartSize however large the file is.
//
// Layout in the bucket (the domain's convention): datasets/… for uploaded
// datasets, models/{job_id}/… for trained adapters. TrainingObjects hands
// the store to the domain as training.Objects.
package blob

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/lifecycle"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

// PartSize is the multipart chunk for uploads: the most memory one upload
// holds at a time. 16 MiB keeps a 100 GiB object under S3's 10,000-part
// limit (about 156 GiB) while a handful of concurrent uploads stay small.
const PartSize = 16 << 20

// Options configures Open.
type Options struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	UseTLS    bool
	CAFile    string // PEM bundle trusted in addition to the system roots
	Region    string
	Bucket    string
	// PublicURL is the scheme and host clients download from; presigned
	// URLs are signed for it (the signature covers the host).
	PublicURL *url.URL
}

// Store is a bucket.
type Store struct {
	client *minio.Client
	public *minio.Client
	bucket string
}

// Open builds the clients; it does no I/O (see EnsureBucket).
func Open(opts Options) (*Store, error) {
	transport, err := newTransport(opts.CAFile)
	if err != nil {
		return nil, err
	}
	newClient := func(endpoint string, secure bool) (*minio.Client, error) {
		return minio.New(endpoint, &minio.Options{
			Creds:     credentials.NewStaticV4(opts.AccessKey, opts.SecretKey, ""),
			Secure:    secure,
			Transport: transport,
			// A fixed region means presigning and requests never ask the
			// server for the bucket's location first.
			Region:       opts.Region,
			BucketLookup: minio.BucketLookupPath,
		})
	}
	client, err := newClient(opts.Endpoint, opts.UseTLS)
	if err != nil {
		return nil, fmt.Errorf("creating object storage client: %w", err)
	}
	public := client
	if opts.PublicURL != nil && opts.PublicURL.Host != "" {
		public, err = newClient(opts.PublicURL.Host, opts.PublicURL.Scheme == "https")
		if err != nil {
			return nil, fmt.Errorf("creating presigning client for S3_PUBLIC_URL: %w", err)
		}
	}
	return &Store{client: client, public: public, bucket: opts.Bucket}, nil
}

func newTransport(caFile string) (*http.Transport, error) {
	t, err := minio.DefaultTransport(true)
	if err != nil {
		return nil, err
	}
	if caFile == "" {
		return t, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading the CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("the CA file %s holds no PEM certificate", caFile)
	}
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	t.TLSClientConfig.RootCAs = pool
	return t, nil
}

// EnsureBucket creates the bucket unless it exists. Safe to race with other
// instances doing the same.
func (s *Store) EnsureBucket(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("checking bucket: %w", mapErr(err))
	}
	if ok {
		return nil
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{})
	if err != nil {
		code := minio.ToErrorResponse(err).Code
		if code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
			return nil
		}
		return fmt.Errorf("creating bucket: %w", mapErr(err))
	}
	return nil
}

// NoncurrentVersionDays is how long an overwritten or deleted object's
// previous version is kept once versioning is on. Without a limit, every
// delete (the orphan sweep, job deletions) would keep its bytes forever.
const NoncurrentVersionDays = 30

// EnableVersioning turns on versioning for the bucket, so an overwritten
// or deleted object keeps its previous versions for NoncurrentVersionDays
// (a mistaken delete is recoverable from the bucket itself), and sets the
// lifecycle rule that expires them after that. Idempotent. Servers that
// cannot version (some S3 look-alikes, old MinIO filesystem mode) refuse;
// the caller decides what that means. The lifecycle rule replaces any
// other on the bucket: the app owns its bucket.
func (s *Store) EnableVersioning(ctx context.Context) error {
	if err := s.client.EnableVersioning(ctx, s.bucket); err != nil {
		return fmt.Errorf("enabling versioning: %w", mapErr(err))
	}
	lc := lifecycle.NewConfiguration()
	lc.Rules = []lifecycle.Rule{{
		ID:                          "expire-noncurrent-versions",
		Status:                      "Enabled",
		NoncurrentVersionExpiration: lifecycle.NoncurrentVersionExpiration{NoncurrentDays: NoncurrentVersionDays},
		// A delete marker with no versions left behind it is clutter.
		Expiration: lifecycle.Expiration{DeleteMarker: true},
	}}
	if err := s.client.SetBucketLifecycle(ctx, s.bucket, lc); err != nil {
		return fmt.Errorf("setting the noncurrent-version lifecycle: %w", mapErr(err))
	}
	return nil
}

// Versioning reports whether versioning is enabled on the bucket.
func (s *Store) Versioning(ctx context.Context) (bool, error) {
	c, err := s.client.GetBucketVersioning(ctx, s.bucket)
	if err != nil {
		return false, fmt.Errorf("reading versioning: %w", mapErr(err))
	}
	return c.Enabled(), nil
}

// Bucket is the bucket's name.
func (s *Store) Bucket() string { return s.bucket }

// Ping checks the bucket is reachable with our credentials.
func (s *Store) Ping(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return mapErr(err)
	}
	if !ok {
		return errors.New("bucket missing")
	}
	return nil
}

// Info describes a stored object.
type Info struct {
	Key          string
	Size         int64
	ETag         string
	ContentType  string
	LastModified time.Time
}

// Put streams r to key. size is the exact length, or -1 when unknown (the
// upload then proceeds in PartSize parts; nothing is buffered beyond one
// part).
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) (Info, error) {
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	ui, err := s.client.PutObject(ctx, s.bucket, key, r, size, minio.PutObjectOptions{
		ContentType: contentType,
		PartSize:    PartSize,
		NumThreads:  1,
	})
	if err != nil {
		return Info{}, fmt.Errorf("storing %s: %w", key, mapErr(err))
	}
	return Info{Key: key, Size: ui.Size, ETag: ui.ETag, ContentType: contentType, LastModified: ui.LastModified}, nil
}

// Get opens key for streaming; the caller closes the reader.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, Info, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, Info{}, fmt.Errorf("reading %s: %w", key, mapErr(err))
	}
	st, err := obj.Stat()
	if err != nil {
		obj.Close()
		return nil, Info{}, fmt.Errorf("reading %s: %w", key, mapErr(err))
	}
	return obj, infoOf(st), nil
}

// List returns every object under prefix, in key order.
func (s *Store) List(ctx context.Context, prefix string) ([]Info, error) {
	var out []Info
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("listing %s: %w", prefix, mapErr(obj.Err))
		}
		out = append(out, infoOf(obj))
	}
	return out, nil
}

// Remove deletes the object key in one request. A key that does not exist
// is not an error (S3's DELETE succeeds), as with RemovePrefix.
func (s *Store) Remove(ctx context.Context, key string) error {
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("removing %s: %w", key, mapErr(err))
	}
	return nil
}

// RemovePrefix deletes every object under prefix. An empty prefix is
// refused: it would empty the bucket.
func (s *Store) RemovePrefix(ctx context.Context, prefix string) error {
	if prefix == "" {
		return errors.New("refusing to remove an empty prefix")
	}
	objects := make(chan minio.ObjectInfo)
	listErr := make(chan error, 1)
	go func() {
		defer close(objects)
		for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if obj.Err != nil {
				listErr <- obj.Err
				return
			}
			select {
			case objects <- obj:
			case <-ctx.Done():
				return
			}
		}
	}()
	for e := range s.client.RemoveObjects(ctx, s.bucket, objects, minio.RemoveObjectsOptions{}) {
		if e.Err != nil {
			// Drain the lister so its goroutine ends.
			for range objects {
			}
			return fmt.Errorf("removing %s: %w", e.ObjectName, mapErr(e.Err))
		}
	}
	select {
	case err := <-listErr:
		return fmt.Errorf("listing %s: %w", prefix, mapErr(err))
	default:
	}
	return ctx.Err()
}

// PresignGet returns a URL on the public host that downloads key for
// expiry, with filename as the download name when set. The URL is a
// credential: never log it.
func (s *Store) PresignGet(ctx context.Context, key string, expiry time.Duration, filename string) (*url.URL, error) {
	params := url.Values{}
	if filename != "" {
		params.Set("response-content-disposition", fmt.Sprintf("attachment; filename=%q", filename))
	}
	u, err := s.public.PresignedGetObject(ctx, s.bucket, key, expiry, params)
	if err != nil {
		return nil, fmt.Errorf("presigning %s: %w", key, mapErr(err))
	}
	return u, nil
}

func infoOf(o minio.ObjectInfo) Info {
	return Info{Key: o.Key, Size: o.Size, ETag: o.ETag, ContentType: o.ContentType, LastModified: o.LastModified}
}

// mapErr maps S3 errors onto problem sentinels; transport failures become
// unavailable.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "NoSuchKey", "NoSuchBucket", "NoSuchUpload":
		return fmt.Errorf("%w: %w", problem.ErrNotFound, err)
	case "SlowDown", "ServiceUnavailable", "XMinioServerNotInitialized":
		return fmt.Errorf("%w: %w", problem.ErrUnavailable, err)
	case "XMinioStorageFull":
		// MinIO below its free-space threshold (507).
		return fmt.Errorf("%w: %w", problem.ErrStorageFull, err)
	case "InternalError":
		// A full data disk MinIO did not see coming: the write fails with
		// ENOSPC, reported as an internal error naming its cause.
		if strings.Contains(resp.Message, "no space left on device") {
			return fmt.Errorf("%w: %w", problem.ErrStorageFull, err)
		}
	case "":
		if resp.StatusCode == 0 && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("%w: %w", problem.ErrUnavailable, err)
		}
	}
	return err
}
