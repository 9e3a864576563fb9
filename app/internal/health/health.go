// Package health runs the readiness checks behind /readyz and renders them in
// the shape of the IETF health-check draft (draft-inadarei-api-health-check,
// media type application/health+json).
//
// Checks run concurrently, each under its own timeout, and the report is
// cached for a short time: however often monitors poll, dependencies see at
// most one probe per check per TTL. A check's failure is reported with a
// fixed, generic output ("timed out", "unavailable"): error strings can carry
// hostnames and are logged for operators instead.
package health

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Status is pass, warn or fail.
type Status string

// The draft's statuses.
const (
	Pass Status = "pass"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Check is one component's probe.
type Check struct {
	// Name is the component, e.g. "database".
	Name string
	// ComponentType is the draft's componentType: datastore, component, system.
	ComponentType string
	// Critical checks fail readiness when they fail; others only warn.
	Critical bool
	// Run probes the component. A *Result error (see Degraded) lets a check
	// choose its status and output; any other error is a failure.
	Run func(ctx context.Context) error
}

// Result is one check's entry in the report.
type Result struct {
	ComponentType string  `json:"componentType,omitempty"`
	ObservedValue float64 `json:"observedValue"`
	ObservedUnit  string  `json:"observedUnit"`
	Status        Status  `json:"status"`
	Time          string  `json:"time"`
	Output        string  `json:"output,omitempty"`
}

// Report is the /readyz body.
type Report struct {
	Status      Status              `json:"status"`
	Version     string              `json:"version,omitempty"`
	ReleaseID   string              `json:"releaseId,omitempty"`
	ServiceID   string              `json:"serviceId,omitempty"`
	Description string              `json:"description,omitempty"`
	Output      string              `json:"output,omitempty"`
	Checks      map[string][]Result `json:"checks,omitempty"`
}

// HTTPStatus is 503 for fail and 200 otherwise (warn means degraded but
// still serving).
func (r Report) HTTPStatus() int {
	if r.Status == Fail {
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}

// ContentType is the draft's media type.
const ContentType = "application/health+json"

// Outcome lets a check report something other than a plain failure.
type Outcome struct {
	Status Status
	Output string // shown to clients: keep it free of hosts and secrets
}

func (o *Outcome) Error() string { return string(o.Status) + ": " + o.Output }

// Degraded returns an error that makes the check warn with output.
func Degraded(output string) error { return &Outcome{Status: Warn, Output: output} }

// Failed returns an error that makes the check fail with output.
func Failed(output string) error { return &Outcome{Status: Fail, Output: output} }

// Options tune a Checker; zero values take the defaults.
type Options struct {
	Timeout   time.Duration // per check; default 1s
	TTL       time.Duration // report cache; default 1s
	Version   string
	ReleaseID string
	Now       func() time.Time
}

// Checker runs the checks and remembers the last report.
type Checker struct {
	checks   []Check
	opts     Options
	log      *slog.Logger
	draining atomic.Bool

	mu       sync.Mutex // held while checks run: concurrent callers share one run
	cached   Report
	cachedAt time.Time
	last     map[string]Status // for logging transitions only
}

// New returns a Checker.
func New(log *slog.Logger, opts Options, checks ...Check) *Checker {
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.TTL <= 0 {
		opts.TTL = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Checker{checks: checks, opts: opts, log: log, last: map[string]Status{}}
}

// Drain makes every later report fail at once, without probing: the
// process is shutting down and load balancers must stop routing to it.
func (c *Checker) Drain() { c.draining.Store(true) }

// Ready returns the cached report, running the checks when it is stale.
func (c *Checker) Ready(ctx context.Context) Report {
	if c.draining.Load() {
		return Report{Status: Fail, Output: "shutting down", Version: c.opts.Version, ReleaseID: c.opts.ReleaseID}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.cachedAt.IsZero() && c.opts.Now().Sub(c.cachedAt) < c.opts.TTL {
		return c.cached
	}
	// Probes must not die with one impatient caller's request: the result is
	// shared, so it runs on its own bounded context.
	rep := c.run(context.WithoutCancel(ctx))
	c.cached, c.cachedAt = rep, c.opts.Now()
	return rep
}

func (c *Checker) run(ctx context.Context) Report {
	results := make([]Result, len(c.checks))
	errs := make([]error, len(c.checks))
	var wg sync.WaitGroup
	for i, ch := range c.checks {
		wg.Go(func() { results[i], errs[i] = c.runOne(ctx, ch) })
	}
	wg.Wait()
	for i, ch := range c.checks {
		c.logTransition(ch.Name, results[i].Status, errs[i])
	}
	rep := Report{Status: Pass, Version: c.opts.Version, ReleaseID: c.opts.ReleaseID, Checks: map[string][]Result{}}
	for i, ch := range c.checks {
		r := results[i]
		rep.Checks[ch.Name+":responseTime"] = []Result{r}
		switch {
		case r.Status == Fail:
			rep.Status = Fail
		case r.Status == Warn && rep.Status == Pass:
			rep.Status = Warn
		}
	}
	return rep
}

func (c *Checker) runOne(ctx context.Context, ch Check) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	start := c.opts.Now()
	err := runSafely(ctx, ch.Run)
	elapsed := c.opts.Now().Sub(start)
	r := Result{
		ComponentType: ch.ComponentType,
		ObservedValue: float64(elapsed.Microseconds()) / 1000,
		ObservedUnit:  "ms",
		Status:        Pass,
		Time:          start.UTC().Format(time.RFC3339Nano),
	}
	var out *Outcome
	switch {
	case err == nil:
	case errors.As(err, &out):
		r.Status, r.Output = out.Status, out.Output
	default:
		r.Status, r.Output = Fail, "unavailable"
		if ctx.Err() != nil {
			r.Output = "timed out"
		}
	}
	if r.Status == Fail && !ch.Critical {
		r.Status = Warn
	}
	return r, err
}

// logTransition logs a check's status when it changes, with the real
// error for operators (clients only ever see the generic output).
func (c *Checker) logTransition(name string, status Status, err error) {
	prev, seen := c.last[name]
	if seen && prev == status {
		return
	}
	c.last[name] = status
	if status != Pass {
		c.log.Warn("health check not passing", "check", name, "status", string(status), "error", errString(err))
	} else if seen {
		c.log.Info("health check recovered", "check", name)
	}
}

// runSafely turns a panicking check into a failure rather than a crash.
func runSafely(ctx context.Context, run func(context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errors.New("check panicked")
		}
	}()
	return run(ctx)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
