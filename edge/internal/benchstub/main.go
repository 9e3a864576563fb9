// Command benchstub is the upstream app stand-in for deploy/scripts/bench-edge.sh:
// it answers the app's health contract and one ~1 KB JSON API route as fast
// as net/http can, so the benchmark measures the proxies, not the app.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "listen address")
	flag.Parse()

	items := make([]string, 0, 16)
	for i := range 16 {
		items = append(items, fmt.Sprintf(`{"id":"ds-%04d","name":"dataset %d","rows":%d,"state":"ready"}`, i, i, 1000+i))
	}
	body := []byte(`{"items":[` + strings.Join(items, ",") + `],"next":null}`)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/health+json")
		w.Write([]byte(`{"status":"pass","checks":{}}`))
	})
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	mux.HandleFunc("GET /api/v1/datasets", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("benchstub listening on %s, body %d bytes", *addr, len(body))
	log.Fatal(srv.ListenAndServe())
}
