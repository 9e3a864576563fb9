package main

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/api"
	"github.com/finetune-studio/finetune-studio/app/internal/auth"
	"github.com/finetune-studio/finetune-studio/app/internal/backup"
	"github.com/finetune-studio/finetune-studio/app/internal/blob"
	"github.com/finetune-studio/finetune-studio/app/internal/config"
	"github.com/finetune-studio/finetune-studio/app/internal/feed"
	"github.com/finetune-studio/finetune-studio/app/internal/health"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/maintenance"
	"github.com/finetune-studio/finetune-studio/app/internal/metrics"
	"github.com/finetune-studio/finetune-studio/app/internal/retry"
	"github.com/finetune-studio/finetune-studio/app/internal/runner"
	"github.com/finetune-studio/finetune-studio/app/internal/store"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
	"github.com/finetune-studio/finetune-studio/app/internal/worker"
)

// HTTP server timeouts. Streaming and upload routes lift the read and write
// deadlines per request (api.NoDeadlines); everything else must finish in
// these bounds, so a slow client cannot hold a connection forever.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 60 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
)

// serve wires config → stores → worker pool → API → listeners, then waits
// for SIGINT/SIGTERM and shuts down in order.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	started := time.Now()
	sigCtx, stopSignals := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	log.Info("app starting", "version", version, "revision", revision, "env", cfg.Env)

	startCtx, cancelStart := context.WithTimeout(sigCtx, cfg.HTTP.StartupTimeout)
	defer cancelStart()
	st, bl, err := openBackends(startCtx, cfg, log)
	if err != nil {
		return err
	}
	storeOpen := true
	defer func() { // on early returns; the normal path closes it in order below
		if storeOpen {
			st.Close()
		}
	}()

	// Versioning keeps overwritten and deleted objects recoverable. A
	// server that refuses it (a gateway without versioning) must not stop
	// the app: readiness warns instead, and the check asks again.
	versioning := backup.NewVersioning(bl)
	if err := versioning.Enable(startCtx); err != nil {
		log.Warn("bucket versioning could not be enabled", "bucket", cfg.S3.Bucket, "error", err.Error())
	}
	installedAt, err := st.InstalledAt(startCtx)
	if err != nil {
		return err
	}
	freshness := backup.NewFreshness(st, backup.FreshnessConfig{
		Kinds: cfg.Backup.Kinds, MaxAge: cfg.Backup.MaxAge, InstalledAt: installedAt,
	})

	m := metrics.New(metrics.BuildInfo{Version: version, Revision: revision})
	m.WatchBackups(freshness.LastSuccess)
	m.WatchDBPool(func() metrics.DBPoolStats {
		s := st.Stats()
		return metrics.DBPoolStats{Acquired: s.Acquired, Idle: s.Idle, Total: s.Total, Max: s.Max,
			AcquireCount: s.AcquireCount, AcquireWait: s.AcquireWait}
	})

	pool := worker.New(st, log.With("component", "worker"), worker.Options{
		Concurrency:  cfg.Worker.Concurrency,
		Lease:        cfg.Worker.LeaseDuration,
		PollInterval: cfg.Worker.PollInterval,
		Observer:     m,
	})
	// Domain task handlers are registered here, before Start.
	kc := kaggleConfig(cfg, log)
	if cfg.Kaggle.Simulator {
		var stopSim func()
		if kc, stopSim, err = startSimulator(kc, log.With("component", "simulator")); err != nil {
			return err
		}
		defer stopSim()
		// The emulator answers at once and has no quota to spare.
		cfg.Kaggle.PollInterval = time.Second
	}
	rn := newRunner(cfg, kc, st, bl, log)
	rn.Register(pool)
	maintenance.New(st, bl, maintenance.Config{
		Interval: cfg.Retention.Interval, TaskRetention: cfg.Retention.Tasks,
		EventRetention: cfg.Retention.JobEvents, OrphanMinAge: cfg.Retention.OrphanMinAge,
	}, log.With("component", "maintenance")).Register(pool)
	if err := scheduleMaintenance(startCtx, st, cfg.Worker.MaxAttempts); err != nil {
		return err
	}
	pool.Start()
	stopReconciler := startReconciler(rn, st, cfg.Training.ReconcileInterval)
	defer stopReconciler() // on early returns; the normal path stops it in order below
	stopObjectBackup, err := startObjectBackup(cfg, st, bl, log.With("component", "backup"))
	if err != nil {
		return err
	}
	defer stopObjectBackup() // on early returns; the normal path stops it in order below
	stopOffsite, err := startPostgresOffsite(cfg, st, log.With("component", "backup"))
	if err != nil {
		return err
	}
	defer stopOffsite() // on early returns; the normal path stops it in order below
	m.WatchWorkerPool(func() metrics.WorkerPoolStats {
		s := pool.Stats()
		return metrics.WorkerPoolStats{Workers: s.Workers, Busy: s.Busy, Queued: s.Queued, Running: s.Running}
	})

	checker := health.New(log.With("component", "health"), health.Options{Version: version, ReleaseID: revision},
		health.Check{Name: "database", ComponentType: "datastore", Critical: true, Run: st.Ping},
		health.Check{Name: "migrations", ComponentType: "datastore", Critical: true, Run: migrationsCheck(st)},
		health.Check{Name: "objectStorage", ComponentType: "datastore", Critical: false, Run: bl.Ping},
		health.Check{Name: "workerPool", ComponentType: "component", Critical: true, Run: workerCheck(pool)},
		health.Check{Name: "backups", ComponentType: "component", Critical: false, Run: freshness.Check},
		health.Check{Name: "bucketVersioning", ComponentType: "datastore", Critical: false, Run: versioning.Check},
	)

	// One LISTEN connection wakes every live event stream of this instance.
	hub := feed.New(feed.Limits{Total: cfg.HTTP.MaxEventStreams, PerToken: cfg.HTTP.MaxEventStreamsPerToken})
	listenCtx, stopListening := context.WithCancel(context.Background())
	listenDone := make(chan struct{})
	go func() {
		defer close(listenDone)
		st.ListenJobEvents(listenCtx, hub.WakeAll, hub.Notify)
	}()
	defer func() { stopListening(); <-listenDone }() // before the store closes; a no-op after step 4

	a := api.New(api.Deps{
		Config: cfg, Log: log, Feed: hub, Auth: auth.New(st, auth.Options{Log: log.With("component", "auth")}), Health: checker, Metrics: m, Repo: st, Objects: bl.TrainingObjects(),
	})
	m.WatchUploads(a.UploadsInFlight)
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	srv := newServer(a.Handler(), errLog)
	metricsMux := http.NewServeMux()
	metricsMux.Handle("GET /metrics", m.Handler())
	metricsSrv := newServer(metricsMux, errLog)
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		_ = pool.Shutdown(context.Background())
		return fmt.Errorf("listening on APP_ADDR: %w", err)
	}
	mln, err := net.Listen("tcp", cfg.HTTP.MetricsAddr)
	if err != nil {
		ln.Close()
		_ = pool.Shutdown(context.Background())
		return fmt.Errorf("listening on APP_METRICS_ADDR: %w", err)
	}
	serveErr := make(chan error, 2)
	var wg sync.WaitGroup
	for _, s := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{srv, ln}, {metricsSrv, mln}} {
		wg.Go(func() {
			if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- err
			}
		})
	}
	log.Info("app ready", "addr", ln.Addr().String(), "metrics_addr", mln.Addr().String(),
		"startup_ms", time.Since(started).Milliseconds())

	var runErr error
	select {
	case <-sigCtx.Done():
		log.Info("shutdown: signal received")
	case runErr = <-serveErr:
		log.Error("shutdown: server failed", "error", runErr.Error())
	}
	stopSignals() // a second signal now kills the process the default way

	// 1. Fail readiness so the edge stops sending new requests here.
	checker.Drain()
	log.Info("shutdown: readiness now failing", "drain_delay", cfg.HTTP.DrainDelay.String())
	// 2. Give load balancers time to notice before refusing connections.
	time.Sleep(cfg.HTTP.DrainDelay)
	deadline, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout)
	defer cancel()
	// 3. Stop accepting and finish in-flight requests; streams get a signal.
	a.BeginShutdown()
	if err := srv.Shutdown(deadline); err != nil {
		log.Warn("shutdown: http server did not drain in time", "error", err.Error())
		_ = srv.Close()
	} else {
		log.Info("shutdown: http server drained")
	}
	// 4. Let running tasks finish; release the leases of those that cannot.
	if err := pool.Shutdown(deadline); err != nil {
		log.Warn("shutdown: worker pool cancelled running tasks", "error", err.Error())
	} else {
		log.Info("shutdown: worker pool drained")
	}
	_ = metricsSrv.Shutdown(deadline)
	wg.Wait()
	stopReconciler()
	stopObjectBackup() // a mirror in progress is cancelled; its run is recorded as failed
	stopOffsite()      // likewise for a dump copy in progress
	stopListening()    // the streams are gone; stop the event listener
	<-listenDone
	// 5. Close the database pool last: handlers and tasks are done with it.
	st.Close()
	storeOpen = false
	log.Info("shutdown: database pool closed")
	log.Info("shutdown: complete")
	return runErr
}

