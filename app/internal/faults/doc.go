// Package faults is the fault suite (`make test-faults`, docs/faults.md):
// the whole stack — the edge binary with the production Caddyfile, the app
// binary, real Postgres and MinIO from testenv — under background load
// while a dependency, an app instance or the edge's config is taken away or
// changed, or while clients misbehave. Each scenario asserts what users see
// through the edge and logs the numbers it measured (docs/benchmarks.md).
//
// The tests carry the build tag `faults`, so `make test` stays as it is:
//
//	go test -tags faults -race -count=1 ./app/internal/faults/
//
// The suite lives under app/ rather than edge/ because Go's internal-package
// rule lets only code under app/ import app/internal/testenv; the edge is
// built and started here directly, as app/browser_test.go does.
package faults
