// Package backup reports whether the deployment's backups are fresh and
// runs the periodic object mirror and the off-VM copy of the Postgres dumps.
//
// Every backup writes a row to backup_runs (the Postgres backup service with
// psql, the object mirror from this package). Freshness is read from those
// rows only: a kind is fresh when its newest run that was both ok and
// verified (read back and checked) finished within MaxAge. It is published
// twice: as the gauge backup_last_success_timestamp_seconds{kind} (0 for a
// kind never backed up), read at scrape time, and as the /readyz check
// "backups", which warns (degraded, still ready) when a kind is stale.
package backup

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/health"
)

// Store reads backup_runs; *store.Store satisfies it.
type Store interface {
	LastVerifiedBackups(ctx context.Context, kinds []string) (map[string]time.Time, error)
}

// FreshnessConfig says which backups are expected and how old they may be.
type FreshnessConfig struct {
	// Kinds are the expected kinds of backup (postgres, objects, postgres-offsite).
	Kinds []string
	// MaxAge: older than this is stale. 0 disables the readiness check
	// (the metric is still published).
	MaxAge time.Duration
	// InstalledAt is when the installation was created (its first
	// migration). Within MaxAge of it, a kind never backed up is not yet
	// overdue: the first scheduled backup has not had its chance.
	InstalledAt time.Time
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Freshness answers "are the backups fresh?".
type Freshness struct {
	st  Store
	cfg FreshnessConfig
}

// NewFreshness returns a Freshness.
func NewFreshness(st Store, cfg FreshnessConfig) *Freshness {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Freshness{st: st, cfg: cfg}
}

// Advice is what every stale-backup message ends with: what to do.
const Advice = "run deploy/studio backup; see docs/backups.md"

// LastSuccess returns each expected kind's newest verified backup time;
// the zero time for a kind never backed up.
func (f *Freshness) LastSuccess(ctx context.Context) (map[string]time.Time, error) {
	last, err := f.st.LastVerifiedBackups(ctx, f.cfg.Kinds)
	if err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(f.cfg.Kinds))
	for _, k := range f.cfg.Kinds {
		out[k] = last[k]
	}
	return out, nil
}

// Check is the /readyz check: nil when every expected kind has a verified
// backup younger than MaxAge (or the check is disabled), a warning naming
// each stale kind otherwise. A kind never backed up warns "no verified
// backup yet" once the installation is older than MaxAge.
func (f *Freshness) Check(ctx context.Context) error {
	if f.cfg.MaxAge <= 0 || len(f.cfg.Kinds) == 0 {
		return nil
	}
	last, err := f.LastSuccess(ctx)
	if err != nil {
		return err
	}
	now := f.cfg.Now()
	var problems []string
	for _, k := range slices.Sorted(maps.Keys(last)) {
		at := last[k]
		switch {
		case at.IsZero():
			if now.Sub(f.cfg.InstalledAt) > f.cfg.MaxAge {
				problems = append(problems, fmt.Sprintf("%s: no verified backup yet", k))
			}
		case now.Sub(at) > f.cfg.MaxAge:
			problems = append(problems, fmt.Sprintf("%s: newest verified backup is %s old (limit %s)",
				k, now.Sub(at).Round(time.Minute), f.cfg.MaxAge))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return health.Degraded(strings.Join(problems, "; ") + "; " + Advice)
}
