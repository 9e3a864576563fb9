package blob

import (
	"context"
	"io"
	"path"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// TrainingObjects adapts the store to the object storage interface the
// training domain declares (training.Objects), keeping blob's types out of
// the domain. The API's service and the runner share it.
func (s *Store) TrainingObjects() training.Objects { return trainingObjects{s} }

type trainingObjects struct{ b *Store }

func (o trainingObjects) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	_, err := o.b.Put(ctx, key, r, size, contentType)
	return err
}

func (o trainingObjects) Get(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	rc, info, err := o.b.Get(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	return rc, info.Size, nil
}

func (o trainingObjects) List(ctx context.Context, prefix string) ([]training.ObjectInfo, error) {
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
func (o trainingObjects) Remove(ctx context.Context, key string) error {
	return o.b.Remove(ctx, key)
}

func (o trainingObjects) RemovePrefix(ctx context.Context, prefix string) error {
	return o.b.RemovePrefix(ctx, prefix)
}

func (o trainingObjects) Presign(ctx context.Context, key string, expiry time.Duration) (string, error) {
	u, err := o.b.PresignGet(ctx, key, expiry, path.Base(key))
	if err != nil {
		return "", err
	}
	return u.String(), nil
}
