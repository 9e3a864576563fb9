package kaggletest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The upload URL Kaggle hands out (createUrl) is a Google Cloud Storage
// resumable session. The official client speaks that protocol
// (kaggle_api_extended.py upload_complete, _resume_upload,
// _get_bytes_already_uploaded), after
// https://cloud.google.com/storage/docs/performing-resumable-uploads:
//
//   - PUT with "Content-Range: bytes first-last/total" carries a chunk; a
//     PUT without Content-Range carries the whole object;
//   - PUT with an empty body and "Content-Range: bytes */total" asks where
//     the session stands;
//   - the answer is 200 once the object is complete, else "308 Resume
//     Incomplete" with "Range: bytes=0-N" naming what is held (no Range when
//     nothing is);
//   - an unknown or expired session answers 404.

// uploadFaults are the storage misbehaviours a test can ask for.
type uploadFaults struct {
	// dropAfter, when dropTimes > 0, cuts the connection after that many
	// new bytes of a chunk were kept.
	dropAfter int64
	dropTimes int
	// keepAtMost, when > 0, keeps at most that many new bytes of each chunk
	// and answers 308 for the rest (GCS may persist less than was sent).
	keepAtMost int64
}

// DropUploads makes the next times chunk PUTs keep afterBytes new bytes and
// then drop the connection without an answer, like a network failure.
func (e *Emulator) DropUploads(afterBytes int64, times int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.upload.dropAfter, e.upload.dropTimes = afterBytes, times
}

// KeepAtMost makes every chunk PUT keep at most n new bytes and answer 308
// with the Range it holds; 0 keeps everything.
func (e *Emulator) KeepAtMost(n int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.upload.keepAtMost = n
}

// UploadPuts counts the PUTs the storage host received for a blob token,
// status queries included.
func (e *Emulator) UploadPuts(token string) int {
	return e.Calls("/_emulator/upload/" + token)
}

// contentRange is a parsed Content-Range request header.
type contentRange struct {
	query       bool // "bytes */total"
	first, last int64
	total       int64
}

func parseContentRange(v string) (contentRange, error) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return contentRange{}, errors.New("Content-Range must start with \"bytes \"")
	}
	span, totalS, ok := strings.Cut(rest, "/")
	if !ok {
		return contentRange{}, errors.New("Content-Range lacks the total")
	}
	total, err := strconv.ParseInt(totalS, 10, 64)
	if err != nil || total < 0 {
		return contentRange{}, errors.New("Content-Range total is not a number")
	}
	if span == "*" {
		return contentRange{query: true, total: total}, nil
	}
	fs, ls, ok := strings.Cut(span, "-")
	first, err1 := strconv.ParseInt(fs, 10, 64)
	last, err2 := strconv.ParseInt(ls, 10, 64)
	if !ok || err1 != nil || err2 != nil || first < 0 || last < first || last >= total {
		return contentRange{}, errors.New("Content-Range span is malformed")
	}
	return contentRange{first: first, last: last, total: total}, nil
}

func (e *Emulator) handleBlobPut(w http.ResponseWriter, r *http.Request, token string) {
	e.mu.Lock()
	b := e.blobs[token]
	var declared, held int64
	var complete bool
	if b != nil {
		declared, held, complete = b.DeclaredSize, b.Size, b.Complete
		b.LargestPut = max(b.LargestPut, r.ContentLength)
	}
	dir := e.opts.BlobDir
	faults := e.upload
	e.mu.Unlock()
	if b == nil {
		writeError(w, http.StatusNotFound, "No such upload session")
		return
	}
	cr := contentRange{first: 0, last: declared - 1, total: declared}
	if v := r.Header.Get("Content-Range"); v != "" {
		var err error
		if cr, err = parseContentRange(v); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	} else {
		// A PUT without Content-Range uploads the whole object again.
		held = 0
	}
	switch {
	case cr.total != declared:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Content-Range total %d does not match the announced %d bytes", cr.total, declared))
		return
	case cr.query || complete:
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		e.answerUpload(w, token)
		return
	case r.ContentLength != cr.last-cr.first+1:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Content-Length %d does not match Content-Range %d-%d", r.ContentLength, cr.first, cr.last))
		return
	case cr.first > held:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("chunk starts at byte %d but the session holds only %d", cr.first, held))
		return
	}
	// Skip what the session already holds, keep the rest.
	if _, err := io.CopyN(io.Discard, r.Body, held-cr.first); err != nil {
		return
	}
	want := cr.last + 1 - held
	keep := want
	if faults.keepAtMost > 0 {
		keep = min(keep, faults.keepAtMost)
	}
	drop := false
	if faults.dropTimes > 0 && faults.dropAfter < keep {
		keep, drop = faults.dropAfter, true
	}
	n, err := e.appendBlob(b, dir, held, io.LimitReader(r.Body, keep))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "storing blob")
		return
	}
	if drop {
		e.mu.Lock()
		e.upload.dropTimes--
		e.mu.Unlock()
		hijackClose(w)
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	if n < keep {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("received %d of %d bytes", n, keep))
		return
	}
	e.answerUpload(w, token)
}

// appendBlob writes the bytes of body at offset at and records them.
func (e *Emulator) appendBlob(b *Blob, dir string, at int64, body io.Reader) (int64, error) {
	var n int64
	var err error
	if dir != "" {
		path := filepath.Join(dir, "blob-"+b.Token)
		f, ferr := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
		if ferr != nil {
			return 0, ferr
		}
		if err = f.Truncate(at); err == nil {
			if _, err = f.Seek(at, io.SeekStart); err == nil {
				n, err = io.Copy(f, body)
			}
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		e.mu.Lock()
		b.path = path
		e.mu.Unlock()
	} else {
		var buf bytes.Buffer
		n, err = io.Copy(&buf, body)
		e.mu.Lock()
		b.data = append(b.data[:at], buf.Bytes()...)
		e.mu.Unlock()
	}
	e.mu.Lock()
	b.Size = at + n
	e.mu.Unlock()
	return n, err
}

// answerUpload answers with where the session stands: 200 when complete
// (hashing the object), else 308 with the Range held.
func (e *Emulator) answerUpload(w http.ResponseWriter, token string) {
	e.mu.Lock()
	b := e.blobs[token]
	held, declared, path, data := b.Size, b.DeclaredSize, b.path, b.data
	e.mu.Unlock()
	if held < declared {
		if held > 0 {
			w.Header().Set("Range", fmt.Sprintf("bytes=0-%d", held-1))
		}
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusPermanentRedirect)
		return
	}
	h := sha256.New()
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "reading blob")
			return
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			writeError(w, http.StatusInternalServerError, "reading blob")
			return
		}
	} else {
		h.Write(data)
	}
	e.mu.Lock()
	b.SHA256, b.Complete = hex.EncodeToString(h.Sum(nil)), true
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"size": strconv.FormatInt(held, 10)})
}

// hijackClose drops the connection without an answer.
func hijackClose(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
