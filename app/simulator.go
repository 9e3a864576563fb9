package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle/kaggletest"
)

// startSimulator starts the Kaggle emulator on loopback ports and points
// the Kaggle client configuration kc at it (KAGGLE_SIMULATOR, a development
// mode: config refuses it in production). Jobs then walk every state and
// end with the emulator's sample adapter and metrics, so the whole product
// loop can be tried without a Kaggle account. stop shuts it down.
func startSimulator(kc kaggle.Config, log *slog.Logger) (kaggle.Config, func(), error) {
	blobs, err := os.MkdirTemp("", "kaggle-simulator-")
	if err != nil {
		return kc, nil, fmt.Errorf("simulator: %w", err)
	}
	sim := kaggletest.Start(kaggletest.Options{BlobDir: blobs})
	sim.SetDefaultOutput(simulatedOutput(), kaggletest.DefaultLog())
	log.Warn("training is SIMULATED: jobs run against a local Kaggle emulator and produce sample models",
		"simulator_url", sim.BaseURL)
	kc.BaseURL, kc.Username, kc.Key, kc.Token = sim.BaseURL, kaggletest.DefaultUsername, kaggletest.DefaultKey, ""
	kc.HTTPClient = sim.HTTPClient() // trusts the emulator's storage host
	stop := func() {
		sim.Close()
		os.RemoveAll(blobs)
	}
	return kc, stop, nil
}

// simulatedOutput is the emulator's default kernel output with a
// metrics.json that carries a loss history, as the real notebook's does
// (trainer.state.log_history), so the UI has a loss curve to draw.
func simulatedOutput() []kaggletest.File {
	files := kaggletest.DefaultOutputFiles()
	for i, f := range files {
		if f.Name != "metrics.json" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(f.Data, &m); err != nil {
			continue
		}
		var hist []map[string]any
		loss := 2.1
		for step := 25; step <= 375; step += 25 {
			loss = loss*0.93 + 0.06
			hist = append(hist, map[string]any{"step": step, "epoch": float64(step) / 125, "loss": float64(int(loss*10000)) / 10000})
		}
		m["log_history"] = hist
		if data, err := json.Marshal(m); err == nil {
			files[i].Data = data
		}
	}
	return files
}
