package e2e

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// TestHTTP3: the production site answers over HTTP/3 (QUIC on the HTTPS
// port's UDP twin) with the same chain as over TCP: the app's answer,
// the security headers, and an access log line that says HTTP/3.
func TestHTTP3(t *testing.T) {
	app := startStubApp(t)
	env, pe := defaultEnv(t, app.addr)
	startProdEdge(t, env, pe)

	tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: pe.roots, ServerName: "localhost"}}
	defer tr.Close()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	resp, err := c.Get(pe.url("/api/v1/ping"))
	if err != nil {
		t.Fatalf("HTTP/3 request: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 3 {
		t.Fatalf("answered over %s, want HTTP/3", resp.Proto)
	}
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Strict-Transport-Security"); got == "" {
		t.Error("no HSTS header over HTTP/3")
	}
	if resp.Header.Get("X-Request-ID") == "" {
		t.Error("no X-Request-ID over HTTP/3")
	}
	line, err := pe.WaitLog(30*time.Second, `"logger":"http.log.access`, `"proto":"HTTP/3.0"`, "/api/v1/ping")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, `"status":200`) {
		t.Errorf("access log line for the HTTP/3 request: %s", line)
	}
}
