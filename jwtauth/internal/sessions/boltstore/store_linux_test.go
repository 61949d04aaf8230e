package boltstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// TestENOSPCTmpfs fills a real 64 KiB tmpfs: the failing write wraps
// sessions.ErrUnavailable and ENOSPC and names the file, the previous state
// stays intact (in the open store and on disk), the store reopens on the
// full disk, and it works again once space is freed.
func TestENOSPCTmpfs(t *testing.T) {
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=64k,mode=0700"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a tmpfs to get a real ENOSPC: %v", err)
		}
		t.Skipf("cannot mount a tmpfs to get a real ENOSPC (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	// Ballast to free later.
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 16<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(mnt, "store", "sessions.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()

	now := time.Now().Truncate(time.Millisecond)
	fp := strings.Repeat("f", 1500)
	type sess struct {
		s   sessions.Session
		tok string
	}
	var acked []sess
	var failed error
	for i := range 200 {
		ss, tok, _, err := s.Create(bg, policy, sessions.New{Login: fmt.Sprintf("user%03d", i), FP: fp}, now)
		if err != nil {
			failed = err
			break
		}
		acked = append(acked, sess{ss, tok})
	}
	if failed == nil {
		t.Fatal("200 logins of 1.5 KB fit in a 64 KiB tmpfs")
	}
	if !errors.Is(failed, sessions.ErrUnavailable) || !errors.Is(failed, syscall.ENOSPC) || !strings.Contains(failed.Error(), path) {
		t.Fatalf("login on a full disk = %v; want ErrUnavailable and ENOSPC, naming %s", failed, path)
	}
	t.Logf("%d logins acknowledged before: %v", len(acked), failed)

	// Rotations fail too, leaving the token current; those that still
	// fit in freed pages commit, and the model follows them.
	var rotErr error
	for i := range acked {
		a := &acked[i]
		r, next, _, err := s.Rotate(bg, policy, a.tok, a.s.SID, now)
		if err != nil {
			rotErr = err
			if got, _, err := s.Find(bg, policy, a.tok, now); err != nil || got.Gen != a.s.Gen {
				t.Fatalf("token after a failed rotation: %+v, %v", got, err)
			}
			break
		}
		a.s, a.tok = r, next
	}
	if !errors.Is(rotErr, sessions.ErrUnavailable) || !errors.Is(rotErr, syscall.ENOSPC) {
		t.Fatalf("rotation on a full disk = %v", rotErr)
	}
	wantAcked := func(s *Store) {
		t.Helper()
		for _, a := range acked {
			got, _, err := s.Find(bg, policy, a.tok, now)
			if err != nil || got.SID != a.s.SID || got.Gen != a.s.Gen {
				t.Fatalf("acknowledged session %s: %+v, %v", a.s.SID, got, err)
			}
		}
		if n, err := s.Count(bg, policy, now); err != nil || n != len(acked) {
			t.Fatalf("count = %d, %v; want %d", n, err, len(acked))
		}
	}
	wantAcked(s)

	// The store reopens on the still-full disk with the same state.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path, Options{}); err != nil {
		t.Fatalf("reopen on a full disk: %v", err)
	}
	wantAcked(s)

	// Freeing space makes it writable again.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	ss, tok := mustCreate(t, s, "after", now)
	acked = append(acked, sess{ss, tok})
	wantAcked(s)
	s.Close()
	if s, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	wantAcked(s)
}
