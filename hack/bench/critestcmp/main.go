// Command critestcmp compares critest's raw benchmark samples of two
// runtimes (hack/critest.sh --benchmark --artifacts DIR): per operation
// p50/p90/p99 of each and the p50 ratio.
//
//	critestcmp REFERENCE_DIR CANDIDATE_DIR
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// results is critest's LifecycleBenchmarksResultsSet (pkg/benchmark/util.go).
type results struct {
	OperationsNames []string `json:"operationsNames"`
	Datapoints      []struct {
		OperationsDurationsNs []int64 `json:"operationsDurationsNs"`
	} `json:"datapoints"`
}

// columns returns the samples of every operation plus their sum ("total").
func columns(r results) (names []string, cols map[string][]int64) {
	names = append(append([]string(nil), r.OperationsNames...), "total")
	cols = map[string][]int64{}
	for _, d := range r.Datapoints {
		var total int64
		for i, ns := range d.OperationsDurationsNs {
			if i < len(r.OperationsNames) {
				cols[r.OperationsNames[i]] = append(cols[r.OperationsNames[i]], ns)
				total += ns
			}
		}
		cols["total"] = append(cols["total"], total)
	}
	for _, c := range cols {
		sort.Slice(c, func(a, b int) bool { return c[a] < c[b] })
	}
	return names, cols
}

func pct(sorted []int64, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return time.Duration(sorted[int(p*float64(len(sorted)-1)+0.5)])
}

func load(path string) (results, error) {
	var r results
	data, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(data, &r)
	}
	return r, err
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: critestcmp REFERENCE_DIR CANDIDATE_DIR")
		os.Exit(2)
	}
	refDir, candDir := os.Args[1], os.Args[2]
	files, _ := filepath.Glob(filepath.Join(refDir, "*.json"))
	sort.Strings(files)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e6) }
	for _, f := range files {
		ref, err1 := load(f)
		cand, err2 := load(filepath.Join(candDir, filepath.Base(f)))
		if err1 != nil || err2 != nil || len(ref.OperationsNames) == 0 {
			continue
		}
		names, rc := columns(ref)
		_, cc := columns(cand)
		fmt.Printf("%s (%d / %d samples), milliseconds\n", filepath.Base(f), len(ref.Datapoints), len(cand.Datapoints))
		fmt.Printf("  %-20s %8s %8s %8s | %8s %8s %8s | %7s\n", "operation", "ref p50", "p90", "p99", "cand p50", "p90", "p99", "p50 x")
		for _, n := range names {
			r, c := rc[n], cc[n]
			if len(r) == 0 || len(c) == 0 {
				continue
			}
			ratio := float64(pct(c, .5)) / float64(pct(r, .5))
			fmt.Printf("  %-20s %8s %8s %8s | %8s %8s %8s | %6.2fx\n", n, ms(pct(r, .5)), ms(pct(r, .9)), ms(pct(r, .99)),
				ms(pct(c, .5)), ms(pct(c, .9)), ms(pct(c, .99)), ratio)
		}
	}
}
