package api

import (
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
