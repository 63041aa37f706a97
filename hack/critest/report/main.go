// Command report summarises a critest run for hack/critest.sh: it reads the
// ginkgo JSON report (--ginkgo.json-report), prints the failed specs with the
// first lines of their failure, the benchmark percentiles (critest writes only
// raw samples) and a closing "critest: N passed, N failed, N skipped" line.
//
//	report [--known-failures FILE] [--known-skips FILE] [--benchmark-dir DIR] [--critest-exit N] REPORT.json
//
// Exit status 1 when a spec failed; with --known-failures (a ratchet), 1 only
// when a spec not in FILE failed or a spec in FILE passed. With --known-skips
// the skipped set is pinned too: 1 when a spec not in that FILE was skipped or
// a spec in it was not (it ran: it passed or failed), so a spec that stops
// running, or starts to, never goes unnoticed. Also 1 when critest exited
// non-zero although no spec failed (it crashed).
//
// Both files have one full spec name a line (as printed under "Failed specs"
// or in a "NEW SKIP" line), optionally followed by a TAB and a "# reason"; blank
// lines and lines starting with # are ignored.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// specReport is the part of ginkgo's types.SpecReport we read.
type specReport struct {
	ContainerHierarchyTexts []string
	LeafNodeType            string
	LeafNodeText            string
	State                   string
	Failure                 *struct {
		Message  string
		Location struct {
			FileName   string
			LineNumber int
		}
	}
}

type suiteReport struct {
	SuiteDescription string
	SuiteSucceeded   bool
	SpecReports      []specReport
}

// name is the spec's full text, as ginkgo's --focus and --skip match it.
func (s specReport) name() string {
	parts := append(append([]string(nil), s.ContainerHierarchyTexts...), s.LeafNodeText)
	n := strings.TrimSpace(strings.Join(parts, " "))
	if s.LeafNodeType != "It" {
		n = strings.TrimSpace("[" + s.LeafNodeType + "] " + n)
	}
	return n
}

func failedState(state string) bool {
	switch state {
	case "failed", "panicked", "interrupted", "aborted", "timedout":
		return true
	}
	return false
}

// summary is what a run came to.
type summary struct {
	passed, failed, skipped, pending int
	failures                         []specReport
	passedNames                      map[string]bool
	skippedNames                     map[string]bool
}

func summarize(suites []suiteReport) summary {
	s := summary{passedNames: map[string]bool{}, skippedNames: map[string]bool{}}
	for _, suite := range suites {
		for _, r := range suite.SpecReports {
			if r.LeafNodeType != "It" {
				// Suite nodes (BeforeSuite, ReportAfterSuite...) count only when
				// they fail: then nothing after them is trustworthy.
				if failedState(r.State) {
					s.failed++
					s.failures = append(s.failures, r)
				}
				continue
			}
			switch {
			case r.State == "passed":
				s.passed++
				s.passedNames[r.name()] = true
			case failedState(r.State):
				s.failed++
				s.failures = append(s.failures, r)
			case r.State == "pending":
				s.pending++
			default:
				s.skipped++
				s.skippedNames[r.name()] = true
			}
		}
	}
	sort.Slice(s.failures, func(i, j int) bool { return s.failures[i].name() < s.failures[j].name() })
	return s
}

// readKnown parses a known-failures file: name -> reason.
func readKnown(r io.Reader) (map[string]string, error) {
	known := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		name, reason, _ := strings.Cut(line, "\t")
		known[strings.TrimSpace(name)] = strings.TrimSpace(reason)
	}
	return known, sc.Err()
}

// verdict compares a run with the known failures and skips. A nil known map
// means no ratchet: every failure is unexpected. A nil skips map leaves the
// skipped set unchecked.
type verdict struct {
	unexpected    []string // failed, not listed
	stillKnown    []string // failed, listed
	fixed         []string // listed, passed
	newSkips      []string // skipped, not listed as skipped
	notSkipped    []string // listed as skipped, but it ran
	checkedSkips  bool
	listedSkipped int
}

func judge(s summary, known, skips map[string]string) verdict {
	var v verdict
	if skips != nil {
		v.checkedSkips = true
		v.listedSkipped = len(skips)
		for n := range s.skippedNames {
			if _, ok := skips[n]; !ok {
				v.newSkips = append(v.newSkips, n)
			}
		}
		for n := range skips {
			if !s.skippedNames[n] {
				v.notSkipped = append(v.notSkipped, n)
			}
		}
		sort.Strings(v.newSkips)
		sort.Strings(v.notSkipped)
	}
	for _, f := range s.failures {
		n := f.name()
		if _, ok := known[n]; ok {
			v.stillKnown = append(v.stillKnown, n)
		} else {
			v.unexpected = append(v.unexpected, n)
		}
	}
	for n := range known {
		if s.passedNames[n] {
			v.fixed = append(v.fixed, n)
		}
	}
	sort.Strings(v.fixed)
	return v
}

func (v verdict) ok() bool {
	return len(v.unexpected) == 0 && len(v.fixed) == 0 && len(v.newSkips) == 0 && len(v.notSkipped) == 0
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, "\n        ")
}

