package kaggle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Kernel statuses exactly as Kaggle's v1 API spells them (KernelWorkerStatus).
const (
	KernelQueued             = "queued"
	KernelRunning            = "running"
	KernelComplete           = "complete"
	KernelError              = "error"
	KernelCancelRequested    = "cancelRequested"
	KernelCancelAcknowledged = "cancelAcknowledged"
	KernelNewScript          = "newScript"
)

// Dataset statuses, as DatasetStatus reports them. Kaggle reports READY
// once the files are processed and usable as a kernel source; FAILED and
// DELETED become DatasetFailed; every processing stage becomes
// DatasetPending ("keep polling").
const (
	DatasetReady   = "ready"
	DatasetFailed  = "failed"
	DatasetError   = "error"
	DatasetPending = "pending"
)

// UploadedFile is a blob uploaded with UploadBlob, to attach to a dataset.
type UploadedFile struct {
	// Token is the value UploadBlob returned.
	Token string
	// Name is the file name given to UploadBlob. Kaggle takes the name from
	// the blob itself; it is kept here for the caller's records and is not
	// sent again.
	Name string
}

// NewDataset describes a dataset to create.
type NewDataset struct {
	// Owner is the Kaggle user (normally Client.Username()).
	Owner string
	// Slug is the dataset's URL name: lowercase letters, digits and dashes.
	Slug string
	// Title is shown on Kaggle (6 to 50 characters).
	Title string
	// Private keeps the dataset visible to its owner only. Training data
	// should always be private.
	Private bool
	// Files are the uploaded blobs making up the dataset.
	Files []UploadedFile
	// License is a Kaggle license name; default "unknown".
	License string
}

// KernelPush is a kernel version to push (create or update).
type KernelPush struct {
	// Owner and Slug name the kernel; on the wire they become "owner/slug".
	Owner string
	Slug  string
	// Title is the kernel's title; Kaggle derives the slug from it, so it
	// should slugify to Slug.
	Title string
	// Text is the source: the notebook's .ipynb JSON for KernelType "notebook".
	Text string
	// Language is "python", "r" or "rmarkdown". Default "python".
	Language string
	// KernelType is "notebook" or "script". Default "notebook".
	KernelType string
	// Private, EnableGPU and EnableInternet are the kernel settings.
	Private        bool
	EnableGPU      bool
	EnableInternet bool
	// MachineShape names the accelerator (see MachineShapes). Empty with
	// EnableGPU means the client's Config.MachineShape: a push never sends
	// a bare enableGpu, which Kaggle serves with a P100 that the current
	// image cannot use (Kaggle/kaggle-cli#821, #1151).
	MachineShape string
	// DatasetSources are "owner/dataset-slug" references mounted under
	// /kaggle/input/. The other sources work the same way.
	DatasetSources     []string
	CompetitionSources []string
	KernelSources      []string
	ModelSources       []string
}

// KernelRef identifies a pushed kernel version.
type KernelRef struct {
	// Ref is "owner/slug".
	Ref string
	// URL is the kernel's page on Kaggle.
	URL string
	// VersionNumber is the version this push created.
	VersionNumber int
}

// KernelStatus is the state of a kernel's latest version.
type KernelStatus struct {
	// Status is one of the Kernel* constants (as Kaggle spells it).
	Status string
	// FailureMessage is Kaggle's explanation when Status is KernelError.
	FailureMessage string
}

// Terminal reports whether the kernel will not change state by itself.
func (s KernelStatus) Terminal() bool {
	switch s.Status {
	case KernelComplete, KernelError, KernelCancelAcknowledged:
		return true
	}
	return false
}

// OutputFile is one file a kernel wrote to /kaggle/working.
type OutputFile struct {
	FileName string
	// URL downloads the file (a signed URL; pass it to Download).
	URL string
	// Size in bytes when Kaggle reports it, else 0.
	Size int64
}

// KernelOutput is the output of a kernel's latest version.
type KernelOutput struct {
	Files []OutputFile
	// Log is the kernel's log as Kaggle returns it (a JSON array of
	// {"stream_name","time","data"} records, as a string); may be empty.
	Log string
}

// maxOutputPages bounds kernel output pagination.
const maxOutputPages = 50

