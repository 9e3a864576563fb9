package runner

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCleanOutputName(t *testing.T) {
	for name, want := range map[string]bool{
		"metrics.json":                      true,
		"adapter/adapter_model.safetensors": true,
		"":                                  false,
		"/etc/passwd":                       false,
		"../escape":                         false,
		"adapter/../../escape":              false,
		"a//b":                              false,
		"./a":                               false,
		".":                                 false,
		"..":                                false,
		`a\b`:                               false,
		"nul\x00byte":                       false,
		strings.Repeat("x", 513):            false,
	} {
		if _, ok := cleanOutputName(name); ok != want {
			t.Errorf("cleanOutputName(%q) ok = %v, want %v", name, ok, want)
		}
	}
}

func TestKernelLog(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{`[{"stream_name":"stdout","time":1.0,"data":"a\n"},{"stream_name":"stderr","time":2.0,"data":"b\n"}]`, "a\nb"},
		{"not json at all\n", "not json at all"},
		{"\xff\xfe", "\ufffd"},
	}
	for _, tt := range tests {
		if got := kernelLog(tt.in); got != tt.want {
			t.Errorf("kernelLog(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	long := kernelLog(strings.Repeat("x", maxLogBytes+100))
	if len(long) > maxLogBytes+len("…") || !strings.HasPrefix(long, "…") {
		t.Errorf("a long log is not capped to its tail: %d bytes", len(long))
	}
}

// FuzzKernelOutput covers what the runner takes from Kaggle's answers
// without trusting it: log text and output file names.
func FuzzKernelOutput(f *testing.F) {
	f.Add(`[{"stream_name":"stdout","time":1,"data":"x\n"}]`, "adapter/adapter_config.json")
	f.Add("\xff", "../../etc/passwd")
	f.Add(`[{"data":1}]`, "a/./b")
	f.Fuzz(func(t *testing.T, log, name string) {
		out := kernelLog(log)
		if !utf8.ValidString(out) || len(out) > maxLogBytes+len("…") {
			t.Fatalf("kernelLog(%q) = %q: invalid UTF-8 or over the cap", log, out)
		}
		if clean, ok := cleanOutputName(name); ok {
			if clean != name || strings.HasPrefix(clean, "/") || strings.Contains("/"+clean+"/", "/../") || strings.ContainsRune(clean, 0) {
				t.Fatalf("cleanOutputName(%q) accepted %q, which could leave the model's prefix", name, clean)
			}
		}
	})
}
