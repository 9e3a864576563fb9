package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/feed"
	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/sse"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// parseSeq reads an event sequence number (a cursor into a job's events).
func parseSeq(s, field string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, problem.New(problem.CodeInvalid, "%s must be a non-negative integer event id, got %q", field, truncateForMessage(s)).
			WithDetails(problem.Detail{Field: field, Issue: "must be a non-negative integer"})
	}
	return n, nil
}

// eventList is a page of a job's events; pass next_after as ?after= to
// continue.
type eventList struct {
	Data      []training.Event `json:"data"`
	NextAfter int64            `json:"next_after"`
	HasMore   bool             `json:"has_more"`
}

func (h *trainingHandlers) listEvents(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "job")
	if err != nil {
		return err
	}
	q, err := query(r, "after", "limit")
	if err != nil {
		return err
	}
	after, err := parseSeq(q.Get("after"), "after")
	if err != nil {
		return err
	}
	limit, err := training.ParseLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	evs, err := h.svc.ListEvents(r.Context(), id, after, limit+1)
	if err != nil {
		return notFound(err, "job", id)
	}
	out := eventList{Data: evs, NextAfter: after}
	if len(evs) > limit {
		out.Data, out.HasMore = evs[:limit], true
	}
	if n := len(out.Data); n > 0 {
		out.NextAfter = out.Data[n-1].Seq
	}
	return writeJSON(w, http.StatusOK, out)
}

// streamRetryAfter is the Retry-After, in seconds, of a stream refused by
// the caps: streams end when their clients leave, so a place frees soon.
const streamRetryAfter = "10"

// streamEvents sends a job's events as Server-Sent Events: every event has
// its sequence number as id, so a client that reconnects with Last-Event-ID
// (or ?after=) gets exactly the events it missed. Data is the event as
// indented JSON, one "data:" line per JSON line. The stream ends with an
// "end" event once the job has finished and every event was sent, and
// otherwise runs until the client leaves or the server shuts down.
//
// The stream reads the database only when the feed wakes it (a committed
// event of its job, or the listener reconnecting): an idle stream costs no
// queries. It subscribes before its first read, so an event committed
// after that read always wakes it.
func (h *trainingHandlers) streamEvents(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "job")
	if err != nil {
		return err
	}
	q, err := query(r, "after")
	if err != nil {
		return err
	}
	after, err := parseSeq(q.Get("after"), "after")
	if err != nil {
		return err
	}
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		if after, err = parseSeq(last, "Last-Event-ID"); err != nil {
			return err
		}
	}
	if h.a.feed == nil {
		return problem.New(problem.CodeUnavailable, "live event streams are not available on this server; poll GET /api/v1/jobs/{id}/events")
	}
	ctx := r.Context()
	job, err := h.svc.GetJob(ctx, id)
	if err != nil {
		return notFound(err, "job", id)
	}
	finished := job.Status.Terminal()
	sub, err := h.a.feed.Subscribe(job.ID, TokenID(ctx))
	if err != nil {
		return h.streamRefused(w, err)
	}
	defer sub.Close()

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream; charset=utf-8")
	// no-transform keeps proxies (and the edge's encoder) from compressing
	// or buffering the stream; X-Accel-Buffering does the same for nginx.
	hdr.Set("Cache-Control", "no-cache, no-transform")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// Tell the browser how long to wait before reconnecting.
	if _, err := w.Write([]byte("retry: 3000\n\n")); err != nil {
		return nil
	}
	if err := Flush(w); err != nil {
		return nil
	}

	heartbeat := time.NewTicker(heartbeatInterval)
	defer heartbeat.Stop()
	// news waits until the job may have new events (true) or the stream
	// must end (false), keeping the connection alive meanwhile.
	news := func() bool {
		for {
			select {
			case <-ctx.Done():
				return false
			case <-h.a.Stopping():
				return false
			case <-heartbeat.C:
				if sse.Comment(w, "heartbeat") != nil || Flush(w) != nil {
					return false
				}
			case <-sub.Wake():
				return true
			}
		}
	}
	for {
		evs, err := h.svc.EventsAfter(ctx, job.ID, after, training.MaxPageLimit)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err // logged; the client reconnects with Last-Event-ID
		}
		for _, ev := range evs {
			data, err := json.MarshalIndent(ev, "", "  ")
			if err != nil {
				return err
			}
			if err := sse.Write(w, sse.Event{ID: strconv.FormatInt(ev.Seq, 10), Name: string(ev.Kind), Data: string(data)}); err != nil {
				return nil // the client went away
			}
			after = ev.Seq
			if ev.Kind == training.EventStatus && ev.ToStatus.Terminal() {
				finished = true
			}
		}
		if len(evs) > 0 {
			if err := Flush(w); err != nil {
				return nil
			}
			if len(evs) == training.MaxPageLimit {
				continue // more backlog: send it without waiting
			}
		}
		if finished {
			_ = sse.Write(w, sse.Event{Name: "end", Data: `{"reason":"job finished"}`})
			_ = Flush(w)
			return nil
		}
		if !news() {
			return nil
		}
	}
}

// streamRefused answers a stream over the caps with 429 and Retry-After.
func (h *trainingHandlers) streamRefused(w http.ResponseWriter, err error) error {
	w.Header().Set("Retry-After", streamRetryAfter)
	if errors.Is(err, feed.ErrTooManyTokenStreams) {
		return problem.Wrap(err, problem.CodeRateLimited, fmt.Sprintf(
			"this token already has %d live event streams open, the most allowed: close one, or retry after %s seconds",
			h.a.conf.HTTP.MaxEventStreamsPerToken, streamRetryAfter))
	}
	return problem.Wrap(err, problem.CodeRateLimited, fmt.Sprintf(
		"this server already has %d live event streams open, the most allowed: retry after %s seconds",
		h.a.conf.HTTP.MaxEventStreams, streamRetryAfter))
}
