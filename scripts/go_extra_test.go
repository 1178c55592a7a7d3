// Extra Go benchmarks for docs/PERFORMANCE.md: the rows of issue 4 that Go's
// own context/benchmark_test.go does not measure in the same shape as the
// goctx benches (integration/benches/context.rs). Run by scripts/go-bench.sh with
// `go test -bench . go_extra_test.go`; nothing in the Rust build uses it.
package extra

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

type key struct{}

// BenchmarkCommonParentCancelBare is BenchmarkCommonParentCancel without its
// ~200 dummy divisions: WithCancel under one shared live parent, one Value
// lookup, cancel. Single goroutine, and (Parallel) GOMAXPROCS goroutines.
func BenchmarkCommonParentCancelBare(b *testing.B) {
	root := context.WithValue(context.Background(), key{}, "value")
	shared, cancelShared := context.WithCancel(root)
	defer cancelShared()
	b.Run("threads=1", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			ctx, cancel := context.WithCancel(shared)
			if ctx.Value(key{}) == nil {
				b.Fatal("value lost")
			}
			cancel()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				ctx, cancel := context.WithCancel(shared)
				if ctx.Value(key{}) == nil {
					panic("value lost")
				}
				cancel()
			}
		})
	})
}

// BenchmarkFanOut builds n children of one cancelable root and cancels the
// root (the children's CancelFuncs are dropped, as in BenchmarkCancelTree).
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("children=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				root, cancel := context.WithCancel(context.Background())
				for j := 0; j < n; j++ {
					_, _ = context.WithCancel(root)
				}
				cancel()
			}
		})
	}
}

// BenchmarkWithTimeoutSingle is BenchmarkWithTimeout on one goroutine, one
// context per op: with n live one-hour timers, WithTimeout(bg, 1h) + cancel.
func BenchmarkWithTimeoutSingle(b *testing.B) {
	for _, n := range []int{40, 4000, 400000} {
		b.Run(fmt.Sprintf("concurrency=%d", n), func(b *testing.B) {
			cancels := make([]context.CancelFunc, n)
			for i := range cancels {
				_, cancels[i] = context.WithTimeout(context.Background(), time.Hour)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_, cancel := context.WithTimeout(context.Background(), time.Hour)
				cancel()
			}
			b.StopTimer()
			for _, cancel := range cancels {
				cancel()
			}
		})
	}
}

// BenchmarkWakeLatency: time from cancel() to a goroutine blocked in
// <-ctx.Done() running again (its own clock reading).
func BenchmarkWakeLatency(b *testing.B) {
	var total time.Duration
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		woke := make(chan time.Time)
		var ready sync.WaitGroup
		ready.Add(1)
		go func() {
			done := ctx.Done()
			ready.Done()
			<-done
			woke <- time.Now()
		}()
		ready.Wait()
		time.Sleep(20 * time.Microsecond) // let it block
		start := time.Now()
		cancel()
		total += (<-woke).Sub(start)
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "wake-ns/op")
}