func main() {
	knownFile := flag.String("known-failures", "", "ratchet: file of spec names known to fail")
	skipsFile := flag.String("known-skips", "", "ratchet: file of spec names known to be skipped")
	benchDir := flag.String("benchmark-dir", "", "directory of critest's raw benchmark samples")
	critestExit := flag.Int("critest-exit", 0, "critest's exit status: non-zero with no failed spec is a failure")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: report [--known-failures FILE] [--known-skips FILE] [--benchmark-dir DIR] [--critest-exit N] REPORT.json")
		os.Exit(2)
	}
	b, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	var suites []suiteReport
	if err := json.Unmarshal(b, &suites); err != nil {
		fmt.Fprintf(os.Stderr, "report: %s: %v\n", flag.Arg(0), err)
		os.Exit(1)
	}
	s := summarize(suites)

	known, err := readKnownFile(*knownFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	skips, err := readKnownFile(*skipsFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	v := judge(s, known, skips)

	if *benchDir != "" {
		printBenchmarks(os.Stdout, *benchDir)
	}
	if len(s.failures) > 0 {
		fmt.Println("Failed specs:")
		for _, f := range s.failures {
			tag := ""
			if known != nil {
				if _, ok := known[f.name()]; ok {
					tag = " (known failure)"
				} else {
					tag = " (NEW failure)"
				}
			}
			fmt.Printf("  %s%s\n", f.name(), tag)
			if f.Failure != nil {
				fmt.Printf("        %s\n", firstLines(f.Failure.Message, 4))
				if f.Failure.Location.FileName != "" {
					fmt.Printf("        at %s:%d\n", filepath.Base(f.Failure.Location.FileName), f.Failure.Location.LineNumber)
				}
			}
		}
	}
	if known != nil {
		for _, n := range v.fixed {
			fmt.Printf("FIXED: %q is listed in %s but passed: remove it from the list\n", n, *knownFile)
		}
		if len(v.unexpected) > 0 {
			fmt.Printf("%d spec(s) failed that are not in %s\n", len(v.unexpected), *knownFile)
		}
		fmt.Printf("known failures: %d listed, %d still failing, %d fixed\n", len(known), len(v.stillKnown), len(v.fixed))
	}
	if v.checkedSkips {
		for _, n := range v.newSkips {
			fmt.Printf("NEW SKIP: %q was skipped but is not listed in %s\n", n, *skipsFile)
		}
		for _, n := range v.notSkipped {
			fmt.Printf("RAN: %q is listed in %s but was not skipped: remove it from the list\n", n, *skipsFile)
		}
		fmt.Printf("known skips: %d listed, %d skipped, %d new, %d ran\n", v.listedSkipped, s.skipped, len(v.newSkips), len(v.notSkipped))
	}
	pending := ""
	if s.pending > 0 {
		pending = fmt.Sprintf(", %d pending", s.pending)
	}
	crashed := *critestExit != 0 && s.failed == 0
	if crashed {
		fmt.Printf("critest exited %d but its report has no failed spec: see critest.log\n", *critestExit)
	}
	fmt.Printf("critest: %d passed, %d failed, %d skipped%s\n", s.passed, s.failed, s.skipped, pending)
	if crashed {
		os.Exit(1)
	}

	if len(v.newSkips) > 0 || len(v.notSkipped) > 0 {
		os.Exit(1)
	}
	if known != nil {
		if !v.ok() {
			os.Exit(1)
		}
		return
	}
	if s.failed > 0 {
		os.Exit(1)
	}
}

// readKnownFile reads a known-failures or known-skips file; "" means none
// (nil map: that part of the ratchet is off).
func readKnownFile(path string) (map[string]string, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	known, err := readKnown(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return known, nil
}

// benchmarkResults is critest's raw benchmark output
// (pkg/benchmark/util.go LifecycleBenchmarksResultsSet).
type benchmarkResults struct {
	OperationsNames []string `json:"operationsNames"`
	NumParallel     int      `json:"numParallel"`
	Datapoints      []struct {
		OperationsDurationsNs []int64 `json:"operationsDurationsNs"`
	} `json:"datapoints"`
}

func percentile(sorted []int64, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted)-1) + 0.5)
	return time.Duration(sorted[i])
}

func printBenchmarks(w io.Writer, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	sort.Strings(files)
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		var r benchmarkResults
		if err := json.Unmarshal(b, &r); err != nil || len(r.OperationsNames) == 0 {
			continue
		}
		fmt.Fprintf(w, "Benchmark %s: %d samples, %d in parallel\n", filepath.Base(file), len(r.Datapoints), r.NumParallel)
		names := append(append([]string(nil), r.OperationsNames...), "total")
		cols := make([][]int64, len(names))
		for _, d := range r.Datapoints {
			var total int64
			for i, ns := range d.OperationsDurationsNs {
				if i < len(r.OperationsNames) {
					cols[i] = append(cols[i], ns)
					total += ns
				}
			}
			cols[len(names)-1] = append(cols[len(names)-1], total)
		}
		fmt.Fprintf(w, "  %-18s %10s %10s %10s %10s\n", "operation", "p50", "p90", "p99", "max")
		for i, n := range names {
			c := cols[i]
			sort.Slice(c, func(a, b int) bool { return c[a] < c[b] })
			if len(c) == 0 {
				continue
			}
			fmt.Fprintf(w, "  %-18s %10s %10s %10s %10s\n", n,
				percentile(c, 0.5).Round(10*time.Microsecond), percentile(c, 0.9).Round(10*time.Microsecond),
				percentile(c, 0.99).Round(10*time.Microsecond), time.Duration(c[len(c)-1]).Round(10*time.Microsecond))
		}
	}
}
