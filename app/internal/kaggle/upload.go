package kaggle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// statusResumeIncomplete is the resumable upload protocol's "308 Resume
// Incomplete": the server holds the bytes its Range header names.
const statusResumeIncomplete = http.StatusPermanentRedirect

// uploadQuantum is the granularity of a GCS resumable upload: every chunk
// but the last must be a multiple of 256 KiB.
const uploadQuantum = 256 << 10

// resumableUpload sends size bytes of body to a resumable upload session,
// the protocol the official client speaks to Kaggle's createUrl
// (kaggle_api_extended.py upload_complete and _resume_upload, after
// https://cloud.google.com/storage/docs/performing-resumable-uploads):
//
//   - each chunk is a PUT with "Content-Range: bytes first-last/size";
//   - 200 or 201 means the object is complete; 308 means the server holds
//     the bytes named by its "Range: bytes=0-N" header (none: nothing yet),
//     and the upload goes on from N+1, resending any part of the chunk the
//     server did not keep;
//   - after a dropped connection, 408, 429 or 5xx the client waits (backoff
//     or Retry-After), asks where the session stands with an empty PUT and
//     "Content-Range: bytes */size", and resumes from there;
//   - 404 or 410 mean the session expired: the whole upload starts again
//     (the caller asks for a new URL).
//
// Only one chunk (Config.UploadChunkSize) is held in memory. Tries that make
// no progress are bounded by Config.MaxAttempts.
func (c *Client) resumableUpload(ctx context.Context, sessionURL string, size int64, body io.Reader) error {
	const op = "blobs/put"
	if httpURL(sessionURL) == nil {
		return invalid(op, errors.New("kaggle returned an invalid upload URL"))
	}
	put := func(contentRange string, chunk []byte) (int64, bool, *APIError) {
		if chunk == nil {
			chunk = []byte{}
		}
		resp, err := c.do(ctx, call{op: op, method: http.MethodPut, url: sessionURL, body: chunk,
			contentType: "application/octet-stream", header: http.Header{"Content-Range": {contentRange}},
			resumeIncomplete: true, policy: retryNever})
		if err != nil {
			var ae *APIError
			errors.As(err, &ae)
			return 0, false, ae
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode != statusResumeIncomplete {
			return size, true, nil
		}
		next, err := parseUploadRange(resp.Header.Get("Range"), size)
		if err != nil {
			return 0, false, &APIError{Op: op, Status: resp.StatusCode, Err: fmt.Errorf("%w: %w", ErrInvalidArgument, err)}
		}
		return next, false, nil
	}

	if size == 0 {
		_, _, err := put("bytes */0", nil)
		if err != nil {
			return err
		}
		return nil
	}
	buf := make([]byte, min(int64(c.cfg.UploadChunkSize), size))
	var (
		acked    int64 // bytes the server holds
		bufStart int64 // offset of buf[0] in the blob
		bufLen   int64 // valid bytes in buf
		failures int   // consecutive tries without progress
	)
	for acked < size {
		if acked >= bufStart+bufLen {
			// The server holds the whole buffer: read the next chunk.
			bufStart = acked
			n, err := io.ReadFull(body, buf[:min(int64(len(buf)), size-acked)])
			bufLen = int64(n)
			if err != nil {
				return invalid(op, fmt.Errorf("reading the file at byte %d of %d: %w", acked+int64(n), size, err))
			}
		}
		if acked < bufStart {
			// The server lost bytes we no longer hold (it should never
			// forget acknowledged bytes); only a new upload can help.
			return &APIError{Op: op, Err: fmt.Errorf("%w: the upload session went back to byte %d", ErrInvalidArgument, acked)}
		}
		chunk := buf[acked-bufStart : bufLen]
		last := bufStart + bufLen - 1
		next, done, apiErr := put(fmt.Sprintf("bytes %d-%d/%d", acked, last, size), chunk)
		for apiErr != nil {
			failures++
			if ok, _ := Retryable(apiErr); !ok || failures >= c.cfg.MaxAttempts {
				return sessionError(apiErr)
			}
			if err := c.pause(ctx, op, failures, apiErr); err != nil {
				return err
			}
			// Ask where the session stands before sending again.
			next, done, apiErr = put(fmt.Sprintf("bytes */%d", size), nil)
		}
		if done {
			return nil
		}
		if next > bufStart+bufLen {
			// The server claims bytes we never sent.
			return &APIError{Op: op, Status: statusResumeIncomplete, Err: fmt.Errorf("%w: the upload session claims %d bytes, only %d were sent", ErrInvalidArgument, next, bufStart+bufLen)}
		}
		if next > acked {
			failures = 0
		} else {
			failures++
			if failures >= c.cfg.MaxAttempts {
				return &APIError{Op: op, Status: statusResumeIncomplete, Err: fmt.Errorf("the upload made no progress at byte %d of %d", acked, size)}
			}
		}
		acked = next
	}
	// Every byte is acknowledged but the server has not said "complete":
	// ask once more.
	if _, done, apiErr := put(fmt.Sprintf("bytes */%d", size), nil); apiErr != nil || !done {
		if apiErr != nil {
			return sessionError(apiErr)
		}
		return &APIError{Op: op, Status: statusResumeIncomplete, Err: errors.New("the upload session holds every byte but is not complete")}
	}
	return nil
}

// sessionError explains an expired upload session (404, 410).
func sessionError(e *APIError) *APIError {
	if e.Status == http.StatusNotFound || e.Status == http.StatusGone {
		out := *e
		out.Err = fmt.Errorf("%w: the upload session expired; start the upload again", ErrNotFound)
		return &out
	}
	return e
}

// parseUploadRange reads a 308's "Range: bytes=0-N" and returns the offset
// to resume at (N+1); no header means the server holds nothing yet.
func parseUploadRange(v string, size int64) (int64, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	first, last, ok := strings.Cut(strings.TrimPrefix(v, "bytes="), "-")
	if !ok || first != "0" {
		return 0, fmt.Errorf("malformed Range %q in a 308 answer", cleanMessage(v))
	}
	n, err := strconv.ParseInt(last, 10, 64)
	if err != nil || n < 0 || n >= size {
		return 0, fmt.Errorf("malformed Range %q in a 308 answer", cleanMessage(v))
	}
	return n + 1, nil
}
