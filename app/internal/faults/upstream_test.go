//go:build faults

package faults

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle/kaggletest"
	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
)

// hangHeader marks a request the hangProxy holds instead of forwarding.
const hangHeader = "X-Fault-Hang"

// testHeaderTimeout is the edge's EDGE_RESPONSE_HEADER_TIMEOUT in
// TestSlowUpstream, shorter than the production 60 s so the test waits
// less, but like it longer than lb_try_duration (15 s): a GET that timed out
// after lb_try_duration is not tried again, so each hung request is one
// upstream attempt, as in production. (Under lb_try_duration the edge
// retries the GET until lb_try_duration has passed.)
const testHeaderTimeout = 20 * time.Second

// hangProxy sits between the edge and the app: it forwards every request
// to the app, except those carrying hangHeader, which it never answers —
// an app handler stuck on a lock or a dependency without a timeout. It
// counts the held requests and the edge's open connections to it.
type hangProxy struct {
	addr string
	srv  *http.Server

	held, maxHeld   atomic.Int64
	released        atomic.Int64 // held requests whose connection the edge closed
	conns, maxConns atomic.Int64
	mu              sync.Mutex
	states          map[net.Conn]http.ConnState
}

func startHangProxy(t *testing.T, app string) *hangProxy {
	t.Helper()
	target, _ := url.Parse("http://" + app)
	rp := httputil.NewSingleHostReverseProxy(target)
	// Streams (SSE) pass through as they come.
	rp.FlushInterval = -1
	h := &hangProxy{addr: "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)), states: map[net.Conn]http.ConnState{}}
	h.srv = &http.Server{
		Addr:              h.addr,
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get(hangHeader) == "" {
				rp.ServeHTTP(w, r)
				return
			}
			n := h.held.Add(1)
			for {
				old := h.maxHeld.Load()
				if n <= old || h.maxHeld.CompareAndSwap(old, n) {
					break
				}
			}
			<-r.Context().Done() // until the edge gives up on it
			h.held.Add(-1)
			h.released.Add(1)
		}),
		ConnState: func(c net.Conn, s http.ConnState) {
			h.mu.Lock()
			defer h.mu.Unlock()
			switch s {
			case http.StateNew:
				n := h.conns.Add(1)
				if n > h.maxConns.Load() {
					h.maxConns.Store(n)
				}
			case http.StateClosed, http.StateHijacked:
				h.conns.Add(-1)
			}
		},
	}
	ln, err := net.Listen("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = h.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.srv.Shutdown(ctx)
		_ = h.srv.Close()
	})
	return h
}

