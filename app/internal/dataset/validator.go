// Package dataset validates uploaded fine-tuning datasets while they stream.
//
// A Validator is an io.Writer: the upload handler writes the file through it
// (typically in an io.MultiWriter next to the object-storage upload) and calls
// Finish for the Report. It does no I/O and starts no goroutine, so an
// abandoned Validator is simply garbage. Memory does not grow with the file:
// at most one record (Options.MaxRecordBytes) is buffered, plus 8 bytes per
// example for duplicate detection up to Options.MaxTrackedExamples, plus the
// label counts (at most Options.MaxLabels entries).
//
// The content is sniffed, never the file name: a first non-space byte '['
// means a JSON array of records, '{' means JSON Lines. docs/datasets.md is
// the user-facing description of the formats, schemas, rules and codes.
package dataset

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"unicode/utf8"
)

// ErrFinished is returned by Write after Finish.
var ErrFinished = errors.New("dataset: write after finish")

// Options tunes the validator. The zero value of any field means its default.
type Options struct {
	// MinExamples is the least number of valid examples a dataset needs.
	// Default 10.
	MinExamples int
	// MaxRecordBytes caps one record's size in bytes; a longer record is an
	// error and is skipped without being buffered. Default 1 MiB.
	MaxRecordBytes int
	// MaxIssues caps the record errors listed in Report.Errors (all are
	// counted in Report.ErrorCount). Default 50.
	MaxIssues int
	// LongExampleChars is the length in characters above which an example
	// draws a long_examples warning: about 4 000 tokens, beyond the maximum
	// sequence length of a LoRA run on a free Kaggle GPU, so such examples
	// get truncated. Default 16 000.
	LongExampleChars int
	// DuplicateWarnRatio is the duplicate ratio above which a duplicates
	// warning is given. Default 0.30.
	DuplicateWarnRatio float64
	// RareLabelRatio is the share of examples under which a label class
	// draws a rare_labels warning. Default 0.01.
	RareLabelRatio float64
	// MaxLabels caps the distinct labels of a text-label dataset, which
	// bounds the label table's memory. Default 1000.
	MaxLabels int
	// MaxLabelChars caps a label's length in characters. Default 200.
	MaxLabelChars int
	// MaxTrackedExamples caps how many examples keep an 8-byte hash for
	// duplicate detection (16 MiB at the default). Default 2 000 000.
	MaxTrackedExamples int
	// PreviewRecords is how many records Report.Preview holds. Default 5.
	PreviewRecords int
	// PreviewRecordBytes caps one preview record's size. Default 2 KiB.
	PreviewRecordBytes int
}

func (o Options) withDefaults() Options {
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt(&o.MinExamples, 10)
	setInt(&o.MaxRecordBytes, 1<<20)
	setInt(&o.MaxIssues, 50)
	setInt(&o.LongExampleChars, 16000)
	setInt(&o.MaxLabels, 1000)
	setInt(&o.MaxLabelChars, 200)
	setInt(&o.MaxTrackedExamples, 2_000_000)
	setInt(&o.PreviewRecords, 5)
	setInt(&o.PreviewRecordBytes, 2048)
	if o.DuplicateWarnRatio <= 0 {
		o.DuplicateWarnRatio = 0.30
	}
	if o.RareLabelRatio <= 0 {
		o.RareLabelRatio = 0.01
	}
	return o
}

// scanState is where the push parser stands between two Write calls.
type scanState int

