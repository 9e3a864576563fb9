package edgehealth

import (
	"testing"

	"github.com/finetune-studio/finetune-studio/caddy-modules/internal/adapttest"
)

// TestAdapt checks testdata/*.caddyfiletest against the Caddyfile adapter.
func TestAdapt(t *testing.T) { adapttest.Run(t) }
