package bench

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// dist is a distribution of durations, every sample kept. Missing counts
// samples that never came within the workload's bound (a message never
// received): they rank above every sample, so a percentile that falls
// among them is unknown beyond the bound.
type dist struct {
	samples []time.Duration
	missing int
	sorted  bool
}

func (d *dist) add(v time.Duration) { d.samples = append(d.samples, v); d.sorted = false }

func (d *dist) merge(o *dist) {
	d.samples = append(d.samples, o.samples...)
	d.missing += o.missing
	d.sorted = false
}

func (d *dist) n() int { return len(d.samples) + d.missing }

// pct returns the p-th percentile by nearest rank, and false when it falls
// among the missing samples.
func (d *dist) pct(p float64) (time.Duration, bool) {
	if !d.sorted {
		slices.Sort(d.samples)
		d.sorted = true
	}
	total := d.n()
	if total == 0 {
		return 0, false
	}
	rank := int(math.Ceil(p/100*float64(total))) - 1
	rank = max(rank, 0)
	if rank >= len(d.samples) {
		return 0, false
	}
	return d.samples[rank], true
}

// max returns the largest sample, false when some are missing.
func (d *dist) max() (time.Duration, bool) { return d.pct(100) }

// summary is a distribution's usual figures.
type summary struct {
	N, Missing    int
	P50, P99, Max time.Duration
	// Known is false for a figure among the missing samples.
	P50ok, P99ok, Maxok bool
}

func (d *dist) summary() summary {
	s := summary{N: d.n(), Missing: d.missing}
	s.P50, s.P50ok = d.pct(50)
	s.P99, s.P99ok = d.pct(99)
	s.Max, s.Maxok = d.max()
	return s
}

// collector gathers samples from many goroutines.
type collector struct {
	mu sync.Mutex
	d  dist
}

func (c *collector) addAll(vs []time.Duration) {
	c.mu.Lock()
	c.d.samples = append(c.d.samples, vs...)
	c.d.sorted = false
	c.mu.Unlock()
}

func (c *collector) dist() *dist {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := &dist{samples: slices.Clone(c.d.samples), missing: c.d.missing}
	return d
}

// ms formats a duration in milliseconds with sensible precision.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 0:
		return fmt.Sprintf("%.2f", v)
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// msOr formats a percentile, or "> bound" when it is unknown.
func msOr(d time.Duration, ok bool, bound time.Duration) string {
	if !ok {
		return "> " + ms(bound)
	}
	return ms(d)
}

// rate formats a throughput.
func rate(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// ratio formats a/b as "×r", or "–" when either is unknown.
func ratio(a, b float64) string {
	if a <= 0 || b <= 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "–"
	}
	r := a / b
	if r >= 10 {
		return fmt.Sprintf("×%.0f", r)
	}
	return fmt.Sprintf("×%.2f", r)
}
