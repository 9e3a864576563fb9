// Package kaggletest is an in-process emulator of the Kaggle REST API
// endpoints package kaggle uses, for tests: same paths, payloads and auth as
// Kaggle's v1 API (KaggleSwagger.yaml and the official client), with knobs to
// inject failures (401/403/429 with Retry-After/500/503, slow answers),
// to make datasets become ready, and to drive kernels through their
// statuses. It records every push and upload so tests can assert on them.
//
//	srv := kaggletest.NewServer(t)
//	client := kaggle.New(srv.Config())
//	srv.Fail("/kernels/status", 429, 2).RetryAfter("3")
//	srv.SetKernelStatus("emu-user/my-kernel", kaggle.KernelError, "CUDA out of memory")
//
// Signed storage URLs (blob upload, output download) are served by the same
// server under /_emulator/ and, like the real ones, need no credentials.
package kaggletest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// APIPrefix is where the emulated API lives, like www.kaggle.com/api/v1.
const APIPrefix = "/api/v1"

// Default credentials accepted by a new emulator.
// #nosec G101 -- the emulator's fake credentials; they open nothing real.
const (
	DefaultUsername = "emu-user"
	DefaultKey      = "emu-key-0123456789abcdef"
	DefaultToken    = "KGAT_emu_token_0123456789abcdef"
)

// Options configure an Emulator. Zero values mean the defaults.
type Options struct {
	// Username, Key and Token are the accepted credentials: Basic auth
	// with Username:Key, or Bearer Token. Defaults DefaultUsername etc.
	Username string
	Key      string
	Token    string
	// DatasetPendingPolls is how many status polls of a new dataset answer
	// "pending" before "ready". Default 1; negative means 0.
	DatasetPendingPolls int
	// KernelQueuedPolls and KernelRunningPolls are how many status polls a
	// new kernel version spends queued, then running, before its final
	// status. Defaults 1 and 1; negative means 0.
	KernelQueuedPolls  int
	KernelRunningPolls int
	// BlobDir, if set, receives uploaded blobs as files (streamed). Empty
	// keeps them in memory.
	BlobDir string
	// MaxBlobBytes caps one uploaded blob. Default 1 GiB.
	MaxBlobBytes int64
	// MissingStatus is the status of a lookup of something that does not
	// exist (or is not visible yet): 404, or 403, which Kaggle also answers
	// for things it will not confirm exist (Kaggle/kaggle-api#548).
	// Default 404.
	MissingStatus int
	// InvisibleLookups is how many lookups (dataset status, kernel status,
	// kernel output) of a dataset just created or a kernel just pushed for
	// the first time answer MissingStatus before it shows: Kaggle can take a
	// moment (Kaggle/kaggle-api#284; issue 10, item 4). Default 0.
	InvisibleLookups int
	// OutputPageSize is how many files one kernel output page lists when
	// the request sets no pageSize (kagglesdk ApiListKernelSessionOutputRequest
	// page_size/page_token). Default 2: small pages, so a client that
	// ignores nextPageToken misses files.
	OutputPageSize int
}

// File is one kernel output file. Either Data holds the bytes, or Size > 0
// with nil Data streams Size deterministic bytes (for large-file tests
// without large memory).
type File struct {
	Name string
	Data []byte
	Size int64
}

func (f File) size() int64 {
	if f.Data != nil {
		return int64(len(f.Data))
	}
	return f.Size
}

// Fault describes a failure injected into matching requests.
type Fault struct {
	// Path is matched as a prefix of the request path after /api/v1
	// ("/kernels/status", "/datasets/"), or of the full path for storage
	// URLs ("/_emulator/upload/", "/_emulator/files/").
	Path string
	// Method, if set, must match too.
	Method string
	// Status is the HTTP status to answer; 0 only delays.
	Status int
	// RetryAfter is sent as the Retry-After header when non-empty.
	RetryAfterValue string
	// Message goes in the error body {"code","message"}.
	Message string
	// Delay holds the answer back (respecting the request's context).
	Delay time.Duration
	// AfterHandling runs the real handler first and then answers Status,
	// as if the answer of a processed request was lost.
	AfterHandling bool
	// Drop closes the connection without any answer (a network failure),
	// after the real handler ran when AfterHandling is set.
	Drop bool
	// Times is how many matching requests the fault affects; 0 or less
	// means all of them until ClearFaults.
	Times int

	used int
	mu   *sync.Mutex // the emulator's, once injected
}

// RetryAfter sets the Retry-After header value (seconds or HTTP-date) and
// returns f for chaining. Safe while requests are being served.
func (f *Fault) RetryAfter(v string) *Fault {
	if f.mu != nil {
		f.mu.Lock()
		defer f.mu.Unlock()
	}
	f.RetryAfterValue = v
	return f
}

// Push is one recorded POST /kernels/push.
type Push struct {
	// Ref is "owner/slug".
	Ref string
	// Version is the kernel version this push created.
	Version int
	// Accelerator is what the run got: the machineShape asked for, the old
	// default GPU "NvidiaTeslaP100" for a bare enableGpu (Kaggle's server
	// ignores the notebook's own accelerator and serves a P100 then,
	// Kaggle/kaggle-cli#821 and #490), or "" for no accelerator.
	Accelerator string
	// Request is the body as received.
	Request PushRequest
}

