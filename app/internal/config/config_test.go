package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// valid is a minimal development environment.
func valid() map[string]string {
	return map[string]string{
		"DATABASE_URL":  "postgres://app:pw@127.0.0.1:5432/app?sslmode=disable",
		"S3_ENDPOINT":   "127.0.0.1:9000",
		"S3_ACCESS_KEY": "dev-access",
		"S3_SECRET_KEY": "dev-secret-key",
	}
}

// strongProduction is a production environment that passes every rule.
func strongProduction() map[string]string {
	return map[string]string{
		"APP_ENV":          "production",
		"DATABASE_URL":     "postgres://app:a-very-long-random-password@db:5432/app?sslmode=verify-full",
		"S3_ENDPOINT":      "minio:9000",
		"S3_USE_TLS":       "true",
		"S3_ACCESS_KEY":    "finetune-app",
		"S3_SECRET_KEY":    "0123456789abcdef0123",
		"S3_PUBLIC_URL":    "https://files.example.com",
		"KAGGLE_API_TOKEN": "kgat_x",
		"KAGGLE_USERNAME":  "me",
	}
}

func problemsOf(t *testing.T, err error) Problems {
	t.Helper()
	if err == nil {
		return nil
	}
	var p Problems
	if !errors.As(err, &p) {
		t.Fatalf("got %T %v, want Problems", err, err)
	}
	return p
}

func hasProblem(p Problems, name, reasonPrefix string) bool {
	for _, pr := range p {
		if pr.Var == name && strings.HasPrefix(pr.Reason, reasonPrefix) {
			return true
		}
	}
	return false
}

func TestDefaults(t *testing.T) {
	c, err := Parse(valid(), nil)
	if err != nil {
		t.Fatalf("valid development config: %v", err)
	}
	if c.HTTP.Addr != ":8080" || c.HTTP.MetricsAddr != "127.0.0.1:9090" {
		t.Errorf("addrs: got %q %q", c.HTTP.Addr, c.HTTP.MetricsAddr)
	}
	if c.HTTP.MaxUploadBytes != 100<<20 || c.Training.MaxRuntime != 12*time.Hour || c.S3.PresignExpiry != 15*time.Minute {
		t.Errorf("defaults: upload %d runtime %s presign %s", c.HTTP.MaxUploadBytes, c.Training.MaxRuntime, c.S3.PresignExpiry)
	}
	if c.HTTP.MaxConcurrentUploads != 4 {
		t.Errorf("APP_MAX_CONCURRENT_UPLOADS default %d, want 4", c.HTTP.MaxConcurrentUploads)
	}
	env := valid()
	env["APP_MAX_CONCURRENT_UPLOADS"] = "0"
	if _, err := Parse(env, nil); err == nil || !strings.Contains(err.Error(), "APP_MAX_CONCURRENT_UPLOADS") {
		t.Errorf("APP_MAX_CONCURRENT_UPLOADS=0: got %v, want an error naming it", err)
	}
	if c.S3.Bucket != "finetune-studio" || c.Kaggle.APIURL.String() != "https://www.kaggle.com/api/v1" {
		t.Errorf("bucket %q kaggle %q", c.S3.Bucket, c.Kaggle.APIURL)
	}
	if got := c.S3.PublicURL.String(); got != "https://127.0.0.1:9000" {
		t.Errorf("public URL default: got %q, want the endpoint", got)
	}
	if len(c.Training.BaseModels) < 3 {
		t.Errorf("base models: got %v", c.Training.BaseModels)
	}
	if c.Kaggle.Configured() {
		t.Error("kaggle configured without credentials")
	}
	if c.Kaggle.MachineShape != "NvidiaTeslaT4" || c.Kaggle.PollInterval != 10*time.Second {
		t.Errorf("kaggle machine shape %q poll interval %s, want NvidiaTeslaT4 and 10s", c.Kaggle.MachineShape, c.Kaggle.PollInterval)
	}
}

