package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/minio/minio-go/v7"
)

// Files is a flat set of named files kept at a Target: the files of a
// directory, or the objects directly under an s3:// prefix. The off-VM copy
// of the Postgres dumps uses it; names are plain file names (no slash).
//
// A file appears whole or not at all: a directory target writes under
// .staging and renames into place (then syncs), and an S3 PUT is atomic.
type Files struct {
	dir    string // directory target; "" for S3
	client *minio.Client
	bucket string
	prefix string // "" or ends with "/"
}

// FileInfo is one file of a Files.
type FileInfo struct {
	Name string
	Size int64
}

// OpenFiles connects to t (for s3://, creating its bucket when missing; for
// a directory, creating it).
func OpenFiles(ctx context.Context, t Target, s3 TargetS3) (*Files, error) {
	if t.Dir != "" {
		if err := os.MkdirAll(filepath.Join(t.Dir, ".staging"), 0o750); err != nil {
			return nil, fmt.Errorf("preparing backup directory: %w", err)
		}
		return &Files{dir: t.Dir}, nil
	}
	client, err := targetClient(ctx, t, s3)
	if err != nil {
		return nil, err
	}
	f := &Files{client: client, bucket: t.Bucket}
	if t.Prefix != "" {
		f.prefix = t.Prefix + "/"
	}
	return f, nil
}

// Location is where the files are, in ParseTarget's syntax.
func (f *Files) Location() string {
	if f.dir != "" {
		return f.dir
	}
	return "s3://" + f.bucket + "/" + strings.TrimSuffix(f.prefix, "/")
}

func validFileName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("%q is not a plain file name", name)
	}
	return nil
}

// List returns every file, in no particular order. Subdirectories (and
// objects under deeper prefixes) are not files of the set.
func (f *Files) List(ctx context.Context) ([]FileInfo, error) {
	var out []FileInfo
	if f.dir != "" {
		entries, err := os.ReadDir(f.dir)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || validFileName(e.Name()) != nil {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, os.ErrNotExist) {
				continue // removed since the listing
			}
			if err != nil {
				return nil, err
			}
			out = append(out, FileInfo{Name: e.Name(), Size: fi.Size()})
		}
		return out, nil
	}
	for obj := range f.client.ListObjects(ctx, f.bucket, minio.ListObjectsOptions{Prefix: f.prefix}) {
		if obj.Err != nil {
			return nil, mapErr(obj.Err)
		}
		name := strings.TrimPrefix(obj.Key, f.prefix)
		if strings.HasSuffix(name, "/") || validFileName(name) != nil {
			continue
		}
		out = append(out, FileInfo{Name: name, Size: obj.Size})
	}
	return out, nil
}

// Put stores size bytes read from r as name, replacing any file of that
// name. On S3, sha256 (when given) is kept as the object's metadata
// x-amz-meta-sha256, so any S3 client can show what the bytes should hash to.
func (f *Files) Put(ctx context.Context, name string, r io.Reader, size int64, sha256 string) error {
	if err := validFileName(name); err != nil {
		return err
	}
	if f.dir == "" {
		opts := minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: PartSize, NumThreads: 1}
		if sha256 != "" {
			opts.UserMetadata = map[string]string{"sha256": sha256}
		}
		_, err := f.client.PutObject(ctx, f.bucket, f.prefix+name, r, size, opts)
		return mapErr(err)
	}
	tmp, err := os.CreateTemp(filepath.Join(f.dir, ".staging"), name+"-*")
	if err != nil {
		return err
	}
	n, err := io.Copy(tmp, r)
	if err == nil && n != size {
		err = fmt.Errorf("writing %s: read %d bytes, want %d", name, n, size)
	}
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	return dirStore{root: f.dir}.place(tmp, filepath.Join(f.dir, name))
}

// PutBytes stores b as name.
func (f *Files) PutBytes(ctx context.Context, name string, b []byte) error {
	return f.Put(ctx, name, bytes.NewReader(b), int64(len(b)), "")
}

// Open reads name; a missing file is problem.ErrNotFound (or
// os.ErrNotExist), see IsNotExist.
func (f *Files) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := validFileName(name); err != nil {
		return nil, err
	}
	if f.dir != "" {
		return os.Open(filepath.Join(f.dir, name))
	}
	obj, err := f.client.GetObject(ctx, f.bucket, f.prefix+name, minio.GetObjectOptions{})
	if err != nil {
		return nil, mapErr(err)
	}
	// GetObject is lazy: ask now, so a missing object fails here.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, mapErr(err)
	}
	return obj, nil
}

// Remove deletes name; a missing file is not an error.
func (f *Files) Remove(ctx context.Context, name string) error {
	if err := validFileName(name); err != nil {
		return err
	}
	if f.dir != "" {
		err := os.Remove(filepath.Join(f.dir, name))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return mapErr(f.client.RemoveObject(ctx, f.bucket, f.prefix+name, minio.RemoveObjectOptions{}))
}

// IsNotExist reports whether err says a file or object does not exist.
func IsNotExist(err error) bool { return isNotExist(err) }
