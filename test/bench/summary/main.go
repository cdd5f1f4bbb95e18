// Command summary prints the table that ends `make bench`: every figure the
// harnesses recorded (package test/bench/internal/figures) with its goal and
// whether it is met, then the issue-8 figures that no harness produced.
//
//	EDGE_BENCH_OUT=/tmp/f go run ./test/bench          # and the other harnesses
//	go run ./test/bench/summary -in /tmp/f -log bench.log
//
// -in is the file the harnesses appended to (default $EDGE_BENCH_OUT);
// -log, optional, is their combined output: lines in the printed form
// "name  value unit  (goal ...)" whose name is not in -in are added, for
// harnesses that print figures without calling figures.Record; a line
// "== test/bench/NAME" (make bench prints one before each harness) names
// the harness of the lines after it.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/edgeorch/edgeorch/test/bench/internal/figures"
)

func main() {
	in := flag.String("in", os.Getenv(figures.Env), "file of recorded figures (default $"+figures.Env+")")
	logPath := flag.String("log", "", "harness output to scan for printed figures not in -in (optional)")
	flag.Parse()
	if *in == "" {
		fmt.Fprintln(os.Stderr, "summary: no figures file: pass -in FILE or set "+figures.Env)
		os.Exit(2)
	}
	figs, err := load(*in, *logPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "summary:", err)
		os.Exit(1)
	}
	table(os.Stdout, figs)
}

// load reads the recorded figures, then the printed ones from the log
// whose names were not recorded.
func load(in, logPath string) ([]figures.Figure, error) {
	b, err := os.ReadFile(in)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("read figures: %w", err)
	}
	figs, err := figures.Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("figures file %s: %w", in, err)
	}
	if logPath == "" {
		return figs, nil
	}
	f, err := os.Open(logPath)
	if err != nil {
		return nil, fmt.Errorf("read harness log: %w", err)
	}
	defer f.Close()
	recorded := map[string]bool{}
	for _, fg := range figs {
		recorded[fg.Name] = true
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	harness := ""
	for sc.Scan() {
		l := sc.Text()
		if h, ok := strings.CutPrefix(l, "== "); ok && !strings.ContainsAny(h, " :") {
			harness = h
			continue
		}
		if fg, ok := figures.ParseLine(l); ok && !recorded[fg.Name] {
			fg.Harness = harness
			figs = append(figs, fg)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read harness log: %w", err)
	}
	return figs, nil
}

// table prints figs as a Markdown table, then the issue-8 figures missing
// from figs, then how many goals hold.
func table(w io.Writer, figs []figures.Figure) {
	fmt.Fprintln(w, "\n# summary")
	fmt.Fprintln(w, "| figure | value | goal | met? |")
	fmt.Fprintln(w, "|---|---|---|---|")
	seen := map[string]bool{}
	goals, met := 0, 0
	for _, f := range figs {
		seen[f.Name] = true
		verdict := "-"
		ok, has, err := f.Met()
		switch {
		case err != nil:
			verdict = "? (" + err.Error() + ")"
		case has && ok:
			verdict, goals, met = "yes", goals+1, met+1
		case has:
			verdict, goals = "NO", goals+1
		}
		goal := f.Goal
		if goal == "" {
			goal = "-"
		}
		name := f.Name
		if h := strings.TrimPrefix(f.Harness, "test/bench/"); h != "" && h != "test/bench" {
			name += " [" + h + "]"
		}
		fmt.Fprintf(w, "| %s | %s %s | %s | %s |\n", name, figures.Format(f.Value), f.Unit, goal, verdict)
	}
	var missing []string
	for _, f := range figures.Issue8 {
		if !seen[f.Name] {
			goal := f.Goal
			if goal == "" {
				goal = "-"
			}
			fmt.Fprintf(w, "| %s | not measured | %s | - |\n", f.Name, goal)
			missing = append(missing, f.Name)
		}
	}
	fmt.Fprintf(w, "\n%d of %d goals met", met, goals)
	if len(missing) > 0 {
		fmt.Fprintf(w, "; %d issue-8 figures not measured: %s", len(missing), strings.Join(missing, "; "))
	}
	fmt.Fprintln(w)
}
