package doctest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// root is the repository root, relative to this package.
var root = filepath.Join("..", "..")

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// docVar is one variable of a documentation table.
type docVar struct {
	Name string
	// Default is the documented default ("" when none is a literal, such
	// as "(required)" or "four small instruct models").
	Default string
	// ComposeDefault is the default the compose stack uses instead, from a
	// "(compose: `x`)" note in the default cell.
	ComposeDefault string
	// DevOnly marks a "*Caddyfile.dev only*" variable.
	DevOnly bool
	// Section is the heading the table is under ("Variables").
	Section string
}

var varName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// parseVarTables reads every table whose header starts with "| Variable |".
// A row may document several variables ("`A` / `B`") with as many defaults
// ("`1` / `2`"); backticked values inside parentheses are notes, except
// after "compose:", which gives the compose stack's own default.
func parseVarTables(t *testing.T, doc string) []docVar {
	t.Helper()
	var out []docVar
	inTable := false
	section := ""
	for _, line := range strings.Split(doc, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			section = strings.TrimSpace(strings.TrimLeft(line, "#"))
		}
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		cells := splitRow(line)
		if len(cells) < 3 {
			continue
		}
		if strings.TrimSpace(cells[0]) == "Variable" {
			inTable = true
			continue
		}
		if !inTable || strings.HasPrefix(strings.TrimSpace(cells[0]), "---") {
			continue
		}
		var names []string
		for i, seg := range strings.Split(cells[0], "`") {
			if i%2 == 1 && varName.MatchString(seg) {
				names = append(names, seg)
			}
		}
		defaults, composeDefaults := cellValues(cells[1])
		devOnly := strings.Contains(cells[2], "Caddyfile.dev only")
		for i, n := range names {
			v := docVar{Name: n, DevOnly: devOnly, Section: section}
			if len(defaults) == len(names) {
				v.Default = defaults[i]
			}
			if len(composeDefaults) == len(names) {
				v.ComposeDefault = composeDefaults[i]
			}
			out = append(out, v)
		}
	}
	return out
}

