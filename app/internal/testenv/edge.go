package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// LocalEdge is the environment for the edge binary run with the production
// Caddyfile on loopback: random ports, throwaway storage in a temporary
// home, and certificates from Caddy's local CA (the extra globals file) in
// place of ACME. Callers add APP_UPSTREAMS and their overrides to Env.
type LocalEdge struct {
	Env         map[string]string
	HTTPSPort   int
	MetricsPort int
}

// NewLocalEdge returns a LocalEdge that serves the UI from uiDir.
func NewLocalEdge(t testing.TB, uiDir string) LocalEdge {
	t.Helper()
	home := t.TempDir()
	extra := filepath.Join(home, "test-globals.caddy")
	if err := os.WriteFile(extra, []byte("local_certs\nskip_install_trust\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := LocalEdge{HTTPSPort: FreePort(t), MetricsPort: FreePort(t)}
	e.Env = map[string]string{
		"PATH":                   os.Getenv("PATH"),
		"HOME":                   home,
		"XDG_DATA_HOME":          filepath.Join(home, "data"),
		"XDG_CONFIG_HOME":        filepath.Join(home, "config"),
		"DOMAIN":                 "localhost",
		"ACME_EMAIL":             "ops@example.test",
		"ACME_ISSUERS":           "custom", // local_certs in the extra globals
		"EDGE_ADMIN_ADDR":        fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		"EDGE_STORAGE_DIR":       filepath.Join(home, "storage"),
		"EDGE_HTTP_LISTEN_PORT":  strconv.Itoa(FreePort(t)),
		"EDGE_HTTPS_LISTEN_PORT": strconv.Itoa(e.HTTPSPort),
		"EDGE_METRICS_PORT":      strconv.Itoa(e.MetricsPort),
		"EDGE_METRICS_BIND":      "127.0.0.1",
		"EDGE_EXTRA_GLOBALS":     extra,
		"EDGE_UI_DIR":            uiDir,
	}
	return e
}
