// Package studiotest tests deploy/studio, the operator's entry point, the
// way an operator runs it: as a program, with a temporary deploy/.env,
// secrets and certificates, and PATH shims standing in for the host's
// container engine (the real engine is exercised by make test-containers).
package studiotest
