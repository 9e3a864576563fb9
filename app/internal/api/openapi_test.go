package api

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"go.yaml.in/yaml/v3"

	"github.com/finetune-studio/finetune-studio/app/internal/config"
)

type openAPISpec struct {
	OpenAPI    string                               `yaml:"openapi"`
	Paths      map[string]map[string]yaml.Node      `yaml:"paths"`
	Components map[string]map[string]map[string]any `yaml:"components"`
}

func loadSpec(t *testing.T) (openAPISpec, []byte) {
	t.Helper()
	raw, err := os.ReadFile("../../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec openAPISpec
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatalf("docs/openapi.yaml is not valid YAML: %v", err)
	}
	return spec, raw
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// TestRouterMatchesOpenAPISpec walks the real router: every route and
// method must be in docs/openapi.yaml, and every operation in the spec must
// be served. Adding a route without documenting it fails here.
func TestRouterMatchesOpenAPISpec(t *testing.T) {
	spec, _ := loadSpec(t)
	if !strings.HasPrefix(spec.OpenAPI, "3.1") {
		t.Errorf("openapi version %q, want 3.1.x", spec.OpenAPI)
	}
	cfg, err := config.Parse(map[string]string{
		"DATABASE_URL": "postgres://x@127.0.0.1/x", "S3_ENDPOINT": "127.0.0.1:1", "S3_ACCESS_KEY": "a", "S3_SECRET_KEY": "b",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := New(Deps{Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})

	served := map[string]bool{}
	err = a.router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := route.GetPathTemplate()
		if err != nil {
			return nil
		}
		methods, err := route.GetMethods()
		if err != nil {
			t.Errorf("route %s matches every method; register it with one", path)
			return nil
		}
		for _, m := range methods {
			served[strings.ToLower(m)+" "+path] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	documented := map[string]bool{}
	for path, item := range spec.Paths {
		for key := range item {
			if slices.Contains(httpMethods, key) {
				documented[key+" "+path] = true
			}
		}
	}
	var missing, extra []string
	for op := range served {
		if !documented[op] {
			missing = append(missing, op)
		}
	}
	for op := range documented {
		if !served[op] {
			extra = append(extra, op)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	for _, op := range missing {
		t.Errorf("served but not in docs/openapi.yaml: %s", strings.ToUpper(op[:strings.IndexByte(op, ' ')])+op[strings.IndexByte(op, ' '):])
	}
	for _, op := range extra {
		t.Errorf("in docs/openapi.yaml but not served: %s", op)
	}
	if len(served) < 10 {
		t.Errorf("only %d routes found on the router; the walk is broken", len(served))
	}
}

var pathParamRe = regexp.MustCompile(`\{([^}]+)\}`)

// TestOpenAPISpecIsConsistent checks what a YAML parser cannot: every $ref
// resolves, every path parameter is declared, every operation has an id
// and documents its errors.
func TestOpenAPISpecIsConsistent(t *testing.T) {
	spec, raw := loadSpec(t)
	for _, m := range regexp.MustCompile(`\$ref: "#/components/(\w+)/(\w+)"`).FindAllStringSubmatch(string(raw), -1) {
		if _, ok := spec.Components[m[1]][m[2]]; !ok {
			t.Errorf("dangling $ref #/components/%s/%s", m[1], m[2])
		}
	}
	ids := map[string]bool{}
	for path, item := range spec.Paths {
		var pathLevel struct {
			Parameters []map[string]any `yaml:"parameters"`
		}
		if p, ok := item["parameters"]; ok {
			var params []map[string]any
			if err := p.Decode(&params); err != nil {
				t.Fatal(err)
			}
			pathLevel.Parameters = params
		}
		for key, node := range item {
			if !slices.Contains(httpMethods, key) {
				continue
			}
			var op struct {
				OperationID string           `yaml:"operationId"`
				Parameters  []map[string]any `yaml:"parameters"`
				Responses   map[string]any   `yaml:"responses"`
				Security    []any            `yaml:"security"`
			}
			if err := node.Decode(&op); err != nil {
				t.Fatalf("%s %s: %v", key, path, err)
			}
			if op.OperationID == "" || ids[op.OperationID] {
				t.Errorf("%s %s: missing or duplicate operationId %q", key, path, op.OperationID)
			}
			ids[op.OperationID] = true
			declared := map[string]bool{}
			for _, p := range append(pathLevel.Parameters, op.Parameters...) {
				if ref, ok := p["$ref"].(string); ok && strings.HasSuffix(ref, "/ID") {
					declared["id"] = true
				}
				if p["in"] == "path" {
					declared[p["name"].(string)] = true
				}
			}
			for _, m := range pathParamRe.FindAllStringSubmatch(path, -1) {
				if !declared[m[1]] {
					t.Errorf("%s %s: path parameter %s is not declared", key, path, m[1])
				}
			}
			if len(op.Responses) == 0 {
				t.Errorf("%s %s: no responses", key, path)
			}
			if strings.HasPrefix(path, "/api/") {
				if _, ok := op.Responses["401"]; !ok {
					t.Errorf("%s %s: every /api/ operation can answer 401; document it", key, path)
				}
			}
			if len(pathParamRe.FindAllString(path, -1)) > 0 {
				for _, code := range []string{"400", "404"} {
					if _, ok := op.Responses[code]; !ok {
						t.Errorf("%s %s: an operation on {id} answers %s for a malformed or unknown id; document it", key, path, code)
					}
				}
			}
		}
	}
}

// specSchemas returns the spec's component schemas as plain values.
func specSchemas(t testing.TB) map[string]any {
	t.Helper()
	raw, err := os.ReadFile("../../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]any `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Components.Schemas
}

// conforms checks a decoded JSON value against a spec schema: declared
// types, required members present, and no member the spec does not declare
// (for objects that list their properties). It is a drift detector between
// the Go types and docs/openapi.yaml, not a full JSON Schema validator.
func conforms(t testing.TB, schemas map[string]any, schema any, v any, path string) {
	t.Helper()
	s, _ := schema.(map[string]any)
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		target, ok := schemas[name]
		if !ok {
			t.Fatalf("%s: unknown schema %s", path, name)
		}
		conforms(t, schemas, target, v, path)
		return
	}
	if all, ok := s["allOf"].([]any); ok {
		// Merge the parts' properties so members of one part are not
		// "undeclared" for another.
		merged := map[string]any{"type": "object", "properties": map[string]any{}}
		var required []any
		for _, part := range all {
			p := resolve(t, schemas, part)
			if props, ok := p["properties"].(map[string]any); ok {
				for k, pv := range props {
					merged["properties"].(map[string]any)[k] = pv
				}
			}
			if r, ok := p["required"].([]any); ok {
				required = append(required, r...)
			}
		}
		merged["required"] = required
		conforms(t, schemas, merged, v, path)
		return
	}
	if v == nil {
		return // optional members may be null in a generic sense; required ones are checked by presence
	}
	switch s["type"] {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			t.Errorf("%s: got %T, want an object", path, v)
			return
		}
		props, hasProps := s["properties"].(map[string]any)
		for _, r := range asList(s["required"]) {
			if _, ok := obj[r.(string)]; !ok {
				t.Errorf("%s: required member %q is missing", path, r)
			}
		}
		for k, mv := range obj {
			ps, declared := props[k]
			if hasProps && !declared {
				t.Errorf("%s: member %q is not in the spec", path, k)
				continue
			}
			if declared {
				conforms(t, schemas, ps, mv, path+"."+k)
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			t.Errorf("%s: got %T, want an array", path, v)
			return
		}
		for i, item := range arr {
			conforms(t, schemas, s["items"], item, fmt.Sprintf("%s[%d]", path, i))
		}
	case "string":
		if _, ok := v.(string); !ok {
			t.Errorf("%s: got %T, want a string", path, v)
		} else if enum := asList(s["enum"]); len(enum) > 0 && !slices.Contains(enum, v) {
			t.Errorf("%s: %q is not one of %v", path, v, enum)
		}
	case "integer", "number":
		if _, ok := v.(float64); !ok {
			t.Errorf("%s: got %T, want a number", path, v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			t.Errorf("%s: got %T, want a boolean", path, v)
		}
	}
}

func resolve(t testing.TB, schemas map[string]any, s any) map[string]any {
	m, _ := s.(map[string]any)
	if ref, ok := m["$ref"].(string); ok {
		r, _ := schemas[strings.TrimPrefix(ref, "#/components/schemas/")].(map[string]any)
		return r
	}
	return m
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// conformsJSON decodes body and checks it against the named schema.
func conformsJSON(t testing.TB, schemas map[string]any, name string, body []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("response is not JSON: %s", body)
	}
	conforms(t, schemas, map[string]any{"$ref": "#/components/schemas/" + name}, v, name)
}

// recordingTB collects failures instead of failing, to test the checker.
type recordingTB struct {
	testing.TB
	errs []string
}

func (r *recordingTB) Helper()                   {}
func (r *recordingTB) Errorf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }
func (r *recordingTB) Fatalf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }

func TestConformsDetectsDrift(t *testing.T) {
	schemas := specSchemas(t)
	for body, want := range map[string]string{
		`{"id":"x","dataset_id":"","base_model":"m","hyperparameters":{},"status":"queued","created_at":"t","updated_at":"t","gpu":1}`:     `"gpu" is not in the spec`,
		`{"id":"x","dataset_id":"","base_model":"m","hyperparameters":{},"status":"done","created_at":"t","updated_at":"t"}`:               `not one of`,
		`{"id":"x","base_model":"m","hyperparameters":{},"status":"queued","created_at":"t","updated_at":"t"}`:                             `"dataset_id" is missing`,
		`{"id":"x","dataset_id":"","base_model":"m","hyperparameters":{"epochs":"3"},"status":"queued","created_at":"t","updated_at":"t"}`: `want a number`,
	} {
		r := &recordingTB{TB: t}
		conformsJSON(r, schemas, "Job", []byte(body))
		if !strings.Contains(strings.Join(r.errs, "\n"), want) {
			t.Errorf("checking %s: errors %q, want one containing %q", body, r.errs, want)
		}
	}
	r := &recordingTB{TB: t}
	conformsJSON(r, schemas, "ModelDetail", []byte(`{"id":"x","job_id":"j","base_model":"m","files":[{"name":"a","size_bytes":1}],"metrics":{},"size_bytes":1,"created_at":"t","urls_expire_at":"t"}`))
	if !strings.Contains(strings.Join(r.errs, "\n"), `"url" is missing`) {
		t.Errorf("a model file without url passed: %q", r.errs)
	}
}