func TestCollectsEveryProblem(t *testing.T) {
	env := map[string]string{
		"APP_ENV":              "staging",
		"LOG_LEVEL":            "loud",
		"APP_ADDR":             "8080",
		"DB_MAX_CONNS":         "1",
		"DB_STATEMENT_TIMEOUT": "forever",
		"S3_ENDPOINT":          "http://minio:9000",
		"S3_USE_TLS":           "maybe",
		"WORKER_CONCURRENCY":   "x",
		"TRAINING_BASE_MODELS": "not a model",
		"KAGGLE_USERNAME":      "me",
		"KAGGLE_MACHINE_SHAPE": "NvidiaTeslaP100",
		"KAGGLE_POLL_INTERVAL": "100ms",
	}
	_, err := Parse(env, nil)
	p := problemsOf(t, err)
	want := []struct{ name, reason string }{
		{"APP_ENV", "malformed"},
		{"LOG_LEVEL", "malformed"},
		{"APP_ADDR", "malformed"},
		{"DATABASE_URL", "missing"},
		{"DB_MAX_CONNS", "out of range"},
		{"DB_STATEMENT_TIMEOUT", "malformed"},
		{"S3_ENDPOINT", "malformed"},
		{"S3_ACCESS_KEY", "missing"},
		{"S3_SECRET_KEY", "missing"},
		{"S3_USE_TLS", "malformed"},
		{"WORKER_CONCURRENCY", "malformed"},
		{"TRAINING_BASE_MODELS", "malformed"},
		{"KAGGLE_KEY", "incomplete"},
		{"KAGGLE_MACHINE_SHAPE", "unsupported: NvidiaTeslaP100 is refused"},
		{"KAGGLE_POLL_INTERVAL", "out of range"},
	}
	for _, w := range want {
		if !hasProblem(p, w.name, w.reason) {
			t.Errorf("missing problem %s: %s...; got:\n%v", w.name, w.reason, p)
		}
	}
}

// TestBaseModelsMustLoadWithoutAToken: a gated model (the old defaults
// included two) or one without a recorded size stops the start.
func TestBaseModelsMustLoadWithoutAToken(t *testing.T) {
	for _, tc := range []struct{ models, want string }{
		{"Qwen/Qwen2.5-0.5B-Instruct,meta-llama/Llama-3.2-1B-Instruct", "gated"},
		{"google/gemma-2-2b-it", "gated"},
		{"someone/unknown-model", "no recorded size"},
	} {
		env := valid()
		env["TRAINING_BASE_MODELS"] = tc.models
		_, err := Parse(env, nil)
		p := problemsOf(t, err)
		if !hasProblem(p, "TRAINING_BASE_MODELS", "unsupported") || !strings.Contains(p.Error(), tc.want) {
			t.Errorf("%s: problems %v, want TRAINING_BASE_MODELS unsupported: ...%s...", tc.models, p, tc.want)
		}
	}
	env := valid()
	env["TRAINING_BASE_MODELS"] = "Qwen/Qwen2.5-7B-Instruct, HuggingFaceTB/SmolLM2-360M-Instruct"
	c, err := Parse(env, nil)
	if err != nil || len(c.Training.BaseModels) != 2 {
		t.Fatalf("known models refused: %v %v", c.Training.BaseModels, err)
	}
}

