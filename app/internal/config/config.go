// Package config is the application's one configuration struct, parsed once
// from the environment and validated before anything starts.
//
// Every variable can also be given as NAME_FILE, the path of a file holding
// the value (Docker secrets). A .env file may supply defaults; the real
// environment always wins. Parsing never stops at the first problem: every
// problem is collected so an operator fixes them all in one go.
//
// No secret has a default: DATABASE_URL, S3_ACCESS_KEY and S3_SECRET_KEY must
// be given, and the Kaggle credentials are optional.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-envparse"

	"github.com/finetune-studio/finetune-studio/app/internal/blob"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// Environments.
const (
	Development = "development"
	Production  = "production"
)

// Config is everything the app reads from its environment.
type Config struct {
	Env       string
	LogLevel  slog.Level
	HTTP      HTTP
	DB        DB
	S3        S3
	Worker    Worker
	Kaggle    Kaggle
	Training  Training
	Retention Retention
	Backup    Backup
}

// Backup configures backup freshness reporting and the object mirror
// (docs/backups.md).
type Backup struct {
	// MaxAge: /readyz warns when the newest verified backup of a kind in
	// Kinds is older than this. 0 disables the check.
	MaxAge time.Duration
	// Kinds are the backups this deployment expects: postgres (made by the
	// backup service), objects (the mirror). The freshness check and the
	// metric cover these.
	Kinds []string
	// ObjectsTarget is where the object mirror goes: a directory, or
	// s3://bucket/prefix on BackupS3. Empty: no periodic mirror in serve.
	ObjectsTarget string
	// ObjectsInterval is the time between two periodic mirrors.
	ObjectsInterval time.Duration
	// PostgresTarget is where the backup service's dumps are copied off
	// the VM: a directory, or s3://bucket/prefix on BackupS3. Empty: no
	// off-VM copy.
	PostgresTarget string
	// PostgresDir is where the dumps are (the backups volume, read-only).
	PostgresDir string
	// PostgresInterval is the time between two periodic off-VM copies.
	PostgresInterval time.Duration
	// PostgresRetention: a copy whose dump is gone from PostgresDir is
	// deleted from PostgresTarget once the dump is this old; 0 keeps all.
	PostgresRetention time.Duration
	// S3 is the endpoint of an s3:// ObjectsTarget or PostgresTarget.
	S3 BackupS3
}

// BackupS3 is an S3-compatible endpoint that holds the object mirror or
// the off-VM dump copies.
type BackupS3 struct {
	Endpoint  string // host[:port], no scheme
	AccessKey string // secret
	SecretKey string // secret
	UseTLS    bool
	CAFile    string // PEM bundle trusted in addition to the system roots
	Region    string
}

// Retention bounds what the database and the bucket keep; the periodic
// maintenance tasks apply it.
type Retention struct {
	// Interval is the time between two runs of each maintenance task.
	Interval time.Duration
	// Tasks: done and dead queue tasks are deleted this long after they
	// finished.
	Tasks time.Duration
	// JobEvents: a finished job's event log is deleted this long after the
	// job finished.
	JobEvents time.Duration
	// OrphanMinAge: an object no row refers to is removed once this old.
	OrphanMinAge time.Duration
}

// HTTP configures the API and metrics listeners.
type HTTP struct {
	Addr            string
	MetricsAddr     string
	ShutdownTimeout time.Duration
	DrainDelay      time.Duration
	StartupTimeout  time.Duration
	MaxBodyBytes    int64
	MaxUploadBytes  int64
	TrustedProxies  []netip.Prefix
	// MaxEventStreams and MaxEventStreamsPerToken cap the live event
	// streams open on this instance, in all and per API token.
	MaxEventStreams         int
	MaxEventStreamsPerToken int
	// MaxConcurrentUploads caps the dataset uploads served at once by this
	// instance: each holds about 32 MiB of part buffers.
	MaxConcurrentUploads int
}

