// Package feed wakes this instance's live event streams when their job gets
// a new event, and bounds how many streams may run.
//
// One database listener per instance (store.Listen on the job_events
// channel) calls Notify with a job id for every committed event, and WakeAll
// after each (re)connection, since notifications sent while it was
// disconnected are lost. A stream never learns what changed from the feed: a
// wake-up only tells it to read its job's events after the last one it sent,
// so a lost, merged or spurious wake-up costs at most one indexed read and
// can never drop an event. Idle streams cost no database work at all.
package feed

import (
	"errors"
	"sync"
)

// Limits bound the streams of one instance.
type Limits struct {
	// Total is the most streams open at once (APP_MAX_EVENT_STREAMS).
	Total int
	// PerToken is the most streams one API token may hold open
	// (APP_MAX_EVENT_STREAMS_PER_TOKEN).
	PerToken int
}

// Errors Subscribe returns when a limit is reached.
var (
	ErrTooManyStreams      = errors.New("too many live event streams on this server")
	ErrTooManyTokenStreams = errors.New("too many live event streams for this token")
)

// Hub is the in-process fan-out from notifications to streams.
type Hub struct {
	limits Limits

	mu       sync.Mutex
	byJob    map[string]map[*Sub]struct{}
	perToken map[string]int
	total    int
}

// New returns an empty Hub. A limit of zero or less means no limit.
func New(limits Limits) *Hub {
	return &Hub{limits: limits, byJob: map[string]map[*Sub]struct{}{}, perToken: map[string]int{}}
}

// Sub is one stream's subscription to its job's wake-ups.
type Sub struct {
	hub   *Hub
	job   string
	token string
	wake  chan struct{}
	once  sync.Once
}

// Subscribe registers a stream of jobID held by tokenID, or refuses it with
// ErrTooManyStreams or ErrTooManyTokenStreams. Subscribe before the first
// read of the job's events, so nothing committed after that read is missed.
// The caller must Close the Sub.
func (h *Hub) Subscribe(jobID, tokenID string) (*Sub, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.limits.Total > 0 && h.total >= h.limits.Total {
		return nil, ErrTooManyStreams
	}
	if h.limits.PerToken > 0 && h.perToken[tokenID] >= h.limits.PerToken {
		return nil, ErrTooManyTokenStreams
	}
	s := &Sub{hub: h, job: jobID, token: tokenID, wake: make(chan struct{}, 1)}
	if h.byJob[jobID] == nil {
		h.byJob[jobID] = map[*Sub]struct{}{}
	}
	h.byJob[jobID][s] = struct{}{}
	h.perToken[tokenID]++
	h.total++
	return s, nil
}

// Wake is signalled when the job may have new events. Wake-ups coalesce:
// one pending signal stands for any number of notifications.
func (s *Sub) Wake() <-chan struct{} { return s.wake }

// Close ends the subscription and frees its place under the limits. It is
// safe to call more than once.
func (s *Sub) Close() {
	s.once.Do(func() {
		h := s.hub
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.byJob[s.job], s)
		if len(h.byJob[s.job]) == 0 {
			delete(h.byJob, s.job)
		}
		if h.perToken[s.token]--; h.perToken[s.token] <= 0 {
			delete(h.perToken, s.token)
		}
		h.total--
	})
}

// Notify wakes every stream of jobID. It never blocks.
func (h *Hub) Notify(jobID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.byJob[jobID] {
		s.signal()
	}
}

// WakeAll wakes every stream: after the listener (re)connects, any of them
// may have missed a notification.
func (h *Hub) WakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, subs := range h.byJob {
		for s := range subs {
			s.signal()
		}
	}
}

// Streams is the number of open streams (for metrics and tests).
func (h *Hub) Streams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total
}

func (s *Sub) signal() {
	select {
	case s.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}
