package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// adaptEnv is an environment for `edge adapt` of either Caddyfile with a
// public domain and none of the test-only overrides, so the adapted JSON
// shows the defaults an operator gets.
func adaptEnv(t *testing.T, extra ...string) []string {
	t.Helper()
	globals := filepath.Join(t.TempDir(), "none.caddy")
	if err := os.WriteFile(globals, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"DOMAIN=studio.example.com", "ACME_EMAIL=ops@example.com",
		"EDGE_EXTRA_GLOBALS=" + globals, "EDGE_UI_DIR=" + repoPath(t, "edge/ui"),
	}
	return append(env, extra...)
}

// adapted returns the JSON config the Caddyfile adapts to.
func adapted(t *testing.T, file string, env []string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := runEdge(ctx, env, "adapt", "--config", repoPath(t, file), "--adapter", "caddyfile")
	if err != nil {
		t.Fatalf("adapt %s: %v\n%s", file, err, out)
	}
	// Warnings are log lines before the config, which is the last line.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var cfg map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &cfg); err != nil || cfg["apps"] == nil {
		t.Fatalf("adapt %s: no config in\n%s", file, out)
	}
	return cfg
}

// visit calls fn for every JSON object in v with the match sets of the
// routes enclosing it (outermost first).
func visit(v any, matches []any, fn func(obj map[string]any, matches []any)) {
	switch x := v.(type) {
	case map[string]any:
		fn(x, matches)
		if m, ok := x["match"]; ok {
			matches = append(append([]any(nil), matches...), m)
		}
		for _, c := range x {
			visit(c, matches, fn)
		}
	case []any:
		for _, c := range x {
			visit(c, matches, fn)
		}
	}
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// customIssuer writes an extra-globals file with one issuer of its own.
func customIssuer(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "issuer.caddy")
	if err := os.WriteFile(f, []byte("cert_issuer acme https://ca.internal.example/dir\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestCaddyfileStructure checks what the adapted Caddyfiles promise
// without running them.
func TestCaddyfileStructure(t *testing.T) {
	for _, file := range []string{"Caddyfile", "Caddyfile.dev", "Caddyfile.railway"} {
		cfg := adapted(t, file, adaptEnv(t))

		t.Run(file+": only an existing hashed asset is immutable", func(t *testing.T) {
			found := 0
			visit(cfg, nil, func(obj map[string]any, matches []any) {
				cc, _ := json.Marshal(dig(obj, "response", "set", "Cache-Control"))
				if obj["handler"] != "headers" || !strings.Contains(string(cc), "immutable") {
					return
				}
				found++
				ms, _ := json.Marshal(matches)
				if !strings.Contains(string(ms), `"file":`) {
					t.Errorf("Cache-Control immutable is set on a route that does not require the file to exist: matches %s", ms)
				}
			})
			if found == 0 {
				t.Error("no route sets Cache-Control immutable")
			}
		})

		t.Run(file+": cors_rejected only for a refused preflight", func(t *testing.T) {
			found := 0
			visit(cfg, nil, func(obj map[string]any, matches []any) {
				body, _ := obj["body"].(string)
				if obj["handler"] != "static_response" || !strings.Contains(body, "cors_rejected") {
					return
				}
				found++
				ms, _ := json.Marshal(matches)
				if !strings.Contains(string(ms), `"method":["OPTIONS"]`) || !strings.Contains(string(ms), "Access-Control-Request-Method") {
					t.Errorf("cors_rejected is answered without matching a preflight: matches %s", ms)
				}
			})
			if found == 0 {
				t.Error("no cors_rejected answer")
			}
		})

		t.Run(file+": one reverse proxy to the app, with active health checks", func(t *testing.T) {
			var proxies []map[string]any
			visit(cfg, nil, func(obj map[string]any, matches []any) {
				if obj["handler"] != "reverse_proxy" {
					return
				}
				// The model-download proxy to object storage (no health
				// checks: edge_health counts only proxies that have them).
				ms, _ := json.Marshal(matches)
				if strings.Contains(string(ms), "/models/*") {
					if obj["health_checks"] != nil {
						t.Errorf("the download proxy has health checks; edge_health would count object storage as an app instance")
					}
					return
				}
				proxies = append(proxies, obj)
			})
			if len(proxies) != 1 {
				t.Fatalf("%d reverse_proxy handlers to the app, want 1 (each one probes the app on its own)", len(proxies))
			}
			if dig(proxies[0], "health_checks", "active", "uri") != "/readyz" {
				t.Errorf("the proxy has no active check of /readyz: %v", dig(proxies[0], "health_checks"))
			}
		})
	}

	t.Run("grace period covers the load balancer's try duration", func(t *testing.T) {
		cfg := adapted(t, "Caddyfile", adaptEnv(t))
		grace, _ := dig(cfg, "apps", "http", "grace_period").(float64)
		var try float64
		visit(cfg, nil, func(obj map[string]any, _ []any) {
			if obj["handler"] == "reverse_proxy" {
				try, _ = dig(obj, "load_balancing", "try_duration").(float64)
			}
		})
		if try == 0 || grace < try {
			t.Errorf("grace_period %s < lb_try_duration %s: a reload cuts requests waiting out an app restart",
				time.Duration(grace), time.Duration(try))
		}
	})

	// The public server: :443 in production, $PORT (8080 by default) behind
	// Railway's proxy.
	publicPorts := map[string]string{"Caddyfile": ":443", "Caddyfile.railway": ":8080"}
	for _, file := range []string{"Caddyfile", "Caddyfile.railway"} {
		t.Run(file+": public server cuts stalled and trickling bodies", func(t *testing.T) {
			cfg := adapted(t, file, adaptEnv(t))
			servers, _ := dig(cfg, "apps", "http", "servers").(map[string]any)
			checked := 0
			for name, s := range servers {
				listen, _ := json.Marshal(dig(s, "listen"))
				if !strings.Contains(string(listen), publicPorts[file]+`"`) {
					continue
				}
				checked++
				for _, field := range []string{"read_header_timeout", "read_timeout", "read_idle_timeout", "read_min_rate"} {
					if v, _ := dig(s, field).(float64); v <= 0 {
						t.Errorf("server %s: %s = %v, want a positive value", name, field, dig(s, field))
					}
				}
			}
			if checked == 0 {
				t.Fatalf("no %s server in %v", publicPorts[file], servers)
			}
		})
	}

	t.Run("Caddyfile.railway: plain HTTP on $PORT, no certificates, the proxy's client-IP headers", func(t *testing.T) {
		cfg := adapted(t, "Caddyfile.railway", adaptEnv(t, "PORT=31337"))
		servers, _ := dig(cfg, "apps", "http", "servers").(map[string]any)
		var public map[string]any
		for _, s := range servers {
			listen, _ := json.Marshal(dig(s, "listen"))
			if strings.Contains(string(listen), `:31337"`) {
				public, _ = s.(map[string]any)
			}
			if strings.Contains(string(listen), ":443") {
				t.Errorf("a server listens on %s; the platform's proxy terminates TLS", listen)
			}
		}
		if public == nil {
			t.Fatalf("no server on $PORT (31337) in %v", servers)
		}
		if dig(public, "automatic_https", "disable") != true {
			t.Errorf("automatic HTTPS not disabled: %v", dig(public, "automatic_https"))
		}
		if pols := dig(cfg, "apps", "tls", "automation", "policies"); pols != nil {
			t.Errorf("certificate automation configured behind a TLS proxy: %v", pols)
		}
		hdrs, _ := json.Marshal(dig(public, "client_ip_headers"))
		if string(hdrs) != `["X-Real-IP","X-Forwarded-For"]` {
			t.Errorf("client_ip_headers = %s, want X-Real-IP then X-Forwarded-For", hdrs)
		}
		if dig(public, "trusted_proxies_strict") != float64(1) && dig(public, "trusted_proxies_strict") != true {
			t.Errorf("trusted_proxies_strict = %v, want on", dig(public, "trusted_proxies_strict"))
		}
		ranges, _ := json.Marshal(dig(public, "trusted_proxies", "ranges"))
		if string(ranges) != `["0.0.0.0/0","::/0"]` {
			t.Errorf("default trusted proxies = %s, want every peer (only the platform's proxy reaches $PORT)", ranges)
		}
	})

	issuers := func(t *testing.T, env []string) []string {
		t.Helper()
		cfg := adapted(t, "Caddyfile", env)
		var cas []string
		pols, _ := dig(cfg, "apps", "tls", "automation", "policies").([]any)
		for _, p := range pols {
			subj, _ := json.Marshal(dig(p, "subjects"))
			if !strings.Contains(string(subj), "studio.example.com") && dig(p, "subjects") != nil {
				continue
			}
			iss, _ := dig(p, "issuers").([]any)
			for _, i := range iss {
				ca, _ := dig(i, "ca").(string)
				cas = append(cas, ca)
			}
		}
		return cas
	}
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"default: Let's Encrypt, then ZeroSSL", nil,
			"https://acme-v02.api.letsencrypt.org/directory https://acme.zerossl.com/v2/DV90"},
		{"explicit ACME_CA keeps the ZeroSSL fallback", []string{"ACME_CA=https://acme.example.net/dir"},
			"https://acme.example.net/dir https://acme.zerossl.com/v2/DV90"},
		{"ACME_ISSUERS=pinned: ACME_CA alone", []string{"ACME_CA=https://acme.example.net/dir", "ACME_ISSUERS=pinned"},
			"https://acme.example.net/dir"},
		{"ACME_ISSUERS=custom: the extra globals' issuers alone", []string{"ACME_ISSUERS=custom", "EDGE_EXTRA_GLOBALS=" + customIssuer(t)},
			"https://ca.internal.example/dir"},
	} {
		t.Run("issuers: "+tc.name, func(t *testing.T) {
			if got := strings.Join(issuers(t, adaptEnv(t, tc.env...)), " "); got != tc.want {
				t.Errorf("issuers = %q, want %q", got, tc.want)
			}
		})
	}
}
