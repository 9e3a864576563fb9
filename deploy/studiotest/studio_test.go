package studiotest

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every verb file answers --help with exit 0 and is listed in the usage
// text (the header of deploy/studio).
func TestEveryVerbHasHelpAndUsage(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(repo(t), "deploy/studio.d/*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + os.Getenv("PATH")}
	usage := studio(t, env, "--help")
	usage.wantCode(t, 0)
	verbs := 0
	for _, file := range files {
		verb := strings.TrimSuffix(filepath.Base(file), ".sh")
		if verb == "common" {
			continue
		}
		verbs++
		r := studio(t, env, verb, "--help")
		r.wantCode(t, 0)
		r.wantLine(t, "Usage: deploy/studio "+verb)
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(verb) + `\b`).MatchString(usage.output) {
			t.Errorf("deploy/studio --help does not list %q:\n%s", verb, usage.output)
		}
	}
	if verbs < 4 {
		t.Errorf("found %d verbs, want at least preflight, status, logs, token", verbs)
	}
}

func TestUnknownVerb(t *testing.T) {
	t.Parallel()
	env := []string{"PATH=" + os.Getenv("PATH")}
	for _, args := range [][]string{{}, {"frobnicate"}, {"common"}, {"../studio"}} {
		r := studio(t, env, args...)
		r.wantCode(t, 2)
		r.wantLine(t, "Usage: deploy/studio <verb>")
	}
}

func TestLogs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 825)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"logs", "nosuch"}, "unknown service 'nosuch' (services: edge app postgres minio"},
		{[]string{"logs", "app", "edge"}, "one SERVICE at most"},
		{[]string{"logs", "--since"}, "--since needs a value"},
		{[]string{"logs", "--since", "10m; rm"}, "neither a duration nor a time"},
		{[]string{"logs", "--tail", "x"}, "--tail takes a number"},
		{[]string{"logs", "--frobnicate"}, "unknown option '--frobnicate'"},
	} {
		r := f.run(tc.args...)
		r.wantCode(t, 2)
		r.wantLine(t, tc.want)
	}

	// What reaches compose.
	r := f.run("logs", "app", "--since", "10m", "--no-follow")
	r.wantCode(t, 0)
	r.wantLine(t, "fake logs")
	r = f.run("logs", "--tail", "all")
	r.wantCode(t, 0)
	log, err := os.ReadFile(f.environ["FAKE_LOG"])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		" logs --tail 200 --since 10m app\n",
		" logs --tail all -f\n",
	} {
		if !strings.Contains(string(log), want) {
			t.Errorf("compose was not called with %q; calls:\n%s", want, log)
		}
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 825)
	r := f.run("status", "extra")
	r.wantCode(t, 2)
	r.wantLine(t, "status takes no arguments")

	// An edge answering /health over TLS; the test server's certificate
	// names example.com, which curl --resolve maps to 127.0.0.1.
	healthStatus, healthBody := http.StatusOK, `{"status":"pass","certificate_days_left":41.2}`
	edge := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/health+json")
		w.WriteHeader(healthStatus)
		w.Write([]byte(healthBody))
	}))
	defer edge.Close()
	ca := filepath.Join(f.dir, "edge-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: edge.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	f.set("DOMAIN", "example.com")
	f.set("HTTPS_PORT", edge.URL[strings.LastIndex(edge.URL, ":")+1:])
	f.environ["STUDIO_EDGE_CA_FILE"] = ca
	ps := filepath.Join(f.dir, "ps")
	f.environ["FAKE_PS_FILE"] = ps
	writePS := func(lines string) {
		t.Helper()
		if err := os.WriteFile(ps, []byte(lines), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	releases := filepath.Join(f.dir, "releases")
	f.environ["STUDIO_RELEASES_DIR"] = releases

	// Nothing running.
	writePS("")
	r = f.run("status")
	r.wantCode(t, 1)
	r.wantLine(t, "[FAIL]", "app: no container")
	r.wantLine(t, "no release recorded")
	r.wantLine(t, "[FAIL]", "app /readyz")

	// All healthy.
	writePS("edge|running|healthy|fs-edge-1\napp|running|healthy|fs-app-1\n" +
		"postgres|running|healthy|fs-postgres-1\nminio|running|healthy|fs-minio-1\n")
	f.environ["FAKE_EXEC_RC"] = "0"
	if err := os.MkdirAll(releases, 0o755); err != nil {
		t.Fatal(err)
	}
	// A release record as deploy/studio deploy writes it.
	for name, content := range map[string]string{
		"current":                  "20250601T120000Z-abc1234\n",
		"20250601T120000Z-abc1234": "id=20250601T120000Z-abc1234\nrev=abc1234\napp_image=localhost/finetune-studio/app:abc1234\n",
	} {
		if err := os.WriteFile(filepath.Join(releases, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r = f.run("status")
	r.wantCode(t, 0)
	r.wantLine(t, "[pass]", "app (fs-app-1): running, healthy")
	r.wantLine(t, "current release 20250601T120000Z-abc1234")
	r.wantLine(t, "app_image=localhost/finetune-studio/app:abc1234")
	r.wantLine(t, "[pass]", "https://example.com:"+f.vars["HTTPS_PORT"]+"/health", `"status":"pass"`)
	r.wantLine(t, "[pass]", "app /readyz")
	r.wantLine(t, "status: healthy")

	// An unhealthy app, an edge answering 503.
	writePS("edge|running|healthy|fs-edge-1\napp|running|unhealthy|fs-app-1\n" +
		"postgres|running|healthy|fs-postgres-1\nminio|exited||fs-minio-1\n")
	healthStatus, healthBody = http.StatusServiceUnavailable, `{"status":"fail"}`
	f.environ["FAKE_EXEC_RC"] = "1"
	r = f.run("status")
	r.wantCode(t, 1)
	r.wantLine(t, "[FAIL]", "app (fs-app-1): running, unhealthy")
	r.wantLine(t, "[FAIL]", "minio (fs-minio-1): exited")
	r.wantLine(t, "[FAIL]", "/health answered 503")
	r.wantLine(t, "status: not healthy")
}