// DB configures the Postgres pool.
type DB struct {
	URL              string // secret: may carry a password
	MaxConns         int32
	ConnectTimeout   time.Duration
	StatementTimeout time.Duration
}

// S3 configures object storage.
type S3 struct {
	Endpoint      string // host[:port], no scheme
	AccessKey     string // secret
	SecretKey     string // secret
	UseTLS        bool
	CAFile        string
	Region        string
	Bucket        string
	PublicURL     *url.URL // host used in presigned URLs
	PresignExpiry time.Duration
}

// Worker configures the task pool.
type Worker struct {
	Concurrency   int
	LeaseDuration time.Duration
	MaxAttempts   int
	PollInterval  time.Duration
}

// Kaggle holds optional credentials; without them the app starts and the
// training endpoints answer 503.
type Kaggle struct {
	Username string
	Key      string // secret
	APIToken string // secret
	APIURL   *url.URL
	// MachineShape is the accelerator every training push asks for
	// (KAGGLE_MACHINE_SHAPE, one of kaggle.MachineShapes).
	MachineShape string
	// PollInterval is the first delay between kernel status polls
	// (KAGGLE_POLL_INTERVAL); it grows while a job runs.
	PollInterval time.Duration
	// Simulator runs training against the in-process Kaggle emulator
	// (KAGGLE_SIMULATOR): jobs go through every state and produce a sample
	// adapter, so the product can be tried without a Kaggle account.
	// Development only; it excludes real credentials.
	Simulator bool
}

// Configured reports whether the client can work: a credential (API token
// or key) and the username, which owns every dataset and notebook we create
// and is needed with either credential.
func (k Kaggle) Configured() bool {
	return k.Simulator || k.Username != "" && (k.Key != "" || k.APIToken != "")
}

// Backend names what trains the models: "kaggle", "simulator" (the local
// emulator) or "none" (job creation answers 503). The UI shows it.
func (k Kaggle) Backend() string {
	switch {
	case k.Simulator:
		return "simulator"
	case k.Configured():
		return "kaggle"
	}
	return "none"
}

// Training limits what users may ask for.
type Training struct {
	MaxRuntime time.Duration
	// ReconcileInterval is how often unfinished jobs without a live task
	// are looked for and finished or requeued (JOB_RECONCILE_INTERVAL).
	ReconcileInterval time.Duration
	// MaxOutputBytes caps what one job's kernel output may copy into its
	// model (JOB_MAX_OUTPUT_BYTES).
	MaxOutputBytes int64
	BaseModels     []string
}

// Production reports whether the strict production rules apply.
func (c Config) Production() bool { return c.Env == Production }

// Problem is one thing wrong with one variable.
type Problem struct {
	Var    string
	Reason string
}

// Problems is every problem found; it is an error when non-empty.
type Problems []Problem

func (p Problems) Error() string {
	var b strings.Builder
	for i, pr := range p {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s: %s", pr.Var, pr.Reason)
	}
	return b.String()
}

// Load reads the process environment, with defaults from dotenvPath when that
// file exists ("" skips it). On problems it returns the partly filled Config
// and a Problems error.
func Load(environ []string, dotenvPath string) (Config, error) {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	var dotenv map[string]string
	if dotenvPath != "" {
		b, err := os.ReadFile(dotenvPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return Config{}, Problems{{Var: dotenvPath, Reason: "cannot read: " + err.Error()}}
		default:
			dotenv, err = envparse.Parse(bytes.NewReader(b))
			if err != nil {
				return Config{}, Problems{{Var: dotenvPath, Reason: "malformed: " + err.Error()}}
			}
		}
	}
	return Parse(env, dotenv)
}

// Parse builds a Config from env (which wins) and dotenv (defaults).
func Parse(env, dotenv map[string]string) (Config, error) {
	p := &parser{env: env, dotenv: dotenv, readFile: os.ReadFile}
	c := p.parse()
	if len(p.problems) > 0 {
		return c, p.problems
	}
	return c, nil
}

