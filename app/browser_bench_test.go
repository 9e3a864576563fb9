package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// BenchmarkUIFirstLoad loads the first page (the sign-in screen a new
// visitor sees) through the edge in headless Chromium, cold (empty cache)
// and then warm, and reports the bytes transferred and the time until the
// screen is rendered and usable (the app's fts:ready mark). Run once:
//
//	go test -run '^$' -bench BenchmarkUIFirstLoad -benchtime 1x ./app
func BenchmarkUIFirstLoad(b *testing.B) {
	env := baseEnv(b)
	setupDatabase(b, env)
	a := startApp(b, env)
	base := startEdge(b, a.env["APP_ADDR"], 1000)
	for range b.N {
		br := newBrowser(b, b.TempDir())
		for _, pass := range []string{"cold", "warm"} {
			var m struct {
				Bytes, Ready, Load float64
			}
			br.run(b, chromedp.Navigate(base+"/"), chromedp.WaitVisible("#token", chromedp.ByID))
			br.waitJS(b, `performance.getEntriesByName("fts:ready").length > 0 && performance.getEntriesByType("navigation")[0].loadEventEnd > 0`)
			br.run(b, chromedp.Evaluate(`(() => {
				const n = performance.getEntriesByType("navigation")[0];
				const bytes = [n, ...performance.getEntriesByType("resource")].reduce((s, e) => s + e.transferSize, 0);
				return {Bytes: bytes, Ready: performance.getEntriesByName("fts:ready")[0].startTime, Load: n.loadEventEnd};
			})()`, &m))
			b.ReportMetric(m.Bytes, pass+"-bytes")
			b.ReportMetric(m.Ready, pass+"-ready-ms")
			b.ReportMetric(m.Load, pass+"-load-ms")
		}
	}
}

// BenchmarkUIUpload uploads a 50 MB text-label dataset through the UI (the
// browser's XMLHttpRequest, the edge, the app's streaming validator and
// MinIO) and reports the throughput from the click to the validated answer.
func BenchmarkUIUpload(b *testing.B) {
	env := baseEnv(b)
	token := setupDatabase(b, env)
	a := startApp(b, env)
	base := startEdge(b, a.env["APP_ADDR"], 1000)
	file := filepath.Join(b.TempDir(), "big.jsonl")
	size := writeTextLabel(b, file, 50<<20)
	br := newBrowser(b, b.TempDir())
	br.run(b, chromedp.Navigate(base+"/"), chromedp.WaitVisible("#token", chromedp.ByID), chromedp.SetValue("#token", token, chromedp.ByID))
	br.submit(b, "#token")
	br.waitText(b, "#token-id", "token ")
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		br.run(b, chromedp.SetUploadFiles("#upload-file", []string{file}, chromedp.ByID))
		start := time.Now()
		br.run(b, chromedp.Click(`#upload-title ~ .actions button[type=submit]`, chromedp.ByQuery))
		br.waitText(b, "#upload-status", "validated")
		total += time.Since(start)
	}
	b.ReportMetric(float64(size)*float64(b.N)/total.Seconds()/1e6, "MB/s")
}

// writeTextLabel writes a valid text-label JSON Lines file of about n bytes.
func writeTextLabel(b *testing.B, path string, n int64) int64 {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	var written int64
	for i := 0; written < n; i++ {
		k, _ := fmt.Fprintf(w, `{"text":"review number %d: the product arrived on time and works as described, would buy again","label":"l%d"}`+"\n", i, i%5)
		written += int64(k)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	return written
}
