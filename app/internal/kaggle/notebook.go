package kaggle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// notebookForPush prepares an .ipynb for /kernels/push the way the official
// client does (Kaggle/kaggle-api src/kaggle/api/kaggle_api_extended.py,
// kernels_push): each cell's source becomes one string, because "the spec
// allows a list of strings, but the server expects just one" (a list made
// the server answer 500), and code cells lose their outputs. Every other
// field is passed through untouched.
func notebookForPush(text string) (string, error) {
	var nb map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &nb); err != nil {
		return "", fmt.Errorf("notebook is not JSON: %w", err)
	}
	rawCells, ok := nb["cells"]
	if !ok {
		return text, nil
	}
	var cells []map[string]json.RawMessage
	if err := json.Unmarshal(rawCells, &cells); err != nil {
		return "", errors.New("notebook cells are not a list of objects")
	}
	for i, cell := range cells {
		if src, ok := cell["source"]; ok {
			joined, err := joinSource(src)
			if err != nil {
				return "", fmt.Errorf("cell %d: %w", i, err)
			}
			cell["source"] = joined
		}
		if _, ok := cell["outputs"]; ok && bytes.Equal(bytes.TrimSpace(cell["cell_type"]), []byte(`"code"`)) {
			cell["outputs"] = json.RawMessage(`[]`)
		}
	}
	b, err := json.Marshal(cells)
	if err != nil {
		return "", err
	}
	nb["cells"] = b
	out, err := json.Marshal(nb)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// joinSource turns a cell source (a string or a list of strings) into one
// JSON string.
func joinSource(src json.RawMessage) (json.RawMessage, error) {
	var s string
	if json.Unmarshal(src, &s) == nil {
		return src, nil
	}
	var lines []string
	if err := json.Unmarshal(src, &lines); err != nil {
		return nil, errors.New("source is neither a string nor a list of strings")
	}
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
	}
	return json.Marshal(b.String())
}
