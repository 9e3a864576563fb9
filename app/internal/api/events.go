package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

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

// streamEvents sends a job's events as Server-Sent Events: every event has
// its sequence number as id, so a client that reconnects with Last-Event-ID
// (or ?after=) gets exactly the events it missed. Data is the event as
// indented JSON, one "data:" line per JSON line. The stream ends with an
// "end" event once the job has finished and every event was sent, and
// otherwise runs until the client leaves or the server shuts down.
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
	ctx := r.Context()
	job, err := h.svc.GetJob(ctx, id)
	if err != nil {
		return notFound(err, "job", id)
	}
	finished := job.Status.Terminal()

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

	poll := time.NewTicker(eventPollInterval)
	defer poll.Stop()
	heartbeat := time.NewTicker(heartbeatInterval)
	defer heartbeat.Stop()
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
		select {
		case <-ctx.Done():
			return nil
		case <-h.a.Stopping():
			return nil
		case <-heartbeat.C:
			if sse.Comment(w, "heartbeat") != nil || Flush(w) != nil {
				return nil
			}
		case <-poll.C:
		}
	}
}