const (
	stateStart       scanState = iota // BOM and leading whitespace, before the sniffed byte
	stateLines                        // JSON Lines: inside a line
	stateArrayBefore                  // JSON array: expecting a record or ]
	stateArrayRecord                  // JSON array: inside a record
	stateArrayAfter                   // JSON array: after the closing ]
	stateIgnore                       // the rest of the input cannot be interpreted
)

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// Validator checks a dataset written to it in chunks of any size. Create it
// with NewValidator, Write the whole file, then call Finish. Write never
// fails before Finish, so a Validator inside an io.MultiWriter never stops
// the upload: problems are reported by Finish. Not safe for concurrent use.
type Validator struct {
	opts     Options
	state    scanState
	finished bool
	report   *Report

	bytes int64
	line  int // 1-based line of the byte being scanned
	bom   int // BOM bytes matched so far at the very start

	// The record being assembled.
	buf        []byte
	overflow   bool // the record passed MaxRecordBytes; its bytes are dropped
	nonBlank   bool // JSON Lines: the current line has a non-space byte
	recLine    int  // line where the current record starts
	depth      int  // JSON array: bracket depth inside the record
	inString   bool // JSON array: inside a string literal
	escaped    bool // JSON array: the previous byte was a backslash in a string
	afterComma bool // JSON array: a comma came after the last record

	format  Format
	schema  Schema
	decided string // where the schema was decided, for messages ("line 3")

	records     int
	examples    int
	totalLength int64
	maxLength   int
	// lengthCounts counts examples per LengthBucketBounds bucket, the
	// last one for longer examples.
	lengthCounts [len(LengthBucketBounds) + 1]int
	hashSeed     maphash.Seed
	hashes       []uint64
	labels       map[string]int

	longCount      int
	firstLong      Issue
	ignored        []string // distinct ignored field names, bounded
	ignoredRecords int

	fileErrors   []Issue
	recordErrors []Issue
	errorCount   int
	preview      [][]byte
}

// maxIgnoredNames bounds the distinct ignored field names kept for the
// ignored_fields warning; the warning says when there were more.
const maxIgnoredNames = 10

// NewValidator returns a Validator ready for the first Write.
func NewValidator(opts Options) *Validator {
	return &Validator{
		opts:     opts.withDefaults(),
		line:     1,
		hashSeed: maphash.MakeSeed(),
	}
}

// Write feeds the next chunk of the file. It always consumes all of p and
// returns len(p), nil until Finish has been called; then ErrFinished.
func (v *Validator) Write(p []byte) (int, error) {
	if v.finished {
		return 0, ErrFinished
	}
	n := len(p)
	v.bytes += int64(n)
	for len(p) > 0 {
		switch v.state {
		case stateStart:
			p = v.scanStart(p)
		case stateLines:
			p = v.scanLines(p)
		case stateArrayBefore, stateArrayRecord, stateArrayAfter:
			p = v.scanArray(p)
		default:
			p = nil
		}
	}
	return n, nil
}

// scanStart skips a UTF-8 BOM and leading whitespace, then sniffs the format
// from the first other byte.
func (v *Validator) scanStart(p []byte) []byte {
	for i := 0; i < len(p); i++ {
		c := p[i]
		// A BOM is only a BOM at offset 0; p is the whole first chunk(s) here.
		if pos := v.bytes - int64(len(p)) + int64(i); pos < int64(len(utf8BOM)) && int64(v.bom) == pos {
			if c == utf8BOM[pos] {
				v.bom++
				continue
			}
			if pos > 0 {
				v.reject(CodeInvalidUTF8, "the file starts with an incomplete UTF-8 byte order mark")
				return nil
			}
		}
		switch c {
		case ' ', '\t', '\r':
			continue
		case '\n':
			v.line++
			continue
		case '{':
			v.format = FormatJSONL
			v.state = stateLines
			return p[i:]
		case '[':
			v.format = FormatJSONArray
			v.state = stateArrayBefore
			return p[i+1:]
		}
		v.reject(CodeUnsupportedFormat, sniffFailure(c, v.bytes-int64(len(p))+int64(i) == 0))
		return nil
	}
	return nil
}

// sniffFailure explains why content that starts with c is not accepted,
// naming the common mistakes (compressed or UTF-16 files) explicitly.
func sniffFailure(c byte, atStart bool) string {
	const want = "the content is neither a JSON array nor JSON Lines: it must start with '[' or '{'"
	switch {
	case atStart && c == 0x1F:
		return "the file looks gzip-compressed; upload the uncompressed .jsonl or .json file"
	case atStart && (c == 0xFF || c == 0xFE):
		return "the file looks UTF-16 encoded; save it as UTF-8"
	case c >= 0x20 && c < 0x7F:
		return fmt.Sprintf("%s, found %q", want, rune(c))
	}
	return fmt.Sprintf("%s, found byte 0x%02X", want, c)
}