// startReconciler runs the job reconciler until the returned function is
// called; that function waits for it to stop and may be called again.
func startReconciler(rn *runner.Runner, st *store.Store, every time.Duration) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rn.RunReconciler(ctx, st, every)
	}()
	return sync.OnceFunc(func() { cancel(); <-done })
}

// startObjectBackup runs the periodic object mirror when
// BACKUP_OBJECTS_TARGET is set; the returned function stops it, waits, and
// may be called again. A failed run is retried an hour later (or one
// interval, when that is shorter).
func startObjectBackup(cfg config.Config, st *store.Store, bl *blob.Store, log *slog.Logger) (func(), error) {
	if cfg.Backup.ObjectsTarget == "" {
		return func() {}, nil
	}
	target, err := blob.ParseTarget(cfg.Backup.ObjectsTarget)
	if err != nil {
		return nil, fmt.Errorf("BACKUP_OBJECTS_TARGET: %w", err)
	}
	objects := backup.NewObjects(st, blob.NewMirror(target, backupS3(cfg), log), bl, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		objects.Schedule(ctx, cfg.Backup.ObjectsInterval, min(cfg.Backup.ObjectsInterval, time.Hour))
	}()
	log.Info("object backup scheduled", "target", target.String(), "interval", cfg.Backup.ObjectsInterval.String())
	return sync.OnceFunc(func() { cancel(); <-done }), nil
}

