package e2e

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// objectStore is a TLS stand-in for MinIO that records what reached it.
type objectStore struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string // "METHOD host request-uri"
}

func (o *objectStore) requests() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.seen...)
}

// TestModelDownloadRoute proves the route that makes the API's presigned
// model links work through the edge: a signed GET or HEAD under
// /<bucket>/models/ reaches object storage over TLS (verified against
// EDGE_S3_CA_FILE) with the Host, path and query the signature covers
// unchanged and the body streamed back; nothing else reaches it.
func TestModelDownloadRoute(t *testing.T) {
	object := bytes.Repeat([]byte("0123456789abcdef"), 256*1024) // 4 MiB
	store := &objectStore{}
	store.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		store.mu.Lock()
		store.seen = append(store.seen, r.Method+" "+r.Host+" "+r.URL.RequestURI())
		store.mu.Unlock()
		if r.URL.Query().Get("X-Amz-Signature") == "bad" {
			// MinIO's answer to a signature that does not match.
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<Error><Code>SignatureDoesNotMatch</Code></Error>`)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Server", "MinIO")
		http.ServeContent(w, r, "adapter_model.safetensors", time.Unix(0, 0), bytes.NewReader(object))
	}))
	store.srv.StartTLS()
	t.Cleanup(store.srv.Close)
	caFile := filepath.Join(t.TempDir(), "store-ca.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: store.srv.Certificate().Raw})
	if err := os.WriteFile(caFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}

	app := startStubApp(t)
	env, pe := defaultEnv(t, app.addr)
	env["S3_UPSTREAM"] = strings.TrimPrefix(store.srv.URL, "https://")
	env["EDGE_S3_CA_FILE"] = caFile
	env["S3_BUCKET"] = "fts-models"
	startProdEdge(t, env, pe)
	c := pe.client("127.0.0.1")

	signed := "/fts-models/models/5f0c/adapter/adapter_model.safetensors" +
		"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=k%2F20260101%2Fus-east-1%2Fs3%2Faws4_request" +
		"&X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host" +
		"&response-content-disposition=attachment%3B%20filename%3D%22adapter_model.safetensors%22" +
		"&X-Amz-Signature=0123abcd"
	host := fmt.Sprintf("localhost:%d", pe.httpsPort)

	resp, body := do(t, c, "GET", pe.url(signed), nil, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, object) {
		t.Fatalf("signed GET: got %d with %d bytes, want 200 with the object's %d", resp.StatusCode, len(body), len(object))
	}
	if got := resp.Header.Get("Server"); got != "" {
		t.Errorf("Server header %q leaked from object storage", got)
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("download lacks the security headers")
	}
	if got, want := store.requests(), []string{"GET " + host + " " + signed}; !slices.Equal(got, want) {
		t.Fatalf("object storage saw %q, want %q (Host, path and query unchanged)", got, want)
	}

	resp, _ = do(t, c, "HEAD", pe.url(signed), nil, nil)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(object)) {
		t.Errorf("signed HEAD: got %d, length %d; want 200, %d", resp.StatusCode, resp.ContentLength, len(object))
	}
	resp, body = do(t, c, "GET", pe.url(signed), nil, map[string]string{"Range": "bytes=16-31"})
	if resp.StatusCode != http.StatusPartialContent || string(body) != "0123456789abcdef" {
		t.Errorf("ranged GET: got %d %q, want 206 with 16 bytes", resp.StatusCode, body)
	}
	// Object storage's own refusal (expired or forged link) reaches the client.
	resp, body = do(t, c, "GET", pe.url(strings.Replace(signed, "0123abcd", "bad", 1)), nil, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "SignatureDoesNotMatch") {
		t.Errorf("bad signature: got %d %s, want object storage's 403", resp.StatusCode, body)
	}

	// Object storage is not an app instance: edge_health counts the app's
	// one upstream only, so a down app still reports fail, not warn.
	rep := getHealth(t, http.DefaultClient, pe.metricsURL("/health"))
	if a := rep.Checks["app:readiness"]; len(a) != 1 || a[0].ObservedValue != 1 {
		t.Errorf("app:readiness = %+v, want 1 instance (the app; not object storage)", a)
	}

	before := len(store.requests())
	for _, r := range []struct{ method, path string }{
		{"GET", "/fts-models/models/5f0c/adapter/adapter_model.safetensors"}, // unsigned
		{"PUT", signed},    // writes
		{"DELETE", signed}, //
		{"POST", "/fts-models/models/5f0c/x?uploads&X-Amz-Signature=1"},                          //
		{"GET", "/fts-models/datasets/d1/data.jsonl?X-Amz-Signature=1"},                          // not a model
		{"GET", "/other-bucket/models/5f0c/adapter/adapter_model.safetensors?X-Amz-Signature=1"}, // not our bucket
		{"GET", "/fts-models?list-type=2&X-Amz-Signature=1"},                                     // listing
		{"GET", "/minio/health/live?X-Amz-Signature=1"},                                          // MinIO's own API
	} {
		resp, _ := do(t, c, r.method, pe.url(r.path), []byte{}, nil)
		if resp.StatusCode == http.StatusOK && r.method != "GET" {
			t.Errorf("%s %s: got 200", r.method, r.path)
		}
	}
	if got := store.requests()[before:]; len(got) != 0 {
		t.Errorf("requests outside the route reached object storage: %q", got)
	}
}
