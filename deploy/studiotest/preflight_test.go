package studiotest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// publicIPs tells preflight that 127.0.0.1 is this host's public address,
// so the DNS item can pass for the fixture's DOMAIN=127.0.0.1 (a name
// would do, but localhost has an AAAA record on many hosts, which the
// IPv4-only edge refuses).
var publicIPs = []string{"preflight", "--public-ip", "127.0.0.1"}

func TestPreflightAllGood(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 825)
	r := f.run(publicIPs...)
	r.wantCode(t, 0)
	r.wantNo(t, "[FAIL]")
	r.wantLine(t, "[pass]", "docker 27.3.1")
	r.wantLine(t, "[pass]", "compose 2.29.7")
	r.wantLine(t, "[pass]", "memory:")
	r.wantLine(t, "[pass]", "every required variable")
	r.wantLine(t, "[pass]", "port "+f.vars["HTTP_PORT"]+"/tcp is free")
	r.wantLine(t, "[pass]", "port "+f.vars["HTTPS_PORT"]+"/udp is free")
	r.wantLine(t, "[pass]", "DNS: 127.0.0.1 A -> 127.0.0.1 (this host)")
	r.wantLine(t, "[pass]", "DNS: 127.0.0.1 has no AAAA record")
	r.wantLine(t, "[pass]", "secrets present", "database_url")
	r.wantLine(t, "[pass]", "internal certificates present")
	// The fake engine has no images: config check waits for deploy, and
	// the empty kaggle_api_token means training is disabled.
	r.wantLine(t, "[warn]", "app image localhost/finetune-studio/app:fake is not on this host")
	r.wantLine(t, "fix: deploy/studio deploy builds it")
	r.wantLine(t, "[warn]", "training disabled")
	r.wantLine(t, "[pass]", "iptables INPUT admits")
	r.wantLine(t, "preflight:", "0 failed")
}

func TestPreflightSettings(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 825)
	f.unset("ACME_EMAIL")
	f.set("DOMAIN", "studio.example.com")
	r := f.run(publicIPs...)
	r.wantCode(t, 1)
	r.wantLine(t, "[FAIL]", "ACME_EMAIL is not set in "+f.envFile)
	r.wantLine(t, "fix: add it: ACME_EMAIL=")
	r.wantLine(t, "[FAIL]", "DOMAIN still holds the example value (studio.example.com)")
	// The app's own check needs a complete .env first.
	r.wantLine(t, "[warn]", "app config check skipped")

	// No env file at all.
	f = newFixture(t, 825)
	f.vars = nil
	r = f.run(publicIPs...)
	r.wantCode(t, 1)
	r.wantLine(t, "[FAIL]", f.envFile+" does not exist")
	r.wantLine(t, "fix: cp ", ".env.example "+f.envFile)
}

func TestPreflightCertificates(t *testing.T) {
	t.Parallel()
	t.Run("expiring within 30 days warns", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 20)
		r := f.run(publicIPs...)
		r.wantCode(t, 0)
		r.wantLine(t, "[warn]", "postgres/server.crt expires", "less than 30 days")
		r.wantLine(t, "[warn]", "minio/public.crt expires")
		r.wantLine(t, "fix: sudo deploy/scripts/gen-certs.sh "+f.certs)
	})
	t.Run("expiring within 7 days fails", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 3)
		r := f.run(publicIPs...)
		r.wantCode(t, 1)
		r.wantLine(t, "[FAIL]", "postgres/server.crt expires", "less than 7 days")
	})
	t.Run("signed by another CA fails", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 825)
		other := newFixture(t, 825)
		crt, err := os.ReadFile(filepath.Join(other.certs, "minio/public.crt"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(f.certs, "minio/public.crt"), crt, 0o644); err != nil {
			t.Fatal(err)
		}
		r := f.run(publicIPs...)
		r.wantCode(t, 1)
		r.wantLine(t, "[FAIL]", "minio/public.crt is not signed by "+f.certs+"/ca.crt")
	})
	t.Run("missing file fails", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 825)
		if err := os.Remove(filepath.Join(f.certs, "postgres/server.key")); err != nil {
			t.Fatal(err)
		}
		r := f.run(publicIPs...)
		r.wantCode(t, 1)
		r.wantLine(t, "[FAIL]", "postgres/server.key is missing")
	})
}

