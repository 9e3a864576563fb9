package migrations

import (
	"bufio"
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

// destructive matches the statements that break the release before the one
// that runs them: it still reads and writes what they remove or rename.
var destructive = regexp.MustCompile(`(?i)\b(DROP\s+COLUMN|DROP\s+TABLE|RENAME\s+(COLUMN\s+)?\S+\s+TO|RENAME\s+TO|ALTER\s+COLUMN\s+\S+\s+(SET\s+DATA\s+)?TYPE)\b`)

// contractMarker marks a migration as a contract step, allowed to remove
// what no running release uses any more (docs/migrations.md).
const contractMarker = "-- contract:"

// TestUpIsExpandOnly enforces expand/contract: a migration's Up section may
// not drop, rename or retype a column or table unless the file says, in a
// "-- contract: <why>" comment, that it is a contract step, released after
// every release still using the old shape is gone. Down sections are not
// checked (undoing an expand step is destructive by nature).
func TestUpIsExpandOnly(t *testing.T) {
	names, err := fs.Glob(FS, "*.sql")
	if err != nil || len(names) == 0 {
		t.Fatalf("no migrations: %v", err)
	}
	for _, name := range names {
		b, err := fs.ReadFile(FS, name)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if strings.Contains(text, contractMarker) {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(text))
		up := false
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "-- +goose Up"):
				up = true
			case strings.HasPrefix(line, "-- +goose Down"):
				up = false
			}
			code, _, _ := strings.Cut(line, "--")
			if up && destructive.MatchString(code) {
				t.Errorf("%s:%d: %q breaks the previous release (it still uses what this removes); "+
					"add the new shape now and remove the old one in a later release, in a file "+
					"marked %q (docs/migrations.md)", name, n, strings.TrimSpace(line), contractMarker+" <why it is safe>")
			}
		}
	}
}

// TestDestructivePattern pins what the expand-only check catches.
func TestDestructivePattern(t *testing.T) {
	for stmt, want := range map[string]bool{
		"ALTER TABLE jobs DROP COLUMN error;":                     true,
		"alter table jobs drop column if exists error;":           true,
		"DROP TABLE list_positions;":                              true,
		"ALTER TABLE jobs RENAME COLUMN error TO failure;":        true,
		"ALTER TABLE jobs RENAME TO runs;":                        true,
		"ALTER TABLE jobs ALTER COLUMN attempts TYPE bigint;":     true,
		"ALTER TABLE jobs ALTER COLUMN attempts SET DATA TYPE t;": true,
		"ALTER TABLE jobs ADD COLUMN note text;":                  false,
		"CREATE TABLE deploy_probe (id bigint);":                  false,
		"DROP INDEX jobs_created_at_id_idx;":                      false,
		"ALTER TABLE jobs ALTER COLUMN n SET NOT NULL;":           false,
	} {
		if got := destructive.MatchString(stmt); got != want {
			t.Errorf("%q: destructive = %v, want %v", stmt, got, want)
		}
	}
}
