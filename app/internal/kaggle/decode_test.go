package kaggle

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-5", 0},
		{"3", 3 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"999999999", 24 * time.Hour},
		{"Sun, 29 Nov 2026 12:01:30 GMT", 90 * time.Second},
		{"Sun, 29 Nov 2026 11:59:00 GMT", 0},
		{"Sunday, 29-Nov-26 12:00:10 GMT", 10 * time.Second},
		{"soon", 0},
		{"1.5", 0},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestRetryable(t *testing.T) {
	netErr := &url.Error{Op: "Get", URL: "https://www.kaggle.com/api/v1/kernels/status", Err: errors.New("connection reset")}
	for _, tc := range []struct {
		name      string
		err       error
		want      bool
		wantAfter time.Duration
	}{
		{"nil", nil, false, 0},
		{"plain error", errors.New("x"), false, 0},
		{"429 with delay", statusError("op", 429, "slow down", 5*time.Second), true, 5 * time.Second},
		{"408", statusError("op", 408, "", 0), true, 0},
		{"500", statusError("op", 500, "", 0), true, 0},
		{"503", statusError("op", 503, "", 0), true, 0},
		{"400", statusError("op", 400, "bad", 0), false, 0},
		{"401", statusError("op", 401, "", 0), false, 0},
		{"403", statusError("op", 403, "", 0), false, 0},
		{"404", statusError("op", 404, "", 0), false, 0},
		{"network", &APIError{Op: "op", Err: netErr}, true, 0},
		{"wrapped network", fmt.Errorf("polling: %w", &APIError{Op: "op", Err: netErr}), true, 0},
		{"caller cancelled", &APIError{Op: "op", Err: context.Canceled}, false, 0},
		{"caller deadline", &APIError{Op: "op", Err: context.DeadlineExceeded}, false, 0},
		{"not configured", &APIError{Op: "op", Err: ErrNotConfigured}, false, 0},
		{"too large", &APIError{Op: "op", Status: 200, Err: ErrResponseTooLarge}, false, 0},
		{"rejected", &APIError{Op: "op", Status: 200, Err: ErrRejected}, false, 0},
		{"invalid", invalid("op", errors.New("bad slug")), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, after := Retryable(tc.err)
			if got != tc.want || after != tc.wantAfter {
				t.Fatalf("Retryable = %v, %v; want %v, %v", got, after, tc.want, tc.wantAfter)
			}
		})
	}
}

func TestStatusErrorSentinels(t *testing.T) {
	for status, want := range map[int]error{401: ErrUnauthorized, 403: ErrForbidden, 404: ErrNotFound, 410: ErrNotFound,
		400: ErrRejected, 409: ErrRejected, 413: ErrRejected, 422: ErrRejected} {
		if err := statusError("kernels/push", status, "", 0); !errors.Is(err, want) {
			t.Errorf("status %d: %v is not %v", status, err, want)
		}
	}
	// On a lookup, Kaggle's 403 means "not found" (Kaggle/kaggle-api#548).
	for _, op := range []string{"datasets/status", "kernels/status", "kernels/output"} {
		if err := statusError(op, 403, "", 0); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrForbidden) {
			t.Errorf("%s 403: %v, want ErrNotFound", op, err)
		}
	}
	for _, status := range []int{408, 429, 500, 502, 503, 504} {
		if err := statusError("kernels/push", status, "", 0); err.Err != nil {
			t.Errorf("status %d: got sentinel %v, want none (retryable)", status, err.Err)
		}
	}
	if err := statusError("op", 401, "", 0); !strings.Contains(err.Error(), "check KAGGLE_USERNAME") {
		t.Errorf("401 message %q does not say what to check", err)
	}
}

func TestDecodeKernelStatusSpellings(t *testing.T) {
	for in, want := range map[string]string{
		`{"status":"complete","failureMessage":null}`:                   KernelComplete,
		`{"status":"COMPLETE"}`:                                         KernelComplete,
		`{"status":"KernelWorkerStatus.CANCEL_ACKNOWLEDGED"}`:           KernelCancelAcknowledged,
		`{"status":"cancelRequested"}`:                                  KernelCancelRequested,
		`{"status":"error","failureMessage":"OOM\u0000 at step 3\n"}`:   KernelError,
		`{"status":"queued","failureMessage":"","extra":{"ignored":1}}`: KernelQueued,
	} {
		var st KernelStatus
		if err := decodeKernelStatus([]byte(in), &st); err != nil || st.Status != want {
			t.Errorf("decode %s = %+v, %v; want status %q", in, st, err, want)
		}
		if strings.ContainsRune(st.FailureMessage, 0) {
			t.Errorf("failure message %q keeps a NUL", st.FailureMessage)
		}
	}
	for _, bad := range []string{`{"status":"exploded"}`, `{}`, `[]`, `"complete"`, `{"status":"running"} {}`} {
		var st KernelStatus
		if err := decodeKernelStatus([]byte(bad), &st); err == nil {
			t.Errorf("decode %s: no error, want one", bad)
		}
	}
}

