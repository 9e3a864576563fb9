package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func newStore(t *testing.T, public *url.URL) (*Store, *testenv.MinIO) {
	t.Helper()
	mi := testenv.StartMinIO(t)
	s, err := Open(Options{
		Endpoint: mi.Endpoint, AccessKey: mi.AccessKey, SecretKey: mi.SecretKey,
		Region: "us-east-1", Bucket: testenv.UniqueName("blob"), PublicURL: public,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	return s, mi
}

func TestEnsureBucketIsIdempotentUnderRaces(t *testing.T) {
	s, _ := newStore(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- s.EnsureBucket(context.Background()) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// patternReader yields n deterministic bytes without holding them.
type patternReader struct{ left, pos int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := int64(len(p))
	if n > r.left {
		n = r.left
	}
	for i := range n {
		p[i] = byte((r.pos + i) * 31 % 251)
	}
	r.pos += n
	r.left -= n
	return int(n), nil
}

// TestPutStreamsUnknownSizeInBoundedMemory uploads 80 MiB of unknown length
// and checks the process allocated far less than the object's size.
func TestPutStreamsUnknownSizeInBoundedMemory(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	const size = 80 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	info, err := s.Put(ctx, "datasets/big.jsonl", &patternReader{left: size}, -1, "application/jsonl")
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != size {
		t.Fatalf("size: got %d, want %d", info.Size, size)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	if allocated > size/2 {
		t.Fatalf("uploading %d MiB allocated %d MiB: the upload is being buffered", size>>20, allocated>>20)
	}
	t.Logf("80 MiB upload allocated %d MiB", allocated>>20)

	// Read it back as a stream and compare checksums.
	rc, got, err := s.Get(ctx, "datasets/big.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h1, h2 := sha256.New(), sha256.New()
	if _, err := io.Copy(h1, rc); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(h2, &patternReader{left: size})
	if !bytes.Equal(h1.Sum(nil), h2.Sum(nil)) || got.Size != size || got.ContentType != "application/jsonl" {
		t.Fatalf("read back differs: %+v", got)
	}
}

func TestStatListRemovePrefix(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	for _, k := range []string{"models/j1/adapter.safetensors", "models/j1/config.json", "models/j2/adapter.safetensors"} {
		if _, err := s.Put(ctx, k, strings.NewReader("x-"+k), int64(len("x-"+k)), ""); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.List(ctx, "models/j1/")
	if err != nil || len(list) != 2 || list[0].Key != "models/j1/adapter.safetensors" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if st, err := s.Stat(ctx, "models/j1/config.json"); err != nil || st.Size != int64(len("x-models/j1/config.json")) {
		t.Fatalf("stat: %+v %v", st, err)
	}
	if _, err := s.Stat(ctx, "models/nope"); !errors.Is(err, problem.ErrNotFound) {
		t.Fatalf("stat missing: got %v, want ErrNotFound", err)
	}
	if _, _, err := s.Get(ctx, "models/nope"); !errors.Is(err, problem.ErrNotFound) {
		t.Fatalf("get missing: got %v, want ErrNotFound", err)
	}
	if err := s.RemovePrefix(ctx, "models/j1/"); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.List(ctx, "models/"); len(list) != 1 || list[0].Key != "models/j2/adapter.safetensors" {
		t.Fatalf("after remove: %+v", list)
	}
	if err := s.RemovePrefix(ctx, ""); err == nil {
		t.Fatal("an empty prefix (the whole bucket) was accepted")
	}
}

func TestRemove(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	for _, k := range []string{"datasets/a", "datasets/a/b", "datasets/ab"} {
		if _, err := s.Put(ctx, k, strings.NewReader(k), int64(len(k)), ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Remove(ctx, "datasets/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "datasets/a"); !errors.Is(err, problem.ErrNotFound) {
		t.Fatalf("stat after remove: got %v, want ErrNotFound", err)
	}
	// Only that key: objects it is a prefix of stay.
	if list, err := s.List(ctx, "datasets/"); err != nil || len(list) != 2 || list[0].Key != "datasets/a/b" || list[1].Key != "datasets/ab" {
		t.Fatalf("after remove: %+v %v", list, err)
	}
	// A missing object is no error, as with RemovePrefix.
	if err := s.Remove(ctx, "datasets/a"); err != nil {
		t.Fatalf("removing a missing object: %v", err)
	}
	if err := s.RemovePrefix(ctx, "datasets/nope"); err != nil {
		t.Fatalf("removing a missing prefix: %v", err)
	}
	if err := s.Remove(ctx, ""); err == nil {
		t.Fatal("an empty key was accepted")
	}
}

// TestPresignUsesThePublicHost signs for a different host name than the
// one the app uses, then downloads through that public name.
func TestPresignUsesThePublicHost(t *testing.T) {
	mi := testenv.StartMinIO(t)
	port := mi.Endpoint[strings.LastIndex(mi.Endpoint, ":")+1:]
	public := &url.URL{Scheme: "http", Host: "localhost:" + port}
	s, _ := newStore(t, public)
	ctx := context.Background()
	if _, err := s.Put(ctx, "models/j1/adapter.bin", strings.NewReader("weights"), 7, ""); err != nil {
		t.Fatal(err)
	}
	u, err := s.PresignGet(ctx, "models/j1/adapter.bin", time.Minute, "adapter.bin")
	if err != nil {
		t.Fatal(err)
	}
	if u.Host != public.Host || u.Query().Get("X-Amz-Signature") == "" {
		t.Fatalf("presigned URL %s: want host %s and a signature", u.Redacted(), public.Host)
	}
	resp, err := http.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "weights" || !strings.Contains(resp.Header.Get("Content-Disposition"), "adapter.bin") {
		t.Fatalf("download: %d %q %q", resp.StatusCode, b, resp.Header.Get("Content-Disposition"))
	}
}

// TestTLSWithCustomCA puts a TLS proxy with a self-signed certificate in
// front of MinIO: with S3_CA_FILE it works, without it the client refuses.
func TestTLSWithCustomCA(t *testing.T) {
	mi := testenv.StartMinIO(t)
	target, _ := url.Parse("http://" + mi.Endpoint)
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // the signature covers the Host header
	}}
	tlsSrv := httptest.NewTLSServer(proxy)
	defer tlsSrv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	endpoint := strings.TrimPrefix(tlsSrv.URL, "https://")
	opts := Options{Endpoint: endpoint, AccessKey: mi.AccessKey, SecretKey: mi.SecretKey, UseTLS: true,
		Region: "us-east-1", Bucket: testenv.UniqueName("tls")}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	untrusting, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := untrusting.EnsureBucket(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA: got %v, want a certificate error", err)
	}
	opts.CAFile = caFile
	trusting, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := trusting.EnsureBucket(ctx); err != nil {
		t.Fatalf("with S3_CA_FILE: %v", err)
	}
	if _, err := trusting.Put(ctx, "datasets/x", strings.NewReader("hello"), -1, ""); err != nil {
		t.Fatalf("put over TLS: %v", err)
	}

	bad := filepath.Join(t.TempDir(), "bad.pem")
	_ = os.WriteFile(bad, []byte("not a pem"), 0o600)
	opts.CAFile = bad
	if _, err := Open(opts); err == nil {
		t.Fatal("a CA file without certificates was accepted")
	}
}

func TestUnreachableIsUnavailable(t *testing.T) {
	s, err := Open(Options{Endpoint: "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)), AccessKey: "a", SecretKey: "b",
		Region: "us-east-1", Bucket: "some-bucket"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Ping(ctx); !errors.Is(err, problem.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
}

// Stat describes key, or returns an error wrapping problem.ErrNotFound; only
// tests ask about one object.
func (s *Store) Stat(ctx context.Context, key string) (Info, error) {
	st, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, fmt.Errorf("stat %s: %w", key, mapErr(err))
	}
	return infoOf(st), nil
}

// A write refused for lack of space maps to problem.ErrStorageFull (507
// storage_full), whichever way MinIO says it: its own threshold code, or
// an internal error caused by ENOSPC on a data disk that filled up under
// it (the form the fault suite's TestObjectStorageDiskFull gets).
func TestStorageFullMapsToStorageFull(t *testing.T) {
	for _, resp := range []minio.ErrorResponse{
		{Code: "XMinioStorageFull", Message: "Storage backend has reached its minimum free drive threshold.", StatusCode: 507},
		{Code: "InternalError", Message: "We encountered an internal error, please try again.: cause(no space left on device)", StatusCode: 500},
	} {
		err := mapErr(resp)
		if !errors.Is(err, problem.ErrStorageFull) {
			t.Errorf("%s: %v does not map to ErrStorageFull", resp.Code, err)
		}
		if p := problem.From(err); p.Status() != http.StatusInsufficientStorage || p.Code != problem.CodeStorageFull {
			t.Errorf("%s: answered %d %s, want 507 storage_full", resp.Code, p.Status(), p.Code)
		}
	}
	if err := mapErr(minio.ErrorResponse{Code: "InternalError", Message: "We encountered an internal error", StatusCode: 500}); errors.Is(err, problem.ErrStorageFull) {
		t.Errorf("an internal error without ENOSPC maps to storage full: %v", err)
	}
}