// Variables lists every variable the app reads, in parse order. It is
// derived from the parser itself, so documentation tests cannot drift.
func Variables() []string {
	p := &parser{readFile: os.ReadFile}
	p.parse()
	return p.names
}

// Advisories are problems that do not stop the server but that `app config
// check` reports, such as missing Kaggle credentials in production.
func (c Config) Advisories() Problems {
	var out Problems
	if c.Production() && !c.Kaggle.Configured() {
		if c.Kaggle.Username == "" && c.Kaggle.APIToken != "" {
			out = append(out, Problem{"KAGGLE_USERNAME", "missing: the API token needs the username that owns the datasets and notebooks, or training requests answer 503"})
		} else {
			out = append(out, Problem{"KAGGLE_API_TOKEN", "missing: set KAGGLE_USERNAME with KAGGLE_API_TOKEN or KAGGLE_KEY, or training requests answer 503"})
		}
	}
	return out
}

type parser struct {
	env, dotenv map[string]string
	readFile    func(string) ([]byte, error)
	problems    Problems
	names       []string
}

func (p *parser) add(name, format string, args ...any) {
	p.problems = append(p.problems, Problem{Var: name, Reason: fmt.Sprintf(format, args...)})
}

// lookup returns the value of name from NAME or NAME_FILE. The real
// environment is consulted first, as a whole, so a NAME_FILE in the
// environment overrides a NAME in the .env file.
func (p *parser) lookup(name string) (string, bool) {
	p.names = append(p.names, name)
	for _, src := range []map[string]string{p.env, p.dotenv} {
		v, hasV := src[name]
		f, hasF := src[name+"_FILE"]
		switch {
		case hasV && hasF:
			p.add(name, "both %s and %s_FILE are set; set only one", name, name)
			return "", false
		case hasF:
			b, err := p.readFile(f)
			if err != nil {
				p.add(name+"_FILE", "cannot read the file it names: %v", unwrapPathError(err))
				return "", false
			}
			return strings.TrimRight(string(b), "\r\n"), true
		case hasV:
			return v, true
		}
	}
	return "", false
}

// unwrapPathError keeps the OS reason ("no such file or directory").
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (p *parser) str(name, def string) string {
	v, ok := p.lookup(name)
	if !ok || v == "" {
		return def
	}
	return v
}

func (p *parser) required(name string) string {
	v, ok := p.lookup(name)
	if !ok || strings.TrimSpace(v) == "" {
		p.add(name, "missing: it is required")
		return ""
	}
	return v
}

func (p *parser) duration(name string, def, lo, hi time.Duration) time.Duration {
	v, ok := p.lookup(name)
	if !ok || v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		p.add(name, "malformed: %q is not a duration (examples: 500ms, 30s, 5m)", v)
		return def
	}
	if d < lo || d > hi {
		p.add(name, "out of range: %s is not between %s and %s", d, lo, hi)
		return def
	}
	return d
}

func (p *parser) integer(name string, def, lo, hi int64) int64 {
	v, ok := p.lookup(name)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		p.add(name, "malformed: %q is not an integer", v)
		return def
	}
	if n < lo || n > hi {
		p.add(name, "out of range: %d is not between %d and %d", n, lo, hi)
		return def
	}
	return n
}

func (p *parser) boolean(name string, def bool) bool {
	v, ok := p.lookup(name)
	if !ok || v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.add(name, "malformed: %q is not a boolean (true or false)", v)
		return def
	}
	return b
}

func (p *parser) httpURL(name, def string) *url.URL {
	v := p.str(name, def)
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add(name, "malformed: want an absolute http(s) URL like https://host/path")
		return nil
	}
	return u
}

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

var hfModelIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$`)

func (p *parser) parse() Config {
	var c Config
	c.Env = p.str("APP_ENV", Development)
	if c.Env != Development && c.Env != Production {
		p.add("APP_ENV", "malformed: %q is neither development nor production", c.Env)
	}
	switch lvl := strings.ToLower(p.str("LOG_LEVEL", "info")); lvl {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "info":
		c.LogLevel = slog.LevelInfo
	case "warn":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		p.add("LOG_LEVEL", "malformed: %q is not one of debug, info, warn, error", lvl)
	}

	c.HTTP.Addr = p.listenAddr("APP_ADDR", ":8080")
	// Loopback by default: metrics are for the host's scraper; a container
	// on an internal network sets :9090 explicitly (deploy/docker-compose.yml).
	c.HTTP.MetricsAddr = p.listenAddr("APP_METRICS_ADDR", "127.0.0.1:9090")
	if c.HTTP.Addr != "" && c.HTTP.Addr == c.HTTP.MetricsAddr {
		p.add("APP_METRICS_ADDR", "conflict: same address as APP_ADDR; metrics need their own internal listener")
	}
	c.HTTP.ShutdownTimeout = p.duration("APP_SHUTDOWN_TIMEOUT", 30*time.Second, time.Second, 10*time.Minute)
	c.HTTP.DrainDelay = p.duration("APP_DRAIN_DELAY", 3*time.Second, 0, time.Minute)
	c.HTTP.StartupTimeout = p.duration("APP_STARTUP_TIMEOUT", 60*time.Second, time.Second, 10*time.Minute)
	c.HTTP.MaxBodyBytes = p.integer("APP_MAX_BODY_BYTES", 1*mib, 1*kib, 64*mib)
	c.HTTP.MaxUploadBytes = p.integer("APP_MAX_UPLOAD_BYTES", 100*mib, 1*kib, 50*gib)
	c.HTTP.TrustedProxies = p.prefixes("APP_TRUSTED_PROXIES")
	c.HTTP.MaxEventStreams = int(p.integer("APP_MAX_EVENT_STREAMS", 1000, 1, 1_000_000))
	c.HTTP.MaxEventStreamsPerToken = int(p.integer("APP_MAX_EVENT_STREAMS_PER_TOKEN", 50, 1, 1_000_000))
	c.HTTP.MaxConcurrentUploads = int(p.integer("APP_MAX_CONCURRENT_UPLOADS", 4, 1, 1024))

	c.DB.URL = p.required("DATABASE_URL")
	c.DB.MaxConns = int32(p.integer("DB_MAX_CONNS", 10, 2, 1000)) // #nosec G115 -- p.integer bounds it to 2..1000
	c.DB.ConnectTimeout = p.duration("DB_CONNECT_TIMEOUT", 5*time.Second, 100*time.Millisecond, 5*time.Minute)
	c.DB.StatementTimeout = p.duration("DB_STATEMENT_TIMEOUT", 30*time.Second, 100*time.Millisecond, time.Hour)
	dbSSL, dbPassword := p.databaseURL(c.DB.URL)

	c.S3.Endpoint = p.required("S3_ENDPOINT")
	if strings.Contains(c.S3.Endpoint, "://") || strings.Contains(c.S3.Endpoint, "/") {
		p.add("S3_ENDPOINT", "malformed: want host:port without a scheme or path (use S3_USE_TLS for https)")
	}
	c.S3.AccessKey = p.required("S3_ACCESS_KEY")
	c.S3.SecretKey = p.required("S3_SECRET_KEY")
	c.S3.UseTLS = p.boolean("S3_USE_TLS", true)
	c.S3.CAFile = p.str("S3_CA_FILE", "")
	if c.S3.CAFile != "" {
		if _, err := p.readFile(c.S3.CAFile); err != nil {
			p.add("S3_CA_FILE", "cannot read: %v", unwrapPathError(err))
		}
	}
	c.S3.Region = p.str("S3_REGION", "us-east-1")
	c.S3.Bucket = p.str("S3_BUCKET", "finetune-studio")
	if !validBucket(c.S3.Bucket) {
		p.add("S3_BUCKET", "malformed: %q is not a valid bucket name (3-63 lower-case letters, digits, dots, hyphens)", c.S3.Bucket)
	}
	c.S3.PublicURL = p.httpURL("S3_PUBLIC_URL", "")
	if c.S3.PublicURL == nil && c.S3.Endpoint != "" {
		scheme := "http"
		if c.S3.UseTLS {
			scheme = "https"
		}
		c.S3.PublicURL = &url.URL{Scheme: scheme, Host: c.S3.Endpoint}
	}
	c.S3.PresignExpiry = p.duration("PRESIGN_EXPIRY", 15*time.Minute, 10*time.Second, 7*24*time.Hour)

	c.Worker.Concurrency = int(p.integer("WORKER_CONCURRENCY", 4, 0, 256))
	c.Worker.LeaseDuration = p.duration("WORKER_LEASE_DURATION", 30*time.Second, time.Second, time.Hour)
	c.Worker.MaxAttempts = int(p.integer("WORKER_MAX_ATTEMPTS", 10, 1, 100))
	c.Worker.PollInterval = p.duration("WORKER_POLL_INTERVAL", time.Second, 10*time.Millisecond, time.Minute)

	c.Kaggle.Username = p.str("KAGGLE_USERNAME", "")
	c.Kaggle.Key = p.str("KAGGLE_KEY", "")
	c.Kaggle.APIToken = p.str("KAGGLE_API_TOKEN", "")
	c.Kaggle.APIURL = p.httpURL("KAGGLE_API_URL", "https://www.kaggle.com/api/v1")
	c.Kaggle.MachineShape = p.str("KAGGLE_MACHINE_SHAPE", kaggle.DefaultMachineShape)
	if _, err := kaggle.LookupMachineShape(c.Kaggle.MachineShape); err != nil {
		p.add("KAGGLE_MACHINE_SHAPE", "unsupported: %s", err.Error())
	}
	c.Kaggle.PollInterval = p.duration("KAGGLE_POLL_INTERVAL", 10*time.Second, time.Second, 10*time.Minute)
	c.Kaggle.Simulator = p.boolean("KAGGLE_SIMULATOR", false)
	switch {
	case c.Kaggle.Simulator && (c.Kaggle.Username != "" || c.Kaggle.Key != "" || c.Kaggle.APIToken != ""):
		p.add("KAGGLE_SIMULATOR", "conflicting: the simulator replaces Kaggle; unset it to train with the KAGGLE_* credentials")
	case c.Kaggle.Key != "" && c.Kaggle.Username == "":
		p.add("KAGGLE_KEY", "incomplete: KAGGLE_KEY needs KAGGLE_USERNAME")
	case c.Kaggle.Username != "" && c.Kaggle.Key == "" && c.Kaggle.APIToken == "":
		p.add("KAGGLE_KEY", "incomplete: KAGGLE_USERNAME needs KAGGLE_KEY or KAGGLE_API_TOKEN")
	}

	c.Training.MaxRuntime = p.duration("JOB_MAX_RUNTIME", 12*time.Hour, time.Minute, 7*24*time.Hour)
	c.Training.ReconcileInterval = p.duration("JOB_RECONCILE_INTERVAL", time.Minute, time.Second, time.Hour)

	const day = 24 * time.Hour
	c.Retention.Interval = p.duration("MAINTENANCE_INTERVAL", time.Hour, time.Minute, day)
	c.Retention.Tasks = p.duration("TASK_RETENTION", 7*day, time.Hour, 3650*day)
	c.Retention.JobEvents = p.duration("JOB_EVENT_RETENTION", 90*day, time.Hour, 3650*day)
	c.Retention.OrphanMinAge = p.duration("ORPHAN_MIN_AGE", day, time.Hour, 365*day)
	p.backup(&c)
	c.Training.MaxOutputBytes = p.integer("JOB_MAX_OUTPUT_BYTES", 2*gib, 1*mib, 100*gib)
	// The allow-list holds only models the training package knows: each
	// has a recorded size for the memory check, and none is gated.
	defaultModels := strings.Join(training.DefaultBaseModelIDs(), ",")
	for _, m := range strings.Split(p.str("TRAINING_BASE_MODELS", defaultModels), ",") {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		if !hfModelIDMatch(m) {
			p.add("TRAINING_BASE_MODELS", "malformed: %q is not a model id like owner/name", m)
			continue
		}
		if err := training.CheckBaseModel(m); err != nil {
			p.add("TRAINING_BASE_MODELS", "unsupported: %v", err)
			continue
		}
		c.Training.BaseModels = append(c.Training.BaseModels, m)
	}
	if len(c.Training.BaseModels) == 0 {
		p.add("TRAINING_BASE_MODELS", "empty: list at least one base model")
	}

	if c.Production() {
		p.production(c, dbSSL, dbPassword)
	}
	return c
}

// BackupKinds are the kinds of backup the app knows (backup_runs.kind).
var BackupKinds = []string{"postgres", "objects", "postgres-offsite"}

func (p *parser) backup(c *Config) {
	const day = 24 * time.Hour
	c.Backup.MaxAge = p.duration("BACKUP_MAX_AGE", 26*time.Hour, 0, 365*day)
	if c.Backup.MaxAge > 0 && c.Backup.MaxAge < time.Hour {
		p.add("BACKUP_MAX_AGE", "out of range: %s is below 1h (0 disables the check)", c.Backup.MaxAge)
	}
	for _, k := range strings.Split(p.str("BACKUP_KINDS", "postgres,objects"), ",") {
		k = strings.TrimSpace(k)
		switch {
		case k == "" || slices.Contains(c.Backup.Kinds, k):
		case slices.Contains(BackupKinds, k):
			c.Backup.Kinds = append(c.Backup.Kinds, k)
		default:
			p.add("BACKUP_KINDS", "malformed: %q is not one of %s", k, strings.Join(BackupKinds, ", "))
		}
	}
	c.Backup.ObjectsTarget = p.str("BACKUP_OBJECTS_TARGET", "")
	c.Backup.ObjectsInterval = p.duration("BACKUP_OBJECTS_INTERVAL", day, time.Minute, 30*day)
	c.Backup.PostgresTarget = p.str("BACKUP_POSTGRES_TARGET", "")
	c.Backup.PostgresDir = p.str("BACKUP_POSTGRES_DIR", "/backups/postgres")
	c.Backup.PostgresInterval = p.duration("BACKUP_POSTGRES_INTERVAL", time.Hour, time.Minute, 30*day)
	c.Backup.PostgresRetention = p.duration("BACKUP_POSTGRES_RETENTION", 35*day, 0, 3650*day)
	if c.Backup.PostgresRetention > 0 && c.Backup.PostgresRetention < day {
		p.add("BACKUP_POSTGRES_RETENTION", "out of range: %s is below 24h (0 keeps every copy)", c.Backup.PostgresRetention)
	}
	c.Backup.S3.Endpoint = p.str("BACKUP_S3_ENDPOINT", "")
	c.Backup.S3.AccessKey = p.str("BACKUP_S3_ACCESS_KEY", "")
	c.Backup.S3.SecretKey = p.str("BACKUP_S3_SECRET_KEY", "")
	c.Backup.S3.UseTLS = p.boolean("BACKUP_S3_USE_TLS", true)
	c.Backup.S3.CAFile = p.str("BACKUP_S3_CA_FILE", "")
	if c.Backup.S3.CAFile != "" {
		if _, err := p.readFile(c.Backup.S3.CAFile); err != nil {
			p.add("BACKUP_S3_CA_FILE", "cannot read: %v", unwrapPathError(err))
		}
	}
	c.Backup.S3.Region = p.str("BACKUP_S3_REGION", "us-east-1")

	needS3 := ""
	objects, objectsOK := p.backupTarget("BACKUP_OBJECTS_TARGET", c.Backup.ObjectsTarget)
	if objectsOK && objects.Bucket != "" {
		needS3 = "BACKUP_OBJECTS_TARGET"
	}
	if c.Backup.PostgresTarget != "" {
		// Expected as soon as it is configured: a copy that silently
		// stopped must show in /readyz like a dump that did.
		if !slices.Contains(c.Backup.Kinds, "postgres-offsite") {
			c.Backup.Kinds = append(c.Backup.Kinds, "postgres-offsite")
		}
		if !filepath.IsAbs(c.Backup.PostgresDir) {
			p.add("BACKUP_POSTGRES_DIR", "malformed: %q must be an absolute directory (where the backups volume is mounted)", c.Backup.PostgresDir)
		}
		pg, ok := p.backupTarget("BACKUP_POSTGRES_TARGET", c.Backup.PostgresTarget)
		switch {
		case !ok:
		case objectsOK && pg == objects:
			p.add("BACKUP_POSTGRES_TARGET", "conflict: the same target as BACKUP_OBJECTS_TARGET; give the dumps their own prefix or directory (e.g. s3://bucket/postgres)")
		case pg.Dir != "" && filepath.IsAbs(c.Backup.PostgresDir) &&
			(pg.Dir == filepath.Clean(c.Backup.PostgresDir) || strings.HasPrefix(pg.Dir, filepath.Clean(c.Backup.PostgresDir)+"/")):
			p.add("BACKUP_POSTGRES_TARGET", "conflict: %s is inside BACKUP_POSTGRES_DIR, where the dumps already are", pg.Dir)
		case pg.Bucket != "" && needS3 == "":
			needS3 = "BACKUP_POSTGRES_TARGET"
		}
	} else if slices.Contains(c.Backup.Kinds, "postgres-offsite") {
		p.add("BACKUP_KINDS", "conflict: postgres-offsite is expected but BACKUP_POSTGRES_TARGET is empty (nothing would ever make that backup)")
	}
	if needS3 == "" {
		return
	}
	if c.Backup.S3.Endpoint == "" || strings.Contains(c.Backup.S3.Endpoint, "/") {
		p.add("BACKUP_S3_ENDPOINT", "missing or malformed: an s3:// %s needs host:port without a scheme", needS3)
	}
	if c.Backup.S3.AccessKey == "" || c.Backup.S3.SecretKey == "" {
		p.add("BACKUP_S3_ACCESS_KEY", "missing: an s3:// %s needs BACKUP_S3_ACCESS_KEY and BACKUP_S3_SECRET_KEY (or their _FILE forms)", needS3)
	}
}

// backupTarget parses a backup target setting; ok is false when it is
// empty or malformed (reported).
func (p *parser) backupTarget(name, v string) (blob.Target, bool) {
	if v == "" {
		return blob.Target{}, false
	}
	t, err := blob.ParseTarget(v)
	if err != nil {
		p.add(name, "malformed: %v", err)
		return blob.Target{}, false
	}
	return t, true
}

func hfModelIDMatch(s string) bool { return hfModelIDRe.MatchString(s) }

// production applies the rules that make an insecure deployment refuse to
// start rather than run quietly exposed.
func (p *parser) production(c Config, dbSSL, dbPassword string) {
	if c.LogLevel < slog.LevelInfo {
		p.add("LOG_LEVEL", "insecure: debug logging is refused in production")
	}
	if c.DB.URL != "" && dbSSL != "verify-full" {
		// verify-ca checks the CA but not the host name: any certificate
		// from the same CA would be accepted for the database.
		p.add("DATABASE_URL", "insecure: production requires sslmode=verify-full (verify-ca does not check the server's host name)")
	}
	if dbPassword != "" && weakSecret(dbPassword) {
		p.add("DATABASE_URL", "insecure: the password is a default or shorter than 16 characters")
	}
	if !c.S3.UseTLS {
		p.add("S3_USE_TLS", "insecure: production requires TLS to object storage")
	}
	if c.S3.AccessKey != "" && (isDefaultCredential(c.S3.AccessKey) || len(c.S3.AccessKey) < 8) {
		p.add("S3_ACCESS_KEY", "insecure: a default or shorter than 8 characters")
	}
	if c.S3.SecretKey != "" && weakSecret(c.S3.SecretKey) {
		p.add("S3_SECRET_KEY", "insecure: a default or shorter than 16 characters")
	}
	if c.S3.PublicURL != nil && c.S3.PublicURL.Scheme != "https" {
		p.add("S3_PUBLIC_URL", "insecure: presigned download URLs must use https in production")
	}
	if c.Kaggle.APIURL != nil && c.Kaggle.APIURL.Scheme != "https" {
		p.add("KAGGLE_API_URL", "insecure: credentials would travel in clear text; use https")
	}
	if c.Kaggle.Simulator {
		p.add("KAGGLE_SIMULATOR", "refused in production: jobs would produce sample models, not trained ones")
	}
	for _, pr := range c.HTTP.TrustedProxies {
		if pr.Bits() == 0 {
			p.add("APP_TRUSTED_PROXIES", "insecure: %s trusts every address, so any client could forge its IP", pr)
		}
	}
}

var defaultCredentials = []string{"minioadmin", "minio", "admin", "password", "postgres", "secret", "changeme", "root", "test"}

func isDefaultCredential(s string) bool {
	for _, d := range defaultCredentials {
		if strings.EqualFold(s, d) {
			return true
		}
	}
	return false
}

func weakSecret(s string) bool { return isDefaultCredential(s) || len(s) < 16 }

func (p *parser) listenAddr(name, def string) string {
	v := p.str(name, def)
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		p.add(name, "malformed: %q is not host:port or :port", v)
		return v
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.add(name, "out of range: port %q is not 0-65535", port)
	}
	return v
}

func (p *parser) prefixes(name string) []netip.Prefix {
	var out []netip.Prefix
	v := p.str(name, "")
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if s == "*" {
			p.add(name, "malformed: a wildcard is not accepted; list CIDRs such as 10.0.0.0/8")
			continue
		}
		if !strings.Contains(s, "/") {
			if a, err := netip.ParseAddr(s); err == nil {
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
		}
		pr, err := netip.ParsePrefix(s)
		if err != nil {
			p.add(name, "malformed: %q is not an IP address or CIDR", s)
			continue
		}
		out = append(out, pr.Masked())
	}
	return out
}

// databaseURL checks DATABASE_URL's form and returns its sslmode and
// password for the production rules. It never echoes the value: it may hold
// a password.
func (p *parser) databaseURL(v string) (sslmode, password string) {
	if v == "" {
		return "", ""
	}
	if strings.HasPrefix(v, "postgres://") || strings.HasPrefix(v, "postgresql://") {
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			p.add("DATABASE_URL", "malformed: want postgres://user:password@host:port/db?sslmode=verify-full")
			return "", ""
		}
		pw, _ := u.User.Password()
		return u.Query().Get("sslmode"), pw
	}
	// Keyword/value form: host=... sslmode=...
	fields := strings.Fields(v)
	if len(fields) == 0 || !strings.Contains(fields[0], "=") {
		p.add("DATABASE_URL", "malformed: want a postgres:// URL or key=value pairs")
		return "", ""
	}
	for _, f := range fields {
		k, val, _ := strings.Cut(f, "=")
		switch k {
		case "sslmode":
			sslmode = strings.Trim(val, "'")
		case "password":
			password = strings.Trim(val, "'")
		}
	}
	return sslmode, password
}

func validBucket(s string) bool {
	if len(s) < 3 || len(s) > 63 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || ((r == '-' || r == '.') && i > 0 && i < len(s)-1)
		if !ok {
			return false
		}
	}
	return true
}