func TestProductionRefusesInsecureSettings(t *testing.T) {
	if _, err := Parse(strongProduction(), nil); err != nil {
		t.Fatalf("strong production config refused: %v", err)
	}
	tests := []struct {
		name     string
		override map[string]string
		variable string
	}{
		{"sslmode disable", map[string]string{"DATABASE_URL": "postgres://app:a-very-long-random-password@db/app?sslmode=disable"}, "DATABASE_URL"},
		{"sslmode require", map[string]string{"DATABASE_URL": "postgres://app:a-very-long-random-password@db/app?sslmode=require"}, "DATABASE_URL"},
		{"sslmode verify-ca", map[string]string{"DATABASE_URL": "postgres://app:a-very-long-random-password@db/app?sslmode=verify-ca"}, "DATABASE_URL"},
		{"sslmode verify-ca keyword form", map[string]string{"DATABASE_URL": "host=db user=app password=a-very-long-random-password sslmode=verify-ca"}, "DATABASE_URL"},
		{"no sslmode keyword form", map[string]string{"DATABASE_URL": "host=db user=app password=a-very-long-random-password"}, "DATABASE_URL"},
		{"short db password", map[string]string{"DATABASE_URL": "postgres://app:short@db/app?sslmode=verify-full"}, "DATABASE_URL"},
		{"default db password", map[string]string{"DATABASE_URL": "postgres://postgres:postgres@db/app?sslmode=verify-full"}, "DATABASE_URL"},
		{"s3 without tls", map[string]string{"S3_USE_TLS": "false"}, "S3_USE_TLS"},
		{"minioadmin key", map[string]string{"S3_ACCESS_KEY": "minioadmin"}, "S3_ACCESS_KEY"},
		{"minioadmin secret", map[string]string{"S3_SECRET_KEY": "minioadmin"}, "S3_SECRET_KEY"},
		{"short secret", map[string]string{"S3_SECRET_KEY": "abc123"}, "S3_SECRET_KEY"},
		{"debug logging", map[string]string{"LOG_LEVEL": "debug"}, "LOG_LEVEL"},
		{"wildcard proxies v4", map[string]string{"APP_TRUSTED_PROXIES": "0.0.0.0/0"}, "APP_TRUSTED_PROXIES"},
		{"wildcard proxies v6", map[string]string{"APP_TRUSTED_PROXIES": "10.0.0.0/8, ::/0"}, "APP_TRUSTED_PROXIES"},
		{"plain http public url", map[string]string{"S3_PUBLIC_URL": "http://files.example.com"}, "S3_PUBLIC_URL"},
		{"plain http kaggle", map[string]string{"KAGGLE_API_URL": "http://kaggle.example.com/api/v1"}, "KAGGLE_API_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := strongProduction()
			for k, v := range tt.override {
				env[k] = v
			}
			_, err := Parse(env, nil)
			p := problemsOf(t, err)
			if !hasProblem(p, tt.variable, "insecure") {
				t.Fatalf("got %v, want an insecure problem on %s", p, tt.variable)
			}
			// Problems never echo a secret value.
			for _, v := range tt.override {
				if strings.Contains(p.Error(), v) && (strings.Contains(v, "password") || strings.Contains(v, "minioadmin")) {
					t.Errorf("problem text echoes the value %q: %v", v, p)
				}
			}
		})
	}
	// The same weak settings are fine in development.
	dev := valid()
	dev["S3_ACCESS_KEY"], dev["S3_SECRET_KEY"], dev["LOG_LEVEL"] = "minioadmin", "minioadmin", "debug"
	if _, err := Parse(dev, nil); err != nil {
		t.Errorf("development refused: %v", err)
	}
}