// reject records a file-level error that makes the rest of the input
// meaningless; the remaining bytes are consumed and ignored.
func (v *Validator) reject(code Code, msg string) {
	v.fileError(code, msg)
	v.state = stateIgnore
	v.buf = nil
}

// scanLines splits JSON Lines input at '\n'; each line is one record.
func (v *Validator) scanLines(p []byte) []byte {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		v.appendLine(p)
		return nil
	}
	v.appendLine(p[:i])
	v.endLine()
	v.line++
	return p[i+1:]
}

func (v *Validator) appendLine(p []byte) {
	if len(p) == 0 {
		return
	}
	if !v.nonBlank {
		if k := indexNonSpace(p); k >= 0 {
			v.nonBlank = true
			v.recLine = v.line
		}
	}
	v.appendRecord(p)
}

// appendRecord buffers record bytes up to MaxRecordBytes; past that the
// record is marked oversized and its bytes are dropped, so memory stays
// bounded however long a line is.
func (v *Validator) appendRecord(p []byte) {
	if v.overflow {
		return
	}
	if len(v.buf)+len(p) > v.opts.MaxRecordBytes {
		v.overflow = true
		v.buf = v.buf[:0]
		return
	}
	v.buf = append(v.buf, p...)
}

func (v *Validator) endLine() {
	if v.nonBlank {
		v.records++
		if v.overflow {
			v.recordError(CodeRecordTooLarge, v.recLine, v.records, v.tooLargeMessage())
		} else {
			v.checkRecord(trimSpace(v.buf), v.recLine, v.records)
		}
	}
	v.resetRecord()
}

func (v *Validator) resetRecord() {
	v.buf = v.buf[:0]
	v.overflow = false
	v.nonBlank = false
	v.depth = 0
	v.inString = false
	v.escaped = false
}

func (v *Validator) tooLargeMessage() string {
	return fmt.Sprintf("the record is larger than %d bytes", v.opts.MaxRecordBytes)
}

// scanArray walks a top-level JSON array, cutting it into records at the
// commas that sit outside any string or nested bracket. Each record is then
// parsed on its own, so one malformed record does not hide the others.
func (v *Validator) scanArray(p []byte) []byte {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch v.state {
		case stateArrayBefore:
			switch c {
			case ' ', '\t', '\r':
			case '\n':
				v.line++
			case ']':
				if v.afterComma {
					v.records++
					v.recordError(CodeEmptyRecord, v.line, v.records, "empty record: a comma right before the closing ]")
				}
				v.state = stateArrayAfter
			case ',':
				v.records++
				v.recordError(CodeEmptyRecord, v.line, v.records, "empty record: a comma with no record before it")
				v.afterComma = true
			default:
				v.state = stateArrayRecord
				v.recLine = v.line
				return v.scanArrayRecord(p[i:])
			}
		case stateArrayRecord:
			return v.scanArrayRecord(p[i:])
		case stateArrayAfter:
			switch c {
			case ' ', '\t', '\r':
			case '\n':
				v.line++
			default:
				v.fileError(CodeTrailingData, fmt.Sprintf("unexpected content after the closing ] of the array, on line %d", v.line))
				v.state = stateIgnore
				return nil
			}
		}
	}
	return nil
}

// scanArrayRecord consumes bytes of the current array record up to the comma
// or bracket that ends it, and returns what follows.
func (v *Validator) scanArrayRecord(p []byte) []byte {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if v.inString {
			switch {
			case v.escaped:
				v.escaped = false
			case c == '\\':
				v.escaped = true
			case c == '"':
				v.inString = false
			case c == '\n':
				v.line++
			}
			continue
		}
		switch c {
		case '"':
			v.inString = true
		case '\n':
			v.line++
		case '{', '[':
			v.depth++
		case '}':
			// A stray } must not push the depth below zero, or the commas
			// that follow would stop separating records.
			if v.depth > 0 {
				v.depth--
			}
		case ']':
			if v.depth > 0 {
				v.depth--
				continue
			}
			v.appendRecord(p[:i])
			v.endArrayRecord()
			v.state = stateArrayAfter
			return p[i+1:]
		case ',':
			if v.depth > 0 {
				continue
			}
			v.appendRecord(p[:i])
			v.endArrayRecord()
			v.afterComma = true
			v.state = stateArrayBefore
			return p[i+1:]
		}
	}
	v.appendRecord(p)
	return nil
}