// LegacyGPU is the accelerator a push with enableGpu but no machineShape
// gets (Kaggle/kaggle-cli#821).
const LegacyGPU = "NvidiaTeslaP100"

// MaxKernelSourceBytes is Kaggle's cap on a pushed kernel's text; a larger
// push is refused with 400 "kernel source must be less than 1 megabytes"
// (the answer quoted in issue 10).
const MaxKernelSourceBytes = 1 << 20

// PushRequest is Kaggle's ApiSaveKernelRequest (kagglesdk
// kernels/types/kernels_api_service.py), as the v1 JSON spells it.
type PushRequest struct {
	ID                     *int     `json:"id,omitempty"`
	Slug                   string   `json:"slug"`
	NewTitle               string   `json:"newTitle"`
	Text                   string   `json:"text"`
	Language               string   `json:"language"`
	KernelType             string   `json:"kernelType"`
	IsPrivate              *bool    `json:"isPrivate"`
	EnableGpu              *bool    `json:"enableGpu"`
	EnableTpu              *bool    `json:"enableTpu"`
	EnableInternet         *bool    `json:"enableInternet"`
	DatasetDataSources     []string `json:"datasetDataSources"`
	CompetitionDataSources []string `json:"competitionDataSources"`
	KernelDataSources      []string `json:"kernelDataSources"`
	ModelDataSources       []string `json:"modelDataSources"`
	CategoryIDs            []string `json:"categoryIds"`
	DockerImagePinningType string   `json:"dockerImagePinningType,omitempty"`
	DockerImage            string   `json:"dockerImage,omitempty"`
	SessionTimeoutSeconds  *int     `json:"sessionTimeoutSeconds,omitempty"`
	MachineShape           string   `json:"machineShape,omitempty"`
}

// Blob is one recorded blob upload.
type Blob struct {
	Token        string
	Name         string
	Type         string
	DeclaredSize int64
	// Size and SHA256 describe the bytes received; Complete is true once
	// exactly DeclaredSize bytes arrived.
	Size     int64
	SHA256   string
	Complete bool
	// LargestPut is the longest PUT body received for it: the chunk size
	// the client used.
	LargestPut int64

	path string
	data []byte
}

// Dataset is one dataset created through the API (or added by a test).
type Dataset struct {
	Ref     string
	Title   string
	Private bool
	License string
	// Files are the blob names, in request order.
	Files []string
	// Tokens are the blob tokens, in request order.
	Tokens []string

	polls  int
	status string // forced status; "" follows DatasetPendingPolls
	hidden int    // lookups still answered "missing" (InvisibleLookups)
}

type kernel struct {
	ref             string
	version         int
	sig             string
	polls           int
	manual          bool
	status          string
	failure         string
	final           string
	finalFailure    string
	queued, running int
	files           []File
	log             *string
	hidden          int // lookups still answered "missing"
}

// Emulator is the http.Handler. Use NewServer in tests.
type Emulator struct {
	mu        sync.Mutex
	opts      Options
	final     string
	failure   string
	output    []File
	log       string
	faults    []*Fault
	blobs     map[string]*Blob
	blobSeq   []string
	datasets  map[string]*Dataset
	kernels   map[string]*kernel
	pushes    []Push
	calls     map[string]int
	storage   string // root URL of the storage host; "" serves storage on the API host
	upload    uploadFaults
	storAuth  int // storage requests that carried an Authorization header
	closed    chan struct{}
	closeOnce sync.Once
}

// New returns an emulator with opts.
func New(opts Options) *Emulator {
	if opts.Username == "" {
		opts.Username = DefaultUsername
	}
	if opts.Key == "" {
		opts.Key = DefaultKey
	}
	if opts.Token == "" {
		opts.Token = DefaultToken
	}
	if opts.DatasetPendingPolls == 0 {
		opts.DatasetPendingPolls = 1
	}
	if opts.KernelQueuedPolls == 0 {
		opts.KernelQueuedPolls = 1
	}
	if opts.KernelRunningPolls == 0 {
		opts.KernelRunningPolls = 1
	}
	opts.DatasetPendingPolls = max(opts.DatasetPendingPolls, 0)
	opts.KernelQueuedPolls = max(opts.KernelQueuedPolls, 0)
	opts.KernelRunningPolls = max(opts.KernelRunningPolls, 0)
	if opts.MaxBlobBytes <= 0 {
		opts.MaxBlobBytes = 1 << 30
	}
	if opts.MissingStatus == 0 {
		opts.MissingStatus = http.StatusNotFound
	}
	if opts.OutputPageSize <= 0 {
		opts.OutputPageSize = 2
	}
	return &Emulator{
		opts:     opts,
		final:    "complete",
		output:   DefaultOutputFiles(),
		log:      DefaultLog(),
		blobs:    map[string]*Blob{},
		datasets: map[string]*Dataset{},
		kernels:  map[string]*kernel{},
		calls:    map[string]int{},
		closed:   make(chan struct{}),
	}
}

// Close releases requests held by Delay faults. The Server calls it.
func (e *Emulator) Close() {
	e.closeOnce.Do(func() { close(e.closed) })
}

// Username is the account the emulator accepts.
func (e *Emulator) Username() string { return e.opts.Username }

// ---- knobs -----------------------------------------------------------------

// SetCredentials changes the accepted credentials (empty leaves one as is).
func (e *Emulator) SetCredentials(username, key, token string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if username != "" {
		e.opts.Username = username
	}
	if key != "" {
		e.opts.Key = key
	}
	if token != "" {
		e.opts.Token = token
	}
}

