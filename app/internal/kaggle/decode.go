package kaggle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Wire types, named after the definitions in Kaggle's KaggleSwagger.yaml and
// the official client's models. They stay unexported: callers use the
// package's own types.

type startBlobUploadRequest struct {
	Type                     string `json:"type"`
	Name                     string `json:"name"`
	ContentLength            int64  `json:"contentLength"`
	ContentType              string `json:"contentType,omitempty"`
	LastModifiedEpochSeconds int64  `json:"lastModifiedEpochSeconds,omitempty"`
}

type startBlobUploadResponse struct {
	Token     string `json:"token"`
	CreateURL string `json:"createUrl"`
}

type datasetUploadFile struct {
	Token       string `json:"token"`
	Description string `json:"description,omitempty"`
}

type datasetNewRequest struct {
	Title        string              `json:"title"`
	Slug         string              `json:"slug"`
	OwnerSlug    string              `json:"ownerSlug"`
	LicenseName  string              `json:"licenseName"`
	Subtitle     string              `json:"subtitle,omitempty"`
	Description  string              `json:"description,omitempty"`
	Files        []datasetUploadFile `json:"files"`
	IsPrivate    bool                `json:"isPrivate"`
	ConvertToCsv bool                `json:"convertToCsv"`
	CategoryIDs  []string            `json:"categoryIds"`
}

type datasetNewResponse struct {
	Ref    string  `json:"ref"`
	URL    string  `json:"url"`
	Status string  `json:"status"`
	Error  *string `json:"error"`
}

type kernelPushRequest struct {
	Slug                   string   `json:"slug"`
	NewTitle               string   `json:"newTitle,omitempty"`
	Text                   string   `json:"text"`
	Language               string   `json:"language"`
	KernelType             string   `json:"kernelType"`
	IsPrivate              bool     `json:"isPrivate"`
	EnableGpu              bool     `json:"enableGpu"`
	EnableInternet         bool     `json:"enableInternet"`
	MachineShape           string   `json:"machineShape,omitempty"`
	DatasetDataSources     []string `json:"datasetDataSources"`
	CompetitionDataSources []string `json:"competitionDataSources"`
	KernelDataSources      []string `json:"kernelDataSources"`
	ModelDataSources       []string `json:"modelDataSources"`
	CategoryIDs            []string `json:"categoryIds"`
}

type kernelPushResponse struct {
	Ref                       string   `json:"ref"`
	URL                       string   `json:"url"`
	VersionNumber             int      `json:"versionNumber"`
	Error                     *string  `json:"error"`
	InvalidTags               []string `json:"invalidTags"`
	InvalidDatasetSources     []string `json:"invalidDatasetSources"`
	InvalidCompetitionSources []string `json:"invalidCompetitionSources"`
	InvalidKernelSources      []string `json:"invalidKernelSources"`
	InvalidModelSources       []string `json:"invalidModelSources"`
}

type kernelStatusResponse struct {
	Status         string  `json:"status"`
	FailureMessage *string `json:"failureMessage"`
}

type kernelOutputFile struct {
	FileName string `json:"fileName"`
	URL      string `json:"url"`
	Size     int64  `json:"size,omitempty"`
}

type kernelOutputResponse struct {
	Files         []kernelOutputFile `json:"files"`
	Log           *string            `json:"log"`
	NextPageToken string             `json:"nextPageToken"`
}

// errorBody is Kaggle's Error definition: {"code": 404, "message": "..."}.
type errorBody struct {
	Code    json.RawMessage `json:"code"`
	Message string          `json:"message"`
	Error   string          `json:"error"`
}

// The decoders below take a complete, size-capped body. They never panic on
// any input (see FuzzDecoders) and reject answers missing what we rely on.

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

func decodeStartBlobUpload(b []byte, out *startBlobUploadResponse) error {
	if err := decodeStrict(b, out); err != nil {
		return err
	}
	if out.Token == "" || out.CreateURL == "" {
		return errors.New("blob upload answer lacks token or createUrl")
	}
	return nil
}

func decodeDatasetNew(b []byte, out *datasetNewResponse) error {
	if err := decodeStrict(b, out); err != nil {
		return err
	}
	if out.Error != nil && *out.Error != "" {
		return &APIError{Status: http.StatusOK, Message: cleanMessage(*out.Error), Err: ErrRejected}
	}
	return nil
}