// UploadBlob uploads one file for a dataset and returns its blob token.
// It asks Kaggle for an upload URL (POST /blobs/upload), a resumable
// (GCS-style) session, and sends the size bytes of body there in chunks of
// Config.UploadChunkSize: only one chunk is ever in memory, and a dropped
// connection or a server error resumes from the last byte the server
// acknowledged (see upload.go). body may be any reader; it is read once.
func (c *Client) UploadBlob(ctx context.Context, name string, size int64, body io.Reader) (string, error) {
	const op = "blobs/upload"
	if name == "" || strings.ContainsAny(name, "/\\") {
		return "", invalid(op, errors.New("blob name must be a plain file name"))
	}
	if size < 0 {
		return "", invalid(op, errors.New("blob size must not be negative"))
	}
	reqBody, err := marshal(op, startBlobUploadRequest{
		Type: "dataset", Name: name, ContentLength: size, ContentType: contentTypeFor(name),
		LastModifiedEpochSeconds: c.cfg.Now().Unix(),
	})
	if err != nil {
		return "", err
	}
	var start startBlobUploadResponse
	err = c.doJSON(ctx, call{op: op, method: http.MethodPost, url: c.apiURL("/blobs/upload"), body: reqBody, policy: retryIdempotent},
		func(b []byte) error { return decodeStartBlobUpload(b, &start) })
	if err != nil {
		return "", err
	}
	if err := c.resumableUpload(ctx, start.CreateURL, size, body); err != nil {
		return "", err
	}
	return start.Token, nil
}

// CreateDataset creates a dataset from uploaded blobs (POST
// /datasets/create/new) and returns its "owner/slug" reference.
//
// Not blindly retried: only 429 and 503 (the server did not act) are
// retried. After any other failure the dataset may exist; callers check with
// DatasetStatus before creating again.
func (c *Client) CreateDataset(ctx context.Context, d NewDataset) (string, error) {
	const op = "datasets/create"
	if err := checkSlug("owner", d.Owner); err != nil {
		return "", invalid(op, err)
	}
	if err := checkSlug("dataset slug", d.Slug); err != nil {
		return "", invalid(op, err)
	}
	if len(d.Files) == 0 {
		return "", invalid(op, errors.New("a dataset needs at least one file"))
	}
	license := d.License
	if license == "" {
		license = "unknown"
	}
	req := datasetNewRequest{
		Title: d.Title, Slug: d.Slug, OwnerSlug: d.Owner, LicenseName: license,
		IsPrivate: d.Private, ConvertToCsv: false, CategoryIDs: []string{},
	}
	for _, f := range d.Files {
		if f.Token == "" {
			return "", invalid(op, errors.New("file without upload token"))
		}
		req.Files = append(req.Files, datasetUploadFile{Token: f.Token})
	}
	body, err := marshal(op, req)
	if err != nil {
		return "", err
	}
	var resp datasetNewResponse
	err = c.doJSON(ctx, call{op: op, method: http.MethodPost, url: c.apiURL("/datasets/create/new"), body: body, policy: retryUnprocessed},
		func(b []byte) error { return decodeDatasetNew(b, &resp) })
	if err != nil {
		return "", err
	}
	if ref := refFrom(resp.Ref, resp.URL); ref != "" {
		return ref, nil
	}
	return d.Owner + "/" + d.Slug, nil
}

// DatasetStatus returns the processing status of a dataset (GET
// /datasets/status/{owner}/{slug}): DatasetReady when usable.
//
// Like every lookup, it retries "not found" (404, or 403, which Kaggle also
// uses for it) up to Config.MaxAttempts times with backoff before returning
// ErrNotFound: a dataset or kernel just created can be briefly invisible.
func (c *Client) DatasetStatus(ctx context.Context, owner, slug string) (string, error) {
	const op = "datasets/status"
	if err := checkSlug("owner", owner); err != nil {
		return "", invalid(op, err)
	}
	if err := checkSlug("dataset slug", slug); err != nil {
		return "", invalid(op, err)
	}
	var status string
	u := c.apiURL("/datasets/status/" + url.PathEscape(owner) + "/" + url.PathEscape(slug))
	err := c.doJSON(ctx, call{op: op, method: http.MethodGet, url: u, policy: retryLookup},
		func(b []byte) (err error) { status, err = decodeDatasetStatus(b); return err })
	return status, err
}

