package kaggletest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
)

// Server is an Emulator listening on two random loopback ports: the API
// host, and a storage host (TLS, like Kaggle's signed Google Cloud Storage
// URLs) that serves the upload sessions and output files the API hands out.
type Server struct {
	*Emulator
	// URL is the API host's root; BaseURL is URL + "/api/v1", what
	// KAGGLE_API_URL would be set to.
	URL     string
	BaseURL string
	// StorageURL is the storage host's root (https).
	StorageURL string
	srv        *httptest.Server
	storage    *httptest.Server
}

// NewServer starts an emulator with default options, stopped by t.Cleanup.
// Uploaded blobs are streamed to t.TempDir().
func NewServer(t testing.TB) *Server {
	t.Helper()
	return NewServerWith(t, Options{})
}

// NewServerWith starts an emulator with opts, stopped by t.Cleanup.
func NewServerWith(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.BlobDir == "" {
		opts.BlobDir = t.TempDir()
	}
	s := Start(opts)
	t.Cleanup(s.Close)
	return s
}

// Start starts an emulator with opts outside a test (the app's development
// simulator, KAGGLE_SIMULATOR); Close stops it.
func Start(opts Options) *Server {
	e := New(opts)
	srv := httptest.NewServer(e.APIHandler())
	storage := httptest.NewTLSServer(e.StorageHandler())
	e.setStorageURL(storage.URL)
	return &Server{Emulator: e, URL: srv.URL, BaseURL: srv.URL + APIPrefix, StorageURL: storage.URL, srv: srv, storage: storage}
}

// Close stops both hosts.
func (s *Server) Close() {
	s.Emulator.Close() // release delayed requests first, so Close does not wait on them
	s.srv.Close()
	s.storage.Close()
}

// HTTPClient is a client for both hosts: it trusts the storage host's test
// certificate.
func (s *Server) HTTPClient() *http.Client { return s.storage.Client() }

// Config returns a client configuration for this server with Basic auth
// and fast retries (1 ms base delay) that still sleep for real; tests that
// assert delays inject their own Sleep.
func (s *Server) Config() kaggle.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return kaggle.Config{
		BaseURL:     s.BaseURL,
		Username:    s.opts.Username,
		Key:         s.opts.Key,
		HTTPClient:  s.storage.Client(),
		MaxAttempts: 4,
		BaseDelay:   time.Millisecond,
		MaxDelay:    10 * time.Millisecond,
		Sleep:       sleepCtx,
		// Small chunks, so uploads in tests take several requests.
		UploadChunkSize: 256 << 10,
	}
}

// TokenConfig is Config with Bearer-token auth instead of username + key.
func (s *Server) TokenConfig() kaggle.Config {
	c := s.Config()
	c.Key = ""
	s.mu.Lock()
	c.Token = s.opts.Token
	s.mu.Unlock()
	return c
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
