// Command pgrep is a small procps-compatible pgrep for the test busybox image
// (Debian's busybox has no pgrep applet; critest runs "pgrep sleep").
//
//	pgrep [-flnovx] [-d DELIM] PATTERN
//
// PATTERN is an extended regular expression matched against the process name
// (or, with -f, the full command line). pgrep never lists itself. Exit status:
// 0 when something matched, 1 when nothing did, 2 on a usage error.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

type proc struct {
	pid     int
	name    string
	cmdline string
	start   uint64
}

func main() {
	fs := flag.NewFlagSet("pgrep", flag.ContinueOnError)
	full := fs.Bool("f", false, "match against the full command line")
	list := fs.Bool("l", false, "list the process name as well")
	listFull := fs.Bool("a", false, "list the full command line as well")
	newest := fs.Bool("n", false, "only the newest matching process")
	oldest := fs.Bool("o", false, "only the oldest matching process")
	invert := fs.Bool("v", false, "negate the match")
	exact := fs.Bool("x", false, "match the whole name exactly")
	count := fs.Bool("c", false, "print the number of matches")
	delim := fs.String("d", "\n", "output delimiter")
	if err := fs.Parse(os.Args[1:]); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: pgrep [-aflnovxc] [-d DELIM] PATTERN")
		os.Exit(2)
	}
	pattern := fs.Arg(0)
	if *exact {
		pattern = "^(?:" + pattern + ")$"
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgrep: invalid pattern: %v\n", err)
		os.Exit(2)
	}

	var matched []proc
	self := os.Getpid()
	for _, p := range processes() {
		if p.pid == self {
			continue
		}
		subject := p.name
		if *full && p.cmdline != "" {
			subject = p.cmdline
		}
		if re.MatchString(subject) != *invert {
			matched = append(matched, p)
		}
	}
	if len(matched) > 0 && (*newest || *oldest) {
		sort.SliceStable(matched, func(i, j int) bool { return matched[i].start < matched[j].start })
		if *newest {
			matched = matched[len(matched)-1:]
		} else {
			matched = matched[:1]
		}
	}

	if *count {
		fmt.Println(len(matched))
	} else {
		out := make([]string, 0, len(matched))
		for _, p := range matched {
			s := strconv.Itoa(p.pid)
			switch {
			case *listFull && p.cmdline != "":
				s += " " + p.cmdline
			case *list || *listFull:
				s += " " + p.name
			}
			out = append(out, s)
		}
		if len(out) > 0 {
			fmt.Print(strings.Join(out, *delim) + "\n")
		}
	}
	if len(matched) == 0 {
		os.Exit(1)
	}
}

// processes lists /proc in PID order; processes that exit meanwhile are skipped.
func processes() []proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgrep:", err)
		os.Exit(3)
	}
	var ps []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// stat is "pid (comm) state ppid ... starttime(22nd field) ..."; comm may
		// contain spaces and parentheses, so split at the last ')'.
		open, closing := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if open < 0 || closing < open {
			continue
		}
		p := proc{pid: pid, name: string(stat[open+1 : closing])}
		if f := strings.Fields(string(stat[closing+1:])); len(f) > 19 {
			p.start, _ = strconv.ParseUint(f[19], 10, 64)
		}
		if cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil {
			p.cmdline = strings.TrimRight(strings.ReplaceAll(string(cl), "\x00", " "), " ")
		}
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].pid < ps[j].pid })
	return ps
}