// Fail makes the next times requests under path answer status (times <= 0:
// all of them). It returns the fault for further settings, e.g.
// .RetryAfter("2").
func (e *Emulator) Fail(path string, status, times int) *Fault {
	return e.Inject(Fault{Path: path, Status: status, Times: times})
}

// Slow delays the next times requests under path by d.
func (e *Emulator) Slow(path string, d time.Duration, times int) *Fault {
	return e.Inject(Fault{Path: path, Delay: d, Times: times})
}

// Inject adds a fault. Faults are checked in the order added; the first
// matching one that is not used up applies.
func (e *Emulator) Inject(f Fault) *Fault {
	e.mu.Lock()
	defer e.mu.Unlock()
	fp := &f
	fp.used, fp.mu = 0, &e.mu
	e.faults = append(e.faults, fp)
	return fp
}

// ClearFaults removes every injected fault.
func (e *Emulator) ClearFaults() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults = nil
}

// SetMissingStatus sets the status lookups of missing things answer (404
// or 403, see Options.MissingStatus).
func (e *Emulator) SetMissingStatus(status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.opts.MissingStatus = status
}

// SetInvisibleLookups sets how many lookups of a dataset just created or a
// kernel just pushed for the first time answer "missing".
func (e *Emulator) SetInvisibleLookups(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.opts.InvisibleLookups = max(n, 0)
}

// SetOutputPageSize sets the default page size of kernel output listings.
func (e *Emulator) SetOutputPageSize(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.opts.OutputPageSize = max(n, 1)
}

// SetDatasetPendingPolls sets how many status polls new datasets stay
// "pending".
func (e *Emulator) SetDatasetPendingPolls(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.opts.DatasetPendingPolls = max(n, 0)
}

// SetDatasetStatus forces the status a dataset reports ("ready", "failed",
// "pending"...). The dataset is created if it does not exist.
func (e *Emulator) SetDatasetStatus(ref, status string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := e.datasets[ref]
	if d == nil {
		d = &Dataset{Ref: ref, Title: ref, Private: true}
		e.datasets[ref] = d
	}
	d.status = status
}

// AddDataset registers an existing, ready dataset a kernel may use.
func (e *Emulator) AddDataset(ref string) { e.SetDatasetStatus(ref, "ready") }

// SetKernelProgress sets how new kernel versions progress: queuedPolls
// status polls "queued", runningPolls "running", then final ("complete" or
// "error" with failureMessage).
func (e *Emulator) SetKernelProgress(queuedPolls, runningPolls int, final, failureMessage string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.opts.KernelQueuedPolls = max(queuedPolls, 0)
	e.opts.KernelRunningPolls = max(runningPolls, 0)
	e.final = final
	e.failure = failureMessage
}

// SetKernelStatus pins a kernel's status ("owner/slug"), e.g. "error" with
// "CUDA out of memory". The kernel then stops progressing by itself until
// it is pushed again. An unknown kernel is created (as if pushed earlier).
func (e *Emulator) SetKernelStatus(ref, status, failureMessage string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := e.kernelOrPushed(ref)
	k.manual = true
	k.status = status
	k.failure = failureMessage
}

// SetKernelOutput sets the output files and log of a kernel ("owner/slug").
// A nil log keeps the default.
func (e *Emulator) SetKernelOutput(ref string, files []File, log *string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := e.kernelOrPushed(ref)
	k.files = slices.Clone(files)
	if log != nil {
		k.log = log
	}
}

// SetDefaultOutput sets the output files and log of kernels without their
// own (see SetKernelOutput).
func (e *Emulator) SetDefaultOutput(files []File, log string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.output = slices.Clone(files)
	e.log = log
}

// ---- records ---------------------------------------------------------------

// Pushes returns every kernel push received, in order.
func (e *Emulator) Pushes() []Push {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.pushes)
}

// PushCount is the number of pushes received for ref ("owner/slug").
func (e *Emulator) PushCount(ref string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, p := range e.pushes {
		if p.Ref == ref {
			n++
		}
	}
	return n
}

// Blobs returns every blob upload started, in order.
func (e *Emulator) Blobs() []Blob {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Blob, 0, len(e.blobSeq))
	for _, t := range e.blobSeq {
		b := *e.blobs[t]
		b.data = nil
		out = append(out, b)
	}
	return out
}

// BlobData returns the bytes received for a blob token.
func (e *Emulator) BlobData(token string) ([]byte, error) {
	e.mu.Lock()
	b := e.blobs[token]
	var path string
	var data []byte
	if b != nil {
		path, data = b.path, b.data
	}
	e.mu.Unlock()
	switch {
	case b == nil:
		return nil, fmt.Errorf("no blob with token %q", token)
	case path != "":
		return os.ReadFile(path)
	}
	return slices.Clone(data), nil
}

// Datasets returns the datasets known to the emulator.
func (e *Emulator) Datasets() []Dataset {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Dataset, 0, len(e.datasets))
	for _, d := range e.datasets {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b Dataset) int { return strings.Compare(a.Ref, b.Ref) })
	return out
}

// Calls counts the requests received whose path (after /api/v1 for API
// calls) starts with prefix, whatever their outcome.
func (e *Emulator) Calls(prefix string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for p, c := range e.calls {
		if strings.HasPrefix(p, prefix) {
			n += c
		}
	}
	return n
}

