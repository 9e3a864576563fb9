// Package metrics owns the application's Prometheus registry. It is a
// private registry, served only on the internal metrics listener: nothing is
// registered on the default registry, so tests can build many independent
// instances and nothing leaks in from imported libraries.
//
// Labels are bounded by construction: routes are mux templates (or
// "unmatched"), methods are the standard verbs (or "OTHER"), task kinds are
// the handful the worker pool registers.
package metrics

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// BuildInfo identifies the running binary.
type BuildInfo struct {
	Version  string
	Revision string
}

// Metrics is the registry and the application's instruments.
type Metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	inFlight     prometheus.Gauge
	taskOutcomes *prometheus.CounterVec
	taskDuration *prometheus.HistogramVec
}

// New builds a registry with the Go and process collectors, build_info and
// the HTTP and task instruments.
func New(b BuildInfo) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests completed, by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route template and method.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 120},
		}, []string{"route", "method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "http_requests_in_flight",
			Help: "HTTP requests being served right now.",
		}),
		taskOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_tasks_total",
			Help: "Task runs finished by the worker pool, by kind and outcome (done, rescheduled, retry, dead, released, lease_lost).",
		}, []string{"kind", "outcome"}),
		taskDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "worker_task_duration_seconds",
			Help:    "Time a task handler ran for one step, by kind.",
			Buckets: []float64{.01, .05, .1, .5, 1, 5, 15, 60, 300, 900},
		}, []string{"kind"}),
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "build_info",
		Help: "Always 1; labels identify the running build.",
	}, []string{"version", "revision", "goversion"})
	buildInfo.WithLabelValues(b.Version, b.Revision, runtime.Version()).Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo, m.requests, m.duration, m.inFlight, m.taskOutcomes, m.taskDuration,
	)
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// RequestStarted counts a request in flight.
func (m *Metrics) RequestStarted() { m.inFlight.Inc() }

// RequestDone records a finished request. route must be a template.
func (m *Metrics) RequestDone(route, method string, code int, d time.Duration) {
	m.inFlight.Dec()
	method = boundedMethod(method)
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route, method).Observe(d.Seconds())
}

// ObserveTask records one handler run.
func (m *Metrics) ObserveTask(kind, outcome string, d time.Duration) {
	m.taskOutcomes.WithLabelValues(kind, outcome).Inc()
	m.taskDuration.WithLabelValues(kind).Observe(d.Seconds())
}

func boundedMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// DBPoolStats is a database pool snapshot.
type DBPoolStats struct {
	Acquired, Idle, Total, Max int32
	AcquireCount               int64
	AcquireWait                time.Duration
}

// WorkerPoolStats is a worker pool snapshot.
type WorkerPoolStats struct {
	Workers, Busy int
	Queued        int64 // live tasks waiting (due or not)
	Running       int64 // tasks leased by any instance
}

// WatchDBPool exports the pool's gauges, read at scrape time.
func (m *Metrics) WatchDBPool(stats func() DBPoolStats) {
	m.reg.MustRegister(&funcCollector{
		descs: []*prometheus.Desc{dbAcquired, dbIdle, dbTotal, dbMax, dbAcquires, dbWait},
		collect: func(ch chan<- prometheus.Metric) {
			s := stats()
			ch <- prometheus.MustNewConstMetric(dbAcquired, prometheus.GaugeValue, float64(s.Acquired))
			ch <- prometheus.MustNewConstMetric(dbIdle, prometheus.GaugeValue, float64(s.Idle))
			ch <- prometheus.MustNewConstMetric(dbTotal, prometheus.GaugeValue, float64(s.Total))
			ch <- prometheus.MustNewConstMetric(dbMax, prometheus.GaugeValue, float64(s.Max))
			ch <- prometheus.MustNewConstMetric(dbAcquires, prometheus.CounterValue, float64(s.AcquireCount))
			ch <- prometheus.MustNewConstMetric(dbWait, prometheus.CounterValue, s.AcquireWait.Seconds())
		},
	})
}

