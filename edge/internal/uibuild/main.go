// Command uibuild bundles the web UI's TypeScript and CSS with esbuild's Go
// API and writes them under content-hashed names, with index.html pointing
// at them. edge/scripts/build-ui.sh runs it and then precompresses the
// output; keeping the bundler inside the Go toolchain means building the UI
// needs no Node.js.
//
//	go run ./edge/internal/uibuild SRC_DIR OUT_DIR
//
// SRC_DIR holds index.html (with {{app.js}} and {{app.css}} placeholders),
// app.css and src/main.ts. The output is byte-for-byte reproducible: names
// derive from content only, and nothing records a time or a path.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/evanw/esbuild/pkg/api"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: uibuild SRC_DIR OUT_DIR")
		os.Exit(2)
	}
	if err := build(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "uibuild:", err)
		os.Exit(1)
	}
}

// build bundles src into out (which must not exist or be empty of stale
// assets: the caller removes it first).
func build(src, out string) error {
	page, err := os.ReadFile(filepath.Join(src, "index.html")) // #nosec G703 -- a build tool: src and out are its own arguments
	if err != nil {
		return fmt.Errorf("reading the page template: %w", err)
	}
	if err := checkPage(string(page)); err != nil {
		return err
	}
	res := api.Build(api.BuildOptions{
		EntryPoints:       []string{filepath.Join(src, "src", "main.ts"), filepath.Join(src, "app.css")},
		Bundle:            true,
		MinifyWhitespace:  true,
		MinifyIdentifiers: true,
		MinifySyntax:      true,
		Format:            api.FormatIIFE,
		// Browsers since spring 2024: the first with CSS light-dark(), which
		// the theme relies on; nothing needs a polyfill.
		Target:        api.ES2020,
		Engines:       []api.Engine{{Name: api.EngineChrome, Version: "123"}, {Name: api.EngineFirefox, Version: "120"}, {Name: api.EngineSafari, Version: "17.5"}},
		Charset:       api.CharsetUTF8,
		LegalComments: api.LegalCommentsNone,
		Sourcemap:     api.SourceMapNone,
		Outdir:        "out",
		Write:         false,
		LogLevel:      api.LogLevelSilent,
	})
	if len(res.Errors) > 0 {
		msgs := api.FormatMessages(res.Errors, api.FormatMessagesOptions{Kind: api.ErrorMessage})
		return fmt.Errorf("bundling:\n%s", strings.Join(msgs, ""))
	}
	// #nosec G703 -- a build tool writing where its caller says.
	if err := os.MkdirAll(filepath.Join(out, "assets"), 0o755); err != nil {
		return err
	}
	names := map[string]string{}
	for _, f := range res.OutputFiles {
		base := filepath.Base(f.Path) // main.js or app.css
		ext := filepath.Ext(base)
		logical := "app" + ext
		if _, dup := names[logical]; dup {
			return fmt.Errorf("two outputs named %s", logical)
		}
		if ext == ".js" && strings.Contains(string(f.Contents), "eval(") {
			return errors.New("the bundle calls eval, which the edge's CSP forbids")
		}
		sum := sha256.Sum256(f.Contents)
		hashed := "app." + hex.EncodeToString(sum[:])[:12] + ext
		// #nosec G703 G306 -- a build tool writing public web assets where its caller says.
		if err := os.WriteFile(filepath.Join(out, "assets", hashed), f.Contents, 0o644); err != nil {
			return err
		}
		names[logical] = hashed
	}
	html := string(page)
	for _, logical := range []string{"app.js", "app.css"} {
		hashed, ok := names[logical]
		if !ok {
			return fmt.Errorf("no %s was built", logical)
		}
		placeholder := "{{" + logical + "}}"
		if !strings.Contains(html, placeholder) {
			return fmt.Errorf("index.html has no %s placeholder", placeholder)
		}
		html = strings.ReplaceAll(html, placeholder, hashed)
	}
	return os.WriteFile(filepath.Join(out, "index.html"), []byte(html), 0o644) // #nosec G703 G306 -- a public page, written where the caller says
}

var (
	inlineScript = regexp.MustCompile(`(?i)<script(\s[^>]*)?>\s*[^<\s]`)
	scriptTag    = regexp.MustCompile(`(?i)<script\b[^>]*>`)
	inlineStyle  = regexp.MustCompile(`(?i)<style\b|\sstyle\s*=|\son[a-z]+\s*=`)
	externalRef  = regexp.MustCompile(`(?i)\s(src|href)\s*=\s*"(https?:)?//`)
)

// checkPage refuses what the edge's Content-Security-Policy would block, so
// a mistake fails the build instead of leaving a blank page: inline scripts,
// inline styles and event-handler attributes, and assets from other hosts.
func checkPage(page string) error {
	switch {
	case inlineScript.MatchString(page):
		return errors.New("index.html has an inline script; the CSP allows only script files from the site")
	case inlineStyle.MatchString(page):
		return errors.New("index.html has an inline style or event handler; the CSP forbids them")
	case externalRef.MatchString(page):
		return errors.New("index.html loads from another host; the CSP allows only the site itself")
	}
	for _, tag := range scriptTag.FindAllString(page, -1) {
		if !strings.Contains(tag, "src=") {
			return fmt.Errorf("index.html has a script without src: %s", tag)
		}
	}
	return nil
}
