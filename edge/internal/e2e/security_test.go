//go:build security

package e2e

// The security suite's scans of the running edge (make test-security, see
// docs/security.md): testssl.sh's TLS verdicts and h2spec's HTTP/2
// conformance, against the production Caddyfile served with Caddy's
// internal CA on random loopback ports. Both tools are external programs
// installed by deploy/scripts/install-tools.sh security; a missing one
// fails the test.

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tlsFinding is one line of testssl.sh's JSON output.
type tlsFinding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Finding  string `json:"finding"`
}

func TestSecurityTLSScan(t *testing.T) {
	bin, err := exec.LookPath("testssl")
	if err != nil {
		t.Fatalf("testssl (Debian package testssl.sh) not installed: %v", err)
	}
	app := startStubApp(t)
	env, pe := defaultEnv(t, app.addr)
	startProdEdge(t, env, pe)
	root := filepath.Join(pe.storage, "pki", "authorities", "local", "root.crt")

	dir := t.TempDir()
	if d := os.Getenv("SECURITY_REPORT_DIR"); d != "" {
		dir = d
	}
	out := filepath.Join(dir, "testssl.json")
	_ = os.Remove(out) // testssl refuses to overwrite
	// testssl runs hundreds of openssl processes one after another: a
	// loaded machine needs many minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	// Protocols, cipher categories, forward secrecy, the HTTP headers and
	// the server defaults (certificate, OCSP stapling). The vulnerability
	// probes (-U) are left out: they test the TLS library's behaviour
	// (Heartbleed, ROBOT, ...) which Go's crypto/tls does not implement,
	// and take minutes.
	// --nodns none: nothing to resolve on loopback, and a DNS lookup
	// (CAA records, reverse names) without a resolver waits out its
	// timeout each time. The timeouts bound every probe.
	textLog := filepath.Join(dir, "testssl.log")
	_ = os.Remove(textLog)
	cmd := exec.CommandContext(ctx, bin, "--quiet", "--warnings", "off", "--color", "0",
		"--nodns", "none", "--connect-timeout", "5", "--openssl-timeout", "5",
		"--ip", "127.0.0.1", "--add-ca", root, "--jsonfile", out, "--logfile", textLog,
		"--protocols", "--std", "--fs", "--headers", "--server-defaults",
		fmt.Sprintf("localhost:%d", pe.httpsPort))
	cmd.Env = append(os.Environ(), "TERM=dumb")
	start := time.Now()
	text, err := cmd.CombinedOutput()
	t.Logf("testssl took %s", time.Since(start).Round(time.Second))
	raw, rerr := os.ReadFile(out)
	if rerr != nil {
		t.Fatalf("testssl wrote no JSON (%v): %v\n%s", rerr, err, text)
	}
	var findings []tlsFinding
	if err := json.Unmarshal(raw, &findings); err != nil {
		t.Fatalf("testssl JSON: %v", err)
	}
	got := map[string]string{}
	for _, f := range findings {
		got[f.ID] = f.Finding
	}

	t.Run("only TLS 1.2 and 1.3 offered", func(t *testing.T) {
		for _, id := range []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1"} {
			if f, ok := got[id]; !ok || !strings.HasPrefix(f, "not offered") {
				t.Errorf("%s: %q, want not offered", id, f)
			}
		}
		for _, id := range []string{"TLS1_2", "TLS1_3"} {
			if f := got[id]; !strings.HasPrefix(f, "offered") {
				t.Errorf("%s: %q, want offered", id, f)
			}
		}
	})
	t.Run("no weak cipher category", func(t *testing.T) {
		// NULL, anonymous, export, LOW (DES, RC4, 64-bit), 3DES/IDEA and
		// AVERAGE (the obsolete CBC ciphers, e.g. ECDHE-RSA-AES128-SHA).
		for _, id := range []string{"cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT",
			"cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"} {
			if f, ok := got[id]; !ok || !strings.HasPrefix(f, "not offered") {
				t.Errorf("%s: %q, want not offered", id, f)
			}
		}
		if f := got["cipherlist_STRONG"]; !strings.HasPrefix(f, "offered") {
			t.Errorf("cipherlist_STRONG: %q, want offered", f)
		}
	})
	t.Run("forward secrecy", func(t *testing.T) {
		// testssl 3.0 calls the finding PFS, 3.1 renamed it FS.
		f, ok := got["FS"]
		if !ok {
			f = got["PFS"]
		}
		if !strings.HasPrefix(f, "offered") {
			t.Errorf("forward secrecy: %q, want offered", f)
		}
	})
	t.Run("HSTS of at least a year", func(t *testing.T) {
		f, ok := got["HSTS_time"]
		m := regexp.MustCompile(`=(\d+) seconds`).FindStringSubmatch(f)
		if !ok || m == nil {
			t.Fatalf("HSTS_time: %q, want a max-age", f)
		}
		if secs, _ := strconv.Atoi(m[1]); secs < 365*24*3600 {
			t.Errorf("HSTS max-age %d s, want at least a year", secs)
		}
	})
	t.Run("OCSP stapling state is reported", func(t *testing.T) {
		// Recorded, not asserted: Caddy staples whatever OCSP response the
		// issuing CA offers, and the internal CA offers none (Let's Encrypt
		// ended OCSP in 2025 as well).
		f, ok := got["OCSP_stapling"]
		if !ok {
			t.Fatal("testssl reported no OCSP_stapling finding")
		}
		t.Logf("OCSP stapling: %s", f)
	})
	for _, id := range []string{"TLS1_2", "TLS1_3", "cipherlist_STRONG", "PFS", "PFS_ciphers", "PFS_ECDHE_curves",
		"HSTS_time", "OCSP_stapling", "cert_keySize", "cert_signatureAlgorithm", "cipher_order", "ALPN"} {
		t.Logf("%s: %s", id, got[id])
	}
}