// startPostgresOffsite copies the dumps off the VM periodically when
// BACKUP_POSTGRES_TARGET is set; the returned function stops it, waits, and
// may be called again. A failed run is retried after one interval, at most
// an hour.
func startPostgresOffsite(cfg config.Config, st *store.Store, log *slog.Logger) (func(), error) {
	if cfg.Backup.PostgresTarget == "" {
		return func() {}, nil
	}
	target, err := blob.ParseTarget(cfg.Backup.PostgresTarget)
	if err != nil {
		return nil, fmt.Errorf("BACKUP_POSTGRES_TARGET: %w", err)
	}
	offsite := backup.NewPostgresOffsite(st, backup.OffsiteConfig{
		Dir: cfg.Backup.PostgresDir, Target: target, S3: backupS3(cfg), Retention: cfg.Backup.PostgresRetention,
	}, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		offsite.Schedule(ctx, cfg.Backup.PostgresInterval, min(cfg.Backup.PostgresInterval, time.Hour))
	}()
	log.Info("postgres offsite copy scheduled", "target", target.String(), "dir", cfg.Backup.PostgresDir,
		"interval", cfg.Backup.PostgresInterval.String())
	return sync.OnceFunc(func() { cancel(); <-done }), nil
}

// newServer applies the timeouts every listener needs, so a slow or idle
// client cannot hold a connection (or a goroutine) forever.
func newServer(h http.Handler, errLog *stdlog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
	}
}

