package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle/kaggletest"
)

// TestKaggleCheck runs `app kaggle check` against the emulator: it names
// the account the credentials belong to, and fails with Kaggle's answer
// (exit 1) or a configuration error (exit 2).
func TestKaggleCheck(t *testing.T) {
	srv := kaggletest.NewServer(t)
	base := map[string]string{
		"DATABASE_URL":   "postgres://app:pw@127.0.0.1:5432/app?sslmode=disable",
		"S3_ENDPOINT":    "127.0.0.1:9000",
		"S3_ACCESS_KEY":  "dev-access",
		"S3_SECRET_KEY":  "dev-secret-key",
		"KAGGLE_API_URL": srv.BaseURL,
	}
	for _, tc := range []struct {
		name     string
		env      map[string]string
		wantCode int
		want     string
	}{
		{name: "key", env: map[string]string{"KAGGLE_USERNAME": kaggletest.DefaultUsername, "KAGGLE_KEY": kaggletest.DefaultKey},
			want: "Kaggle credentials OK: account emu-user (KAGGLE_KEY"},
		{name: "token", env: map[string]string{"KAGGLE_USERNAME": kaggletest.DefaultUsername, "KAGGLE_API_TOKEN": kaggletest.DefaultToken},
			want: "Kaggle credentials OK: account emu-user (KAGGLE_API_TOKEN"},
		{name: "wrong key", env: map[string]string{"KAGGLE_USERNAME": kaggletest.DefaultUsername, "KAGGLE_KEY": "not-the-key-42"},
			wantCode: 1, want: "Kaggle check failed: Kaggle refused the credentials during the credentials check (HTTP 401)"},
		{name: "token of another account", env: map[string]string{"KAGGLE_USERNAME": "someone", "KAGGLE_API_TOKEN": kaggletest.DefaultToken},
			wantCode: 1, want: `the API token belongs to "emu-user", but KAGGLE_USERNAME is "someone"`},
		{name: "no credentials", env: map[string]string{}, wantCode: 2, want: "Kaggle credentials are not configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := []string{}
			for k, v := range base {
				env = append(env, k+"="+v)
			}
			for k, v := range tc.env {
				env = append(env, k+"="+v)
			}
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{"kaggle", "check"}, env, &stdout, &stderr,
				slog.New(slog.DiscardHandler), new(slog.LevelVar))
			code, text := 0, stdout.String()
			var ee *exitError
			if errors.As(err, &ee) {
				code, text = ee.code, ee.msg
			} else if err != nil {
				t.Fatalf("run: %v", err)
			}
			if code != tc.wantCode || !strings.Contains(text, tc.want) {
				t.Fatalf("exit %d %q, want exit %d containing %q", code, text, tc.wantCode, tc.want)
			}
			for _, secret := range []string{kaggletest.DefaultKey, kaggletest.DefaultToken, "not-the-key-42"} {
				if strings.Contains(text+stderr.String(), secret) {
					t.Fatal("output carries a credential")
				}
			}
		})
	}
}