func (v *Validator) endArrayRecord() {
	v.records++
	v.afterComma = false
	if v.overflow {
		v.recordError(CodeRecordTooLarge, v.recLine, v.records, v.tooLargeMessage())
	} else {
		v.checkRecord(trimSpace(v.buf), v.recLine, v.records)
	}
	v.resetRecord()
}

// Finish ends the input and returns the report. It may be called more than
// once and always returns the same report; Write fails after it.
func (v *Validator) Finish() *Report {
	if v.finished {
		return v.report
	}
	v.finished = true
	switch v.state {
	case stateStart:
		if v.bom > 0 && v.bom < len(utf8BOM) {
			v.fileError(CodeInvalidUTF8, "the file starts with an incomplete UTF-8 byte order mark")
		} else {
			v.fileError(CodeEmptyInput, "the file is empty: it contains no records")
		}
	case stateLines:
		if v.nonBlank {
			v.endLine()
		}
	case stateArrayRecord:
		v.endArrayRecord()
		fallthrough
	case stateArrayBefore:
		v.fileError(CodeArrayNotClosed, "the file ends before the closing ] of the JSON array")
	}
	v.buf = nil

	if v.format != "" && v.examples < v.opts.MinExamples {
		v.fileError(CodeTooFewExamples, fmt.Sprintf("the dataset has %d valid examples; at least %d are required", v.examples, v.opts.MinExamples))
	}

	r := &Report{
		Format:     v.format,
		Schema:     v.schema,
		Errors:     append(slices.Clip(v.fileErrors), v.recordErrors...),
		ErrorCount: v.errorCount,
		Warnings:   []Issue{},
		Stats: Stats{
			Records:   v.records,
			Examples:  v.examples,
			MaxLength: v.maxLength,
			Bytes:     v.bytes,
		},
		Preview: v.previewRecords(),
	}
	if r.Errors == nil {
		r.Errors = []Issue{}
	}
	r.Valid = r.ErrorCount == 0
	if v.examples > 0 {
		r.Stats.AvgLength = float64(v.totalLength) / float64(v.examples)
	}
	if v.schema == SchemaTextLabel {
		r.Stats.LabelDistribution = v.labels
	}
	r.Stats.LengthHistogram = v.lengthHistogram()
	r.Stats.DuplicateRatio = duplicateRatio(v.hashes)
	v.hashes = nil
	r.Warnings = v.warnings(r)
	v.report = r
	return r
}

// duplicateRatio sorts the example hashes and returns the share that repeat
// an earlier one.
func duplicateRatio(hashes []uint64) float64 {
	if len(hashes) == 0 {
		return 0
	}
	slices.Sort(hashes)
	dups := 0
	for i := 1; i < len(hashes); i++ {
		if hashes[i] == hashes[i-1] {
			dups++
		}
	}
	return float64(dups) / float64(len(hashes))
}