// StorageAuthHeaders counts the storage requests (upload sessions, output
// files) that carried an Authorization header: signed URLs need none, and
// a client must never send its credentials to another host.
func (e *Emulator) StorageAuthHeaders() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.storAuth
}

// ---- serving ---------------------------------------------------------------

// setStorageURL makes storage URLs point at another host, as Kaggle's do
// (signed Google Cloud Storage URLs, Kaggle/kaggle-api
// kaggle_api_extended.py kernels_output downloads them with a bare
// requests.get).
func (e *Emulator) setStorageURL(u string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.storage = strings.TrimRight(u, "/")
}

// storageBase is the root of the storage URLs handed out.
func (e *Emulator) storageBase(r *http.Request) string {
	if e.storage != "" {
		return e.storage
	}
	return baseURL(r)
}

// APIHandler serves only the API paths (under /api/v1).
func (e *Emulator) APIHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, APIPrefix+"/") {
			writeError(w, http.StatusNotFound, "Not found")
			return
		}
		e.ServeHTTP(w, r)
	})
}

// StorageHandler serves only the storage paths (/_emulator/...).
func (e *Emulator) StorageHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, APIPrefix+"/") {
			writeError(w, http.StatusNotFound, "Not found")
			return
		}
		e.ServeHTTP(w, r)
	})
}

func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	api := strings.HasPrefix(path, APIPrefix+"/")
	if api {
		path = strings.TrimPrefix(path, APIPrefix)
	}
	e.mu.Lock()
	e.calls[path]++
	if !api && r.Header.Get("Authorization") != "" {
		e.storAuth++
	}
	fault := e.matchFault(path, r.Method)
	e.mu.Unlock()

	if fault != nil && fault.Delay > 0 {
		t := time.NewTimer(fault.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-e.closed:
			t.Stop()
			writeError(w, http.StatusServiceUnavailable, "emulator closed")
			return
		}
	}
	if fault != nil && (fault.Status != 0 || fault.Drop) {
		if fault.AfterHandling {
			e.route(discardWriter{h: http.Header{}}, r, path, api)
		}
		if fault.Drop {
			hijackClose(w)
			return
		}
		e.writeFault(w, fault)
		return
	}
	e.route(w, r, path, api)
}

func (e *Emulator) writeFault(w http.ResponseWriter, f *Fault) {
	if f.RetryAfterValue != "" {
		w.Header().Set("Retry-After", f.RetryAfterValue)
	}
	msg := f.Message
	if msg == "" {
		msg = http.StatusText(f.Status)
	}
	writeError(w, f.Status, msg)
}

// matchFault returns the first live fault for the request and uses it up.
// Caller holds e.mu.
func (e *Emulator) matchFault(path, method string) *Fault {
	for _, f := range e.faults {
		if !strings.HasPrefix(path, f.Path) || (f.Method != "" && f.Method != method) {
			continue
		}
		if f.Times > 0 && f.used >= f.Times {
			continue
		}
		f.used++
		c := *f
		return &c
	}
	return nil
}

