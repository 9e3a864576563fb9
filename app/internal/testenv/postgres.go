package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresBinDir is where Debian installs the server binaries.
const PostgresBinDir = "/usr/lib/postgresql/15/bin"

// Postgres is a running throwaway cluster.
type Postgres struct {
	Host    string
	Port    int
	DataDir string
	proc    *process
	logPath string
	cmdArgs []string
	cred    *syscall.Credential
	dbSeq   atomic.Int64
}

// AdminDSN connects as the superuser to the maintenance database.
func (p *Postgres) AdminDSN() string { return p.DSN("postgres") }

// DSN connects as the superuser to database name, without TLS.
func (p *Postgres) DSN(name string) string {
	return fmt.Sprintf("postgres://postgres@%s:%d/%s?sslmode=disable", p.Host, p.Port, name)
}

// StartPostgres returns the test binary's cluster, starting it on first use.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	current.pgOnce.Do(func() {
		current.pg, current.pgErr = startPostgres()
	})
	if current.pgErr != nil {
		t.Fatalf("starting postgres: %v", current.pgErr)
	}
	return current.pg
}

// NewDatabase creates an empty database on the test binary's cluster and
// returns its DSN. The database is dropped when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	pg := StartPostgres(t)
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), pg.dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.AdminDSN())
	if err != nil {
		t.Fatalf("connecting to postgres: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		t.Fatalf("creating database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pg.AdminDSN())
		if err != nil {
			return // the cluster is gone; Main removes its data anyway
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return pg.DSN(name)
}

// Stop stops the server (fast shutdown). Start brings it back on the same
// port and data, so tests can take the database away and give it back.
func (p *Postgres) Stop(t testing.TB) {
	t.Helper()
	p.proc.stop(syscall.SIGINT, 30*time.Second)
}

// Start restarts a stopped server and waits until it accepts connections.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	if err := p.start(); err != nil {
		t.Fatalf("restarting postgres: %v", err)
	}
}

func startPostgres() (*Postgres, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("the postgres user is missing (install postgresql-15): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)} // #nosec G115 -- ids from the passwd database are uint32 on Linux
	}

	root, err := os.MkdirTemp("", "testenv-pg-")
	if err != nil {
		return nil, err
	}
	// initdb and postgres refuse to run as root, so the data directory
	// belongs to the postgres user and its parent must be traversable.
	if err := os.Chmod(root, 0o755); err != nil {
		return nil, err
	}
	dataDir := filepath.Join(root, "data")
	sockDir := filepath.Join(root, "sock")
	for _, d := range []string{dataDir, sockDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
		if cred != nil {
			if err := os.Chown(d, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	current.addCleanup(func() { os.RemoveAll(root) })

	initdb := exec.Command(filepath.Join(PostgresBinDir, "initdb"),
		"-D", dataDir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}

	port, err := freePort()
	if err != nil {
		return nil, err
	}
	pg := &Postgres{
		Host:    "127.0.0.1",
		Port:    port,
		DataDir: dataDir,
		logPath: filepath.Join(root, "postgres.log"),
		cred:    cred,
		cmdArgs: []string{
			"-D", dataDir, "-p", strconv.Itoa(port), "-k", sockDir,
			"-c", "listen_addresses=127.0.0.1",
			// Throwaway data: durability buys nothing and costs seconds.
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=300",
		},
	}
	if err := pg.start(); err != nil {
		return nil, err
	}
	current.addCleanup(func() {
		if !pg.proc.exited() {
			pg.proc.stop(syscall.SIGINT, 30*time.Second)
		}
	})
	return pg, nil
}

func (p *Postgres) start() error {
	cmd := exec.Command(filepath.Join(PostgresBinDir, "postgres"), p.cmdArgs...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	proc, err := startProcess(cmd, p.logPath)
	if err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	p.proc = proc
	return waitFor(proc, p.logPath, 60*time.Second, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, p.AdminDSN())
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	})
}