// decodeDatasetStatus accepts the SDK's answer, an object whose status is
// a DatabundleVersionStatus name ({"status": "READY"}, kagglesdk
// ApiGetDatasetStatusResponse), and the older bare JSON string ("ready").
// It returns DatasetReady, DatasetFailed, DatasetError or DatasetPending.
func decodeDatasetStatus(b []byte) (string, error) {
	var s string
	if err := decodeStrict(b, &s); err != nil {
		var obj struct {
			Status string `json:"status"`
		}
		if err2 := decodeStrict(b, &obj); err2 != nil {
			return "", err
		}
		s = obj.Status
	}
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "databundle_version_status_")
	switch s {
	case "":
		return "", errors.New("dataset status answer is empty")
	case DatasetReady, DatasetError:
		return s, nil
	case DatasetFailed, "deleted":
		// A deleted dataset will never become usable either.
		return DatasetFailed, nil
	}
	// not_yet_persisted, blobs_received, blobs_decompressed,
	// blobs_copied_to_sds, individual_blobs_compressed, reprocessing:
	// Kaggle is still processing.
	return DatasetPending, nil
}

// decodeErrorField accepts an answer whose only meaning is an optional
// "error" (kagglesdk ApiDeleteDatasetResponse); a non-empty one is a
// rejection.
func decodeErrorField(b []byte) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	var r struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	if r.Error != nil && *r.Error != "" {
		return &APIError{Status: http.StatusOK, Message: cleanMessage(*r.Error), Err: ErrRejected}
	}
	return nil
}

func decodeKernelPush(b []byte, out *kernelPushResponse) error {
	if err := decodeStrict(b, out); err != nil {
		return err
	}
	if out.Error != nil && *out.Error != "" {
		return &APIError{Status: http.StatusOK, Message: cleanMessage(*out.Error), Err: ErrRejected}
	}
	// Kaggle pushes the kernel anyway but without the sources it could not
	// resolve; a training notebook without its dataset cannot succeed.
	if len(out.InvalidDatasetSources) > 0 || len(out.InvalidModelSources) > 0 || len(out.InvalidKernelSources) > 0 {
		bad := append(append(append([]string{}, out.InvalidDatasetSources...), out.InvalidModelSources...), out.InvalidKernelSources...)
		return &APIError{Status: http.StatusOK, Message: cleanMessage("invalid data sources: " + strings.Join(bad, ", ")), Err: ErrRejected}
	}
	return nil
}

func decodeKernelStatus(b []byte, out *KernelStatus) error {
	var r kernelStatusResponse
	if err := decodeStrict(b, &r); err != nil {
		return err
	}
	st, ok := normalizeKernelStatus(r.Status)
	if !ok {
		return fmt.Errorf("unknown kernel status %q", cleanMessage(r.Status))
	}
	out.Status = st
	if r.FailureMessage != nil {
		// Kaggle's failure messages can be long tracebacks; keep them whole
		// but printable.
		out.FailureMessage = strings.TrimSpace(strings.Map(func(r rune) rune {
			if r < 0x20 && r != '\n' && r != '\t' {
				return -1
			}
			return r
		}, *r.FailureMessage))
	}
	return nil
}

// normalizeKernelStatus maps the spellings Kaggle's clients have used
// ("complete", "COMPLETE" as the SDK's EnumSerializer writes it,
// "KERNEL_WORKER_STATUS_COMPLETE", which its _from_str also accepts, and
// "KernelWorkerStatus.COMPLETE") to the v1 one.
func normalizeKernelStatus(s string) (string, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "KernelWorkerStatus.")
	s = strings.TrimPrefix(s, "KERNEL_WORKER_STATUS_")
	key := strings.ToLower(strings.ReplaceAll(s, "_", ""))
	switch key {
	case "queued":
		return KernelQueued, true
	case "running":
		return KernelRunning, true
	case "complete":
		return KernelComplete, true
	case "error":
		return KernelError, true
	case "cancelrequested":
		return KernelCancelRequested, true
	case "cancelacknowledged":
		return KernelCancelAcknowledged, true
	case "newscript":
		return KernelNewScript, true
	}
	return "", false
}

func decodeKernelOutput(b []byte, out *kernelOutputResponse) error {
	if err := decodeStrict(b, out); err != nil {
		return err
	}
	for i, f := range out.Files {
		if f.FileName == "" || f.URL == "" {
			return fmt.Errorf("output file %d lacks fileName or url", i)
		}
		if f.Size < 0 {
			out.Files[i].Size = 0
		}
	}
	return nil
}

// decodeErrorMessage pulls a message out of an error body, whatever its
// shape; it returns "" when there is nothing readable.
func decodeErrorMessage(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return ""
	}
	var e errorBody
	if json.Unmarshal(b, &e) == nil {
		if e.Message != "" {
			return cleanMessage(e.Message)
		}
		return cleanMessage(e.Error)
	}
	if b[0] == '<' {
		// An HTML error page from a proxy: nothing useful to show.
		return ""
	}
	return cleanMessage(string(b))
}
