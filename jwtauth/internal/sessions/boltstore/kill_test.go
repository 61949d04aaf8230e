package boltstore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// Child processes: the test binary re-executes itself with one test
// selected and childEnv naming the role.

const (
	childEnv     = "JWTAUTH_BOLTSTORE_CHILD"
	childPathEnv = "JWTAUTH_BOLTSTORE_PATH"
)

func child(t *testing.T, role, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChild"+role+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+role, childPathEnv+"="+path)
	return cmd
}

// killPolicy is the policy of the kill loop: no session of a worker ends
// by itself, and a replaced token stays in its grace window for the whole
// test, so that the parent can tell an unacknowledged rotation that
// committed (the acknowledged token is then the replaced one) from a lost
// one.
var killPolicy = sessions.Policy{
	RefreshTTL:  24 * time.Hour,
	IdleTimeout: 12 * time.Hour,
	MaxPerLogin: 100,
	Grace:       time.Hour,
}

// TestChildWriter writes until killed. Each of four workers loops: a login
// ("ack W create SID TOKEN"), three rotations ("ack W rot SID GEN TOKEN")
// and, every other time, a logout ("ack W rev SID"); each line is printed
// once the operation returned. A fifth goroutine makes 20 concurrent
// logins that are already dead and sweeps them ("sweep-start",
// "sweep-done N"), so that kills land inside sweeps and concurrent batches.
func TestChildWriter(t *testing.T) {
	if os.Getenv(childEnv) != "Writer" {
		t.Skip("helper process for TestKillLoop")
	}
	s, err := Open(os.Getenv(childPathEnv), Options{})
	if err != nil {
		fmt.Printf("open-error: %v\n", err)
		os.Exit(3)
	}
	ctx := context.Background()
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		fmt.Printf(format+"\n", args...)
		out.Unlock()
	}
	fail := func(what string, err error) {
		say("error: %s: %v", what, err)
		os.Exit(4)
	}
	// A long fingerprint makes records span more of a page, so that
	// batches split and spill pages.
	fp := strings.Repeat("f", 300)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				login := fmt.Sprintf("w%d-%d-%d", w, os.Getpid(), i)
				ss, tok, _, err := s.Create(ctx, killPolicy, sessions.New{Login: login, UserID: strconv.Itoa(i), FP: fp}, time.Now())
				if err != nil {
					fail("create", err)
				}
				say("ack %d create %s %s", w, ss.SID, tok)
				for range 3 {
					r, next, _, err := s.Rotate(ctx, killPolicy, tok, ss.SID, time.Now())
					if err != nil {
						fail("rotate", err)
					}
					tok = next
					say("ack %d rot %s %d %s", w, ss.SID, r.Gen, tok)
				}
				if i%2 == 1 {
					if _, found, err := s.Revoke(ctx, killPolicy, tok, time.Now()); err != nil || !found {
						fail("revoke", fmt.Errorf("found %v: %v", found, err))
					}
					say("ack %d rev %s", w, ss.SID)
				}
			}
		})
	}
	wg.Go(func() {
		for {
			var dw sync.WaitGroup
			past := time.Now().Add(-killPolicy.IdleTimeout - time.Hour)
			for range 20 {
				dw.Go(func() {
					if _, _, _, err := s.Create(ctx, killPolicy, sessions.New{Login: "dead", FP: fp}, past); err != nil {
						fail("create dead", err)
					}
				})
			}
			dw.Wait()
			say("sweep-start")
			n, err := s.Sweep(ctx, killPolicy, time.Now())
			if err != nil {
				fail("sweep", err)
			}
			say("sweep-done %d", n)
		}
	})
	wg.Wait()
}

// acked is what the parent knows was acknowledged of one session.
type acked struct {
	worker  string
	gen     uint64
	tok     string
	revoked bool
}