func TestPreflightSecrets(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 825)
	if err := os.Remove(filepath.Join(f.secrets, "database_url")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.secrets, "minio_root_password"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f.secrets, 0o755); err != nil {
		t.Fatal(err)
	}
	r := f.run(publicIPs...)
	r.wantCode(t, 1)
	r.wantLine(t, "[FAIL]", "secret database_url is missing")
	r.wantLine(t, "[FAIL]", "secret minio_root_password is empty")
	r.wantLine(t, "[FAIL]", "mode 755: every user of this host can read the secrets")
	r.wantLine(t, "fix: chmod 700 "+f.secrets)
}

func TestPreflightPortsInUse(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 825)
	l, err := net.Listen("tcp", "127.0.0.1:"+f.vars["HTTP_PORT"])
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", "127.0.0.1:"+f.vars["HTTPS_PORT"])
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	r := f.run(publicIPs...)
	r.wantCode(t, 1)
	r.wantLine(t, "[FAIL]", "port "+f.vars["HTTP_PORT"]+"/tcp is in use")
	r.wantLine(t, "[FAIL]", "port "+f.vars["HTTPS_PORT"]+"/udp is in use")
	r.wantLine(t, "[pass]", "port "+f.vars["HTTPS_PORT"]+"/tcp is free")
}

func TestPreflightEngineVersions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 825)
	f.environ["FAKE_DOCKER_VERSION"] = "20.10.24"
	f.environ["FAKE_COMPOSE_VERSION"] = "v2.12.2"
	r := f.run(publicIPs...)
	r.wantCode(t, 1)
	r.wantLine(t, "[FAIL]", "docker 20.10.24 is older than 24")
	r.wantLine(t, "[FAIL]", "compose 2.12.2", "older than 2.20")

	// A compose built from source says "dev": unknown, not too old.
	f.environ["FAKE_DOCKER_VERSION"] = "24.0.7"
	f.environ["FAKE_COMPOSE_VERSION"] = "dev"
	r = f.run(publicIPs...)
	r.wantCode(t, 0)
	r.wantLine(t, "[pass]", "docker 24.0.7")
	r.wantLine(t, "[warn]", "reports version 'dev'")
}

func TestPreflightDNS(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 825)
	// Without --public-ip, 127.0.0.1 is a loopback address: Let's Encrypt
	// could never reach it.
	r := f.run("preflight")
	r.wantCode(t, 1)
	r.wantLine(t, "[FAIL]", "DNS: 127.0.0.1 A -> 127.0.0.1", "private or loopback")
	// A stated public address that DNS does not point at.
	r = f.run("preflight", "--public-ip", "192.0.2.10")
	r.wantCode(t, 1)
	r.wantLine(t, "[FAIL]", "this host's public IPv4 is 192.0.2.10")
	r.wantLine(t, "fix: point the A record of 127.0.0.1 at 192.0.2.10")
	// An AAAA record while the edge is published on IPv4 only (an IPv6
	// literal resolves to itself, like a name with only an AAAA record).
	f.set("DOMAIN", "::1")
	r = f.run(publicIPs...)
	r.wantCode(t, 1)
	r.wantLine(t, "[FAIL]", "DNS: ::1 has AAAA ::1, but the edge is published on IPv4 only (EDGE_BIND_ADDRESS=127.0.0.1)")
	r.wantLine(t, "fix: delete the AAAA record of ::1")
	f.set("DOMAIN", "no-such-host.invalid")
	r = f.run(publicIPs...)
	r.wantCode(t, 1)
	r.wantLine(t, "[FAIL]", "DNS: no-such-host.invalid has no A record")
}

// Oracle Cloud's images end the INPUT chain with a REJECT that comes
// before anything admits 80 and 443.
func TestPreflightFirewallHint(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 825)
	f.shim("iptables", `#!/bin/sh
cat <<'EOF'
-P INPUT ACCEPT
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p icmp -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -p udp -m udp --sport 123 -j ACCEPT
-A INPUT -p tcp -m state --state NEW -m tcp --dport 22 -j ACCEPT
-A INPUT -j REJECT --reject-with icmp-host-prohibited
EOF
`)
	http, https := f.vars["HTTP_PORT"], f.vars["HTTPS_PORT"]
	r := f.run(publicIPs...)
	r.wantCode(t, 0) // a hint, not a failure
	r.wantLine(t, "[warn]", "iptables INPUT rejects "+http+"/tcp "+https+"/tcp "+https+"/udp", "Oracle")
	r.wantLine(t, "fix: sudo iptables -I INPUT 6 -p tcp -m state --state NEW --dport "+http+" -j ACCEPT",
		"--dport "+https+" -j ACCEPT", "-p udp", "sudo netfilter-persistent save")

	// Once the rules are in (before the REJECT), the item passes.
	f.shim("iptables", `#!/bin/sh
cat <<EOF
-P INPUT ACCEPT
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m state --state NEW -m tcp --dport 22 -j ACCEPT
-A INPUT -p tcp -m state --state NEW -m tcp --dport `+http+` -j ACCEPT
-A INPUT -p tcp -m state --state NEW -m multiport --dports 8000:9000,`+https+` -j ACCEPT
-A INPUT -p udp -m state --state NEW --dport `+https+` -j ACCEPT
-A INPUT -j REJECT --reject-with icmp-host-prohibited
EOF
`)
	r = f.run(publicIPs...)
	r.wantCode(t, 0)
	r.wantLine(t, "[pass]", "iptables INPUT admits")
}

