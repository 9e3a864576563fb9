package api

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// benchIdleWindow is one iteration of BenchmarkIdleEventStreams: long
// against Postgres's statistics flush interval (about a second for a busy
// backend), so pg_stat_database counts are complete enough to compare.
const benchIdleWindow = 10 * time.Second

// statsSettle is PGSTAT_IDLE_INTERVAL (10 s) and a margin.
const statsSettle = 11 * time.Second

// BenchmarkIdleEventStreams holds 500 live event streams open on jobs that
// have nothing to say and measures the database work they cause per second
// of idle time: connections taken from the pool (every query takes one)
// and transactions Postgres counted for the database (pg_stat_database;
// this benchmark's own reads add two per window). Each iteration is one
// 10-second window. deploy/scripts/bench.sh go runs it; docs/benchmarks.md
// quotes it.
func BenchmarkIdleEventStreams(b *testing.B) {
	const streams = 500
	f := newTrainingFixtureWith(b, false, testUploadLimit,
		"APP_MAX_EVENT_STREAMS", fmt.Sprint(streams), "APP_MAX_EVENT_STREAMS_PER_TOKEN", fmt.Sprint(streams))
	jobs := f.insertJobs(b, 50)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	openIdleStreams(b, f, ctx, jobs, streams)

	stats, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close(context.Background())
	xacts := func() int64 {
		var n int64
		if err := stats.QueryRow(ctx, `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()`).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}
	// Idle backends report their statistics up to 10 s late: let the
	// setup's (500 authentications and first reads) land before measuring.
	time.Sleep(statsSettle)
	var acquired, committed int64
	var idle time.Duration
	for b.Loop() {
		start, acq, tx := time.Now(), f.store.Stats().AcquireCount, xacts()
		time.Sleep(benchIdleWindow)
		acquired += f.store.Stats().AcquireCount - acq
		committed += xacts() - tx
		idle += time.Since(start)
	}
	b.ReportMetric(float64(acquired)/idle.Seconds(), "pool-acquires/s")
	b.ReportMetric(float64(committed)/idle.Seconds(), "pg-xacts/s")
	b.ReportMetric(float64(f.hub.Streams()), "streams")
}