// TestKillLoop kills a writing child with SIGKILL at random moments, 30
// times, and checks after each kill that the store opens without help and
// that every acknowledged write is there.
func TestKillLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary 30 times")
	}
	path := filepath.Join(t.TempDir(), "store", "sessions.db")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	model := map[string]*acked{}
	const iterations = 30
	inSweep := 0
	for iter := range iterations {
		// A third of the kills come at the start of a sweep.
		atSweep := iter%3 == 2
		killAfter := 1 + rng.IntN(120)
		cmd := child(t, "Writer", path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// last is each worker's latest session: only its next,
		// unacknowledged, operation may have committed.
		last := map[string]string{}
		n, killed := 0, false
		var other []string
		kill := func() {
			if !killed {
				killed = true
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
		}
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) >= 4 && f[0] == "ack":
				// Every ack read, also after the kill, was
				// acknowledged.
				w, op, sid := f[1], f[2], f[3]
				switch op {
				case "create":
					model[sid] = &acked{worker: w, tok: f[4]}
					last[w] = sid
				case "rot":
					gen, _ := strconv.ParseUint(f[4], 10, 64)
					model[sid].gen, model[sid].tok = gen, f[5]
				case "rev":
					model[sid].revoked = true
				}
				if n++; n >= killAfter && !atSweep {
					kill()
				}
			case len(f) == 1 && f[0] == "sweep-start":
				if atSweep && n >= killAfter/4 {
					kill()
					inSweep++
				}
			case len(f) == 2 && f[0] == "sweep-done":
			default:
				other = append(other, sc.Text())
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("iteration %d: child ended after %d acks without being killed: %v\n%s\n%s", iter, n, err, other, stderr.Bytes())
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("iteration %d: child did not die of SIGKILL: %v\n%s\n%s", iter, err, other, stderr.Bytes())
		}
		if len(other) > 0 {
			t.Fatalf("iteration %d: child said %q", iter, other)
		}

		// Open checks the whole file and the indexes.
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("iteration %d: store does not open after kill -9: %v", iter, err)
		}
		checkAcked(t, iter, s, model, last)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("iteration %d: killed after %d acks (at a sweep: %v), %d sessions acknowledged", iter, n, atSweep, len(model))
		if t.Failed() {
			return
		}
	}
	if inSweep == 0 {
		t.Error("no kill landed at a sweep")
	}
}

// checkAcked checks every acknowledged session against the reopened
// store. A worker's latest session may be one step ahead: its next
// operation committed but was not acknowledged.
func checkAcked(t *testing.T, iter int, s *Store, model map[string]*acked, last map[string]string) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	for sid, a := range model {
		latest := last[a.worker] == sid
		got, _, err := s.Find(ctx, killPolicy, a.tok, now)
		switch {
		case a.revoked:
			if _, ok, err := s.Get(ctx, killPolicy, sid, now); err != nil || ok {
				t.Fatalf("iteration %d: acknowledged logout of %s lost: %v, %v", iter, sid, ok, err)
			}
		case errors.Is(err, sessions.ErrUnknown) && latest:
			// An unacknowledged logout committed.
			a.revoked = true
		case err != nil:
			t.Fatalf("iteration %d: acknowledged session %s (gen %d): %v", iter, sid, a.gen, err)
		case got.SID != sid:
			t.Fatalf("iteration %d: token of %s finds %s", iter, sid, got.SID)
		case got.Gen == a.gen, got.Gen == a.gen+1 && latest:
		default:
			t.Fatalf("iteration %d: session %s at gen %d, but gen %d was acknowledged", iter, sid, got.Gen, a.gen)
		}
		if got.Gen == a.gen+1 && !a.revoked {
			// The unacknowledged rotation committed; the acknowledged
			// token is the replaced one. Follow it, so that the next
			// iteration checks the family from its real state.
			if _, next, _, err := s.Rotate(ctx, killPolicy, a.tok, sid, now); err != nil {
				t.Fatalf("iteration %d: retried rotation of %s: %v", iter, sid, err)
			} else {
				a.gen, a.tok = got.Gen, next
			}
		}
	}
}
