package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finetune-studio/finetune-studio/app/internal/retry"
)

// jobEventsChannel is notified with the job id of every committed job event
// (trigger job_events_notify, migration 00005).
const jobEventsChannel = "job_events"

// listenerAppName tells the listener's connection apart in pg_stat_activity.
const listenerAppName = "finetune-studio-listener"

// reconnectPause keeps a connection that breaks at once from spinning.
const reconnectPause = 250 * time.Millisecond

// ListenJobEvents holds one dedicated connection, outside the pool, that
// LISTENs for committed job events until ctx ends. onEvent gets the job id
// of each event. onConnect runs after every successful LISTEN, before that
// connection's first notification: notifications sent while disconnected
// are lost, so the caller catches up then. A lost connection is logged and
// reconnected with backoff. Both callbacks run on the listener's goroutine
// and must not block.
func (s *Store) ListenJobEvents(ctx context.Context, onConnect func(), onEvent func(jobID string)) {
	for {
		var conn *pgx.Conn
		err := retry.UntilReady(ctx, s.log, "event listener", func(ctx context.Context) error {
			c, err := s.listen(ctx)
			conn = c
			return err
		})
		if err != nil {
			return // ctx ended
		}
		onConnect()
		err = s.receive(ctx, conn, onEvent)
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(closeCtx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("event listener connection lost", "error", err.Error(), "retry_in", reconnectPause.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(reconnectPause):
		}
	}
}

// listen opens the listener's connection with the pool's settings.
func (s *Store) listen(ctx context.Context) (*pgx.Conn, error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = listenerAppName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting the event listener: %w", mapErr(err))
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{jobEventsChannel}.Sanitize()); err != nil {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
		return nil, fmt.Errorf("starting to listen for job events: %w", mapErr(err))
	}
	return conn, nil
}

// receive hands notifications to onEvent until the connection fails or ctx
// ends. A connection quiet for listenerPing is pinged: a half-open TCP
// connection (a peer or NAT that vanished) would otherwise wait in silence
// for as long as the kernel's keepalive takes, losing every notification.
func (s *Store) receive(ctx context.Context, conn *pgx.Conn, onEvent func(jobID string)) error {
	for {
		waitCtx, cancel := context.WithTimeout(ctx, s.listenerPing)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			if n.Channel == jobEventsChannel {
				onEvent(n.Payload)
			}
		case ctx.Err() != nil:
			return ctx.Err()
		case waitCtx.Err() != nil: // quiet, not broken: a read timeout leaves the connection usable
			pingCtx, cancel := context.WithTimeout(ctx, s.listenerPing)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("pinging the event listener's connection: %w", mapErr(err))
			}
		default:
			return mapErr(err)
		}
	}
}
