package store

import (
	"os"
	"testing"

	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
