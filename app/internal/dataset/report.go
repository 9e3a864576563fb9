package dataset

import "encoding/json"

// Format is how records are laid out in the uploaded file.
type Format string

// The formats the validator recognises by sniffing the first non-space byte.
const (
	FormatJSONL     Format = "jsonl"      // one JSON object per line
	FormatJSONArray Format = "json_array" // a single top-level JSON array of objects
)

// Schema is the shape every record of a dataset must have. It is decided by
// the first record that is a valid example of one of the schemas.
type Schema string

// The supported schemas; docs/datasets.md shows an example of each.
const (
	SchemaChat        Schema = "chat"        // {"messages":[{"role","content"}...]}
	SchemaInstruction Schema = "instruction" // {"instruction","input"?,"output"}
	SchemaTextLabel   Schema = "text_label"  // {"text","label"}
)

// Code names the kind of an Issue. Codes are stable: clients may switch on
// them, and docs/datasets.md explains each one.
type Code string

// Error codes: any of them rejects the dataset.
const (
	CodeUnsupportedFormat Code = "unsupported_format" // not a JSON array nor JSON Lines
	CodeEmptyInput        Code = "empty_input"        // nothing but whitespace
	CodeMalformedJSON     Code = "malformed_json"     // a record is not valid JSON
	CodeInvalidUTF8       Code = "invalid_utf8"       // a record holds bytes that are not UTF-8
	CodeRecordTooLarge    Code = "record_too_large"   // a record exceeds Options.MaxRecordBytes
	CodeNotObject         Code = "not_object"         // a record is JSON but not an object
	CodeEmptyRecord       Code = "empty_record"       // a stray comma in a JSON array
	CodeUnknownSchema     Code = "unknown_schema"     // no schema decided yet and the record fits none
	CodeSchemaMismatch    Code = "schema_mismatch"    // a required field is missing or has the wrong type
	CodeEmptyField        Code = "empty_field"        // a required text field is empty or only whitespace
	CodeInvalidValue      Code = "invalid_value"      // a field has a value outside its rules (role, turn order, label)
	CodeTooManyLabels     Code = "too_many_labels"    // a label beyond Options.MaxLabels distinct classes
	CodeArrayNotClosed    Code = "array_not_closed"   // the file ends inside the JSON array
	CodeTrailingData      Code = "trailing_data"      // content after the closing ] of the array
	CodeTooFewExamples    Code = "too_few_examples"   // fewer than Options.MinExamples valid examples
)

// Warning codes: the dataset is accepted, but the user should look.
const (
	CodeLongExamples  Code = "long_examples"  // examples over Options.LongExampleChars characters
	CodeDuplicates    Code = "duplicates"     // duplicate ratio above Options.DuplicateWarnRatio
	CodeRareLabels    Code = "rare_labels"    // label classes under Options.RareLabelRatio of examples
	CodeIgnoredFields Code = "ignored_fields" // fields training does not use
)

// Issue is one error or warning. Line and Record locate it in the file when
// it concerns one record: Line is the 1-based line where the record starts
// (in a JSON array too, so a pretty-printed file can be navigated), Record
// its 1-based position among the file's records (blank lines are not
// records). Both are zero for file-level issues.
type Issue struct {
	Code    Code   `json:"code"`
	Line    int    `json:"line,omitempty"`
	Record  int    `json:"record,omitempty"`
	Message string `json:"message"`
}

// Stats describes the valid examples of a dataset. Lengths are in Unicode
// characters of the text training uses: the contents of all messages (chat),
// instruction+input+output (instruction), or text (text-label).
type Stats struct {
	// Records counts every record in the file, valid or not.
	Records int `json:"records"`
	// Examples counts the records that are valid examples of the schema.
	Examples  int     `json:"examples"`
	AvgLength float64 `json:"avg_length"`
	MaxLength int     `json:"max_length"`
	// LabelDistribution maps each label (integers in their decimal form) to
	// its number of examples; text-label datasets only.
	LabelDistribution map[string]int `json:"label_distribution,omitempty"`
	// LengthHistogram counts examples by length, from the shortest bucket
	// holding one to the longest (see LengthBucketBounds).
	LengthHistogram []LengthBucket `json:"length_histogram,omitempty"`
	// DuplicateRatio is the share of examples whose training text repeats an
	// earlier example's, in [0, 1]. Beyond Options.MaxTrackedExamples it is
	// measured on the first MaxTrackedExamples examples.
	DuplicateRatio float64 `json:"duplicate_ratio"`
	// Bytes is the size of the file as written to the validator.
	Bytes int64 `json:"bytes"`
}

// LengthBucket is one bar of the length histogram: examples of at most
// UpTo characters (and more than the previous bucket's bound). UpTo is 0
// for the last bucket, examples longer than every bound.
type LengthBucket struct {
	UpTo  int `json:"up_to,omitempty"`
	Count int `json:"count"`
}

// Report is the outcome of validating one file. It is plain data, safe to
// store (as jsonb) and to return from the API as is.
type Report struct {
	// Valid is true when ErrorCount is zero.
	Valid bool `json:"valid"`
	// Format is empty when the content was neither JSON Lines nor an array.
	Format Format `json:"format,omitempty"`
	// Schema is empty when no record was a valid example of any schema.
	Schema Schema `json:"schema,omitempty"`
	// Errors lists file-level errors first, then at most
	// Options.MaxIssues record errors in file order.
	Errors []Issue `json:"errors"`
	// ErrorCount is the total number of errors, including those not listed.
	ErrorCount int     `json:"error_count"`
	Warnings   []Issue `json:"warnings"`
	Stats      Stats   `json:"stats"`
	// Preview holds the first Options.PreviewRecords records that are
	// well-formed JSON objects, compacted; a record over
	// Options.PreviewRecordBytes has its long strings shortened with "…".
	Preview []json.RawMessage `json:"preview"`
}
