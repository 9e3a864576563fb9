package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/notebook"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// A kernel's output is untrusted input: these bound what collect accepts.
const (
	// DefaultMaxOutputBytes is the default cap on the bytes one model may
	// hold. A LoRA adapter of the allowed models and ranks is well under
	// 1 GiB; the cap stops a runaway kernel from filling the bucket.
	DefaultMaxOutputBytes = 2 << 30
	maxMetricsBytes       = 1 << 20
	maxLogBytes           = 64 << 10
	maxOutputFiles        = 200
)

// The files a model cannot do without, as the notebook writes them: the
// PEFT adapter's configuration and weights (safetensors, or the older
// pickle format), and the training metrics.
var (
	adapterConfigFile  = notebook.AdapterDir + "/adapter_config.json"
	adapterWeightFiles = []string{notebook.AdapterDir + "/adapter_model.safetensors", notebook.AdapterDir + "/adapter_model.bin"}
)

// kaggleOwnOutput reports whether name is one of the files Kaggle adds to
// every run's output, whatever the notebook writes: __notebook__.ipynb,
// __results__.html, __output__.json, __results___files/…. They are left
// out of models: the executed notebook repeats the job's configuration
// (the job record holds it), the rendering repeats the log (the job's
// events hold it), neither is needed to load the adapter, and an HTML page
// written by a kernel has no business in the model bucket. The notebook
// never writes a top-level name starting with "__".
func kaggleOwnOutput(name string) bool {
	first, _, _ := strings.Cut(name, "/")
	return strings.HasPrefix(first, "__")
}

// outputFile is a kernel output file chosen for the model.
type outputFile struct {
	name string // relative to the model's prefix
	url  string
	size int64 // as listed; 0 when Kaggle did not say
}

// selectOutputs picks the files of a kernel's output that make the model
// and checks them before anything is downloaded. A non-empty refusal is
// the job's failure message.
func selectOutputs(files []kaggle.OutputFile, maxBytes int64) (chosen []outputFile, skipped []string, refusal string) {
	if len(files) > maxOutputFiles {
		return nil, nil, fmt.Sprintf("the kernel wrote %d output files, more than the %d a model may have", len(files), maxOutputFiles)
	}
	seen := map[string]bool{}
	var total int64
	for _, f := range files {
		if kaggleOwnOutput(f.FileName) {
			continue
		}
		name, ok := cleanOutputName(f.FileName)
		if !ok || seen[name] {
			skipped = append(skipped, f.FileName)
			continue
		}
		u, err := url.Parse(f.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			// Kaggle serves outputs from signed https URLs; anything else
			// is not Kaggle's answer and is not fetched.
			return nil, nil, fmt.Sprintf("Kaggle listed the output file %s at a URL that is not https; nothing was downloaded", name)
		}
		seen[name] = true
		total += max(f.Size, 0)
		chosen = append(chosen, outputFile{name: name, url: f.URL, size: max(f.Size, 0)})
	}
	if total > maxBytes {
		return nil, nil, tooLarge(maxBytes)
	}
	var missing []string
	if !seen[adapterConfigFile] {
		missing = append(missing, adapterConfigFile)
	}
	if !slices.ContainsFunc(adapterWeightFiles, func(n string) bool { return seen[n] }) {
		missing = append(missing, adapterWeightFiles[0])
	}
	if !seen[notebook.MetricsFile] {
		missing = append(missing, notebook.MetricsFile)
	}
	if len(missing) > 0 {
		return nil, nil, "the kernel finished without writing what a model needs (missing " + strings.Join(missing, ", ") +
			"); the kernel's log is in the job's events"
	}
	return chosen, skipped, ""
}

func tooLarge(maxBytes int64) string {
	return fmt.Sprintf("the kernel's output is larger than the %d bytes a model may hold (JOB_MAX_OUTPUT_BYTES)", maxBytes)
}

