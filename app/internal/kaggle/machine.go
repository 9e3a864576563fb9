package kaggle

import (
	"fmt"
	"slices"
	"strings"
)

// DefaultMachineShape is the accelerator a push asks for when the caller
// names none: "GPU T4 x2", Kaggle's default GPU for ordinary accounts
// (Kaggle/kaggle-cli#1198).
const DefaultMachineShape = "NvidiaTeslaT4"

// MachineShape is one accelerator Kaggle runs kernels on, as named in the
// push's machineShape field.
type MachineShape struct {
	// Name is the machineShape value ("NvidiaTeslaT4").
	Name string
	// GPU names the card for people ("2 x NVIDIA T4").
	GPU string
	// GPUs is how many cards the kernel sees; GPUMemoryGB is per card.
	GPUs        int
	GPUMemoryGB int
	// BF16 reports whether the cards compute in bfloat16 (Ampere and
	// later); a T4 trains in fp16 or fp32.
	BF16 bool
	// Restricted is true for shapes Kaggle lists but keeps for some
	// competitions or admins: a push asking for one may be refused.
	Restricted bool
}

// MachineShapes are the GPU shapes a training push may ask for. The names
// are the ones Kaggle's CLI documents for `kaggle kernels push
// --accelerator` (Kaggle/kaggle-api docs/kernels.md, "Accelerators
// available as of Feb 2026"), minus:
//   - NvidiaTeslaP100: the default image's PyTorch (cu128) has no sm_60
//     kernels, so every CUDA op fails on it (Kaggle/kaggle-cli#1151);
//   - NvidiaTeslaT4Highmem: an internal admin pool (Kaggle/kaggle-cli#1198);
//   - the TPU shapes: the notebook trains with CUDA, and a pushed TPU run
//     gets the non-TPU image anyway (Kaggle/kaggle-cli#1197).
var MachineShapes = []MachineShape{
	{Name: "NvidiaTeslaT4", GPU: "2 x NVIDIA T4", GPUs: 2, GPUMemoryGB: 16},
	{Name: "NvidiaL4", GPU: "NVIDIA L4", GPUs: 1, GPUMemoryGB: 24, BF16: true, Restricted: true},
	{Name: "NvidiaL4X1", GPU: "NVIDIA L4", GPUs: 1, GPUMemoryGB: 24, BF16: true, Restricted: true},
	{Name: "NvidiaTeslaA100", GPU: "NVIDIA A100", GPUs: 1, GPUMemoryGB: 40, BF16: true, Restricted: true},
	{Name: "NvidiaH100", GPU: "NVIDIA H100", GPUs: 1, GPUMemoryGB: 80, BF16: true, Restricted: true},
	{Name: "NvidiaRtxPro6000", GPU: "NVIDIA RTX PRO 6000", GPUs: 1, GPUMemoryGB: 96, BF16: true, Restricted: true},
}

// LookupMachineShape returns the shape named name (case-sensitive, as
// Kaggle spells it), or an error that says why it cannot be used.
func LookupMachineShape(name string) (MachineShape, error) {
	if i := slices.IndexFunc(MachineShapes, func(m MachineShape) bool { return m.Name == name }); i >= 0 {
		return MachineShapes[i], nil
	}
	switch name {
	case "NvidiaTeslaP100":
		return MachineShape{}, fmt.Errorf("%s is refused: Kaggle's current image has no PyTorch kernels for the P100, so training fails on its first CUDA operation; use %s", name, DefaultMachineShape)
	case "NvidiaTeslaT4Highmem":
		return MachineShape{}, fmt.Errorf("%s is an internal Kaggle pool, not open to accounts; use %s", name, DefaultMachineShape)
	}
	if strings.HasPrefix(strings.ToLower(name), "tpu") {
		return MachineShape{}, fmt.Errorf("%s is a TPU: the training notebook needs a CUDA GPU; use %s", name, DefaultMachineShape)
	}
	names := make([]string, len(MachineShapes))
	for i, m := range MachineShapes {
		names[i] = m.Name
	}
	return MachineShape{}, fmt.Errorf("unknown machine shape %q: one of %s", name, strings.Join(names, ", "))
}
