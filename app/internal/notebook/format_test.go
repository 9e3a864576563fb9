package notebook

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/finetune-studio/finetune-studio/app/internal/dataset"
)

// formatHarness executes the notebook's "config" and "format" cells for
// real, with stand-ins for torch and transformers (a character-level
// tokenizer with a visible chat template), on records passed in argv. It
// prints each record's (prompt, completion) and the tokenized examples.
const formatHarness = `
import json, sys, types
cells = json.load(sys.stdin)
REJECT_SYSTEM = sys.argv[2] == "reject-system"
sys.modules["torch"] = types.ModuleType("torch")
transformers = types.ModuleType("transformers")

class Tokenizer:
    eos_token = "</s>"
    pad_token = None
    chat_template = "stand-in"

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        # Like Gemma's template, which raises jinja2's TemplateError.
        if REJECT_SYSTEM and any(m["role"] == "system" for m in messages):
            raise Exception("System role not supported")
        text = "".join("[%s]%s" % (m["role"], m["content"]) for m in messages)
        return text + ("[assistant]" if add_generation_prompt else "")

class AutoTokenizer:
    @staticmethod
    def from_pretrained(name):
        return Tokenizer()

transformers.AutoTokenizer = AutoTokenizer
sys.modules["transformers"] = transformers
import contextlib
scope = {}
with contextlib.redirect_stdout(sys.stderr):
    exec(cells["config"], scope)
    scope["records"] = json.loads(sys.argv[1])
    exec(cells["format"], scope)
json.dump({
    "pairs": [list(scope["format_example"](r)) for r in scope["records"]],
    "examples": scope["examples"],
}, sys.stdout)
`

func runFormat(t *testing.T, spec Spec, records []map[string]any) (pairs [][2]string, examples []map[string][]int) {
	t.Helper()
	return runFormatWith(t, spec, records, "system-ok")
}

// runFormatWith runs the format cell with a stand-in tokenizer whose chat
// template accepts a system role ("system-ok") or raises on one
// ("reject-system").
func runFormatWith(t *testing.T, spec Spec, records []map[string]any, template string) (pairs [][2]string, examples []map[string][]int) {
	t.Helper()
	k, err := Render(spec)
	if err != nil {
		t.Fatal(err)
	}
	nb := parseNotebook(t, k.Notebook)
	cells := map[string]string{}
	for _, c := range nb.Cells {
		cells[c.ID] = c.Source
	}
	in, _ := json.Marshal(cells)
	recs, _ := json.Marshal(records)
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is needed to run the generated code: %v", err)
	}
	cmd := exec.Command(py, "-c", formatHarness, string(recs), template)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("running the format cell: %v\n%s", err, stderr.String())
	}
	var res struct {
		Pairs    [][2]string        `json:"pairs"`
		Examples []map[string][]int `json:"examples"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("harness output %q: %v", out, err)
	}
	return res.Pairs, res.Examples
}

func TestPromptFormattingBySchema(t *testing.T) {
	for _, tc := range []struct {
		schema  string
		records []map[string]any
		want    [][2]string
	}{
		{
			schema: string(dataset.SchemaChat),
			records: []map[string]any{{"messages": []map[string]string{
				{"role": "system", "content": "Be brief."},
				{"role": "user", "content": "Hi \"there\"\nfriend"},
				{"role": "assistant", "content": "Hello!"},
			}}},
			want: [][2]string{{"[system]Be brief.[user]Hi \"there\"\nfriend[assistant]", "Hello!</s>"}},
		},
		{
			schema: string(dataset.SchemaInstruction),
			records: []map[string]any{
				{"instruction": "Translate to French", "input": "cat", "output": "chat"},
				{"instruction": "Say hi", "output": "hi"},
			},
			want: [][2]string{
				{"Below is an instruction that describes a task, paired with an input that provides further context. " +
					"Write a response that appropriately completes the request.\n\n### Instruction:\nTranslate to French\n\n" +
					"### Input:\ncat\n\n### Response:\n", "chat</s>"},
				{"Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n" +
					"### Instruction:\nSay hi\n\n### Response:\n", "hi</s>"},
			},
		},
		{
			schema: string(dataset.SchemaTextLabel),
			records: []map[string]any{
				{"text": "great film {0}", "label": "positive"},
				{"text": "awful", "label": "negative"},
			},
			want: [][2]string{
				{"Classify the text into one of: negative, positive.\n\nText: great film {0}\nLabel: ", "positive</s>"},
				{"Classify the text into one of: negative, positive.\n\nText: awful\nLabel: ", "negative</s>"},
			},
		},
	} {
		t.Run(tc.schema, func(t *testing.T) {
			spec := validSpec()
			spec.Schema = tc.schema
			pairs, examples := runFormat(t, spec, tc.records)
			if len(pairs) != len(tc.want) {
				t.Fatalf("got %d pairs, want %d", len(pairs), len(tc.want))
			}
			for i := range pairs {
				if pairs[i] != tc.want[i] {
					t.Fatalf("record %d:\n got %q\nwant %q", i, pairs[i], tc.want[i])
				}
				// The loss covers the completion only: prompt tokens are -100.
				ex := examples[i]
				np := len([]rune(tc.want[i][0]))
				for j, l := range ex["labels"] {
					if (j < np) != (l == -100) {
						t.Fatalf("record %d token %d: label %d, want masked=%v", i, j, l, j < np)
					}
				}
			}
		})
	}
}

func TestMaxSeqLengthTruncates(t *testing.T) {
	spec := validSpec()
	spec.Hyperparameters.MaxSeqLength = 300
	_, examples := runFormat(t, spec, []map[string]any{
		{"instruction": "short", "output": "ok"},
		{"instruction": strings.Repeat("long ", 200), "output": "never reached"},
	})
	// The second record's completion falls beyond max_seq_length: dropped.
	if len(examples) != 1 {
		t.Fatalf("kept %d examples, want 1", len(examples))
	}
	if n := len(examples[0]["input_ids"]); n > 300 {
		t.Fatalf("example has %d tokens, want at most 300", n)
	}
}

// A chat template without a system role (Gemma's) gets the system turns
// merged into the first user turn instead of failing the kernel.
func TestChatSystemRoleMergedWhenTheTemplateRejectsIt(t *testing.T) {
	spec := validSpec()
	spec.Schema = string(dataset.SchemaChat)
	records := []map[string]any{
		{"messages": []map[string]string{
			{"role": "system", "content": "Be brief."},
			{"role": "user", "content": "Hi"},
			{"role": "assistant", "content": "Hello!"},
		}},
		{"messages": []map[string]string{ // no system turn: unchanged
			{"role": "user", "content": "Q"},
			{"role": "assistant", "content": "A"},
		}},
		{"messages": []map[string]string{ // system only before the answer
			{"role": "system", "content": "Rules."},
			{"role": "assistant", "content": "Ok"},
		}},
	}
	pairs, _ := runFormatWith(t, spec, records, "reject-system")
	want := [][2]string{
		{"[user]Be brief.\n\nHi[assistant]", "Hello!</s>"},
		{"[user]Q[assistant]", "A</s>"},
		{"[user]Rules.[assistant]", "Ok</s>"},
	}
	for i := range want {
		if i >= len(pairs) || pairs[i] != want[i] {
			t.Fatalf("record %d: got %q, want %q", i, pairs, want[i])
		}
	}
}
