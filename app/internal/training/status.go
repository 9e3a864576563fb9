// Package training is the product domain: the use cases on uploaded
// datasets, fine-tuning jobs and their state machine, the models jobs
// produce and the job event log.
//
// It imports no vendor packages. The interfaces it consumes (Repository for
// rows and the task queue, Objects for object storage) are declared here and
// satisfied by the store and blob packages at the edges; package runner
// drives a job's steps through the training backend.
package training

import "slices"

// Status is a job's place in its life cycle.
type Status string

// The job life cycle: queued → uploading → submitted → running → collecting →
// succeeded, with failed and cancelled reachable from every unfinished state.
const (
	StatusQueued     Status = "queued"
	StatusUploading  Status = "uploading"
	StatusSubmitted  Status = "submitted"
	StatusRunning    Status = "running"
	StatusCollecting Status = "collecting"
	StatusSucceeded  Status = "succeeded"
	StatusFailed     Status = "failed"
	StatusCancelled  Status = "cancelled"
)

// Statuses lists every status in life-cycle order.
func Statuses() []Status {
	return []Status{StatusQueued, StatusUploading, StatusSubmitted, StatusRunning,
		StatusCollecting, StatusSucceeded, StatusFailed, StatusCancelled}
}

// ParseStatus returns the status named s, or false.
func ParseStatus(s string) (Status, bool) {
	for _, st := range Statuses() {
		if string(st) == s {
			return st, true
		}
	}
	return "", false
}

// Terminal reports whether a job in s will never change again.
func (s Status) Terminal() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCancelled
}

// UnfinishedStatuses are the statuses of jobs that still need their dataset
// and may still be worked on.
// They are Statuses() without the terminal ones, in the same order.
func UnfinishedStatuses() []Status {
	return slices.DeleteFunc(Statuses(), Status.Terminal)
}

// CanTransition reports whether a job may move from one status to another.
//
// Progress only moves forward, one step at a time, except that a kernel seen
// already complete on its first poll goes from submitted straight to
// collecting (Kaggle gives no guarantee we ever observe "running"). Any
// unfinished job may fail or be cancelled; a finished job never changes.
func CanTransition(from, to Status) bool {
	if from.Terminal() {
		return false
	}
	switch to {
	case StatusFailed, StatusCancelled:
		return true
	}
	switch from {
	case StatusQueued:
		return to == StatusUploading
	case StatusUploading:
		return to == StatusSubmitted
	case StatusSubmitted:
		return to == StatusRunning || to == StatusCollecting
	case StatusRunning:
		return to == StatusCollecting
	case StatusCollecting:
		return to == StatusSucceeded
	}
	return false
}
