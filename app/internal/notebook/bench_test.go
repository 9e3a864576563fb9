package notebook

import "testing"

func BenchmarkRender(b *testing.B) {
	spec := validSpec()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Render(spec); err != nil {
			b.Fatal(err)
		}
	}
}