func TestDecodeDatasetStatusForms(t *testing.T) {
	for in, want := range map[string]string{`"ready"`: "ready", `{"status":"Ready"}`: "ready", `"pending"`: "pending"} {
		if got, err := decodeDatasetStatus([]byte(in)); err != nil || got != want {
			t.Errorf("decode %s = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{``, `""`, `{}`, `42`, `null`} {
		if got, err := decodeDatasetStatus([]byte(bad)); err == nil {
			t.Errorf("decode %q = %q, want an error", bad, got)
		}
	}
}

func TestRefFrom(t *testing.T) {
	for _, tc := range []struct{ ref, url, want string }{
		{"alice/my-kernel", "", "alice/my-kernel"},
		{"/code/alice/my-kernel", "", "alice/my-kernel"},
		{"", "https://www.kaggle.com/code/alice/my-kernel", "alice/my-kernel"},
		{"", "https://www.kaggle.com/datasets/alice/ds", "alice/ds"},
		{"", "", ""},
		{"alone", "", ""},
	} {
		if got := refFrom(tc.ref, tc.url); got != tc.want {
			t.Errorf("refFrom(%q, %q) = %q, want %q", tc.ref, tc.url, got, tc.want)
		}
	}
}

func TestDecodeErrorMessage(t *testing.T) {
	for in, want := range map[string]string{
		`{"code":404,"message":"Not found"}`: "Not found",
		`{"error":"Bad slug"}`:               "Bad slug",
		"<html><body>502</body></html>":      "",
		"plain text\nsecond line":            "plain text second line",
		"":                                   "",
	} {
		if got := decodeErrorMessage([]byte(in)); got != want {
			t.Errorf("decodeErrorMessage(%q) = %q, want %q", in, got, want)
		}
	}
	long := strings.Repeat("é", 1000)
	if got := decodeErrorMessage([]byte(long)); len(got) > maxMessageLen+len("…") || !strings.HasSuffix(got, "…") {
		t.Errorf("long message not capped: %d bytes", len(got))
	}
}

// FuzzDecoders feeds arbitrary bytes to every response decoder: none may
// panic, and accepted answers must satisfy the decoders' promises.
func FuzzDecoders(f *testing.F) {
	for _, seed := range []string{
		`{"token":"t","createUrl":"https://x/u"}`,
		`{"ref":"a/b","url":"https://k/a/b","status":"ok","error":null}`,
		`{"ref":"","error":"The requested slug is already in use"}`,
		`"ready"`, `{"status":"ready"}`,
		`{"ref":"a/b","url":"u","versionNumber":3,"error":null,"invalidDatasetSources":["x/y"]}`,
		`{"status":"error","failureMessage":"CUDA out of memory"}`,
		`{"files":[{"fileName":"metrics.json","url":"https://x/f","size":-4}],"log":"[]","nextPageToken":""}`,
		`{"code":429,"message":"Too many requests"}`,
		`null`, `[`, `{"files":null}`, "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var start startBlobUploadResponse
		if decodeStartBlobUpload(b, &start) == nil && (start.Token == "" || start.CreateURL == "") {
			t.Fatal("accepted a blob answer without token or URL")
		}
		var dn datasetNewResponse
		_ = decodeDatasetNew(b, &dn)
		if s, err := decodeDatasetStatus(b); err == nil && s == "" {
			t.Fatal("accepted an empty dataset status")
		}
		var kp kernelPushResponse
		_ = decodeKernelPush(b, &kp)
		var ks KernelStatus
		if decodeKernelStatus(b, &ks) == nil {
			if _, ok := normalizeKernelStatus(ks.Status); !ok {
				t.Fatalf("accepted unknown status %q", ks.Status)
			}
		}
		var ko kernelOutputResponse
		if decodeKernelOutput(b, &ko) == nil {
			for _, f := range ko.Files {
				if f.FileName == "" || f.URL == "" || f.Size < 0 {
					t.Fatalf("accepted bad output file %+v", f)
				}
			}
		}
		if msg := decodeErrorMessage(b); len(msg) > maxMessageLen+len("…") {
			t.Fatalf("error message of %d bytes escaped the cap", len(msg))
		}
		_ = parseRetryAfter(string(b), time.Unix(0, 0))
		_ = refFrom(string(b), string(b))
		_ = statusError("op", http.StatusTeapot, string(b), 0).Error()
	})
}

func TestParseUploadRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"", 0, true},
		{"bytes=0-99", 100, true},
		{"bytes=0-0", 1, true},
		{"bytes=0-999", 0, false}, // beyond the 500-byte object
		{"bytes=5-9", 0, false},
		{"bytes=0-x", 0, false},
		{"items=0-9", 0, false},
	} {
		got, err := parseUploadRange(tc.in, 500)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%q: got %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
