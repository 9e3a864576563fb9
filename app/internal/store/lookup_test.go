package store

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
)

// flakyDNS resolves every name to addr, except that the next `fail` lookups
// fail the way a container runtime's DNS does for a moment (EAI_AGAIN).
type flakyDNS struct {
	mu    sync.Mutex
	addr  string
	fail  int
	calls int
}

func (f *flakyDNS) lookup(_ context.Context, host string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail > 0 {
		f.fail--
		return nil, &net.DNSError{Err: "Temporary failure in name resolution", Name: host, IsTemporary: true}
	}
	return []string{f.addr}, nil
}

func (f *flakyDNS) failNext(n int) (calls int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = n
	return f.calls
}

func TestLookupWithRetry(t *testing.T) {
	waits := []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}
	t.Run("a failure that passes is ridden out", func(t *testing.T) {
		dns := &flakyDNS{addr: "10.0.0.7", fail: 2}
		addrs, err := lookupWithRetry(dns.lookup, waits)(context.Background(), "postgres")
		if err != nil || len(addrs) != 1 || addrs[0] != "10.0.0.7" {
			t.Fatalf("got %v, %v; want [10.0.0.7]", addrs, err)
		}
		if dns.calls != 3 {
			t.Fatalf("%d lookups, want 3", dns.calls)
		}
	})
	t.Run("a name that never resolves fails after the waits", func(t *testing.T) {
		dns := &flakyDNS{addr: "10.0.0.7", fail: 100}
		_, err := lookupWithRetry(dns.lookup, waits)(context.Background(), "postgres")
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) {
			t.Fatalf("got %v, want the resolver's error", err)
		}
		if dns.calls != len(waits)+1 {
			t.Fatalf("%d lookups, want %d", dns.calls, len(waits)+1)
		}
	})
	t.Run("the caller's deadline ends the waiting", func(t *testing.T) {
		dns := &flakyDNS{addr: "10.0.0.7", fail: 100}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := lookupWithRetry(dns.lookup, []time.Duration{time.Hour})(ctx, "postgres")
		if err == nil || dns.calls != 1 {
			t.Fatalf("got %v after %d lookups; want the error after 1", err, dns.calls)
		}
	})
}

// TestNewConnectionRidesOutDNSFailure is the rolling-deploy 503: a running
// store whose next connection's host name fails to resolve twice must still
// answer the query (before lookupWithRetry it failed with "unavailable").
func TestNewConnectionRidesOutDNSFailure(t *testing.T) {
	u, err := url.Parse(testenv.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	dns := &flakyDNS{addr: u.Hostname()}
	u.Host = net.JoinHostPort("postgres.test", u.Port())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, Options{URL: u.String(), lookup: dns.lookup}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// Every pooled connection goes; the next query must dial, and its
	// lookups fail twice.
	s.pool.Reset()
	before := dns.failNext(2)
	var one int
	if err := s.db.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("query after a passing DNS failure: %v", mapErr(err))
	}
	if after := dns.failNext(0); after-before < 3 {
		t.Fatalf("%d lookups for the new connection, want at least 3 (two failed)", after-before)
	}
}
