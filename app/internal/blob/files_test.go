package blob

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
)

// TestFilesOnS3 stores files under a prefix of a bucket the target creates:
// the sha256 given is kept as the object's x-amz-meta-sha256, a listing
// holds only the files directly under the prefix, a missing file is
// reported as not existing, and removing one twice is fine.
func TestFilesOnS3(t *testing.T) {
	s, mi := newStore(t, nil)
	ctx := context.Background()
	bucket := testenv.UniqueName("files")
	target, err := ParseTarget("s3://" + bucket + "/site/pg")
	if err != nil {
		t.Fatal(err)
	}
	f, err := OpenFiles(ctx, target, TargetS3{Endpoint: mi.Endpoint, AccessKey: mi.AccessKey, SecretKey: mi.SecretKey, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Location(); got != "s3://"+bucket+"/site/pg" {
		t.Fatalf("location: got %q", got)
	}
	const body = "PGDMP bytes"
	if err := f.Put(ctx, "a.dump", strings.NewReader(body), int64(len(body)), "0123abcd"); err != nil {
		t.Fatal(err)
	}
	if err := f.PutBytes(ctx, "a.dump.manifest", []byte("sha256\t0123abcd\n")); err != nil {
		t.Fatal(err)
	}
	// Not files of the set: deeper keys and keys beside the prefix.
	other := s.WithBucket(bucket)
	for _, key := range []string{"site/pg/deeper/x", "site/pgx", "site/other"} {
		if _, err := other.Put(ctx, key, strings.NewReader("x"), 1, ""); err != nil {
			t.Fatal(err)
		}
	}
	list, err := f.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fi := range list {
		names = append(names, fi.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"a.dump", "a.dump.manifest"}) {
		t.Fatalf("list: got %v", names)
	}
	st, err := s.client.StatObject(ctx, bucket, "site/pg/a.dump", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.UserMetadata["Sha256"]; got != "0123abcd" {
		t.Fatalf("x-amz-meta-sha256: got %q (metadata %v)", got, st.UserMetadata)
	}
	r, err := f.Open(ctx, "a.dump")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != body {
		t.Fatalf("read back %q", b)
	}
	if _, err := f.Open(ctx, "missing.dump"); !IsNotExist(err) {
		t.Fatalf("open a missing file: got %v, want not-exist", err)
	}
	for range 2 {
		if err := f.Remove(ctx, "a.dump"); err != nil {
			t.Fatalf("remove: %v", err)
		}
	}
	if err := f.Put(ctx, "../escape", strings.NewReader(""), 0, ""); err == nil {
		t.Fatal("a name with a slash was accepted")
	}
}
