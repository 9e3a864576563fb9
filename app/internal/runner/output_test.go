package runner

import (
	"strings"
	"testing"
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
