package runner

import (
	"context"
	"io"
	"path"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/blob"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// BlobObjects adapts the blob store to the object storage interface the
// training domain declares, keeping blob's types out of the domain. The API
// and the runner share it.
func BlobObjects(b *blob.Store) training.Objects { return blobObjects{b} }

type blobObjects struct{ b *blob.Store }

func (o blobObjects) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	_, err := o.b.Put(ctx, key, r, size, contentType)
	return err
}

func (o blobObjects) Get(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	rc, info, err := o.b.Get(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	return rc, info.Size, nil
}

func (o blobObjects) List(ctx context.Context, prefix string) ([]training.ObjectInfo, error) {
	infos, err := o.b.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]training.ObjectInfo, 0, len(infos))
	for _, i := range infos {
		out = append(out, training.ObjectInfo{Key: i.Key, Size: i.Size})
	}
	return out, nil
}

// Remove deletes one object; a missing one is not an error.
func (o blobObjects) Remove(ctx context.Context, key string) error {
	return o.b.Remove(ctx, key)
}

func (o blobObjects) RemovePrefix(ctx context.Context, prefix string) error {
	return o.b.RemovePrefix(ctx, prefix)
}

func (o blobObjects) Presign(ctx context.Context, key string, expiry time.Duration) (string, error) {
	u, err := o.b.PresignGet(ctx, key, expiry, path.Base(key))
	if err != nil {
		return "", err
	}
	return u.String(), nil
}