// h2specAllowed lists the h2spec cases the edge (Caddy on Go's net/http
// HTTP/2 server) is known to fail, one "section/number" id per line
// (testdata/h2spec-allow.txt). A failure outside the list fails the test;
// an allowed case that passes is reported so the list can shrink.
func h2specAllowed(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "h2spec-allow.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	allowed := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		allowed[strings.Fields(line)[0]] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return allowed
}

// junit is the part of h2spec's JUnit report the test reads.
type junit struct {
	Suites []struct {
		Package string `xml:"package,attr"`
		ID      string `xml:"id,attr"`
		Name    string `xml:"name,attr"`
		Cases   []struct {
			Package   string    `xml:"package,attr"`
			ClassName string    `xml:"classname,attr"`
			Failure   *struct{} `xml:"failure"`
			Error     *struct{} `xml:"error"`
			Skipped   *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func TestSecurityHTTP2Conformance(t *testing.T) {
	bin, err := exec.LookPath("h2spec")
	if err != nil {
		t.Fatalf("h2spec not installed: %v", err)
	}
	app := startStubApp(t)
	env, pe := defaultEnv(t, app.addr)
	// h2spec opens hundreds of connections and requests: lift the rate
	// limits, which would otherwise answer 429s that h2spec reads as
	// protocol failures.
	env["RATE_LIMIT_API_EVENTS"] = "1000000"
	startProdEdge(t, env, pe)

	report := filepath.Join(t.TempDir(), "h2spec.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// -k: the internal CA is not in the system trust store (the TLS scan
	// checks the chain); -P: a path the edge proxies to the app, so the
	// cases exercise the whole server chain, not only a static file.
	cmd := exec.CommandContext(ctx, bin, "-h", "localhost", "-p", strconv.Itoa(pe.httpsPort), "-t", "-k",
		"-P", "/api/v1/ping", "-o", "5", "-j", report)
	start := time.Now()
	text, err := cmd.CombinedOutput()
	t.Logf("h2spec took %s", time.Since(start).Round(time.Second))
	raw, rerr := os.ReadFile(report)
	if rerr != nil {
		t.Fatalf("h2spec wrote no report (%v): %v\n%s", rerr, err, text)
	}
	var rep junit
	if err := xml.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("h2spec report: %v", err)
	}
	allowed := h2specAllowed(t)
	var total, passed, skipped int
	var failed, unexpected []string
	for _, s := range rep.Suites {
		for i, c := range s.Cases {
			total++
			id := fmt.Sprintf("%s/%d", s.Package, i+1)
			if c.Skipped != nil {
				skipped++
				continue
			}
			if c.Failure == nil && c.Error == nil {
				passed++
				if allowed[id] {
					t.Logf("allowed failure %s now passes: remove it from testdata/h2spec-allow.txt", id)
				}
				continue
			}
			failed = append(failed, id+" "+s.Name)
			if !allowed[id] {
				unexpected = append(unexpected, id+" "+s.Name)
			}
		}
	}
	sort.Strings(failed)
	t.Logf("h2spec: %d cases, %d passed, %d failed, %d skipped", total, passed, len(failed), skipped)
	for _, f := range failed {
		t.Logf("  failed: %s", f)
	}
	if total == 0 {
		t.Fatalf("h2spec ran no case:\n%s", text)
	}
	if len(unexpected) > 0 {
		t.Errorf("h2spec failures not in testdata/h2spec-allow.txt (a regression):\n  %s\nh2spec output:\n%s",
			strings.Join(unexpected, "\n  "), tailString(string(text), 4000))
	}
}

func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
