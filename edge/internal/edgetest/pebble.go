package edgetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Pebble is a running Pebble ACME server (Let's Encrypt's test CA) with
// pebble-challtestsrv as its DNS server, which resolves every name to
// 127.0.0.1. Validation is real: Pebble connects back to port 5002
// (HTTP-01) and 5001 (TLS-ALPN-01) on 127.0.0.1, where the edge must listen.
type Pebble struct {
	// DirectoryURL is the ACME directory.
	DirectoryURL string
	// ServerCA is the PEM file of the CA that signed Pebble's HTTPS
	// certificate: ACME clients must trust it.
	ServerCA string
	// ManagementURL serves /roots/0, the root of issued certificates.
	ManagementURL string

	logs *syncBuffer
}

// ChallengePorts are the fixed ports Pebble validates against.
var ChallengePorts = []int{5001, 5002}

// FindTool returns the path of a tool installed by install-tools.sh: the
// pinned copy in the tools directory first, then PATH, in the same order as
// the app's testenv.ToolPath (which this package cannot import).
func FindTool(name string) (string, error) {
	var dirs []string
	if d := os.Getenv("TOOLS_DIR"); d != "" {
		dirs = append(dirs, filepath.Join(d, "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".cache", "finetune-studio", "tools", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		// #nosec G703 -- a test harness looking a tool up on PATH.
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found on PATH or in the tools dir; run `make tools`", name)
}

// RequireFreePorts fails the test when a fixed port is taken, naming it,
// instead of letting ACME validation fail in a confusing way later.
func RequireFreePorts(t testing.TB, ports ...int) {
	t.Helper()
	for _, p := range ports {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d is needed by Pebble's validation and is taken: %v", p, err)
		}
		l.Close()
	}
}

// StartPebble starts challtestsrv and Pebble on random loopback ports.
// Profiles: "default" issues 90-day certificates, "shortlived" 120-second
// ones (for renewal tests). Pebble picks a random profile for an order that
// names none, so tests must always name one.
func StartPebble(t testing.TB) *Pebble {
	t.Helper()
	pebbleBin, err := FindTool("pebble")
	if err != nil {
		t.Fatal(err)
	}
	challBin, err := FindTool("pebble-challtestsrv")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, certFile, keyFile, err := writeServerCert(dir)
	if err != nil {
		t.Fatal(err)
	}

	dnsAddr := fmt.Sprintf("127.0.0.1:%d", FreeUDPPort(t))
	chall := startProcess(t, challBin, nil,
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-dnsserver", dnsAddr,
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-management", fmt.Sprintf("127.0.0.1:%d", FreePort(t)))

	acmePort, mgmtPort := FreePort(t), FreePort(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", acmePort),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       5002,
		"tlsPort":                        5001,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{
			"default":    map[string]any{"description": "90 days", "validityPeriod": 7776000},
			"shortlived": map[string]any{"description": "120 seconds", "validityPeriod": 120},
		},
	}}
	cfgFile := filepath.Join(dir, "pebble.json")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	startProcessTo(t, pebbleBin, []string{"PEBBLE_VA_NOSLEEP=1"}, logs, "-config", cfgFile, "-dnsserver", dnsAddr)
	p := &Pebble{
		DirectoryURL:  fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort),
		ManagementURL: fmt.Sprintf("https://127.0.0.1:%d", mgmtPort),
		ServerCA:      caFile,
		logs:          logs,
	}
	client := p.HTTPClient()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get(p.DirectoryURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble not answering: %v\npebble logs:\n%s\nchalltestsrv logs:\n%s", err, logs.String(), chall.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble logs:\n%s", tail(logs.String(), 4000))
		}
	})
	return p
}

// HTTPClient trusts Pebble's HTTPS certificate.
func (p *Pebble) HTTPClient() *http.Client {
	pool := x509.NewCertPool()
	if pemBytes, err := os.ReadFile(p.ServerCA); err == nil {
		pool.AppendCertsFromPEM(pemBytes)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
}

// IssuingRoots returns the roots Pebble signs certificates with.
func (p *Pebble) IssuingRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	resp, err := p.HTTPClient().Get(p.ManagementURL + "/roots/0")
	if err != nil {
		t.Fatalf("fetching pebble root: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble root is not PEM: %q", b)
	}
	return pool
}

// Orders returns how many orders Pebble has accepted so far.
func (p *Pebble) Orders() int {
	return strings.Count(p.logs.String(), "Added order")
}

// Logs returns Pebble's output.
func (p *Pebble) Logs() string { return p.logs.String() }

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func startProcess(t testing.TB, bin string, env []string, args ...string) *syncBuffer {
	t.Helper()
	buf := &syncBuffer{}
	startProcessTo(t, bin, env, buf, args...)
	return buf
}

func startProcessTo(t testing.TB, bin string, env []string, out *syncBuffer, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
}

// writeServerCert makes a throwaway CA and a certificate for 127.0.0.1 and
// localhost signed by it, for Pebble's own HTTPS listeners.
func writeServerCert(dir string) (caFile, certFile, keyFile string, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edge test ACME server CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", "", err
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for path, block := range map[string]*pem.Block{
		caFile:   {Type: "CERTIFICATE", Bytes: caDER},
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return "", "", "", err
		}
	}
	return caFile, certFile, keyFile, nil
}