// WatchWorkerPool exports the pool's gauges, read at scrape time.
func (m *Metrics) WatchWorkerPool(stats func() WorkerPoolStats) {
	m.reg.MustRegister(&funcCollector{
		descs: []*prometheus.Desc{wWorkers, wBusy, wQueued, wRunning},
		collect: func(ch chan<- prometheus.Metric) {
			s := stats()
			ch <- prometheus.MustNewConstMetric(wWorkers, prometheus.GaugeValue, float64(s.Workers))
			ch <- prometheus.MustNewConstMetric(wBusy, prometheus.GaugeValue, float64(s.Busy))
			ch <- prometheus.MustNewConstMetric(wQueued, prometheus.GaugeValue, float64(s.Queued))
			ch <- prometheus.MustNewConstMetric(wRunning, prometheus.GaugeValue, float64(s.Running))
		},
	})
}

// WatchUploads exports uploads_in_flight, the dataset uploads being served
// (bounded by APP_MAX_CONCURRENT_UPLOADS), read at scrape time.
func (m *Metrics) WatchUploads(inFlight func() int) {
	m.reg.MustRegister(&funcCollector{
		descs: []*prometheus.Desc{uploadsInFlight},
		collect: func(ch chan<- prometheus.Metric) {
			ch <- prometheus.MustNewConstMetric(uploadsInFlight, prometheus.GaugeValue, float64(inFlight()))
		},
	})
}

var uploadsInFlight = prometheus.NewDesc("uploads_in_flight",
	"Dataset uploads being served right now (capped by APP_MAX_CONCURRENT_UPLOADS).", nil, nil)

var (
	dbAcquired = prometheus.NewDesc("db_pool_acquired_connections", "Connections currently checked out of the pool.", nil, nil)
	dbIdle     = prometheus.NewDesc("db_pool_idle_connections", "Idle connections in the pool.", nil, nil)
	dbTotal    = prometheus.NewDesc("db_pool_connections", "All connections in the pool.", nil, nil)
	dbMax      = prometheus.NewDesc("db_pool_max_connections", "The pool's connection limit (DB_MAX_CONNS).", nil, nil)
	dbAcquires = prometheus.NewDesc("db_pool_acquires_total", "Connections acquired from the pool.", nil, nil)
	dbWait     = prometheus.NewDesc("db_pool_acquire_wait_seconds_total", "Time spent waiting for a free connection.", nil, nil)
	wWorkers   = prometheus.NewDesc("worker_pool_workers", "Workers in this instance's pool.", nil, nil)
	wBusy      = prometheus.NewDesc("worker_pool_busy_workers", "Workers running a task right now.", nil, nil)
	wQueued    = prometheus.NewDesc("worker_queue_depth", "Tasks queued in the shared queue, due or not.", nil, nil)
	wRunning   = prometheus.NewDesc("worker_queue_running_tasks", "Tasks leased by any instance.", nil, nil)
)

// funcCollector reads a snapshot at scrape time, so gauges are never stale.
type funcCollector struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c *funcCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *funcCollector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

var backupLastSuccess = prometheus.NewDesc("backup_last_success_timestamp_seconds",
	"Unix time the newest verified backup of each kind finished (backup_runs); 0 when there is none. Alert on time() minus this.",
	[]string{"kind"}, nil)

// backupQueryTimeout bounds the scrape-time read of backup_runs, so a slow
// database delays a scrape by at most this much.
const backupQueryTimeout = 2 * time.Second

// WatchBackups exports backup_last_success_timestamp_seconds{kind}, read at
// scrape time through last (one indexed query). When the read fails the
// series are left out of that scrape, so a scraper sees them absent rather
// than a false value.
func (m *Metrics) WatchBackups(last func(ctx context.Context) (map[string]time.Time, error)) {
	m.reg.MustRegister(&funcCollector{
		descs: []*prometheus.Desc{backupLastSuccess},
		collect: func(ch chan<- prometheus.Metric) {
			ctx, cancel := context.WithTimeout(context.Background(), backupQueryTimeout)
			defer cancel()
			times, err := last(ctx)
			if err != nil {
				return
			}
			for kind, at := range times {
				v := 0.0
				if !at.IsZero() {
					v = float64(at.UnixNano()) / 1e9
				}
				ch <- prometheus.MustNewConstMetric(backupLastSuccess, prometheus.GaugeValue, v, kind)
			}
		},
	})
}
