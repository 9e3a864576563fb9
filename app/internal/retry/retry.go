// Package retry waits for a dependency at startup: Postgres and object
// storage may come up after the app (a container restart, a slow volume).
package retry

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// UntilReady calls probe until it succeeds or ctx (the startup timeout)
// ends, backing off from 100 ms to 2 s and logging every failed attempt as
// "<what> not ready", so an operator sees what the app is waiting for.
func UntilReady(ctx context.Context, log *slog.Logger, what string, probe func(context.Context) error) error {
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := probe(ctx)
		if err == nil {
			if attempt > 1 {
				log.Info(what+" ready", "attempt", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s not ready before the startup timeout after %d attempts: %w", what, attempt, err)
		}
		log.Warn(what+" not ready", "attempt", attempt, "retry_in", delay.String(), "error", err.Error())
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready before the startup timeout after %d attempts: %w", what, attempt, err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}