func TestAdvisoriesFlagMissingKaggleInProduction(t *testing.T) {
	env := strongProduction()
	delete(env, "KAGGLE_USERNAME")
	c, err := Parse(env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if adv := c.Advisories(); !hasProblem(adv, "KAGGLE_USERNAME", "missing") {
		t.Fatalf("got advisories %v, want the API token without a username flagged", adv)
	}
	delete(env, "KAGGLE_API_TOKEN")
	c, err = Parse(env, nil)
	if err != nil {
		t.Fatalf("kaggle credentials must be optional for serving: %v", err)
	}
	if adv := c.Advisories(); !hasProblem(adv, "KAGGLE_API_TOKEN", "missing") {
		t.Fatalf("got advisories %v, want missing kaggle credentials", adv)
	}
	env["KAGGLE_USERNAME"], env["KAGGLE_KEY"] = "me", "key"
	c, _ = Parse(env, nil)
	if adv := c.Advisories(); len(adv) != 0 {
		t.Fatalf("got advisories %v with username+key set", adv)
	}
}

func TestFileVariablesAndDotenvPrecedence(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "s3_secret")
	if err := os.WriteFile(secret, []byte("from-a-file-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dotenvPath := filepath.Join(dir, ".env")
	dotenv := "APP_ADDR=:7000\nS3_SECRET_KEY=from-dotenv\nLOG_LEVEL=warn\n"
	if err := os.WriteFile(dotenvPath, []byte(dotenv), 0o600); err != nil {
		t.Fatal(err)
	}
	environ := []string{
		"DATABASE_URL=postgres://a:b@h/d", "S3_ENDPOINT=h:1", "S3_ACCESS_KEY=access",
		"S3_SECRET_KEY_FILE=" + secret, // the environment's _FILE beats .env's plain value
		"LOG_LEVEL=error",              // the environment beats .env
	}
	c, err := Load(environ, dotenvPath)
	if err != nil {
		t.Fatal(err)
	}
	if c.S3.SecretKey != "from-a-file-secret" {
		t.Errorf("S3_SECRET_KEY: got %q, want the file's content without newline", c.S3.SecretKey)
	}
	if c.HTTP.Addr != ":7000" {
		t.Errorf("APP_ADDR: got %q, want the .env default", c.HTTP.Addr)
	}
	if c.LogLevel.String() != "ERROR" {
		t.Errorf("LOG_LEVEL: got %v, want the environment's", c.LogLevel)
	}

	// Both forms at once, and an unreadable file, are problems.
	env := valid()
	env["S3_SECRET_KEY_FILE"] = secret
	env["DATABASE_URL_FILE"] = filepath.Join(dir, "missing")
	delete(env, "DATABASE_URL")
	_, err = Parse(env, nil)
	p := problemsOf(t, err)
	if !hasProblem(p, "S3_SECRET_KEY", "both") || !hasProblem(p, "DATABASE_URL_FILE", "cannot read") {
		t.Fatalf("got %v", p)
	}
	// A missing .env is fine; a malformed one is a problem.
	if _, err := Load(environ, filepath.Join(dir, "nope")); err != nil {
		t.Errorf("missing .env: %v", err)
	}
	bad := filepath.Join(dir, "bad.env")
	_ = os.WriteFile(bad, []byte("=novalue\n"), 0o600)
	if _, err := Load(environ, bad); err == nil {
		t.Error("malformed .env accepted")
	}
}

// TestVariablesAreDocumented fails when the code reads a variable that
// .env.example or docs/configuration.md lacks, or when they list one the code
// does not read. The code's list comes from the parser itself.
func TestVariablesAreDocumented(t *testing.T) {
	code := Variables()
	slices.Sort(code)
	code = slices.Compact(code)
	if len(code) < 20 {
		t.Fatalf("Variables() returned only %v", code)
	}
	root := filepath.Join("..", "..", "..")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	sources := map[string]*regexp.Regexp{
		".env.example":          regexp.MustCompile(`(?m)^#?\s*([A-Z][A-Z0-9_]*)=`),
		"docs/configuration.md": regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]*)` \\|"),
	}
	for file, re := range sources {
		text := read(file)
		if file == "docs/configuration.md" {
			// Only the app's own section: later tables (e.g. the compose
			// backup service's settings) are read by other programs and
			// checked against compose by deploy/doctest.
			text = markdownSection(t, text, "## Variables")
		}
		var documented []string
		for _, m := range re.FindAllStringSubmatch(text, -1) {
			documented = append(documented, m[1])
		}
		slices.Sort(documented)
		documented = slices.Compact(documented)
		for _, v := range code {
			if !slices.Contains(documented, v) {
				t.Errorf("%s lacks %s, which the code reads", file, v)
			}
		}
		for _, v := range documented {
			if !slices.Contains(code, v) {
				t.Errorf("%s lists %s, which the code does not read", file, v)
			}
		}
	}
}

// markdownSection returns the text under heading up to the next heading of
// the same or a higher level.
func markdownSection(t *testing.T, doc, heading string) string {
	t.Helper()
	start := strings.Index(doc, "\n"+heading+"\n")
	if start < 0 {
		t.Fatalf("no %q heading", heading)
	}
	rest := doc[start+len(heading)+2:]
	level := strings.Repeat("#", strings.Count(strings.Fields(heading)[0], "#"))
	for i := 0; i < len(rest); {
		j := strings.IndexByte(rest[i:], '\n')
		line := rest[i:]
		if j >= 0 {
			line = rest[i : i+j]
		}
		if f := strings.Fields(line); len(f) > 0 && strings.Trim(f[0], "#") == "" && len(f[0]) <= len(level) {
			return rest[:i]
		}
		if j < 0 {
			break
		}
		i += j + 1
	}
	return rest
}

func TestExampleFileParses(t *testing.T) {
	c, err := Load(nil, filepath.Join("..", "..", "..", ".env.example"))
	p := problemsOf(t, err)
	// The example leaves the S3 credentials empty on purpose: no secret has
	// a default, not even in the example.
	for _, pr := range p {
		if pr.Var != "S3_ACCESS_KEY" && pr.Var != "S3_SECRET_KEY" {
			t.Errorf("unexpected problem in .env.example: %s: %s", pr.Var, pr.Reason)
		}
	}
	if c.Env != Development {
		t.Errorf("example env: got %q", c.Env)
	}
}

func TestKaggleSimulatorIsDevelopmentOnly(t *testing.T) {
	dev := valid()
	dev["KAGGLE_SIMULATOR"] = "true"
	c, err := Parse(dev, nil)
	if err != nil {
		t.Fatalf("development refused the simulator: %v", err)
	}
	if !c.Kaggle.Configured() || c.Kaggle.Backend() != "simulator" {
		t.Errorf("got configured=%v backend=%q, want true and simulator", c.Kaggle.Configured(), c.Kaggle.Backend())
	}

	prod := strongProduction()
	delete(prod, "KAGGLE_USERNAME")
	delete(prod, "KAGGLE_API_TOKEN")
	prod["KAGGLE_SIMULATOR"] = "true"
	_, err = Parse(prod, nil)
	if p := problemsOf(t, err); !hasProblem(p, "KAGGLE_SIMULATOR", "refused in production") {
		t.Fatalf("got %v, want the simulator refused in production", p)
	}

	both := valid()
	both["KAGGLE_SIMULATOR"], both["KAGGLE_USERNAME"], both["KAGGLE_API_TOKEN"] = "true", "me", "tok"
	_, err = Parse(both, nil)
	if p := problemsOf(t, err); !hasProblem(p, "KAGGLE_SIMULATOR", "conflicting") {
		t.Fatalf("got %v, want the simulator with credentials refused", p)
	}

	for env, want := range map[string]string{"": "none", "KAGGLE_USERNAME=me KAGGLE_KEY=k": "kaggle"} {
		e := valid()
		for _, kv := range strings.Fields(env) {
			k, v, _ := strings.Cut(kv, "=")
			e[k] = v
		}
		c, err := Parse(e, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Kaggle.Backend(); got != want {
			t.Errorf("%q: backend %q, want %q", env, got, want)
		}
	}
}

// TestPostgresOffsiteTarget: the off-VM dump copy adds its kind to the
// expected backups when configured, and every bad combination is refused
// naming the variable to fix.
func TestPostgresOffsiteTarget(t *testing.T) {
	c, err := Parse(valid(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Backup.PostgresTarget != "" || !slices.Equal(c.Backup.Kinds, []string{"postgres", "objects"}) ||
		c.Backup.PostgresDir != "/backups/postgres" || c.Backup.PostgresInterval != time.Hour ||
		c.Backup.PostgresRetention != 35*24*time.Hour {
		t.Fatalf("defaults: got target %q kinds %v dir %q interval %s retention %s", c.Backup.PostgresTarget,
			c.Backup.Kinds, c.Backup.PostgresDir, c.Backup.PostgresInterval, c.Backup.PostgresRetention)
	}
	s3 := map[string]string{"BACKUP_S3_ENDPOINT": "s3.example.com:443", "BACKUP_S3_ACCESS_KEY": "k", "BACKUP_S3_SECRET_KEY": "s"}
	for _, tc := range []struct {
		name string
		set  map[string]string
		s3   bool
		// want is "VAR: reason prefix"; empty means valid.
		want string
	}{
		{"s3 target", map[string]string{"BACKUP_POSTGRES_TARGET": "s3://offsite/studio/postgres"}, true, ""},
		{"directory target", map[string]string{"BACKUP_POSTGRES_TARGET": "/mnt/nas/studio"}, false, ""},
		{"keep forever", map[string]string{"BACKUP_POSTGRES_TARGET": "/mnt/nas/studio", "BACKUP_POSTGRES_RETENTION": "0"}, false, ""},
		{"relative directory", map[string]string{"BACKUP_POSTGRES_TARGET": "backups/pg"}, false, "BACKUP_POSTGRES_TARGET: malformed"},
		{"other scheme", map[string]string{"BACKUP_POSTGRES_TARGET": "https://bucket.example.com/x"}, true, "BACKUP_POSTGRES_TARGET: malformed"},
		{"bad bucket", map[string]string{"BACKUP_POSTGRES_TARGET": "s3://Bad_Bucket/x"}, true, "BACKUP_POSTGRES_TARGET: malformed"},
		{"s3 without endpoint", map[string]string{"BACKUP_POSTGRES_TARGET": "s3://offsite/pg"}, false, "BACKUP_S3_ENDPOINT: missing"},
		{"s3 without keys", map[string]string{"BACKUP_POSTGRES_TARGET": "s3://offsite/pg", "BACKUP_S3_ENDPOINT": "s3.example.com:443"}, false, "BACKUP_S3_ACCESS_KEY: missing"},
		{"endpoint with scheme", map[string]string{"BACKUP_POSTGRES_TARGET": "s3://offsite/pg", "BACKUP_S3_ENDPOINT": "https://s3.example.com/",
			"BACKUP_S3_ACCESS_KEY": "k", "BACKUP_S3_SECRET_KEY": "s"}, false, "BACKUP_S3_ENDPOINT: missing or malformed"},
		{"same as the object mirror", map[string]string{"BACKUP_POSTGRES_TARGET": "s3://offsite/x/", "BACKUP_OBJECTS_TARGET": "s3://offsite/x"}, true, "BACKUP_POSTGRES_TARGET: conflict"},
		{"inside the dump directory", map[string]string{"BACKUP_POSTGRES_TARGET": "/backups/postgres/copy"}, false, "BACKUP_POSTGRES_TARGET: conflict"},
		{"relative dump directory", map[string]string{"BACKUP_POSTGRES_TARGET": "/mnt/nas", "BACKUP_POSTGRES_DIR": "dumps"}, false, "BACKUP_POSTGRES_DIR: malformed"},
		{"short retention", map[string]string{"BACKUP_POSTGRES_TARGET": "/mnt/nas", "BACKUP_POSTGRES_RETENTION": "2h"}, false, "BACKUP_POSTGRES_RETENTION: out of range"},
		{"interval too short", map[string]string{"BACKUP_POSTGRES_TARGET": "/mnt/nas", "BACKUP_POSTGRES_INTERVAL": "10s"}, false, "BACKUP_POSTGRES_INTERVAL: out of range"},
		{"kind expected without target", map[string]string{"BACKUP_KINDS": "postgres,postgres-offsite"}, false, "BACKUP_KINDS: conflict"},
		{"unreadable CA file", map[string]string{"BACKUP_POSTGRES_TARGET": "s3://offsite/pg", "BACKUP_S3_CA_FILE": "/nonexistent/ca.crt"}, true, "BACKUP_S3_CA_FILE: cannot read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := valid()
			if tc.s3 {
				for k, v := range s3 {
					env[k] = v
				}
			}
			for k, v := range tc.set {
				env[k] = v
			}
			c, err := Parse(env, nil)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				if !slices.Contains(c.Backup.Kinds, "postgres-offsite") {
					t.Fatalf("kinds %v: want postgres-offsite added when BACKUP_POSTGRES_TARGET is set", c.Backup.Kinds)
				}
				return
			}
			name, reason, _ := strings.Cut(tc.want, ": ")
			if p := problemsOf(t, err); !hasProblem(p, name, reason) {
				t.Fatalf("got %v, want %s", p, tc.want)
			}
		})
	}
}
