package doctest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// composeVerbs are the subcommands of Docker Compose v2 (podman compose
// passes them through).
var composeVerbs = []string{
	"attach", "build", "commit", "config", "cp", "create", "down", "events", "exec",
	"export", "images", "kill", "logs", "ls", "pause", "port", "ps", "publish", "pull",
	"push", "restart", "rm", "run", "scale", "start", "stats", "stop", "top",
	"unpause", "up", "version", "volumes", "wait", "watch",
}

// composeFlagsWithValue are the global compose flags that take a value; the
// verb is the first word after them.
var composeFlagsWithValue = []string{
	"-f", "--file", "--env-file", "-p", "--project-name", "--profile",
	"--project-directory", "--ansi", "--parallel", "--progress",
}

// projectless are the compose verbs that need no compose file.
var projectless = []string{"version", "ls"}

// docCommand is one shell command a doc shows, with where it is.
type docCommand struct {
	where  string // file:line
	words  []string
	fenced bool // from a shell fence, not an inline code span
}

var (
	fence    = regexp.MustCompile("^\\s*```+\\s*([A-Za-z]*)")
	codeSpan = regexp.MustCompile("`([^`]+)`")
)

// shellLanguages are the fence languages read as shell; an unlabelled
// fence is read too (the commands below are recognised by their first word).
var shellLanguages = []string{"", "sh", "bash", "shell", "console"}

// commandsIn extracts the commands of a Markdown file: every line of its
// shell fences (continuations joined, split at ; && || |) and every inline
// code span that starts with docker, podman, make or deploy/studio (whose
// verbs are checked in fences only).
func commandsIn(name, text string) []docCommand {
	var out []docCommand
	lines := strings.Split(text, "\n")
	inShell, inFence := false, false
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		lineNo := i + 1
		if m := fence.FindStringSubmatch(line); m != nil {
			if inFence {
				inFence, inShell = false, false
			} else {
				inFence = true
				inShell = slices.Contains(shellLanguages, strings.ToLower(m[1]))
			}
			continue
		}
		if inFence {
			if !inShell {
				continue
			}
			for strings.HasSuffix(strings.TrimSpace(line), "\\") && i+1 < len(lines) {
				i++
				line = strings.TrimSuffix(strings.TrimSpace(line), "\\") + " " + lines[i]
			}
			for _, c := range split(name, lineNo, line) {
				c.fenced = true
				out = append(out, c)
			}
			continue
		}
		for _, m := range codeSpan.FindAllStringSubmatch(line, -1) {
			w := strings.Fields(m[1])
			if len(w) > 0 && (w[0] == "docker" || w[0] == "docker-compose" || w[0] == "podman" ||
				w[0] == "make" || w[0] == "deploy/studio" || w[0] == "sudo") {
				out = append(out, split(name, lineNo, m[1])...)
			}
		}
	}
	return out
}

var separators = regexp.MustCompile(`&&|\|\||;|\|`)

func split(name string, lineNo int, line string) []docCommand {
	// A comment runs to the end of the line.
	if i := strings.Index(line, " #"); i >= 0 {
		line = line[:i]
	}
	if strings.HasPrefix(strings.TrimSpace(line), "#") {
		return nil
	}
	var out []docCommand
	for _, part := range separators.Split(line, -1) {
		words := strings.Fields(part)
		// A prompt, sudo, env assignments and a subshell's parenthesis
		// precede the command itself.
		for len(words) > 0 && (words[0] == "$" || words[0] == "sudo" || words[0] == "(" ||
			regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(words[0])) {
			words = words[1:]
		}
		if len(words) > 0 {
			words[0] = strings.TrimPrefix(words[0], "(")
			out = append(out, docCommand{where: name + ":" + itoa(lineNo), words: words})
		}
	}
	return out
}

func itoa(n int) string {
	const digits = "0123456789"
	if n < 10 {
		return digits[n : n+1]
	}
	return itoa(n/10) + digits[n%10:n%10+1]
}

// placeholder reports a word the reader replaces (<rev>, $VAR, …).
func placeholder(w string) bool {
	return strings.ContainsAny(w, "<>$…*{}") || strings.Contains(w, "...")
}

// docFiles are README.md and every docs/*.md.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := []string{"README.md"}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		out = append(out, rel)
	}
	return out
}

// makeTargets reads the rule names of the Makefile.
func makeTargets(t *testing.T) []string {
	t.Helper()
	rule := regexp.MustCompile(`(?m)^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:([^=]|$)`)
	var out []string
	for _, m := range rule.FindAllStringSubmatch(read(t, "Makefile"), -1) {
		out = append(out, m[1])
	}
	return out
}