// A host without a tool preflight needs gets exit 3 naming it, not a
// misleading verdict.
func TestPreflightMissingTool(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	for _, tool := range []string{"dirname", "id", "tr", "awk", "sed", "df", "stat", "ip", "getent", "openssl"} {
		path, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		if err := os.Symlink(path, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	r := studio(t, []string{"PATH=" + bin}, "preflight")
	r.wantCode(t, 3)
	r.wantLine(t, "preflight needs: ss", "iproute2")
}

func TestPreflightUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"preflight", "--bogus"}, {"preflight", "--public-ip"}, {"preflight", "--public-ip", "host.example"}} {
		r := studio(t, []string{"PATH=" + os.Getenv("PATH")}, args...)
		r.wantCode(t, 2)
		if !strings.Contains(r.output, "see --help") {
			t.Errorf("%v: no pointer to --help in:\n%s", args, r.output)
		}
	}
}

// With the app image on the host, preflight runs `app config check` and
// `app kaggle check` in it and reads their answers (the fake engine
// answers as the app does: exit 2 with "  VAR: reason" lines, and so on).
func TestPreflightAppChecks(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 825)
	f.environ["FAKE_IMAGE"] = "1"
	kaggleMissing := "configuration has 1 problem(s):\\n  KAGGLE_API_TOKEN: missing: set KAGGLE_USERNAME with KAGGLE_API_TOKEN or KAGGLE_KEY, or training requests answer 503\\n"
	for _, tc := range []struct {
		name                string
		configOut, configRC string
		kaggleOut, kaggleRC string
		code                int
		want                [][]string
	}{
		{"all accepted", "configuration OK (production)\\n", "0",
			"Kaggle credentials OK: account alice (KAGGLE_API_TOKEN, https://www.kaggle.com/api/v1)\\ntraining kernels will ask for T4\\n", "0", 0,
			[][]string{{"[pass]", "app config check: configuration OK (production)"},
				{"[pass]", "Kaggle accepted the credentials: account alice (KAGGLE_API_TOKEN"}}},
		{"no Kaggle credentials", kaggleMissing, "2", "", "0", 0,
			[][]string{{"[pass]", "app config check: clean apart from Kaggle"},
				{"[warn]", "no Kaggle credentials: training disabled"}}},
		{"a configuration problem", "configuration has 2 problem(s):\\n  S3_PUBLIC_URL: invalid: not a URL\\n  KAGGLE_SIMULATOR: refused in production: jobs would produce sample models\\n", "2", "", "0", 1,
			[][]string{{"[FAIL]", "app config check: S3_PUBLIC_URL: invalid: not a URL"},
				{"[FAIL]", "app config check: KAGGLE_SIMULATOR: refused in production"},
				{"[warn]", "Kaggle check skipped"}}},
		{"Kaggle refuses", "configuration OK (production)\\n", "0", "Kaggle check failed: 401 Unauthorized: invalid token\\n", "1", 1,
			[][]string{{"[FAIL]", "Kaggle refused the credentials", "401 Unauthorized: invalid token"}}},
	} {
		f.environ["FAKE_CONFIG_OUT"], f.environ["FAKE_CONFIG_RC"] = tc.configOut, tc.configRC
		f.environ["FAKE_KAGGLE_OUT"], f.environ["FAKE_KAGGLE_RC"] = tc.kaggleOut, tc.kaggleRC
		r := f.run(publicIPs...)
		t.Run(tc.name, func(t *testing.T) {
			r.wantCode(t, tc.code)
			for _, w := range tc.want {
				r.wantLine(t, w...)
			}
		})
	}
}
