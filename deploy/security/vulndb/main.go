// Command vulndb turns a snapshot of the Go vulnerability database's source
// repository (the golang.org/x/vulndb module, whose data/osv holds one OSV
// entry per file) into the v1 database layout that `govulncheck -db
// file:///dir` reads, so the security suite can scan without reaching
// vuln.go.dev:
//
//	index/db.json       {"modified": ...}
//	index/modules.json  [{"path": ..., "vulns": [{"id", "modified"}]}]
//	index/vulns.json    [{"id", "modified", "aliases"}]
//	ID/<id>.json        the OSV entry itself, unchanged
//
// Usage: vulndb -src <vulndb module dir>/data/osv -out <dir> -snapshot <RFC 3339 time>
//
// The entries in data/osv carry zero "modified" times (the published
// database stamps them from git history, which a module zip does not have),
// so every zero time is replaced by the snapshot's commit time: the honest
// "no later than" for each entry, and what govulncheck reports as the
// database's age. The modules index leaves out each entry's "fixed"
// version: govulncheck then fetches every entry of a module it uses and
// decides from the entry's full ranges, which is slower by a few file reads
// and can never skip an entry that applies.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

func main() {
	src := flag.String("src", "", "directory of OSV entries (<vulndb module>/data/osv)")
	out := flag.String("out", "", "directory to write the database to (created; must be empty or absent)")
	snapshot := flag.String("snapshot", "", "the snapshot's commit time, RFC 3339")
	flag.Parse()
	if *src == "" || *out == "" || *snapshot == "" {
		flag.Usage()
		os.Exit(2)
	}
	at, err := time.Parse(time.RFC3339, *snapshot)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vulndb: -snapshot: %v\n", err)
		os.Exit(2)
	}
	n, err := build(*src, *out, at.UTC())
	if err != nil {
		fmt.Fprintf(os.Stderr, "vulndb: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("vulndb: %d entries, snapshot %s\n", n, at.UTC().Format(time.RFC3339))
}

// entry is the part of an OSV entry the indexes need; the file itself is
// copied as it is.
type entry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
	// Go's OSV entries name the affected module in package.name.
	Affected []struct {
		Package struct {
			Name string `json:"name"`
		} `json:"package"`
	} `json:"affected"`
}

var idPattern = regexp.MustCompile(`^GO-[0-9]{4}-[0-9]{4,}$`)

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
}

type module struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type vuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
}

func build(src, out string, snapshot time.Time) (int, error) {
	files, err := filepath.Glob(filepath.Join(src, "*.json"))
	if err != nil {
		return 0, err
	}
	if len(files) == 0 {
		return 0, fmt.Errorf("no OSV entries in %s", src)
	}
	if err := os.MkdirAll(filepath.Join(out, "ID"), 0o755); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Join(out, "index"), 0o755); err != nil {
		return 0, err
	}
	modules := map[string]*module{}
	var vulns []vuln
	seen := map[string]bool{}
	newest := time.Time{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		var e entry
		if err := json.Unmarshal(raw, &e); err != nil {
			return 0, fmt.Errorf("%s: %w", f, err)
		}
		// The id names the file written below: only the database's own
		// id shape, so no entry can write outside out.
		if !idPattern.MatchString(e.ID) || filepath.Base(f) != e.ID+".json" {
			return 0, fmt.Errorf("%s: entry id %q is not GO-yyyy-nnnn or does not match its file name", f, e.ID)
		}
		if seen[e.ID] {
			return 0, fmt.Errorf("%s: id appears twice", e.ID)
		}
		seen[e.ID] = true
		if e.Modified.IsZero() {
			e.Modified = snapshot
		}
		if e.Modified.After(newest) {
			newest = e.Modified
		}
		paths := map[string]bool{}
		for _, a := range e.Affected {
			p := a.Package.Name
			if p == "" {
				return 0, fmt.Errorf("%s: an affected entry names no module", e.ID)
			}
			paths[p] = true
		}
		for p := range paths {
			m := modules[p]
			if m == nil {
				m = &module{Path: p}
				modules[p] = m
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified})
		}
		vulns = append(vulns, vuln{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})
		// The entry goes out unchanged: govulncheck matches versions and
		// symbols from its own parse of the full OSV document.
		// #nosec G306 G703 -- a public database, world-readable; e.ID is checked against idPattern above.
		if err := os.WriteFile(filepath.Join(out, "ID", e.ID+".json"), raw, 0o644); err != nil {
			return 0, err
		}
	}
	if len(modules) == 0 {
		return 0, errors.New("no entry names an affected module")
	}
	list := make([]*module, 0, len(modules))
	for _, m := range modules {
		sort.Slice(m.Vulns, func(i, j int) bool { return m.Vulns[i].ID < m.Vulns[j].ID })
		list = append(list, m)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Path < list[j].Path })
	sort.Slice(vulns, func(i, j int) bool { return strings.Compare(vulns[i].ID, vulns[j].ID) < 0 })
	for name, v := range map[string]any{
		"db.json": struct {
			Modified time.Time `json:"modified"`
		}{newest},
		"modules.json": list,
		"vulns.json":   vulns,
	} {
		b, err := json.Marshal(v)
		if err != nil {
			return 0, err
		}
		// #nosec G306 -- a public vulnerability database, meant to be world-readable.
		if err := os.WriteFile(filepath.Join(out, "index", name), b, 0o644); err != nil {
			return 0, err
		}
	}
	return len(vulns), nil
}
