// Package doctest holds tests that hold the operator documentation to the
// deployment files it describes: every variable docs/configuration.md and
// docs/edge.md document reaches its service through both compose files with
// the documented default, and every command in the docs can be pasted from
// the repository root (the files, compose verbs, deploy/studio verbs and make
// targets it names exist, and no image or registry it names is made up).
// It has no non-test code.
package doctest
