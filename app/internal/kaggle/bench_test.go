package kaggle_test

import (
	"context"
	"io"
	"testing"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle/kaggletest"
)

// Benchmarks run against the emulator on loopback: they measure the
// client's own overhead (and show that uploads and downloads stream: B/op
// stays far below the file size), not Kaggle's speed.

const benchFileSize = 64 << 20

// BenchmarkUploadBlob64MiB uploads with the production chunk size (8 MiB
// per resumable PUT): B/op is about one chunk, whatever the file size.
func BenchmarkUploadBlob64MiB(b *testing.B) {
	srv := kaggletest.NewServer(b)
	cfg := srv.Config()
	cfg.UploadChunkSize = kaggle.DefaultUploadChunkSize
	c := kaggle.New(cfg)
	ctx := context.Background()
	b.SetBytes(benchFileSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.UploadBlob(ctx, "train.jsonl", benchFileSize, kaggletest.PatternReader(benchFileSize)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDownload64MiB(b *testing.B) {
	srv := kaggletest.NewServer(b)
	ref := kaggletest.DefaultUsername + "/k-bench"
	srv.SetKernelStatus(ref, kaggle.KernelComplete, "")
	srv.SetKernelOutput(ref, []kaggletest.File{{Name: "adapter/adapter_model.safetensors", Size: benchFileSize}}, nil)
	c := kaggle.New(srv.Config())
	ctx := context.Background()
	out, err := c.KernelOutput(ctx, kaggletest.DefaultUsername, "k-bench")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchFileSize)
	b.ReportAllocs()
	for b.Loop() {
		body, _, err := c.Download(ctx, out.Files[0].URL)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			b.Fatal(err)
		}
		body.Close()
	}
}

func BenchmarkKernelStatus(b *testing.B) {
	srv := kaggletest.NewServer(b)
	srv.SetKernelStatus(kaggletest.DefaultUsername+"/k-bench", kaggle.KernelRunning, "")
	c := kaggle.New(srv.Config())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.KernelStatus(ctx, kaggletest.DefaultUsername, "k-bench"); err != nil {
			b.Fatal(err)
		}
	}
}
