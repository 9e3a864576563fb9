package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/edge/internal/edgetest"
)

// The ACME tests run the production Caddyfile against Pebble with real
// validation. Pebble connects back to the fixed ports 5001/5002, so these
// tests never run in parallel with each other; they share one Pebble.

type acmeEdge struct {
	*edgetest.Edge
	domain      string
	metricsPort int
}

func startACMEEdge(t *testing.T, p *edgetest.Pebble, domain, storage, issuerExtra string) *acmeEdge {
	t.Helper()
	edgetest.RequireFreePorts(t, edgetest.ChallengePorts...)
	extra := filepath.Join(t.TempDir(), "acme-globals.caddy")
	globals := fmt.Sprintf("cert_issuer acme %s {\n\ttrusted_roots %s\n%s\n}\n", p.DirectoryURL, p.ServerCA, issuerExtra)
	if err := os.WriteFile(extra, []byte(globals), 0o644); err != nil {
		t.Fatal(err)
	}
	app := startStubApp(t)
	ae := &acmeEdge{domain: domain, metricsPort: edgetest.FreePort(t)}
	env := map[string]string{
		"DOMAIN":     domain,
		"ACME_EMAIL": "ops@example.test",
		"ACME_CA":    p.DirectoryURL,
		// Pebble, with its root and the test's challenge options, alone.
		"ACME_ISSUERS":           "custom",
		"EDGE_ADMIN_ADDR":        fmt.Sprintf("127.0.0.1:%d", edgetest.FreePort(t)),
		"EDGE_STORAGE_DIR":       storage,
		"EDGE_HTTP_LISTEN_PORT":  "5002",
		"EDGE_HTTPS_LISTEN_PORT": "5001",
		"EDGE_RENEW_INTERVAL":    "5s",
		"EDGE_METRICS_PORT":      strconv.Itoa(ae.metricsPort),
		"EDGE_METRICS_BIND":      "127.0.0.1",
		"EDGE_EXTRA_GLOBALS":     extra,
		"EDGE_UI_DIR":            repoPath(t, "edge/ui"),
		"APP_UPSTREAMS":          app.addr,
		"EDGE_GRACE_PERIOD":      "2s",
		// The renewal test keeps clients coming; stay under the limit.
		"RATE_LIMIT_API_EVENTS": "1000000",
	}
	ae.Edge = edgetest.Start(t, edgetest.Options{
		Bin: edgeBin, Config: repoPath(t, "Caddyfile"), Env: env,
		ReadyURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", ae.metricsPort),
	})
	return ae
}

// servedCert handshakes with the edge as a browser would and returns the
// leaf certificate, verified against Pebble's issuing root.
func servedCert(domain string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", "127.0.0.1:5001", &tls.Config{ServerName: domain, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func waitServedCert(t *testing.T, domain string, roots *x509.CertPool, timeout time.Duration, ok func(*x509.Certificate) bool) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := servedCert(domain, roots)
		if err == nil && ok(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching certificate served for %s after %s (last error: %v)", domain, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// httpsClient speaks to the edge by its domain, trusting only Pebble's root.
func httpsClient(domain string, roots *x509.CertPool, keepAlive bool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: !keepAlive,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, "127.0.0.1:5001")
		},
		TLSClientConfig: &tls.Config{ServerName: domain, RootCAs: roots},
	}}
}

var notAfterRe = regexp.MustCompile(`edge_tls_certificate_not_after_timestamp_seconds\{name="([^"]+)"\} (\S+)`)

// metricNotAfter returns the exported expiry for domain, or 0.
func metricNotAfter(t *testing.T, metricsPort int, domain string) (float64, string) {
	t.Helper()
	_, body := do(t, http.DefaultClient, "GET", fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort), nil, nil)
	for _, m := range notAfterRe.FindAllStringSubmatch(string(body), -1) {
		if m[1] == domain {
			v, _ := strconv.ParseFloat(m[2], 64)
			return v, string(body)
		}
	}
	return 0, string(body)
}

