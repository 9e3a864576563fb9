package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSlowBodyCutOff: an upload that stalls, or trickles below the minimum
// rate, is cut off by the edge, while an event stream that is open the
// whole time (a GET without a body) is left alone and a normal upload
// still succeeds.
func TestSlowBodyCutOff(t *testing.T) {
	app := startStubApp(t)
	env, pe := defaultEnv(t, app.addr)
	env["EDGE_READ_BODY_IDLE_TIMEOUT"] = "1s"
	env["EDGE_READ_BODY_MIN_RATE"] = "1024"
	env["RATE_LIMIT_EXPENSIVE_EVENTS"] = "100"
	env["RATE_LIMIT_API_EVENTS"] = "100"
	startProdEdge(t, env, pe)
	c := pe.client("127.0.0.1")

	stream, err := c.Get(pe.url("/api/v1/jobs/1/events/stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	streamRd := bufio.NewReader(stream.Body)
	if line, err := streamRd.ReadString('\n'); err != nil || line != "event: status\n" {
		t.Fatalf("stream start: %q, %v", line, err)
	}

	for _, tc := range []struct {
		name string
		send func(conn net.Conn, stop <-chan struct{})
	}{
		{"stalled body", func(conn net.Conn, _ <-chan struct{}) {
			conn.Write([]byte(strings.Repeat("a", 100)))
		}},
		{"trickled body (1 byte per 100 ms)", func(conn net.Conn, stop <-chan struct{}) {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := conn.Write([]byte("a")); err != nil {
						return
					}
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", pe.httpsPort),
				&tls.Config{RootCAs: pe.roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST /api/v1/datasets HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: 60000\r\n\r\n")
			stop := make(chan struct{})
			defer close(stop)
			go tc.send(conn, stop)
			// A safety net, not a measurement: the edge must end the
			// request on its own long before this.
			conn.SetReadDeadline(time.Now().Add(60 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the edge kept the slow upload open")
			}
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode < 400 {
					t.Fatalf("slow upload answered %d, want it cut off", resp.StatusCode)
				}
			}
		})
	}

	resp, body := do(t, c, "POST", pe.url("/api/v1/datasets"), []byte(strings.Repeat("a", 60000)),
		map[string]string{"Content-Type": "application/octet-stream"})
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("normal upload: %d %s", resp.StatusCode, body)
	}

	close(app.release)
	rest, err := io.ReadAll(streamRd)
	if err != nil || !strings.Contains(string(rest), `"state":"done"`) {
		t.Errorf("event stream cut while bodies were timed out: read %q, %v", rest, err)
	}
}
