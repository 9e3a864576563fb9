package studiotest

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// repo is the repository root (this package is deploy/studiotest).
func repo(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// fakeDocker stands in for the docker CLI and its compose plugin: it
// answers versions from FAKE_DOCKER_VERSION and FAKE_COMPOSE_VERSION, has
// no images unless FAKE_IMAGE=1 (then `compose run app config check` and
// `... kaggle check` print FAKE_CONFIG_OUT / FAKE_KAGGLE_OUT and exit with
// FAKE_CONFIG_RC / FAKE_KAGGLE_RC, as the app does), lists the containers
// in FAKE_PS_FILE and records every command line in FAKE_LOG.
const fakeDocker = `#!/bin/sh
[ -z "${FAKE_LOG:-}" ] || printf '%s\n' "$*" >>"$FAKE_LOG"
case $1 in
  info)
    [ "${2:-}" != --format ] || printf '%s\n' "$FAKE_DOCKER_ROOT"
    exit 0 ;;
  version)
    case "$*" in
      *Server* | *Client*) printf '%s\n' "$FAKE_DOCKER_VERSION" ;;
      *) printf 'Server: Docker Engine - Community\n Engine:\n  Version: %s\n' "$FAKE_DOCKER_VERSION" ;;
    esac
    exit 0 ;;
  image) [ "${FAKE_IMAGE:-}" = 1 ] ;  exit ;;
  compose) shift ;;
  *) echo "fake docker: unsupported: $*" >&2; exit 1 ;;
esac
while [ $# -gt 0 ]; do
  case $1 in
    --env-file | -f | -p | --project-name) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
case $1 in
  version) printf '%s\n' "$FAKE_COMPOSE_VERSION" ;;
  config)
    case "$*" in
      *--services*) printf 'edge\napp\npostgres\nminio\n' ;;
      *--quiet*) ;;
      *) printf 'name: fake\nservices:\n  app:\n    image: localhost/finetune-studio/app:fake\n  minio:\n    image: minio\n' ;;
    esac ;;
  ps)
    case "$*" in
      *--format*) [ -z "${FAKE_PS_FILE:-}" ] || cat "$FAKE_PS_FILE" ;;
      *) printf 'NAME  SERVICE  STATUS\n' ;;
    esac ;;
  exec) exit "${FAKE_EXEC_RC:-1}" ;;
  run)
    [ "${FAKE_IMAGE:-}" = 1 ] || { echo "fake docker compose: no such image" >&2; exit 125; }
    case "$*" in
      *"config check"*) printf '%b' "$FAKE_CONFIG_OUT"; exit "$FAKE_CONFIG_RC" ;;
      *"kaggle check"*) printf '%b' "$FAKE_KAGGLE_OUT"; exit "$FAKE_KAGGLE_RC" ;;
    esac
    exit 1 ;;
  logs) printf 'fake logs\n' ;;
  port) exit 1 ;;
  *) echo "fake docker compose: unsupported: $*" >&2; exit 1 ;;
esac
`

// fixture is one operator's host: an env file, generated secrets and
// certificates, and a bin directory of shims first on PATH.
type fixture struct {
	t       *testing.T
	dir     string
	bin     string
	envFile string
	secrets string
	certs   string
	// vars are the env file's settings, written by run (nil: no file).
	vars  map[string]string
	order []string
	// environ adds to the process environment of deploy/studio.
	environ map[string]string
}

func newFixture(t *testing.T, certDays int) *fixture {
	t.Helper()
	root := repo(t)
	dir := t.TempDir()
	f := &fixture{
		t: t, dir: dir, bin: filepath.Join(dir, "bin"), envFile: filepath.Join(dir, "env"),
		secrets: filepath.Join(dir, "secrets"), certs: filepath.Join(dir, "certs"),
		vars: map[string]string{}, environ: map[string]string{},
	}
	if err := os.MkdirAll(f.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	f.shim("docker", fakeDocker)
	// Postgres' key owner is the uid gen-certs.sh gives it (999 as root):
	// both scripts read POSTGRES_UID, so the fixture works as any user.
	uid := strconv.Itoa(os.Getuid())
	f.environ["POSTGRES_UID"] = uid
	mustRun(t, nil, filepath.Join(root, "deploy/scripts/gen-secrets.sh"), f.secrets)
	mustRun(t, []string{"POSTGRES_UID=" + uid, "CERT_DAYS=" + strconv.Itoa(certDays)},
		filepath.Join(root, "deploy/scripts/gen-certs.sh"), f.certs)

	example, err := os.ReadFile(filepath.Join(root, "deploy/.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(example), "\n") {
		name, value, ok := strings.Cut(line, "=")
		if ok && regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`).MatchString(name) {
			f.set(name, value)
		}
	}
	f.set("DOMAIN", "127.0.0.1")
	f.set("ACME_EMAIL", "ops@studio.test")
	f.set("CERTS_DIR", f.certs)
	f.set("SECRETS_DIR", f.secrets)
	f.set("EDGE_BIND_ADDRESS", "127.0.0.1")
	f.set("HTTP_PORT", strconv.Itoa(freePort(t)))
	f.set("HTTPS_PORT", strconv.Itoa(freePort(t)))

	f.environ["FAKE_DOCKER_VERSION"] = "27.3.1"
	f.environ["FAKE_COMPOSE_VERSION"] = "2.29.7"
	f.environ["FAKE_DOCKER_ROOT"] = dir
	f.environ["FAKE_LOG"] = filepath.Join(dir, "docker.log")
	// The host firewall as a fresh Debian leaves it: nothing filtered.
	f.shim("iptables", "#!/bin/sh\nprintf -- '-P INPUT ACCEPT\\n'\n")
	return f
}

func (f *fixture) set(name, value string) {
	if _, ok := f.vars[name]; !ok {
		f.order = append(f.order, name)
	}
	f.vars[name] = value
}

func (f *fixture) unset(name string) { delete(f.vars, name) }

// shim puts an executable NAME on the front of PATH.
func (f *fixture) shim(name, script string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.bin, name), []byte(script), 0o755); err != nil {
		f.t.Fatal(err)
	}
}

// result is one run of deploy/studio.
type result struct {
	code   int
	output string // stdout and stderr, interleaved as written
}

// run writes the env file and runs deploy/studio ARGS.
func (f *fixture) run(args ...string) result {
	f.t.Helper()
	if f.vars != nil { // nil: the operator has not written one
		var env bytes.Buffer
		for _, name := range f.order {
			if v, ok := f.vars[name]; ok {
				env.WriteString(name + "=" + v + "\n")
			}
		}
		if err := os.WriteFile(f.envFile, env.Bytes(), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	environ := []string{
		"PATH=" + f.bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"STUDIO_ENV_FILE=" + f.envFile,
		"STUDIO_LOG=" + filepath.Join(f.dir, "studio.log"),
		"TMPDIR=" + f.dir,
	}
	for k, v := range f.environ {
		environ = append(environ, k+"="+v)
	}
	return studio(f.t, environ, args...)
}

// studio runs deploy/studio with exactly ENVIRON (plus HOME) and ARGS.
func studio(t *testing.T, environ []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(filepath.Join(repo(t), "deploy/studio"), args...)
	cmd.Env = append([]string{"HOME=" + os.Getenv("HOME"), "LANG=C"}, environ...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("deploy/studio %s: %v", strings.Join(args, " "), err)
	}
	return result{code: code, output: out.String()}
}

func mustRun(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// freePort is a loopback port free for both TCP and UDP when asked.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no loopback port free for both TCP and UDP")
	return 0
}

// wantLine fails unless the output has a line containing every fragment.
func (r result) wantLine(t *testing.T, fragments ...string) {
	t.Helper()
	for _, line := range strings.Split(r.output, "\n") {
		ok := true
		for _, f := range fragments {
			if !strings.Contains(line, f) {
				ok = false
				break
			}
		}
		if ok {
			return
		}
	}
	t.Errorf("no line with %q in:\n%s", fragments, r.output)
}

func (r result) wantNo(t *testing.T, fragment string) {
	t.Helper()
	if strings.Contains(r.output, fragment) {
		t.Errorf("output has %q:\n%s", fragment, r.output)
	}
}

func (r result) wantCode(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d; output:\n%s", r.code, code, r.output)
	}
}
