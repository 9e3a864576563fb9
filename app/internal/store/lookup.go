package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// lookupWaits are the pauses before each renewed lookup of the database's
// host name: about 1.5 s in all, well inside a request's budget.
var lookupWaits = []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 1 * time.Second}

// lookupWithRetry resolves a host name like lookup, asking again after each
// of waits when it fails, while ctx lasts. A container runtime's DNS can
// fail to resolve a service name for a moment while another container of
// the stack stops or starts: seen with podman during a rolling deploy, when
// the new app instance opened fresh connections just as the old instance
// stopped and a request answered 503. Nothing has reached the server when
// a lookup fails, so asking again is always safe; a name that does not
// exist still fails, after the waits.
func lookupWithRetry(lookup pgconn.LookupFunc, waits []time.Duration) pgconn.LookupFunc {
	return func(ctx context.Context, host string) ([]string, error) {
		addrs, err := lookup(ctx, host)
		for _, wait := range waits {
			if err == nil {
				return addrs, nil
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, err
			case <-t.C:
			}
			addrs, err = lookup(ctx, host)
		}
		return addrs, err
	}
}