func (v *Validator) warnings(r *Report) []Issue {
	ws := []Issue{}
	if v.longCount > 0 {
		w := v.firstLong
		w.Message = fmt.Sprintf("%d examples are longer than %d characters (the longest has %d); training truncates them to the job's maximum sequence length",
			v.longCount, v.opts.LongExampleChars, v.maxLength)
		if v.longCount == 1 {
			w.Message = fmt.Sprintf("1 example is longer than %d characters (%d); training truncates it to the job's maximum sequence length",
				v.opts.LongExampleChars, v.maxLength)
		}
		ws = append(ws, w)
	}
	if r.Stats.DuplicateRatio > v.opts.DuplicateWarnRatio {
		ws = append(ws, Issue{Code: CodeDuplicates, Message: fmt.Sprintf(
			"%.1f %% of the examples repeat an earlier example (more than %.0f %%); duplicates make the model memorise them",
			100*r.Stats.DuplicateRatio, 100*v.opts.DuplicateWarnRatio)})
	}
	if v.schema == SchemaTextLabel && v.examples > 0 {
		var rare []string
		for label, n := range v.labels {
			if float64(n) < v.opts.RareLabelRatio*float64(v.examples) {
				rare = append(rare, label)
			}
		}
		if len(rare) > 0 {
			slices.SortFunc(rare, func(a, b string) int {
				if c := v.labels[a] - v.labels[b]; c != 0 {
					return c
				}
				return strings.Compare(a, b)
			})
			const shown = 10
			parts := make([]string, 0, shown)
			for _, l := range rare[:min(shown, len(rare))] {
				parts = append(parts, fmt.Sprintf("%s (%d)", quoteShort(l), v.labels[l]))
			}
			more := ""
			if len(rare) > shown {
				more = fmt.Sprintf(" and %d more", len(rare)-shown)
			}
			ws = append(ws, Issue{Code: CodeRareLabels, Message: fmt.Sprintf(
				"%s under %g %% of the examples: %s%s; the model will rarely predict them",
				plural(len(rare), "label class has", "label classes have"), 100*v.opts.RareLabelRatio, strings.Join(parts, ", "), more)})
		}
	}
	if len(v.ignored) > 0 {
		more := ""
		if len(v.ignored) > maxIgnoredNames {
			more = " and more"
		}
		names := v.ignored[:min(len(v.ignored), maxIgnoredNames)]
		ws = append(ws, Issue{Code: CodeIgnoredFields, Message: fmt.Sprintf(
			"%s fields training ignores: %s%s", plural(v.ignoredRecords, "record has", "records have"), strings.Join(names, ", "), more)})
	}
	return ws
}

// plural writes "1 record has" or "3 records have".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func (v *Validator) fileError(code Code, msg string) {
	v.errorCount++
	v.fileErrors = append(v.fileErrors, Issue{Code: code, Message: msg})
}

func (v *Validator) recordError(code Code, line, record int, msg string) {
	v.errorCount++
	if len(v.recordErrors) < v.opts.MaxIssues {
		v.recordErrors = append(v.recordErrors, Issue{Code: code, Line: line, Record: record, Message: msg})
	}
}

// isSpace reports JSON whitespace (RFC 8259), which is narrower than
// unicode.IsSpace.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

func indexNonSpace(p []byte) int {
	for i, c := range p {
		if !isSpace(c) {
			return i
		}
	}
	return -1
}

func trimSpace(p []byte) []byte {
	for len(p) > 0 && isSpace(p[0]) {
		p = p[1:]
	}
	for len(p) > 0 && isSpace(p[len(p)-1]) {
		p = p[:len(p)-1]
	}
	return p
}

// invalidUTF8At returns the offset of the first byte of p that is not part
// of valid UTF-8, or -1.
func invalidUTF8At(p []byte) int {
	if utf8.Valid(p) {
		return -1
	}
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

// LengthBucketBounds are the inclusive upper bounds, in characters, of the
// length histogram's buckets; a last bucket counts longer examples. Powers
// of two, so short and long datasets both get a readable shape.
var LengthBucketBounds = [...]int{32, 64, 128, 256, 512, 1024, 2048, 4096, 8192}

func lengthBucket(n int) int {
	for i, b := range LengthBucketBounds {
		if n <= b {
			return i
		}
	}
	return len(LengthBucketBounds)
}

// lengthHistogram returns the buckets from the first to the last one that
// holds an example (none without examples).
func (v *Validator) lengthHistogram() []LengthBucket {
	first, last := -1, -1
	for i, c := range v.lengthCounts {
		if c > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return nil
	}
	out := make([]LengthBucket, 0, last-first+1)
	for i := first; i <= last; i++ {
		b := LengthBucket{Count: v.lengthCounts[i]}
		if i < len(LengthBucketBounds) {
			b.UpTo = LengthBucketBounds[i]
		}
		out = append(out, b)
	}
	return out
}
