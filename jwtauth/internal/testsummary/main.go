// Command testsummary filters `go test -json` for .ci/run: it prints what
// `go test` prints without -v (each package's ok, FAIL or "no test files"
// line, benchmark results, the output of failing tests, build errors), then,
// in its last lines, every skipped test with the reason it gave. It exits 1
// when a test or a build failed, so that CI fails with go test.
//
//	go test -json ./... | testsummary
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

func main() {
	failed, err := summarize(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// event is a test2json event (go doc test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type skipped struct{ pkg, test, reason string }

// pkgLine is a line of a package's own output, or a benchmark result.
type pkgLine struct {
	text  string
	bench bool
}

// summarize copies the non-verbose view of the events on in to out, then
// the skipped tests, and reports whether anything failed. Like go test, it
// shows a passing package as its ok line (and benchmark results), and a
// failing one with the output of its failing tests and its own.
func summarize(in io.Reader, out io.Writer) (bool, error) {
	type key struct{ pkg, test string }
	buffered := map[key][]string{}
	pkgOut := map[string][]pkgLine{}
	var skips []skipped
	failed := false
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil {
			fmt.Fprintf(out, "%s\n", line) // not an event: go's own output
			continue
		}
		k := key{ev.Package, ev.Test}
		switch ev.Action {
		case "build-output":
			fmt.Fprint(out, ev.Output)
		case "build-fail":
			failed = true
		case "output":
			switch {
			case ev.Test == "":
				pkgOut[ev.Package] = append(pkgOut[ev.Package], pkgLine{text: ev.Output})
			case strings.HasPrefix(ev.Test, "Benchmark") && strings.HasPrefix(ev.Output, "Benchmark") && strings.Contains(ev.Output, "\t"):
				pkgOut[ev.Package] = append(pkgOut[ev.Package], pkgLine{text: ev.Output, bench: true})
			default:
				buffered[k] = append(buffered[k], ev.Output)
			}
		case "pass", "skip":
			if ev.Test != "" {
				if ev.Action == "skip" {
					skips = append(skips, skipped{ev.Package, ev.Test, skipReason(buffered[k])})
				}
				delete(buffered, k)
				break
			}
			for _, l := range pkgOut[ev.Package] {
				if l.bench || isSummaryLine(l.text) {
					fmt.Fprint(out, l.text)
				}
			}
			delete(pkgOut, ev.Package)
		case "fail":
			failed = true
			if ev.Test != "" {
				printTestOutput(out, buffered[k])
				delete(buffered, k)
				break
			}
			// the package failed: show the tests that never ended
			// (a panic, a timeout), in a stable order, then its own output
			var open []string
			for b := range buffered {
				if b.pkg == ev.Package {
					open = append(open, b.test)
				}
			}
			sort.Strings(open)
			for _, t := range open {
				printTestOutput(out, buffered[key{ev.Package, t}])
				delete(buffered, key{ev.Package, t})
			}
			for _, l := range pkgOut[ev.Package] {
				fmt.Fprint(out, l.text)
			}
			delete(pkgOut, ev.Package)
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	if len(skips) == 0 {
		fmt.Fprintln(out, "no test was skipped")
		return failed, nil
	}
	fmt.Fprintf(out, "%d skipped:\n", len(skips))
	for _, s := range skips {
		fmt.Fprintf(out, "  SKIP %s %s: %s\n", s.pkg, s.test, s.reason)
	}
	return failed, nil
}

// isSummaryLine reports whether a passing package's line is one that go
// test prints without -v: its result, or the header of its benchmarks.
func isSummaryLine(l string) bool {
	for _, p := range []string{"ok  \t", "?   \t", "goos: ", "goarch: ", "pkg: ", "cpu: "} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

// printTestOutput prints a test's output without the === lines.
func printTestOutput(out io.Writer, lines []string) {
	for _, l := range lines {
		if !strings.HasPrefix(l, "=== ") {
			fmt.Fprint(out, l)
		}
	}
}

// skipReason is what a skipped test logged (the testing package indents
// t.Log lines; anything else, such as a server's own logs, is left out), on
// one line.
func skipReason(lines []string) string {
	var parts []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "    ") || strings.HasPrefix(strings.TrimSpace(l), "--- SKIP") {
			continue
		}
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " / ")
}