func (e *Emulator) route(w http.ResponseWriter, r *http.Request, path string, api bool) {
	if !api {
		switch {
		case strings.HasPrefix(path, "/_emulator/upload/") && r.Method == http.MethodPut:
			e.handleBlobPut(w, r, strings.TrimPrefix(path, "/_emulator/upload/"))
		case strings.HasPrefix(path, "/_emulator/files/") && r.Method == http.MethodGet:
			e.handleFile(w, r, strings.TrimPrefix(path, "/_emulator/files/"))
		default:
			writeError(w, http.StatusNotFound, "Not found")
		}
		return
	}
	if !e.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="kaggle"`)
		writeError(w, http.StatusUnauthorized, "Unauthenticated")
		return
	}
	switch {
	case path == "/blobs/upload":
		only(http.MethodPost, w, r, e.handleBlobStart)
	case path == "/datasets/create/new":
		only(http.MethodPost, w, r, e.handleDatasetCreate)
	case strings.HasPrefix(path, "/datasets/status/"):
		only(http.MethodGet, w, r, func(w http.ResponseWriter, r *http.Request) {
			e.handleDatasetStatus(w, strings.TrimPrefix(path, "/datasets/status/"))
		})
	case path == "/kernels/push":
		only(http.MethodPost, w, r, e.handleKernelPush)
	case path == "/kernels/status":
		only(http.MethodGet, w, r, e.handleKernelStatus)
	case path == "/kernels/output":
		only(http.MethodGet, w, r, e.handleKernelOutput)
	case path == "/kernels/list":
		only(http.MethodGet, w, r, e.handleKernelList)
	case path == "/oauth2/introspect":
		only(http.MethodPost, w, r, e.handleIntrospect)
	case strings.HasPrefix(path, "/dataset/") && strings.HasSuffix(path, "/delete"):
		// kagglesdk ApiDeleteDatasetRequest: POST
		// /api/v1/dataset/{owner_slug}/{dataset_slug}/delete.
		only(http.MethodPost, w, r, func(w http.ResponseWriter, r *http.Request) {
			e.handleDatasetDelete(w, strings.TrimSuffix(strings.TrimPrefix(path, "/dataset/"), "/delete"))
		})
	default:
		writeError(w, http.StatusNotFound, "Not found")
	}
}

// only runs h for requests with method and answers 405 to the rest.
func only(method string, w http.ResponseWriter, r *http.Request, h http.HandlerFunc) {
	if r.Method != method {
		w.Header().Set("Allow", method)
		writeError(w, http.StatusMethodNotAllowed, "Method not allowed")
		return
	}
	h(w, r)
}

// authorized accepts what Kaggle's clients send: HTTP Basic with the
// username and legacy key (kaggle_api_extended.py
// _authenticate_with_legacy_apikey) or "Authorization: Bearer <token>"
// (kagglesdk kaggle_http_client.py BearerAuth).
func (e *Emulator) authorized(r *http.Request) bool {
	e.mu.Lock()
	user, key, token := e.opts.Username, e.opts.Key, e.opts.Token
	e.mu.Unlock()
	h := r.Header.Get("Authorization")
	if bearer, ok := strings.CutPrefix(h, "Bearer "); ok {
		return subtle.ConstantTimeCompare([]byte(bearer), []byte(token)) == 1
	}
	u, k, ok := r.BasicAuth()
	return ok && subtle.ConstantTimeCompare([]byte(u), []byte(user)) == 1 &&
		subtle.ConstantTimeCompare([]byte(k), []byte(key)) == 1
}

// maxJSONBody caps request bodies the emulator decodes (a notebook is text).
const maxJSONBody = 32 << 20

// decodeBody decodes a JSON request strictly: unknown fields are refused,
// so a client field name that is not in Kaggle's API fails loudly.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid request body: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "invalid request body: trailing data")
		return false
	}
	return true
}

func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func randomToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ---- blobs -----------------------------------------------------------------

type startBlobUploadRequest struct {
	Type                     string `json:"type"`
	Name                     string `json:"name"`
	ContentLength            *int64 `json:"contentLength"`
	ContentType              string `json:"contentType"`
	LastModifiedEpochSeconds int64  `json:"lastModifiedEpochSeconds"`
}

func (e *Emulator) handleBlobStart(w http.ResponseWriter, r *http.Request) {
	var req startBlobUploadRequest
	if !decodeBody(w, r, &req) {
		return
	}
	switch {
	case req.Name == "":
		writeError(w, http.StatusBadRequest, "name is required")
		return
	case req.ContentLength == nil || *req.ContentLength < 0:
		writeError(w, http.StatusBadRequest, "contentLength is required")
		return
	case req.Type != "" && req.Type != "dataset" && req.Type != "model" && req.Type != "inbox":
		writeError(w, http.StatusBadRequest, "type must be dataset, model or inbox")
		return
	case *req.ContentLength > e.opts.MaxBlobBytes:
		writeError(w, http.StatusBadRequest, "file too large")
		return
	}
	token := randomToken()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.blobs[token] = &Blob{Token: token, Name: req.Name, Type: req.Type, DeclaredSize: *req.ContentLength}
	e.blobSeq = append(e.blobSeq, token)
	writeJSON(w, http.StatusOK, map[string]string{
		"token":     token,
		"createUrl": e.storageBase(r) + "/_emulator/upload/" + token,
	})
}

// ---- datasets --------------------------------------------------------------

type datasetNewRequest struct {
	Title        string   `json:"title"`
	Slug         string   `json:"slug"`
	OwnerSlug    string   `json:"ownerSlug"`
	LicenseName  string   `json:"licenseName"`
	Subtitle     string   `json:"subtitle"`
	Description  string   `json:"description"`
	IsPrivate    *bool    `json:"isPrivate"`
	ConvertToCsv *bool    `json:"convertToCsv"`
	CategoryIDs  []string `json:"categoryIds"`
	Files        []struct {
		Token       string          `json:"token"`
		Description string          `json:"description"`
		Columns     json.RawMessage `json:"columns"`
	} `json:"files"`
}

var (
	// slugRE is a URL name: lowercase letters, digits and dashes, at most
	// 50 characters (kaggle_api_extended.py checks dataset slugs for 6-50).
	slugRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,48}[a-z0-9]$`)
	// licenseSet is the licenseName enum of DatasetNewRequest in the last
	// v1 KaggleSwagger.yaml (default "unknown").
	licenseSet = []string{"CC0-1.0", "CC-BY-SA-4.0", "GPL-2.0", "ODbL-1.0", "CC-BY-NC-SA-4.0", "unknown",
		"DbCL-1.0", "CC-BY-SA-3.0", "copyright-authors", "other", "reddit-api", "world-bank"}
)