// PushKernel pushes a new kernel version (POST /kernels/push). Kaggle starts
// running it right away.
//
// Not blindly retried: a push that reached Kaggle starts a (billable, GPU
// quota) run, so only 429 and 503 are retried. After any other failure the
// caller must look at KernelStatus before pushing again.
func (c *Client) PushKernel(ctx context.Context, k KernelPush) (KernelRef, error) {
	const op = "kernels/push"
	if err := checkSlug("owner", k.Owner); err != nil {
		return KernelRef{}, invalid(op, err)
	}
	if err := checkSlug("kernel slug", k.Slug); err != nil {
		return KernelRef{}, invalid(op, err)
	}
	if k.Text == "" {
		return KernelRef{}, invalid(op, errors.New("kernel text is empty"))
	}
	text := k.Text
	if k.KernelType == "" || k.KernelType == "notebook" {
		var err error
		if text, err = notebookForPush(k.Text); err != nil {
			return KernelRef{}, invalid(op, err)
		}
	}
	shape := k.MachineShape
	if k.EnableGPU && shape == "" {
		shape = c.cfg.MachineShape
	}
	if shape != "" {
		if _, err := LookupMachineShape(shape); err != nil {
			return KernelRef{}, invalid(op, err)
		}
	}
	req := kernelPushRequest{
		Slug: k.Owner + "/" + k.Slug, NewTitle: k.Title, Text: text, MachineShape: shape,
		Language: k.Language, KernelType: k.KernelType,
		IsPrivate: k.Private, EnableGpu: k.EnableGPU, EnableInternet: k.EnableInternet,
		DatasetDataSources:     nonNil(k.DatasetSources),
		CompetitionDataSources: nonNil(k.CompetitionSources),
		KernelDataSources:      nonNil(k.KernelSources),
		ModelDataSources:       nonNil(k.ModelSources),
		CategoryIDs:            []string{},
	}
	if req.Language == "" {
		req.Language = "python"
	}
	if req.KernelType == "" {
		req.KernelType = "notebook"
	}
	body, err := marshal(op, req)
	if err != nil {
		return KernelRef{}, err
	}
	var resp kernelPushResponse
	err = c.doJSON(ctx, call{op: op, method: http.MethodPost, url: c.apiURL("/kernels/push"), body: body, policy: retryUnprocessed},
		func(b []byte) error { return decodeKernelPush(b, &resp) })
	if err != nil {
		return KernelRef{}, err
	}
	ref := refFrom(resp.Ref, resp.URL)
	if ref == "" {
		ref = req.Slug
	}
	return KernelRef{Ref: ref, URL: resp.URL, VersionNumber: resp.VersionNumber}, nil
}

// KernelStatus returns the status of a kernel's latest version (GET
// /kernels/status?userName=&kernelSlug=). "Not found" is retried like in
// DatasetStatus, so a poll right after a push does not mistake a kernel
// Kaggle has not shown yet for a missing one.
func (c *Client) KernelStatus(ctx context.Context, owner, slug string) (KernelStatus, error) {
	const op = "kernels/status"
	q, err := kernelQuery(owner, slug)
	if err != nil {
		return KernelStatus{}, invalid(op, err)
	}
	var st KernelStatus
	err = c.doJSON(ctx, call{op: op, method: http.MethodGet, url: c.apiURL("/kernels/status?" + q.Encode()), policy: retryLookup},
		func(b []byte) error { return decodeKernelStatus(b, &st) })
	return st, err
}

// KernelOutput lists the output files and log of a kernel's latest version
// (GET /kernels/output?userName=&kernelSlug=), following pages if Kaggle
// paginates.
func (c *Client) KernelOutput(ctx context.Context, owner, slug string) (KernelOutput, error) {
	const op = "kernels/output"
	q, err := kernelQuery(owner, slug)
	if err != nil {
		return KernelOutput{}, invalid(op, err)
	}
	var out KernelOutput
	for page := 0; page < maxOutputPages; page++ {
		var p kernelOutputResponse
		err := c.doJSON(ctx, call{op: op, method: http.MethodGet, url: c.apiURL("/kernels/output?" + q.Encode()), policy: retryLookup},
			func(b []byte) error { return decodeKernelOutput(b, &p) })
		if err != nil {
			return KernelOutput{}, err
		}
		for _, f := range p.Files {
			out.Files = append(out.Files, OutputFile{FileName: f.FileName, URL: f.URL, Size: f.Size})
		}
		if out.Log == "" && p.Log != nil {
			out.Log = *p.Log
		}
		if p.NextPageToken == "" || p.NextPageToken == q.Get("pageToken") {
			return out, nil
		}
		q.Set("pageToken", p.NextPageToken)
	}
	return KernelOutput{}, invalid(op, fmt.Errorf("more than %d pages of output", maxOutputPages))
}

// Download streams one output file. The caller closes the reader. size is
// the Content-Length, or -1 when the server did not send one. Failures
// before the body starts are retried (429, 5xx, network); a broken body
// surfaces as a read error and the caller restarts the download.
func (c *Client) Download(ctx context.Context, fileURL string) (io.ReadCloser, int64, error) {
	const op = "download"
	u := httpURL(fileURL)
	if u == nil {
		return nil, 0, invalid(op, errors.New("output file URL must be an absolute http(s) URL"))
	}
	resp, err := c.do(ctx, call{op: op, method: http.MethodGet, url: u.String(), policy: retryIdempotent})
	if err != nil {
		return nil, 0, err
	}
	return resp.Body, resp.ContentLength, nil
}