// collect copies a completed kernel's output into the model bucket and
// creates the model. Output that does not make a model (files missing, too
// large, unusable metrics) fails the job with a message saying so, and
// nothing is left in the bucket.
func (r *Runner) collect(ctx context.Context, j training.Job) error {
	owner, s, _ := strings.Cut(j.KaggleKernel, "/")
	out, err := r.kaggle.KernelOutput(ctx, owner, s)
	if err != nil {
		return err
	}
	if logText := kernelLog(out.Log); logText != "" {
		if j, err = r.repo.UpdateJob(ctx, j.ID, training.StatusCollecting, training.JobUpdate{}, training.EventLog, logText); err != nil {
			return err
		}
	}
	files, skipped, refusal := selectOutputs(out.Files, r.cfg.MaxOutputBytes)
	if refusal != "" {
		return r.fail(ctx, j, refusal)
	}
	if len(skipped) > 0 {
		r.log.Warn("skipping kernel output files with unsafe or repeated names", "job_id", j.ID, "files", len(skipped))
	}
	prefix := "models/" + j.ID + "/"
	m, refusal, err := r.copyOutputs(ctx, j, prefix, files)
	if refusal != "" || err != nil {
		// A later attempt copies everything again; a refused output must
		// not stay behind.
		if rmErr := r.objects.RemovePrefix(ctx, prefix); rmErr != nil {
			r.log.Error("removing a partial model output failed", "job_id", j.ID, "error", rmErr.Error())
		}
		if refusal != "" {
			return r.fail(ctx, j, refusal)
		}
		return err
	}
	// The kernel has ended and its output is stored: its dataset copy is
	// deleted now, before the job succeeds, so the deletion's event comes
	// before the terminal one and a live event stream, which ends at the
	// terminal status, shows it too.
	r.deleteKaggleDatasetNow(ctx, j)
	if _, err := r.repo.CompleteJob(ctx, m); err != nil {
		if errors.Is(err, training.ErrStale) {
			// Cancelled while collecting: the files belong to nobody —
			// unless another worker collected them first and the job
			// succeeded with them.
			if cur, gerr := r.repo.GetJob(ctx, j.ID); gerr == nil && cur.Status != training.StatusSucceeded {
				if rmErr := r.objects.RemovePrefix(ctx, prefix); rmErr != nil {
					r.log.Error("removing output of a cancelled job failed", "job_id", j.ID, "error", rmErr.Error())
				}
			}
		}
		return err
	}
	return nil
}

// copyOutputs streams the chosen files into the bucket under prefix,
// within the output budget, and returns the model they make. A non-empty
// refusal is the job's failure message.
func (r *Runner) copyOutputs(ctx context.Context, j training.Job, prefix string, files []outputFile) (training.Model, string, error) {
	m := training.Model{ID: training.NewID(), JobID: j.ID, BaseModel: j.BaseModel, Prefix: prefix, Files: []training.ModelFile{}}
	budget := r.cfg.MaxOutputBytes
	for _, f := range files {
		var capture *cappedBuffer
		if f.name == notebook.MetricsFile || f.name == adapterConfigFile {
			capture = &cappedBuffer{limit: maxMetricsBytes}
		}
		n, err := r.copyOutput(ctx, f, prefix+f.name, budget, capture)
		if errors.Is(err, errOutputTooLarge) {
			return m, tooLarge(r.cfg.MaxOutputBytes), nil
		}
		if err != nil {
			return m, "", err
		}
		budget -= n
		m.Files = append(m.Files, training.ModelFile{Name: f.name, SizeBytes: n})
		m.SizeBytes += n
		if capture == nil {
			continue
		}
		doc := bytes.TrimSpace(capture.Bytes())
		if capture.overflow || !json.Valid(doc) || !bytes.HasPrefix(doc, []byte("{")) {
			return m, "the kernel wrote a " + f.name + " that is not a JSON object (of at most 1 MiB); the model cannot be used", nil
		}
		if f.name == notebook.MetricsFile {
			m.Metrics = json.RawMessage(doc)
		}
	}
	return m, "", nil
}

// errOutputTooLarge ends a download that would exceed the output budget.
var errOutputTooLarge = errors.New("kernel output exceeds the budget")

// copyOutput streams one file into the bucket, reading at most budget
// bytes, and returns how many it copied.
func (r *Runner) copyOutput(ctx context.Context, f outputFile, key string, budget int64, capture *cappedBuffer) (int64, error) {
	body, size, err := r.kaggle.Download(ctx, f.url)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	if size > budget {
		return 0, errOutputTooLarge
	}
	src := &budgetReader{r: body, left: budget}
	var in io.Reader = src
	if capture != nil {
		in = io.TeeReader(src, capture)
	}
	if err := r.objects.Put(ctx, key, in, size, "application/octet-stream"); err != nil {
		if src.exceeded {
			return 0, errOutputTooLarge
		}
		return 0, fmt.Errorf("storing kernel output: %w", err)
	}
	return src.read, nil
}

// budgetReader fails with errOutputTooLarge once more than left bytes
// arrive, whatever the server announced.
type budgetReader struct {
	r        io.Reader
	left     int64
	read     int64
	exceeded bool
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	b.left -= int64(n)
	if b.left < 0 {
		b.exceeded = true
		return n, errOutputTooLarge
	}
	return n, err
}

// cleanOutputName accepts relative slash-separated names that stay inside
// the model's prefix: no absolute paths, no "..", no empty or "."
// segments, no backslashes or control characters.
func cleanOutputName(name string) (string, bool) {
	if name == "" || strings.HasPrefix(name, "/") || strings.ContainsAny(name, "\\") ||
		strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", false
	}
	c := path.Clean(name)
	if c != name || c == "." || c == ".." || strings.HasPrefix(c, "../") || len(c) > 512 {
		return "", false
	}
	return c, true
}

type cappedBuffer struct {
	bytes.Buffer
	limit    int
	overflow bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if c.Len()+len(p) > c.limit {
		c.overflow = true
		return len(p), nil
	}
	return c.Buffer.Write(p)
}
