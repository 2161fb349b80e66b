package bench

import (
	"cmp"
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

// The chart: panels of horizontal bars, drawn by hand so the run needs no
// plotting library. Lateness panels use a log scale (SMQ and River's
// defaults differ by orders of magnitude); throughput panels a linear one.

type bar struct {
	label string  // drawn left of the bar
	value float64 // in the panel's unit; <= 0 draws nothing
	text  string  // drawn right of the bar
	color string
	over  bool // the value is a bound: the true one is larger
}

type panel struct {
	title string
	unit  string
	log   bool
	bars  []bar
}

const (
	svgWidth   = 960
	svgLabelW  = 260
	svgBarH    = 16
	svgGap     = 4
	svgTextW   = 150
	svgPadding = 16
)

var (
	colorP50  = "#4e79a7"
	colorP99  = "#f28e2b"
	colorMax  = "#e15759"
	colorRate = "#59a14f"
	colorSMQ  = "#b07aa1"
)

func (r *report) panels() []panel {
	res := r.res
	res.mu.Lock()
	defer res.mu.Unlock()
	var ps []panel

	latPanel := func(title string, pick func(latenessResult) summary) panel {
		p := panel{title: title, unit: "ms", log: true}
		for _, sys := range latencySystems {
			l, ok := res.lateness[sys]
			if !ok {
				continue
			}
			s := pick(l)
			for _, q := range []struct {
				name  string
				v     time.Duration
				ok    bool
				color string
			}{{"p50", s.P50, s.P50ok, colorP50}, {"p99", s.P99, s.P99ok, colorP99}, {"max", s.Max, s.Maxok, colorMax}} {
				b := bar{label: sys + " " + q.name, color: q.color}
				if q.ok {
					b.value, b.text = msf(q.v), ms(q.v)+" ms"
				} else {
					b.value, b.text, b.over = msf(l.Bound), "> "+ms(l.Bound)+" ms", true
				}
				p.bars = append(p.bars, b)
			}
		}
		return p
	}
	ps = append(ps, latPanel(fmt.Sprintf("Lateness: %d due over %s (log scale)", w4Spread, w4SpreadOver), func(l latenessResult) summary { return l.Spread.Late }))
	ps = append(ps, latPanel(fmt.Sprintf("Lateness: burst of %d due within 1 s (log scale)", w4Burst), func(l latenessResult) summary { return l.Burst.Late }))

	tp := panel{title: "Single-create throughput (creates/s)", unit: "/s"}
	for _, c := range w2Concurrency {
		for _, sys := range []string{sysSMQWAL, sysSMQWALStd, sysSMQMemory, sysRiver, sysInsert} {
			if t, ok := res.throughput[sys][c]; ok {
				tp.bars = append(tp.bars, bar{label: fmt.Sprintf("%s, %d callers", sys, c), value: t.Rate, text: rate(t.Rate), color: sysColor(sys)})
			}
		}
	}
	ps = append(ps, tp)

	bp := panel{title: "Bulk create, counted in the database (rows/s)", unit: "/s"}
	for _, name := range []string{sysSMQWAL + " batch 100", sysSMQWAL + " batch 1000", sysSMQMemory + " batch 100", sysSMQMemory + " batch 1000", "River InsertMany", "River InsertManyFast", "pgx CopyFrom"} {
		if b, ok := res.bulk[name]; ok {
			bp.bars = append(bp.bars, bar{label: name, value: b.Rate, text: rate(b.Rate), color: sysColor(name)})
		}
	}
	ps = append(ps, bp)

	dp := panel{title: fmt.Sprintf("Drain of %d due messages (msgs/s)", w5Messages), unit: "/s"}
	for _, sys := range []string{sysSMQWAL, sysRiverTuned, sysRiverDef, sysPGQ} {
		if d, ok := res.drain[sys]; ok {
			dp.bars = append(dp.bars, bar{label: sys, value: d.Rate, text: rate(d.Rate), color: sysColor(sys)})
		}
	}
	ps = append(ps, dp)
	return ps
}

func sysColor(name string) string {
	if strings.HasPrefix(name, "SMQ") {
		return colorSMQ
	}
	return colorRate
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (r *report) svg() string {
	ps := r.panels()
	var body strings.Builder
	y := svgPadding
	fmt.Fprintf(&body, `<text x="%d" y="%d" font-size="18" font-weight="bold">SMQ vs River vs a hand-written SKIP LOCKED queue — %s, %d CPUs</text>`+"\n",
		svgPadding, y+14, html.EscapeString(r.started.UTC().Format("2006-01-02")), r.machine.CPUs)
	y += 34
	for _, p := range ps {
		y = drawPanel(&body, p, y)
	}
	fmt.Fprintf(&body, `<text x="%d" y="%d" font-size="11" fill="#555">lateness: blue p50, orange p99, red max; hatched: not every message arrived within the bound. Purple: SMQ; green: peers. Figures from test/bench/results.md.</text>`+"\n", svgPadding, y+4)
	y += 16
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif">
<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#ddd"/><line x1="0" y1="0" x2="0" y2="6" stroke="#999" stroke-width="3"/></pattern></defs>
<rect width="100%%" height="100%%" fill="white"/>
%s</svg>
`, svgWidth, y+svgPadding, svgWidth, y+svgPadding, body.String())
}

func drawPanel(w *strings.Builder, p panel, y int) int {
	fmt.Fprintf(w, `<text x="%d" y="%d" font-size="14" font-weight="bold">%s</text>`+"\n", svgPadding, y+12, html.EscapeString(p.title))
	y += 20
	if len(p.bars) == 0 {
		fmt.Fprintf(w, `<text x="%d" y="%d" font-size="12" fill="#555">not measured</text>`+"\n", svgPadding, y+12)
		return y + 30
	}
	x0 := svgPadding + svgLabelW
	plotW := float64(svgWidth - x0 - svgTextW - svgPadding)
	maxV, minV := 0.0, math.Inf(1)
	for _, b := range p.bars {
		if b.value > 0 {
			maxV = max(maxV, b.value)
			minV = min(minV, b.value)
		}
	}
	scale := func(v float64) float64 { return v / maxV * plotW }
	if p.log {
		lo := math.Pow(10, math.Floor(math.Log10(max(minV, 1e-3))))
		hi := math.Pow(10, math.Ceil(math.Log10(maxV)))
		scale = func(v float64) float64 {
			if v <= lo {
				return 1
			}
			return math.Log10(v/lo) / math.Log10(hi/lo) * plotW
		}
		// Decade grid lines.
		for d := lo; d <= hi*1.001; d *= 10 {
			gx := float64(x0) + scale(d)
			if d == lo {
				gx = float64(x0)
			}
			h := len(p.bars) * (svgBarH + svgGap)
			fmt.Fprintf(w, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e5e5e5"/>`+"\n", gx, y, gx, y+h)
			fmt.Fprintf(w, `<text x="%.1f" y="%d" font-size="10" fill="#777" text-anchor="middle">%s %s</text>`+"\n", gx, y+h+11, trimFloat(d), p.unit)
		}
	}
	for _, b := range p.bars {
		fmt.Fprintf(w, `<text x="%d" y="%d" font-size="12" text-anchor="end">%s</text>`+"\n", x0-6, y+svgBarH-4, html.EscapeString(b.label))
		if b.value > 0 {
			bw := max(scale(b.value), 1)
			fill := b.color
			if b.over {
				fill = "url(#hatch)"
			}
			fmt.Fprintf(w, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0, y, bw, svgBarH, fill)
			fmt.Fprintf(w, `<text x="%.1f" y="%d" font-size="11">%s</text>`+"\n", float64(x0)+bw+4, y+svgBarH-4, html.EscapeString(b.text))
		} else {
			fmt.Fprintf(w, `<text x="%d" y="%d" font-size="11" fill="#777">%s</text>`+"\n", x0+4, y+svgBarH-4, html.EscapeString(cmp.Or(b.text, "–")))
		}
		y += svgBarH + svgGap
	}
	if p.log {
		y += 14
	}
	return y + 14
}

func trimFloat(v float64) string {
	if v >= 1 {
		return fmt.Sprintf("%.0f", v)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}