func (e *Emulator) handleDatasetCreate(w http.ResponseWriter, r *http.Request) {
	var req datasetNewRequest
	if !decodeBody(w, r, &req) {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	fail := func(msg string) {
		writeJSON(w, http.StatusOK, map[string]any{"ref": "", "url": "", "status": "error", "error": msg})
	}
	switch {
	// Title and slug lengths: kaggle_api_extended.py (dataset create
	// validation, 6 to 50 characters each).
	case len(req.Title) < 6 || len(req.Title) > 50:
		fail("The dataset title must be between 6 and 50 characters")
		return
	case !slugRE.MatchString(req.Slug) || len(req.Slug) < 6:
		fail("The dataset slug must be 6 to 50 lowercase letters, digits or dashes")
		return
	case req.OwnerSlug == "":
		writeError(w, http.StatusBadRequest, "ownerSlug is required")
		return
	case req.OwnerSlug != e.opts.Username:
		writeError(w, http.StatusForbidden, "Permission denied")
		return
	case req.LicenseName != "" && !slices.Contains(licenseSet, req.LicenseName):
		writeError(w, http.StatusBadRequest, "unknown licenseName")
		return
	case len(req.Files) == 0:
		fail("A dataset must have at least one file")
		return
	}
	ref := req.OwnerSlug + "/" + req.Slug
	if _, exists := e.datasets[ref]; exists {
		fail("The requested slug is already in use")
		return
	}
	d := &Dataset{Ref: ref, Title: req.Title, License: req.LicenseName, Private: req.IsPrivate == nil || *req.IsPrivate}
	for _, f := range req.Files {
		b := e.blobs[f.Token]
		if b == nil || !b.Complete {
			fail("Invalid or incomplete file token")
			return
		}
		d.Files = append(d.Files, b.Name)
		d.Tokens = append(d.Tokens, b.Token)
	}
	d.hidden = e.opts.InvisibleLookups
	e.datasets[ref] = d
	writeJSON(w, http.StatusOK, map[string]any{
		"ref": ref, "url": baseURL(r) + "/datasets/" + ref, "status": "ok", "error": nil,
	})
}

func (e *Emulator) handleDatasetStatus(w http.ResponseWriter, rest string) {
	owner, slug, ok := strings.Cut(rest, "/")
	if !ok || owner == "" || slug == "" || strings.Contains(slug, "/") {
		writeError(w, http.StatusNotFound, "Not found")
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	d := e.datasets[owner+"/"+slug]
	if d == nil || d.hidden > 0 {
		if d != nil {
			d.hidden--
		}
		e.writeMissing(w, "Dataset not found")
		return
	}
	d.polls++
	status := "BLOBS_RECEIVED"
	switch {
	case d.status != "":
		status = datasetStatusName(d.status)
	case d.polls > e.opts.DatasetPendingPolls:
		status = "READY"
	}
	// kagglesdk ApiGetDatasetStatusResponse: an object whose status is a
	// DatabundleVersionStatus, serialised by name (kaggle_object.py
	// EnumSerializer); the official CLI prints status.name.lower().
	writeJSON(w, http.StatusOK, map[string]any{"status": status})
}

// datasetStatusName spells a status the way the SDK serialises
// DatabundleVersionStatus (datasets/types/dataset_enums.py): "ready" is
// READY, "pending" BLOBS_RECEIVED, anything else upper-cased.
func datasetStatusName(s string) string {
	if s == "pending" {
		return "BLOBS_RECEIVED"
	}
	return strings.ToUpper(s)
}

// writeMissing answers a lookup of something missing or not visible yet.
// Caller holds e.mu.
func (e *Emulator) writeMissing(w http.ResponseWriter, msg string) {
	if e.opts.MissingStatus == http.StatusForbidden {
		msg = "Permission denied"
	}
	writeError(w, e.opts.MissingStatus, msg)
}

func (e *Emulator) handleDatasetDelete(w http.ResponseWriter, ref string) {
	owner, slug, ok := strings.Cut(ref, "/")
	if !ok || owner == "" || slug == "" || strings.Contains(slug, "/") {
		writeError(w, http.StatusNotFound, "Not found")
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if owner != e.opts.Username {
		writeError(w, http.StatusForbidden, "Permission 'datasets.delete' was denied")
		return
	}
	if _, ok := e.datasets[ref]; !ok {
		e.writeMissing(w, "Dataset not found")
		return
	}
	delete(e.datasets, ref)
	// kagglesdk ApiDeleteDatasetResponse: {"error"}.
	writeJSON(w, http.StatusOK, map[string]any{})
}

// ---- kernels ---------------------------------------------------------------

// kernelOrPushed returns the kernel ref, creating it as if version 1 had
// been pushed earlier. The caller holds e.mu.
func (e *Emulator) kernelOrPushed(ref string) *kernel {
	k := e.kernels[ref]
	if k == nil {
		k = e.newKernel(ref)
		k.version = 1
		e.kernels[ref] = k
	}
	return k
}

func (e *Emulator) newKernel(ref string) *kernel {
	return &kernel{
		ref: ref, sig: randomToken(),
		queued: e.opts.KernelQueuedPolls, running: e.opts.KernelRunningPolls,
		final: e.final, finalFailure: e.failure,
	}
}

func (e *Emulator) handleKernelPush(w http.ResponseWriter, r *http.Request) {
	var req PushRequest
	if !decodeBody(w, r, &req) {
		return
	}
	owner, slug, ok := strings.Cut(req.Slug, "/")
	switch {
	case req.ID == nil && (!ok || owner == "" || !slugRE.MatchString(slug)):
		writeError(w, http.StatusBadRequest, "slug must be USERNAME/KERNEL-SLUG")
		return
	case req.ID != nil && req.Slug == "":
		writeError(w, http.StatusBadRequest, "the emulator supports pushes by slug only")
		return
	case req.Text == "":
		writeError(w, http.StatusBadRequest, "text is required")
		return
	case !slices.Contains([]string{"python", "r", "rmarkdown"}, req.Language):
		writeError(w, http.StatusBadRequest, "language must be python, r or rmarkdown")
		return
	case !slices.Contains([]string{"script", "notebook"}, req.KernelType):
		writeError(w, http.StatusBadRequest, "kernelType must be script or notebook")
		return
	case len(req.Text) >= MaxKernelSourceBytes:
		// Kaggle's answer to an oversized source, quoted in issue 10.
		writeError(w, http.StatusBadRequest, "kernel source must be less than 1 megabytes")
		return
	}
	if req.KernelType == "notebook" {
		if err := checkNotebook(req.Text); err != nil {
			if errors.Is(err, errListSource) {
				// The official client joins list sources "because the server
				// expects just one" (kaggle_api_extended.py, kernels_push);
				// a list made the server fail with a 500 (issue 10, item 2).
				writeError(w, http.StatusInternalServerError, "An internal server error occurred. Please ensure that your API client is up to date.")
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"error": "Notebook is invalid: " + err.Error()})
			return
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if owner != e.opts.Username {
		writeError(w, http.StatusForbidden, "Permission denied")
		return
	}
	var invalid []string
	for _, ds := range req.DatasetDataSources {
		if _, ok := e.datasets[ds]; !ok {
			invalid = append(invalid, ds)
		}
	}
	ref := req.Slug
	k := e.kernels[ref]
	version := 1
	if k != nil {
		version = k.version + 1
	}
	nk := e.newKernel(ref)
	nk.version = version
	if k != nil {
		nk.files, nk.log = k.files, k.log
	} else {
		nk.hidden = e.opts.InvisibleLookups
	}
	e.kernels[ref] = nk
	accel := req.MachineShape
	if accel == "" && req.EnableGpu != nil && *req.EnableGpu {
		accel = LegacyGPU
	}
	e.pushes = append(e.pushes, Push{Ref: ref, Version: version, Accelerator: accel, Request: req})
	writeJSON(w, http.StatusOK, map[string]any{
		"ref": ref, "url": baseURL(r) + "/code/" + ref, "versionNumber": version, "error": nil,
		// kagglesdk ApiSaveKernelResponse: Kaggle accepts the push but
		// lists the sources it could not resolve.
		"invalidTags": []string{}, "invalidDatasetSources": nonNil(invalid),
		"invalidCompetitionSources": []string{}, "invalidKernelSources": []string{},
	})
}

// errListSource marks a cell source sent as a list of lines.
var errListSource = errors.New("cell source is a list of lines, not one string")

// checkNotebook does what Kaggle's notebook import needs: nbformat 4 JSON
// with a list of cells whose sources are single strings.
func checkNotebook(text string) error {
	var nb struct {
		NBFormat *int `json:"nbformat"`
		Cells    []struct {
			CellType string          `json:"cell_type"`
			Source   json.RawMessage `json:"source"`
		} `json:"cells"`
		Metadata map[string]any `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(text), &nb); err != nil {
		return errors.New("not JSON")
	}
	if nb.NBFormat == nil || *nb.NBFormat != 4 {
		return errors.New("nbformat must be 4")
	}
	if len(nb.Cells) == 0 {
		return errors.New("no cells")
	}
	for i, c := range nb.Cells {
		if c.CellType != "code" && c.CellType != "markdown" && c.CellType != "raw" {
			return fmt.Errorf("cell %d has type %q", i, c.CellType)
		}
		var s string
		var ss []string
		if json.Unmarshal(c.Source, &s) != nil {
			if json.Unmarshal(c.Source, &ss) == nil {
				return fmt.Errorf("cell %d: %w", i, errListSource)
			}
			return fmt.Errorf("cell %d source is not text", i)
		}
	}
	return nil
}

func (e *Emulator) kernelFromQuery(w http.ResponseWriter, r *http.Request) *kernel {
	q := r.URL.Query()
	user, slug := q.Get("userName"), q.Get("kernelSlug")
	if user == "" || slug == "" {
		writeError(w, http.StatusBadRequest, "userName and kernelSlug are required")
		return nil
	}
	k := e.kernels[user+"/"+slug]
	if k == nil || k.hidden > 0 {
		if k != nil {
			k.hidden--
		}
		e.writeMissing(w, "Not found")
		return nil
	}
	return k
}

func (e *Emulator) handleKernelStatus(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := e.kernelFromQuery(w, r)
	if k == nil {
		return
	}
	status, failure := k.advance()
	var fm any
	if failure != "" {
		fm = failure
	}
	// kagglesdk ApiGetKernelSessionStatusResponse: status is a
	// KernelWorkerStatus serialised by name (kaggle_object.py
	// EnumSerializer._to_str returns v.name: "COMPLETE", "CANCEL_REQUESTED").
	writeJSON(w, http.StatusOK, map[string]any{"status": kernelStatusName(status), "failureMessage": fm})
}

// kernelStatusName spells a status ("complete", "cancelRequested") as the
// SDK's KernelWorkerStatus enum name (kernels/types/kernels_enums.py).
func kernelStatusName(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// advance counts a status poll and returns the status it reports.
func (k *kernel) advance() (string, string) {
	if k.manual {
		return k.status, k.failure
	}
	k.polls++
	switch {
	case k.polls <= k.queued:
		k.status, k.failure = "queued", ""
	case k.polls <= k.queued+k.running:
		k.status, k.failure = "running", ""
	default:
		k.status, k.failure = k.final, k.finalFailure
	}
	return k.status, k.failure
}

func (e *Emulator) handleKernelOutput(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := e.kernelFromQuery(w, r)
	if k == nil {
		return
	}
	q := r.URL.Query()
	pageSize := e.opts.OutputPageSize
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, "pageSize must be a positive number")
			return
		}
		pageSize = n
	}
	offset := 0
	if tok := q.Get("pageToken"); tok != "" {
		n, err := parsePageToken(tok)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid pageToken")
			return
		}
		offset = n
	}
	log := e.log
	if k.log != nil {
		log = *k.log
	}
	files := []map[string]any{}
	next := ""
	if k.status == "complete" {
		all := e.filesOf(k)
		end := min(offset+pageSize, len(all))
		for _, f := range all[min(offset, len(all)):end] {
			// kagglesdk ApiKernelSessionOutputFile: {url, fileName}; the URL
			// is a signed storage URL on another host.
			files = append(files, map[string]any{
				"fileName": f.Name,
				"url": fmt.Sprintf("%s/_emulator/files/%s/%d/%s?sig=%s", e.storageBase(r), k.ref, k.version,
					escapePath(f.Name), k.sig),
			})
		}
		if end < len(all) {
			next = pageToken(end)
		}
	}
	if k.status == "error" && k.failure != "" {
		log = logJSON([]string{"Traceback (most recent call last):", k.failure})
	}
	writeJSON(w, http.StatusOK, map[string]any{"files": files, "log": log, "nextPageToken": next})
}

// pageToken is an opaque page token holding an offset.
func pageToken(offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("offset:" + strconv.Itoa(offset)))
}

func parsePageToken(tok string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, err
	}
	v, ok := strings.CutPrefix(string(b), "offset:")
	if !ok {
		return 0, errors.New("not a page token")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, errors.New("not a page token")
	}
	return n, nil
}

// handleKernelList answers GET /kernels/list (v1 KaggleSwagger.yaml
// KernelsList: page, pageSize, user, ...) with the user's kernels, a JSON
// array. `app kaggle check` uses it as its cheap authenticated call.
func (e *Emulator) handleKernelList(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	e.mu.Lock()
	defer e.mu.Unlock()
	refs := make([]string, 0, len(e.kernels))
	for ref := range e.kernels {
		if owner, _, _ := strings.Cut(ref, "/"); user == "" || owner == user {
			refs = append(refs, ref)
		}
	}
	slices.Sort(refs)
	if n, err := strconv.Atoi(r.URL.Query().Get("pageSize")); err == nil && n > 0 && n < len(refs) {
		refs = refs[:n]
	}
	out := make([]map[string]any, 0, len(refs))
	for _, ref := range refs {
		_, slug, _ := strings.Cut(ref, "/")
		out = append(out, map[string]any{"ref": ref, "title": slug, "author": e.opts.Username})
	}
	writeJSON(w, http.StatusOK, out)
}

// handleIntrospect answers POST /oauth2/introspect (kagglesdk
// security/types/oauth_service.py IntrospectTokenRequest/Response), which
// the official CLI calls to learn whose API token it holds
// (kaggle_api_extended.py _introspect_token).
func (e *Emulator) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token string `json:"token"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if subtle.ConstantTimeCompare([]byte(req.Token), []byte(e.opts.Token)) != 1 {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"active": true, "username": e.opts.Username, "userId": 4242, "clientId": "kaggle-api", "scope": "",
	})
}

func (e *Emulator) filesOf(k *kernel) []File {
	if k.files != nil {
		return k.files
	}
	return e.output
}

func escapePath(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(p, "%", "%25"), "?", "%3F")
	}
	return strings.Join(parts, "/")
}

// handleFile serves /_emulator/files/{owner}/{slug}/{version}/{name...}.
func (e *Emulator) handleFile(w http.ResponseWriter, r *http.Request, rest string) {
	parts := strings.SplitN(rest, "/", 4)
	if len(parts) != 4 {
		writeError(w, http.StatusNotFound, "Not found")
		return
	}
	ref, name := parts[0]+"/"+parts[1], parts[3]
	version, err := strconv.Atoi(parts[2])
	e.mu.Lock()
	k := e.kernels[ref]
	var file *File
	if k != nil && err == nil && version == k.version &&
		subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("sig")), []byte(k.sig)) == 1 {
		for _, f := range e.filesOf(k) {
			if f.Name == name {
				file = &f
				break
			}
		}
	}
	e.mu.Unlock()
	if file == nil {
		writeError(w, http.StatusForbidden, "Invalid or expired signature")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(file.size(), 10))
	w.WriteHeader(http.StatusOK)
	if file.Data != nil {
		_, _ = w.Write(file.Data)
		return
	}
	_, _ = io.Copy(w, io.LimitReader(&patternReader{}, file.Size))
}

// patternReader yields a deterministic byte stream (byte n is n*31+7), for
// large generated files.
type patternReader struct{ off int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte((p.off+int64(i))*31 + 7) // #nosec G115 -- wrapping to a byte is the pattern
	}
	p.off += int64(len(b))
	return len(b), nil
}

// PatternReader returns a reader of the first n bytes a generated File
// (Data nil, Size n) serves, so tests can compare a download with it.
func PatternReader(n int64) io.Reader { return io.LimitReader(&patternReader{}, n) }

// ---- responses -------------------------------------------------------------

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers Kaggle's Error shape.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"code": status, "message": msg})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// discardWriter swallows the real answer of an AfterHandling fault.
type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d discardWriter) WriteHeader(int)             {}
