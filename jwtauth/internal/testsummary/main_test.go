package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSummarize replays the `go test -json` output of a run with a passing
// package with a benchmark and skips, a failing package, a package without
// tests and a build failure.
func TestSummarize(t *testing.T) {
	in, err := os.Open(filepath.Join("testdata", "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var out strings.Builder
	failed, err := summarize(in, &out)
	if err != nil {
		t.Fatal(err)
	}
	if !failed {
		t.Error("a failing run was not reported failed")
	}
	want := `# j/d
d/d_test.go:2:9: expected ')', found '{'
FAIL	j/d [setup failed]
goos: linux
goarch: amd64
pkg: j
cpu: Intel(R) Xeon(R) Processor
BenchmarkB-2   	       1	      1482 ns/op
ok  	j	0.004s
    b_test.go:5: why
    b_test.go:5: broken
--- FAIL: TestFail (0.00s)
FAIL
exit status 1
FAIL	j/b	0.005s
?   	j/c	[no test files]
not json: go's own line
2 skipped:
  SKIP j TestSkip: a_test.go:6: no chromium: install it
  SKIP j TestSub/s: a_test.go:7: sub reason 1
`
	if got := out.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

// TestSummarizePassing: a passing run exits 0;
// a passing package's chatter (a server's logs) is not shown, nor is it a
// skip reason.
func TestSummarizePassing(t *testing.T) {
	in := `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"p","Test":"TestA","Output":"    a_test.go:5: chatter\n"}
{"Action":"output","Package":"p","Test":"TestA","Output":"--- PASS: TestA (0.00s)\n"}
{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Output":"{\"level\":\"info\",\"msg\":\"server log\"}\n"}
{"Action":"run","Package":"p","Test":"TestB"}
{"Action":"output","Package":"p","Test":"TestB","Output":"{\"level\":\"info\",\"msg\":\"server log\"}\n"}
{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:3: no browser\n"}
{"Action":"output","Package":"p","Test":"TestB","Output":"--- SKIP: TestB (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestB"}
{"Action":"output","Package":"p","Output":"PASS\n"}
{"Action":"output","Package":"p","Output":"ok  \tp\t0.01s\n"}
{"Action":"pass","Package":"p"}
`
	var out strings.Builder
	failed, err := summarize(strings.NewReader(in), &out)
	if err != nil || failed {
		t.Fatalf("failed %v, %v", failed, err)
	}
	if got := out.String(); got != "ok  \tp\t0.01s\n1 skipped:\n  SKIP p TestB: b_test.go:3: no browser\n" {
		t.Fatalf("got %q", got)
	}
}

// TestSummarizePanic: the output of a test that never ended is shown when
// its package fails.
func TestSummarizePanic(t *testing.T) {
	in := `{"Action":"run","Package":"p","Test":"TestHang"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"=== RUN   TestHang\n"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"    h_test.go:9: waiting\n"}
{"Action":"output","Package":"p","Output":"panic: test timed out after 1s\n"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t1.0s\n"}
{"Action":"fail","Package":"p"}
`
	var out strings.Builder
	failed, _ := summarize(strings.NewReader(in), &out)
	if !failed || !strings.Contains(out.String(), "h_test.go:9: waiting") || !strings.Contains(out.String(), "panic: test timed out") ||
		!strings.HasSuffix(out.String(), "FAIL\tp\t1.0s\nno test was skipped\n") {
		t.Fatalf("failed %v, output:\n%s", failed, out.String())
	}
}