// TestDocCommandsArePasteable fails for a documented command that cannot
// work from the repository root: a compose command without -f (compose
// would look for a compose file in the current directory), a -f or
// --env-file path that does not exist, an unknown compose verb, a
// deploy/studio verb without its deploy/studio.d/<verb>.sh, or a make target
// the Makefile lacks.
func TestDocCommandsArePasteable(t *testing.T) {
	targets := makeTargets(t)
	if !slices.Contains(targets, "test") {
		t.Fatalf("Makefile rules not found (got %v)", targets)
	}
	checked := 0
	for _, file := range docFiles(t) {
		for _, c := range commandsIn(file, read(t, file)) {
			w := c.words
			switch {
			case w[0] == "docker" && len(w) > 1 && w[1] == "compose",
				w[0] == "podman" && len(w) > 1 && w[1] == "compose":
				checked++
				checkCompose(t, c, w[2:])
			case w[0] == "docker-compose" || w[0] == "podman-compose":
				checked++
				checkCompose(t, c, w[1:])
			case (w[0] == "deploy/studio" || w[0] == "./deploy/studio") && c.fenced:
				// Inline spans naming a verb are often quoted output (a
				// preflight fix line); the commands to paste are fenced.
				checked++
				checkStudio(t, c, w[1:])
			case w[0] == "make":
				checked++
				for _, a := range w[1:] {
					if strings.HasPrefix(a, "-") || strings.Contains(a, "=") || placeholder(a) {
						continue
					}
					if !slices.Contains(targets, a) {
						t.Errorf("%s: make %s: the Makefile has no target %q", c.where, a, a)
					}
				}
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d commands found in the docs: is the extraction broken?", checked)
	}
}

func checkCompose(t *testing.T, c docCommand, args []string) {
	t.Helper()
	hasFile, verb := false, ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		flag, value, inline := strings.Cut(a, "=")
		if !slices.Contains(composeFlagsWithValue, flag) {
			if strings.HasPrefix(a, "-") {
				continue // a global flag without a value
			}
			if !slices.Contains(composeVerbs, a) && !placeholder(a) {
				t.Errorf("%s: %q is not a compose command", c.where, a)
			}
			verb = a
			break
		}
		if !inline {
			if i+1 >= len(args) {
				t.Errorf("%s: %s without a value", c.where, flag)
				return
			}
			i++
			value = args[i]
		}
		if flag == "-f" || flag == "--file" {
			hasFile = true
		}
		if (flag == "-f" || flag == "--file" || flag == "--env-file") && !placeholder(value) {
			if value == "deploy/.env" {
				// The operator's copy of deploy/.env.example.
				value = "deploy/.env.example"
			}
			if _, err := os.Stat(filepath.Join(root, value)); err != nil {
				t.Errorf("%s: %s %s: no such file from the repository root", c.where, flag, value)
			}
		}
	}
	if !hasFile && !slices.Contains(projectless, verb) {
		t.Errorf("%s: %q has no -f: from the repository root compose finds no compose file (add -f deploy/docker-compose.yml)",
			c.where, strings.Join(c.words, " "))
	}
}

func checkStudio(t *testing.T, c docCommand, args []string) {
	t.Helper()
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			continue // --help and global flags
		}
		if placeholder(a) {
			return
		}
		if _, err := os.Stat(filepath.Join(root, "deploy", "studio.d", a+".sh")); err != nil {
			t.Errorf("%s: deploy/studio %s: no such verb (deploy/studio.d/%s.sh)", c.where, a, a)
		}
		return
	}
}

// imageRef matches an image reference on a public registry.
var imageRef = regexp.MustCompile(`\b((?:docker\.io|ghcr\.io|quay\.io|gcr\.io|registry\.gitlab\.com|public\.ecr\.aws|[a-z0-9-]+\.azurecr\.io|[a-z0-9-]+\.pkg\.dev)/[A-Za-z0-9._/-]+)(?::[A-Za-z0-9._-]+)?`)

// upstreamImages are the public images the deployment really uses: the
// defaults of the compose files and the base images of the Dockerfiles.
func upstreamImages(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, f := range []string{"deploy/docker-compose.yml", "deploy/docker-compose.dev.yml", "app.Dockerfile", "xcaddy.Dockerfile"} {
		for _, m := range imageRef.FindAllStringSubmatch(read(t, f), -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// TestDocsNameOnlyRealImages fails when a doc names an image on a public
// registry that the deployment does not use (such as one under a name
// nobody registered), or clones the project from a made-up address.
func TestDocsNameOnlyRealImages(t *testing.T) {
	// Never ours: no image of this project is published under that name
	// (whoever registered it would run with the operator's secrets).
	forbidden := regexp.MustCompile(`(?i)ghcr\.io/finetune-studio`)
	known := slices.DeleteFunc(upstreamImages(t), forbidden.MatchString)
	if len(known) < 2 {
		t.Fatalf("found only %v as upstream images", known)
	}
	clone := regexp.MustCompile(`git clone\s+\S*github\.com/finetune-studio`)
	for _, file := range docFiles(t) {
		for i, line := range strings.Split(read(t, file), "\n") {
			if forbidden.MatchString(line) {
				t.Errorf("%s:%d: names ghcr.io/finetune-studio, a registry namespace this project does not own", file, i+1)
			}
			for _, m := range imageRef.FindAllStringSubmatch(line, -1) {
				if !forbidden.MatchString(m[0]) && !slices.Contains(known, m[1]) {
					t.Errorf("%s:%d: names the image %s, which no compose file or Dockerfile uses (an operator-supplied registry is written as a placeholder, e.g. $REGISTRY/...)",
						file, i+1, m[0])
				}
			}
			if clone.MatchString(line) {
				t.Errorf("%s:%d: clones from github.com/finetune-studio, an address this project does not publish; say the operator supplies the repository URL", file, i+1)
			}
		}
	}
}
