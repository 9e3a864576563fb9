package api

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// multipartOverhead is what a dataset upload's body may carry beyond the
// file itself: the part headers and the name and description fields.
const multipartOverhead = 64 << 10

// heartbeatInterval is how often an idle event stream sends a comment, so
// proxies keep it open and a client that left is noticed.
const heartbeatInterval = 15 * time.Second

// trainingHandlers serve the product's routes: datasets, jobs, job events
// and models.
type trainingHandlers struct {
	a   *API
	svc *training.Service
}

// trainingRoutes registers the domain's routes. They are registered even
// without a database (tests of the router and the spec), and then answer 503.
func (a *API) trainingRoutes() {
	h := &trainingHandlers{a: a}
	if a.repo != nil && a.objects != nil {
		h.svc = training.NewService(a.repo, a.objects, training.ServiceConfig{
			BaseModels: a.conf.Training.BaseModels,
			GPU:        trainingGPU(a.conf.Kaggle.MachineShape),
			// Kaggle names datasets and kernels after their owner, so a
			// token alone is not enough: the username is needed too.
			BackendConfigured: a.conf.Kaggle.Configured(),
			PresignExpiry:     a.conf.S3.PresignExpiry,
		}, a.log)
	}
	upload := max(a.conf.HTTP.MaxUploadBytes, 1) + multipartOverhead
	a.route(http.MethodPost, "/api/v1/datasets", h.with(h.uploadDataset), BodyLimit(upload), NoDeadlines(), UploadSlot())
	a.route(http.MethodGet, "/api/v1/datasets", h.with(h.listDatasets))
	a.route(http.MethodGet, "/api/v1/datasets/{id}", h.with(h.getDataset))
	a.route(http.MethodDelete, "/api/v1/datasets/{id}", h.with(h.deleteDataset))

	a.route(http.MethodPost, "/api/v1/jobs", h.with(h.createJob))
	a.route(http.MethodGet, "/api/v1/jobs", h.with(h.listJobs))
	a.route(http.MethodGet, "/api/v1/jobs/{id}", h.with(h.getJob))
	a.route(http.MethodPost, "/api/v1/jobs/{id}/cancel", h.with(h.cancelJob))
	a.route(http.MethodGet, "/api/v1/jobs/{id}/events", h.with(h.listEvents))
	a.route(http.MethodGet, "/api/v1/jobs/{id}/events/stream", h.with(h.streamEvents), Streaming())

	a.route(http.MethodGet, "/api/v1/models", h.with(h.listModels))
	a.route(http.MethodGet, "/api/v1/models/{id}", h.with(h.getModel))
	a.route(http.MethodGet, "/api/v1/models/{id}/archive", h.with(h.modelArchive), NoDeadlines())
	a.route(http.MethodDelete, "/api/v1/models/{id}", h.with(h.deleteModel))
}

// with refuses requests when the service could not be built.
func (h *trainingHandlers) with(f HandlerFunc) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if h.svc == nil {
			return problem.New(problem.CodeUnavailable, "the service is not connected to its database and object storage")
		}
		return f(w, r)
	}
}

// pathID returns the {id} path parameter, refusing anything but a UUID.
func pathID(r *http.Request, what string) (string, error) {
	id := mux.Vars(r)["id"]
	if !training.ValidID(id) {
		return "", problem.New(problem.CodeInvalid, "malformed %s id %q: want a UUID such as 3f1c2a9e-5b7d-4c1e-9a2f-0e8d6b4c7a11", what, truncateForMessage(id)).
			WithDetails(problem.Detail{Field: "id", Issue: "must be a UUID"})
	}
	return id, nil
}

// queryErrorReason names what url.ParseQuery refused without repeating the
// whole query back.
func queryErrorReason(err error) string {
	var esc url.EscapeError
	if errors.As(err, &esc) {
		return "invalid percent-encoding " + strconv.Quote(string(esc))
	}
	return "invalid separator or encoding"
}

func truncateForMessage(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// query checks that only allowed parameters are present, each at most
// once, and returns them.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	// Not r.URL.Query(): it silently drops pairs it cannot decode, so a
	// mangled filter or cursor would quietly widen the result instead of
	// being refused.
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, problem.New(problem.CodeInvalid, "malformed query string: %s", truncateForMessage(queryErrorReason(err))).
			WithDetails(problem.Detail{Field: "query", Issue: "malformed percent-encoding or separator"})
	}
	for k, v := range q {
		if !slices.Contains(allowed, k) {
			return nil, problem.New(problem.CodeInvalid, "unknown query parameter %q", truncateForMessage(k)).
				WithDetails(problem.Detail{Field: truncateForMessage(k), Issue: "unknown query parameter"})
		}
		if len(v) > 1 {
			return nil, problem.New(problem.CodeInvalid, "query parameter %q is given more than once", k).
				WithDetails(problem.Detail{Field: k, Issue: "given more than once"})
		}
	}
	return q, nil
}

// page reads ?limit= and ?cursor=.
func page(q url.Values) (training.Page, error) {
	limit, err := training.ParseLimit(q.Get("limit"))
	if err != nil {
		return training.Page{}, err
	}
	c, ok, err := training.ParseCursor(q.Get("cursor"))
	if err != nil {
		return training.Page{}, err
	}
	p := training.Page{Limit: limit}
	if ok {
		p.After = &c
	}
	return p, nil
}

// list is the envelope of every list response.
type list[T any] struct {
	Data       []T    `json:"data"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// trainingGPU is the memory plan's view of a Kaggle machine shape. Config
// has checked the shape; a failed lookup leaves the zero GPU, which the
// service plans as Kaggle's default T4.
func trainingGPU(machineShape string) training.GPU {
	shape, err := kaggle.LookupMachineShape(machineShape)
	if err != nil {
		return training.GPU{}
	}
	return training.GPU{Name: shape.Name, MemoryBytes: int64(shape.GPUMemoryGB) * 1e9, BF16: shape.BF16}
}
