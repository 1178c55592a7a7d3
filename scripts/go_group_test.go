// Go's errgroup (golang.org/x/sync) in the shape of integration/benches/group.rs, for
// docs/PERFORMANCE.md: per task, Go + return nil + Wait for 1,000 trivial
// tasks, without a limit and with SetLimit(10). Run by scripts/go-bench.sh
// in a throw-away module that points golang.org/x/sync at the copy the Go
// toolchain vendors; nothing in the Rust build uses it.
package groupbench

import (
	"context"
	"testing"

	"golang.org/x/sync/errgroup"
)

const tasks = 1000

func group1000(b *testing.B, limit int) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		g, _ := errgroup.WithContext(context.Background())
		if limit > 0 {
			g.SetLimit(limit)
		}
		for j := 0; j < tasks; j++ {
			g.Go(func() error { return nil })
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*tasks), "ns/task")
}

// BenchmarkGroup1000 beside integration/benches/group.rs's `Group1000/goctx::tokio::Group`.
func BenchmarkGroup1000(b *testing.B) { group1000(b, 0) }

// BenchmarkGroup1000Limit10 beside `Group1000/goctx::tokio::Group, limit 10`.
func BenchmarkGroup1000Limit10(b *testing.B) { group1000(b, 10) }

// BenchmarkGo is errgroup's own benchmark shape: b.N tasks, one Wait.
func BenchmarkGo(b *testing.B) {
	b.ReportAllocs()
	var g errgroup.Group
	for i := 0; i < b.N; i++ {
		g.Go(func() error { return nil })
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
}