func TestACME(t *testing.T) {
	p := edgetest.StartPebble(t)
	roots := p.IssuingRoots(t)

	t.Run("HTTP-01 obtain, then restart reuses the stored certificate", func(t *testing.T) {
		const domain = "http01.finetune.test"
		storage := t.TempDir()
		ordersBefore := p.Orders()
		e := startACMEEdge(t, p, domain, storage, "\tdisable_tlsalpn_challenge\n\tprofile default")
		cert := waitServedCert(t, domain, roots, 2*time.Minute, func(*x509.Certificate) bool { return true })
		if _, err := e.WaitLog(10*time.Second, `"challenge_type":"http-01"`, domain); err != nil {
			t.Errorf("no HTTP-01 challenge in the edge's logs: %v", err)
		}
		if got := p.Orders() - ordersBefore; got != 1 {
			t.Errorf("orders for the first start = %d, want 1", got)
		}
		if d := time.Until(cert.NotAfter); d < 80*24*time.Hour {
			t.Errorf("certificate valid for %s, want the default 90-day profile", d)
		}
		// The site really serves over it.
		resp, body := do(t, httpsClient(domain, roots, true), "GET", "https://"+domain+"/", nil, nil)
		if resp.StatusCode != 200 || !strings.Contains(string(body), "Finetune Studio") {
			t.Fatalf("GET / over the ACME certificate: %d", resp.StatusCode)
		}
		// Metrics and health tell the truth about it.
		na, body2 := metricNotAfter(t, e.metricsPort, domain)
		if int64(na) != cert.NotAfter.Unix() {
			t.Errorf("expiry metric = %v, served NotAfter = %d\n%s", na, cert.NotAfter.Unix(), grep(body2, "edge_tls"))
		}
		if !strings.Contains(body2, `edge_tls_certificate_operations_total{operation="obtain",result="success"} 1`) {
			t.Errorf("obtain counter not 1:\n%s", grep(body2, "edge_tls"))
		}
		rep := getHealth(t, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/health", e.metricsPort))
		certs := rep.Checks["certificate:expiry"]
		if rep.Status != "pass" || len(certs) != 1 || certs[0].ComponentID != domain || certs[0].Status != "pass" ||
			math.Abs(certs[0].ObservedValue-time.Until(cert.NotAfter).Hours()/24) > 0.2 {
			t.Errorf("health = %+v, want pass with ~%.1f days for %s", rep, time.Until(cert.NotAfter).Hours()/24, domain)
		}

		e.Stop()
		ordersAfterFirst := p.Orders()
		e2 := startACMEEdge(t, p, domain, storage, "\tdisable_tlsalpn_challenge\n\tprofile default")
		again := waitServedCert(t, domain, roots, time.Minute, func(*x509.Certificate) bool { return true })
		if again.SerialNumber.Cmp(cert.SerialNumber) != 0 {
			t.Errorf("restart serves serial %s, want the stored %s", again.SerialNumber, cert.SerialNumber)
		}
		if got := p.Orders(); got != ordersAfterFirst {
			t.Errorf("restart placed %d new orders, want 0", got-ordersAfterFirst)
		}
		if strings.Contains(e2.Logs(), `"msg":"obtaining certificate"`) {
			t.Errorf("restart obtained a certificate instead of loading the stored one")
		}
		// Restarted process still knows the certificate (loaded from storage).
		if na, body := metricNotAfter(t, e2.metricsPort, domain); int64(na) != cert.NotAfter.Unix() {
			t.Errorf("after restart expiry metric = %v, want %d\n%s", na, cert.NotAfter.Unix(), grep(body, "edge_tls"))
		}
	})

	t.Run("TLS-ALPN-01 obtain and renewal while serving", func(t *testing.T) {
		const domain = "alpn.finetune.test"
		e := startACMEEdge(t, p, domain, t.TempDir(), "\tdisable_http_challenge\n\tprofile shortlived")
		first := waitServedCert(t, domain, roots, 2*time.Minute, func(*x509.Certificate) bool { return true })
		if _, err := e.WaitLog(10*time.Second, `"challenge_type":"tls-alpn-01"`, domain); err != nil {
			t.Errorf("no TLS-ALPN-01 challenge in the edge's logs: %v", err)
		}
		if life := first.NotAfter.Sub(first.NotBefore); life > 5*time.Minute {
			t.Fatalf("certificate lifetime %s, want the 120 s profile", life)
		}

		// Clients keep coming, each on a new TLS connection, across the
		// renewal: not one may fail.
		var ok, failed atomic.Int64
		var firstErr atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := httpsClient(domain, roots, false)
				for {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := c.Get("https://" + domain + "/api/v1/datasets")
					if err == nil {
						_, err = readAllClose(resp)
						if err == nil && resp.StatusCode != 200 {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					} else {
						ok.Add(1)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
		}
		renewed := waitServedCert(t, domain, roots, 4*time.Minute, func(c *x509.Certificate) bool {
			return c.SerialNumber.Cmp(first.SerialNumber) != 0
		})
		close(stop)
		wg.Wait()
		if failed.Load() != 0 {
			t.Errorf("%d of %d requests failed across the renewal; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
		}
		if ok.Load() == 0 {
			t.Error("no request succeeded during the renewal window")
		}
		if !renewed.NotAfter.After(first.NotAfter) {
			t.Errorf("renewed NotAfter %s not after first %s", renewed.NotAfter, first.NotAfter)
		}
		t.Logf("renewed: serial %s -> %s; %d requests, %d failed", first.SerialNumber, renewed.SerialNumber, ok.Load(), failed.Load())

		// Metrics: a renew success was counted and the expiry is the one
		// served now (retrying, as another renewal may land in between).
		deadline := time.Now().Add(30 * time.Second)
		for {
			cur, err := servedCert(domain, roots)
			na, body := metricNotAfter(t, e.metricsPort, domain)
			renewOK := regexp.MustCompile(`edge_tls_certificate_operations_total\{operation="renew",result="success"\} [1-9]`).MatchString(body)
			if err == nil && int64(na) == cur.NotAfter.Unix() && renewOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("metrics do not match the served certificate (served err %v):\n%s", err, grep(body, "edge_tls"))
			}
			time.Sleep(500 * time.Millisecond)
		}
		// Health: minutes left is not a warning by itself for a 120 s
		// certificate that Caddy keeps renewing: expiry is judged against
		// the lifetime (pass, or warn in the moments a renewal is late;
		// the thresholds are unit-tested in caddy-modules/edgehealth).
		rep := getHealth(t, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/health", e.metricsPort))
		certs := rep.Checks["certificate:expiry"]
		if len(certs) != 1 || certs[0].ComponentID != domain || certs[0].Status == "fail" || certs[0].ObservedValue >= 1 {
			t.Errorf("health = %+v, want %s with under a day left, not failing", rep, domain)
		}
	})
}