// slowReader hands out its data in chunks, one per tick.
type slowReader struct {
	data  []byte
	chunk int
	tick  time.Duration
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(r.tick) // the pace of a slow client, not a synchronisation
	n := copy(p[:min(len(p), r.chunk)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestSlowUpstream puts a proxy that never answers marked requests between
// the edge and the app, with EDGE_RESPONSE_HEADER_TIMEOUT at
// testHeaderTimeout. Clients that would wait a minute send hung requests
// at a constant rate: each must get a 504 upstream_unavailable JSON error
// with Retry-After, the edge must close each held upstream connection, and
// held requests never outnumber the clients. Meanwhile normal reads all
// succeed, an upload whose body takes twice the timeout to send is
// accepted, and an event stream opened before the hung requests delivers
// an event long after the timeout.
func TestSlowUpstream(t *testing.T) {
	kag := kaggletest.NewServer(t)
	kag.SetKernelProgress(0, 1<<30, "complete", "")
	var proxy *hangProxy
	s := newStack(t, stackOptions{apps: 1,
		edgeEnv: map[string]string{"EDGE_RESPONSE_HEADER_TIMEOUT": testHeaderTimeout.String()},
		appEnv: map[string]string{
			"KAGGLE_API_URL":       kag.BaseURL,
			"KAGGLE_USERNAME":      kaggletest.DefaultUsername,
			"KAGGLE_KEY":           kaggletest.DefaultKey,
			"KAGGLE_POLL_INTERVAL": "1s",
			"SSL_CERT_FILE":        emulatorCA(t, kag),
		},
		upstream: func(app string) string {
			proxy = startHangProxy(t, app)
			return proxy.addr
		}})
	c := s.client("127.0.0.1", time.Minute)

	// A job whose event stream stays open through the hung requests.
	var ds struct {
		ID string `json:"id"`
	}
	s.apiJSON(t, c, s.uploadRequest("stream-job"), &ds)
	var who struct {
		Training struct {
			BaseModels []string `json:"base_models"`
		} `json:"training"`
	}
	s.apiJSON(t, c, s.request("GET", "/api/v1/whoami", s.token, nil, ""), &who)
	var job jobView
	s.apiJSON(t, c, s.request("POST", "/api/v1/jobs", s.token,
		[]byte(fmt.Sprintf(`{"dataset_id":%q,"base_model":%q}`, ds.ID, who.Training.BaseModels[0])), "application/json"), &job)
	waitFor(t, 3*time.Minute, "the job to reach running", func() bool { return s.jobStatus(c, job.ID) == "running" })
	streamClient := s.client("127.0.0.1", 5*time.Minute)
	resp, err := streamClient.Do(s.request("GET", "/api/v1/jobs/"+job.ID+"/events/stream", s.token, nil, ""))
	if err != nil {
		t.Fatalf("event stream: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("event stream: %d", resp.StatusCode)
	}
	streamOpened := time.Now()
	succeeded := make(chan time.Time, 1)
	var streamLog testenv.SyncBuffer
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			fmt.Fprintln(&streamLog, sc.Text())
			if strings.HasPrefix(sc.Text(), "data:") && strings.Contains(sc.Text(), `"to_status"`) &&
				strings.Contains(sc.Text(), `"succeeded"`) {
				succeeded <- time.Now()
				return
			}
		}
		fmt.Fprintf(&streamLog, "stream ended: %v\n", sc.Err())
	}()

	reads := s.startLoad(t, loadSpec{name: "read", workers: 2, interval: 100 * time.Millisecond, request: s.readRequest})
	const hangWorkers = 4
	hung := s.startLoad(t, loadSpec{name: "hung", workers: hangWorkers, interval: 200 * time.Millisecond, timeout: time.Minute,
		request: func(_, _ int) *http.Request {
			r := s.request("GET", "/api/v1/datasets", s.token, nil, "")
			r.Header.Set(hangHeader, "1")
			return r
		},
		accept: func(resp *http.Response, body []byte) error {
			code, err := checkError(resp, body, http.StatusGatewayTimeout, true)
			if err == nil && code != "upstream_unavailable" {
				err = fmt.Errorf("504 with code %q", code)
			}
			return err
		}})

	// An upload whose body takes longer than the timeout to send.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("name", "slow-upload")
	fw, _ := mw.CreateFormFile("file", "reviews.jsonl")
	for i := 0; buf.Len() < 512<<10; i++ {
		fmt.Fprintf(fw, "{\"text\": \"a slowly uploaded review, number %d\", \"label\": %q}\n", i, []string{"positive", "negative"}[i%2])
	}
	_ = mw.Close()
	// 512 KiB at 20 KiB/s (above the edge's 8 KiB/s minimum body rate):
	// about 25 s.
	chunk := 4 << 10
	tick := (testHeaderTimeout + 5*time.Second) * time.Duration(chunk) / time.Duration(buf.Len())
	up := s.request("POST", "/api/v1/datasets", s.token, nil, mw.FormDataContentType())
	up.Body = io.NopCloser(&slowReader{data: buf.Bytes(), chunk: chunk, tick: tick})
	up.ContentLength = int64(buf.Len())
	uresp, ubody, uploadTook, err := do(c, up)
	if err != nil || uresp.StatusCode != http.StatusCreated {
		t.Fatalf("slow upload after %s: %v %v %.300s", uploadTook, err, uresp, ubody)
	}

	waitFor(t, 3*time.Minute, "12 hung requests answered", func() bool {
		return hung.unavailable.Load()+hung.failed.Load() >= 12
	})
	hung.requireNoFailures(t)

	// The stream outlived the timeout several times over: let the job
	// finish now and read its last event from the same stream.
	kag.SetKernelStatus(kag.Pushes()[0].Ref, "complete", "")
	var lastEvent time.Time
	select {
	case lastEvent = <-succeeded:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the event stream delivered no succeeded event (job %s); it read:\n%s", s.jobStatus(c, job.ID), tail(streamLog.String(), 3000))
	}

	hung.halt()
	reads.halt()
	hung.requireNoFailures(t)
	reads.requireNoFailures(t)
	waitFor(t, 30*time.Second, "every held upstream request released", func() bool { return proxy.held.Load() == 0 })
	if got := proxy.maxHeld.Load(); got > hangWorkers {
		t.Fatalf("up to %d hung requests held at once upstream for %d clients: the edge piles them up", got, hangWorkers)
	}
	// Every connection the edge opens to the app carries one request at a
	// time, and a timed-out one is closed, not pooled: the clients here
	// have at most 4 hung + 2 reads + 1 stream + 1 upload requests
	// outstanding, plus the edge's health check.
	if got := proxy.maxConns.Load(); got > 16 {
		t.Fatalf("%d upstream connections open at once for at most 9 outstanding requests", got)
	}
	if proxy.released.Load() < hung.unavailable.Load() {
		t.Fatalf("%d held requests released upstream for %d 504s", proxy.released.Load(), hung.unavailable.Load())
	}
	t.Logf("RESULT slow upstream: %d hung requests answered 504 upstream_unavailable, slowest %s (timeout %s); "+
		"at most %d held upstream at once, %d released; open upstream connections at most %d; "+
		"upload of %d KiB over %s accepted; event stream delivered an event %s after it opened; reads %s",
		hung.unavailable.Load(), time.Duration(hung.maxLatency.Load()).Round(time.Millisecond), testHeaderTimeout,
		proxy.maxHeld.Load(), proxy.released.Load(), proxy.maxConns.Load(),
		buf.Len()>>10, uploadTook.Round(time.Millisecond), lastEvent.Sub(streamOpened).Round(time.Millisecond), reads.summary())
}