// openBackends connects to Postgres (migrating it) and object storage
// concurrently, both retrying until startCtx ends.
func openBackends(ctx context.Context, cfg config.Config, log *slog.Logger) (*store.Store, *blob.Store, error) {
	bl, err := openBlob(cfg)
	if err != nil {
		return nil, nil, err
	}
	blobErr := make(chan error, 1)
	go func() { blobErr <- retry.UntilReady(ctx, log, "object storage", bl.EnsureBucket) }()
	st, err := openStore(ctx, cfg, log, true)
	if err != nil {
		<-blobErr
		return nil, nil, err
	}
	if err := <-blobErr; err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, bl, nil
}

// newRunner builds the training runner: the Kaggle client from kc (the
// KAGGLE_* settings, or the development simulator's), object storage through the blob store, the runtime and output
// limits from JOB_MAX_RUNTIME and its siblings, and the first poll interval
// from KAGGLE_POLL_INTERVAL.
func newRunner(cfg config.Config, kc kaggle.Config, repo training.Repository, bl *blob.Store, log *slog.Logger) *runner.Runner {
	return runner.New(repo, bl.TrainingObjects(), kaggle.New(kc),
		runner.Config{MaxRuntime: cfg.Training.MaxRuntime, PollInterval: cfg.Kaggle.PollInterval, MaxOutputBytes: cfg.Training.MaxOutputBytes},
		log.With("component", "runner"))
}

// kaggleConfig is the Kaggle client configuration from the KAGGLE_*
// settings: the runner's, and what `app kaggle check` tests.
func kaggleConfig(cfg config.Config, log *slog.Logger) kaggle.Config {
	kc := kaggle.Config{
		Username: cfg.Kaggle.Username, Key: cfg.Kaggle.Key, Token: cfg.Kaggle.APIToken,
		MachineShape: cfg.Kaggle.MachineShape,
		Logger:       log.With("component", "kaggle"),
	}
	if cfg.Kaggle.APIURL != nil {
		kc.BaseURL = cfg.Kaggle.APIURL.String()
	}
	return kc
}

// scheduleMaintenance enqueues each periodic maintenance task unless one is
// live already (its kind is its dedupe key), so every instance may call it
// at startup and there is still one of each. A task that reached the dead
// letter anyway is replaced at the next start.
func scheduleMaintenance(ctx context.Context, st *store.Store, maxAttempts int) error {
	err := st.InTx(ctx, func(tx *store.Tx) error {
		for _, kind := range maintenance.Kinds {
			if _, _, err := tx.Enqueue(ctx, store.NewTask{Kind: kind, DedupeKey: kind, MaxAttempts: maxAttempts}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scheduling maintenance tasks: %w", err)
	}
	return nil
}

// migrationsCheck fails while the database is behind the binary and warns
// when it is ahead (a newer release migrated it; this one may lack columns).
func migrationsCheck(st *store.Store) func(context.Context) error {
	return func(ctx context.Context) error {
		ms, err := st.Migrations(ctx)
		switch {
		case err != nil:
			return err
		case ms.Current < ms.Target:
			return health.Failed(fmt.Sprintf("schema version %d is behind %d", ms.Current, ms.Target))
		case ms.Current > ms.Target:
			return health.Degraded(fmt.Sprintf("schema version %d is ahead of %d", ms.Current, ms.Target))
		}
		return nil
	}
}

// workerCheck warns when the pool has no workers (WORKER_CONCURRENCY=0 or
// no task kinds registered): the API works but background work will wait.
func workerCheck(pool *worker.Pool) func(context.Context) error {
	return func(ctx context.Context) error {
		s := pool.Stats()
		switch {
		case s.Stopping:
			return health.Failed("stopping")
		case !s.Started:
			return health.Failed("not started")
		case s.Workers == 0:
			return health.Degraded("no workers running")
		}
		return nil
	}
}