// splitRow splits a Markdown table row on the pipes outside code spans.
func splitRow(line string) []string {
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	var cells []string
	var cur strings.Builder
	inCode := false
	for _, r := range line {
		switch {
		case r == '`':
			inCode = !inCode
			cur.WriteRune(r)
		case r == '|' && !inCode:
			cells = append(cells, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	return append(cells, cur.String())
}

// cellValues returns the code spans of a default cell outside parentheses,
// and those inside a "(compose: ...)" note.
func cellValues(cell string) (defaults, compose []string) {
	depth := 0
	inCompose := false
	for i, seg := range strings.Split(cell, "`") {
		if i%2 == 1 {
			switch {
			case depth == 0:
				defaults = append(defaults, seg)
			case inCompose:
				compose = append(compose, seg)
			}
			continue
		}
		for j, r := range seg {
			switch r {
			case '(':
				depth++
				inCompose = strings.HasPrefix(strings.TrimSpace(seg[j+1:]), "compose:")
			case ')':
				depth--
				inCompose = false
			}
		}
	}
	return defaults, compose
}

type composeFile struct {
	Services map[string]struct {
		Image       string    `yaml:"image"`
		Build       yaml.Node `yaml:"build"`
		Environment yaml.Node `yaml:"environment"`
	} `yaml:"services"`
}

type service struct {
	Dockerfile string
	Env        map[string]string
	// Raw is the service's definition as written, for variables used
	// outside the environment (a volume's host path).
	Raw string
}

// loadCompose parses a compose file; each service's environment as a map
// (compose accepts a map or a list of NAME=value).
func loadCompose(t *testing.T, name string) map[string]service {
	t.Helper()
	var f composeFile
	if err := yaml.Unmarshal([]byte(read(t, name)), &f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	out := map[string]service{}
	var raw struct {
		Services map[string]yaml.Node `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(read(t, name)), &raw); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for svcName, s := range f.Services {
		svc := service{Env: map[string]string{}}
		if b, err := yaml.Marshal(raw.Services[svcName]); err == nil {
			svc.Raw = string(b)
		}
		var build struct {
			Dockerfile string `yaml:"dockerfile"`
		}
		if s.Build.Kind == yaml.MappingNode {
			if err := s.Build.Decode(&build); err != nil {
				t.Fatalf("%s: %s.build: %v", name, svcName, err)
			}
			svc.Dockerfile = build.Dockerfile
		}
		switch s.Environment.Kind {
		case yaml.MappingNode:
			var m map[string]string
			if err := s.Environment.Decode(&m); err != nil {
				t.Fatalf("%s: %s.environment: %v", name, svcName, err)
			}
			svc.Env = m
		case yaml.SequenceNode:
			var l []string
			if err := s.Environment.Decode(&l); err != nil {
				t.Fatalf("%s: %s.environment: %v", name, svcName, err)
			}
			for _, kv := range l {
				k, v, _ := strings.Cut(kv, "=")
				svc.Env[k] = v
			}
		}
		out[svcName] = svc
	}
	return out
}

// merged applies a compose override the way compose does for what is
// checked here: environments merge by name, the override winning.
func merged(base, override map[string]service) map[string]service {
	out := map[string]service{}
	for n, s := range base {
		env := map[string]string{}
		for k, v := range s.Env {
			env[k] = v
		}
		out[n] = service{Dockerfile: s.Dockerfile, Env: env, Raw: s.Raw}
	}
	for n, s := range override {
		b, ok := out[n]
		if !ok {
			b = service{Env: map[string]string{}}
		}
		if s.Dockerfile != "" {
			b.Dockerfile = s.Dockerfile
		}
		for k, v := range s.Env {
			b.Env[k] = v
		}
		b.Raw += s.Raw
		out[n] = b
	}
	return out
}

// target says which compose services read the variables of one table:
// those built from Dockerfile (the app's may run as several services
// during a deploy), or the one named Service.
type target struct {
	Doc, Section, Dockerfile, Service string
}

// targets maps every variable table of the docs to its services. A table
// not listed here fails the test, so a new one cannot go unchecked.
var targets = []target{
	{Doc: "docs/configuration.md", Section: "Variables", Dockerfile: "app.Dockerfile"},
	{Doc: "docs/configuration.md", Section: "Backups", Dockerfile: "app.Dockerfile"},
	{Doc: "docs/configuration.md", Section: "The backup service (compose settings)", Service: "backup"},
	{Doc: "docs/edge.md", Section: "Environment", Dockerfile: "xcaddy.Dockerfile"},
}

func (tg target) services(svcs map[string]service) []string {
	var out []string
	for n, s := range svcs {
		if (tg.Dockerfile != "" && s.Dockerfile == tg.Dockerfile) || n == tg.Service {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// notPassed lists documented variables a compose file need not pass, and why.
var notPassed = map[string]string{
	// Read by `edge healthcheck` alone, with different defaults for the
	// liveness and --ready checks; one value would replace both.
	"EDGE_HEALTHCHECK_URL": "the healthcheck command's own default",
}

// interpolation matches "${NAME:-default}" or "${NAME-default}", the
// default possibly holding further interpolations.
func composeDefault(value, name string) (string, bool) {
	prefix := "${" + name
	if !strings.HasPrefix(value, prefix) || !strings.HasSuffix(value, "}") {
		return "", false
	}
	rest := strings.TrimSuffix(strings.TrimPrefix(value, prefix), "}")
	switch {
	case strings.HasPrefix(rest, ":-"):
		return rest[2:], true
	case strings.HasPrefix(rest, "-"):
		return rest[1:], true
	}
	return "", false
}

// braces turns ${NAME} into $NAME, so "https://${DOMAIN}" in a compose file
// and "https://$DOMAIN" in a doc compare equal.
var braces = regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)\}`)

// TestDocumentedVariablesReachServices fails for every variable the docs
// tell an operator to set that a compose file does not pass to the service
// reading it, or passes with a default other than the documented one.
func TestDocumentedVariablesReachServices(t *testing.T) {
	prod := loadCompose(t, "deploy/docker-compose.yml")
	dev := merged(prod, loadCompose(t, "deploy/docker-compose.dev.yml"))
	for _, doc := range []string{"docs/configuration.md", "docs/edge.md"} {
		unmapped := map[string]bool{}
		for _, v := range parseVarTables(t, read(t, doc)) {
			if !slices.ContainsFunc(targets, func(tg target) bool { return tg.Doc == doc && tg.Section == v.Section }) && !unmapped[v.Section] {
				unmapped[v.Section] = true
				t.Errorf("%s: the variable table under %q has no target service in this test (add it to targets)", doc, v.Section)
			}
		}
	}
	for _, tg := range targets {
		var vars []docVar
		for _, v := range parseVarTables(t, read(t, tg.Doc)) {
			if v.Section == tg.Section {
				vars = append(vars, v)
			}
		}
		if len(vars) < 3 {
			t.Fatalf("%s, %q: found only %d documented variables", tg.Doc, tg.Section, len(vars))
		}
		for _, file := range []struct {
			name string
			svcs map[string]service
			dev  bool
		}{
			{"deploy/docker-compose.yml", prod, false},
			{"deploy/docker-compose.yml + deploy/docker-compose.dev.yml", dev, true},
		} {
			names := tg.services(file.svcs)
			if len(names) == 0 {
				t.Fatalf("%s: no service for %s, %q", file.name, tg.Doc, tg.Section)
			}
			for _, svcName := range names {
				env := file.svcs[svcName].Env
				for _, v := range vars {
					if _, ok := notPassed[v.Name]; ok || (v.DevOnly && !file.dev) {
						continue
					}
					value, ok := env[v.Name]
					if !ok {
						value, ok = env[v.Name+"_FILE"]
					}
					if !ok && strings.Contains(file.svcs[svcName].Raw, "${"+v.Name) {
						continue // used by the service's definition itself (a volume's host path)
					}
					if !ok {
						t.Errorf("%s documents %s, but %s does not pass it to %s (setting it in deploy/.env would do nothing)",
							tg.Doc, v.Name, file.name, svcName)
						continue
					}
					if file.dev {
						continue // development defaults differ on purpose (docs say which)
					}
					got, interpolated := composeDefault(value, v.Name)
					want := v.Default
					if v.ComposeDefault != "" {
						want = v.ComposeDefault
					}
					if !interpolated || want == "" {
						continue // fixed by the stack's wiring, or no literal default documented
					}
					if braces.ReplaceAllString(got, "$$$1") != braces.ReplaceAllString(want, "$$$1") {
						t.Errorf("%s: %s defaults to %q in %s, but %s documents %q (add \"(compose: `%s`)\" to the doc if the difference is meant)",
							svcName, v.Name, got, file.name, tg.Doc, want, got)
					}
				}
			}
		}
	}
}

var (
	interpolated = regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)`)
	envExample   = regexp.MustCompile(`(?m)^#?\s*([A-Z][A-Z0-9_]*)=`)
)

// TestEnvExampleMatchesCompose fails when deploy/.env.example offers a
// setting nothing reads (neither a compose file nor deploy/studio), or when
// the production compose file reads a setting that neither .env.example
// nor the variable tables of the docs explain.
func TestEnvExampleMatchesCompose(t *testing.T) {
	prodText := read(t, "deploy/docker-compose.yml")
	devText := read(t, "deploy/docker-compose.dev.yml")
	readers := prodText + devText + read(t, "deploy/studio")
	verbs, err := filepath.Glob(filepath.Join(root, "deploy", "studio.d", "*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range verbs {
		b, err := os.ReadFile(v)
		if err != nil {
			t.Fatal(err)
		}
		readers += string(b)
	}
	example := map[string]bool{}
	for _, m := range envExample.FindAllStringSubmatch(read(t, "deploy/.env.example"), -1) {
		example[m[1]] = true
		if !strings.Contains(readers, m[1]) {
			t.Errorf("deploy/.env.example offers %s, but no compose file or deploy/studio verb reads it", m[1])
		}
	}
	documented := map[string]bool{}
	for _, doc := range []string{"docs/configuration.md", "docs/edge.md"} {
		for _, v := range parseVarTables(t, read(t, doc)) {
			documented[v.Name] = true
		}
	}
	for _, m := range interpolated.FindAllStringSubmatch(prodText, -1) {
		if !example[m[1]] && !documented[m[1]] {
			t.Errorf("deploy/docker-compose.yml reads %s, which neither deploy/.env.example nor the docs' variable tables explain", m[1])
		}
	}
}
