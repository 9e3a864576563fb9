package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestBuildIsReproducibleAndHashed builds the real UI source twice: the
// outputs must be identical (make lint compares the committed build with a
// fresh one), named by content, and referenced from index.html.
func TestBuildIsReproducibleAndHashed(t *testing.T) {
	src := filepath.Join("..", "..", "ui-src")
	a, b := t.TempDir(), t.TempDir()
	for _, out := range []string{a, b} {
		if err := build(src, out); err != nil {
			t.Fatal(err)
		}
	}
	filesA := listFiles(t, a)
	filesB := listFiles(t, b)
	if strings.Join(filesA, ",") != strings.Join(filesB, ",") {
		t.Fatalf("file sets differ: %v vs %v", filesA, filesB)
	}
	for _, f := range filesA {
		x, _ := os.ReadFile(filepath.Join(a, f))
		y, _ := os.ReadFile(filepath.Join(b, f))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two builds", f)
		}
	}
	page, _ := os.ReadFile(filepath.Join(a, "index.html"))
	hashed := regexp.MustCompile(`^assets/app\.[0-9a-f]{12}\.(js|css)$`)
	assets := 0
	for _, f := range filesA {
		if f == "index.html" {
			continue
		}
		if !hashed.MatchString(f) {
			t.Errorf("%s is not a content-hashed asset name", f)
		}
		if !strings.Contains(string(page), "/"+f) {
			t.Errorf("index.html does not reference %s", f)
		}
		assets++
	}
	if assets != 2 {
		t.Errorf("got %d assets, want app.js and app.css", assets)
	}
	if strings.Contains(string(page), "{{") {
		t.Errorf("index.html keeps a placeholder:\n%s", page)
	}
}

func TestBuildRefusesWhatTheCSPBlocks(t *testing.T) {
	for name, page := range map[string]string{
		"inline script":                `<script>alert(1)</script>`,
		"inline style":                 `<style>body{}</style>`,
		"style attribute":              `<p style="color:red">x</p>`,
		"event handler":                `<body onload="go()">`,
		"external script":              `<script src="https://cdn.example.com/x.js"></script>`,
		"protocol-relative stylesheet": `<link rel="stylesheet" href="//cdn.example.com/x.css">`,
	} {
		t.Run(name, func(t *testing.T) {
			if err := checkPage(page); err == nil {
				t.Errorf("checkPage(%q) accepted it", page)
			}
		})
	}
	ok := `<link rel="stylesheet" href="/assets/{{app.css}}"><script src="/assets/{{app.js}}" defer></script>`
	if err := checkPage(ok); err != nil {
		t.Errorf("checkPage refused a same-origin page: %v", err)
	}
}

func TestBuildReportsTypeScriptSyntaxErrors(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "src"), 0o755)
	os.WriteFile(filepath.Join(src, "index.html"), []byte(`<link href="/assets/{{app.css}}"><script src="/assets/{{app.js}}"></script>`), 0o644)
	os.WriteFile(filepath.Join(src, "app.css"), []byte(`body{}`), 0o644)
	os.WriteFile(filepath.Join(src, "src", "main.ts"), []byte(`const x: number = (;`), 0o644)
	err := build(src, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "main.ts") {
		t.Fatalf("got %v, want a bundling error naming main.ts", err)
	}
}

func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