func kernelQuery(owner, slug string) (url.Values, error) {
	if err := checkSlug("owner", owner); err != nil {
		return nil, err
	}
	if err := checkSlug("kernel slug", slug); err != nil {
		return nil, err
	}
	return url.Values{"userName": {owner}, "kernelSlug": {slug}}, nil
}

// checkSlug rejects values that would change the request's path.
func checkSlug(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > 100 || strings.ContainsAny(s, "/\\?#%") || strings.TrimSpace(s) != s {
		return fmt.Errorf("%s %q is not a valid Kaggle name", what, s)
	}
	return nil
}

// refFrom extracts "owner/slug" from a ref or URL Kaggle returned, which
// may look like "owner/slug", "/code/owner/slug" or a full URL.
func refFrom(ref, fullURL string) string {
	for _, s := range []string{ref, fullURL} {
		if s == "" {
			continue
		}
		if u, err := url.Parse(s); err == nil && u.Path != "" {
			s = u.Path
		}
		parts := strings.FieldsFunc(s, func(r rune) bool { return r == '/' })
		if len(parts) >= 2 {
			return parts[len(parts)-2] + "/" + parts[len(parts)-1]
		}
	}
	return ""
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func contentTypeFor(name string) string {
	switch {
	case strings.HasSuffix(name, ".jsonl"):
		return "application/jsonl"
	case strings.HasSuffix(name, ".json"):
		return "application/json"
	}
	return "application/octet-stream"
}

// DeleteDataset deletes one of our datasets on Kaggle (POST
// /dataset/{owner}/{slug}/delete, kagglesdk ApiDeleteDatasetRequest, what
// `kaggle datasets delete` calls). A dataset that is already gone is not an
// error. Kernels cannot be stopped through the public API (see
// docs/kaggle.md), but a deleted dataset stops costing the account's
// private storage.
func (c *Client) DeleteDataset(ctx context.Context, owner, slug string) error {
	const op = "datasets/delete"
	if err := checkSlug("owner", owner); err != nil {
		return invalid(op, err)
	}
	if err := checkSlug("dataset slug", slug); err != nil {
		return invalid(op, err)
	}
	u := c.apiURL("/dataset/" + url.PathEscape(owner) + "/" + url.PathEscape(slug) + "/delete")
	err := c.doJSON(ctx, call{op: op, method: http.MethodPost, url: u, body: []byte(`{}`), policy: retryIdempotent},
		decodeErrorField)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Account is what Check learnt about the credentials.
type Account struct {
	// Username is the Kaggle account the credentials belong to.
	Username string
	// Method is "token" (KAGGLE_API_TOKEN, Bearer) or "key" (KAGGLE_KEY,
	// Basic).
	Method string
}

// Check proves the credentials work with one cheap authenticated call and
// says which account they belong to:
//   - an API token is introspected (POST /oauth2/introspect, what the
//     official client does to learn whose token it holds,
//     kaggle_api_extended.py _introspect_token); it must be active and
//     belong to Username;
//   - a key is sent with Basic auth for Username, so any accepted call
//     proves the pair: GET /kernels/list?user={Username}&pageSize=1 (v1
//     KernelsList) lists at most one of the account's kernels.
func (c *Client) Check(ctx context.Context) (Account, error) {
	const op = "check"
	if c.cfg.Token != "" {
		body, err := marshal(op, map[string]string{"token": c.cfg.Token})
		if err != nil {
			return Account{}, err
		}
		var r struct {
			Active   bool   `json:"active"`
			Username string `json:"username"`
		}
		err = c.doJSON(ctx, call{op: op, method: http.MethodPost, url: c.apiURL("/oauth2/introspect"), body: body, policy: retryIdempotent},
			func(b []byte) error { return json.Unmarshal(b, &r) })
		if err != nil {
			return Account{}, err
		}
		switch {
		case !r.Active:
			return Account{}, &APIError{Op: op, Status: http.StatusOK, Err: ErrUnauthorized, Message: "the API token is expired or revoked"}
		case !strings.EqualFold(r.Username, c.cfg.Username):
			return Account{}, &APIError{Op: op, Status: http.StatusOK, Err: ErrUnauthorized,
				Message: cleanMessage(fmt.Sprintf("the API token belongs to %q, but KAGGLE_USERNAME is %q", r.Username, c.cfg.Username))}
		}
		return Account{Username: r.Username, Method: "token"}, nil
	}
	q := url.Values{"user": {c.cfg.Username}, "page": {"1"}, "pageSize": {"1"}}
	err := c.doJSON(ctx, call{op: op, method: http.MethodGet, url: c.apiURL("/kernels/list?" + q.Encode()), policy: retryIdempotent},
		func(b []byte) error { var v []json.RawMessage; return json.Unmarshal(b, &v) })
	if err != nil {
		return Account{}, err
	}
	return Account{Username: c.cfg.Username, Method: "key"}, nil
}
