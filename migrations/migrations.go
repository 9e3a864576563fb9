// Package migrations holds the database schema as numbered SQL files, embedded
// in the binary so a deployment can never run code against a schema it was not
// built for. The store package applies them with goose at startup.
//
// Numbering: 00001 is the platform (API tokens, task queue); the domain's
// tables start at 00002. Files are never edited once released: a change is a
// new file.
package migrations

import "embed"

// FS is every migration, in goose's annotated SQL format.
//
//go:embed *.sql
var FS embed.FS
