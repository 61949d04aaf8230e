package jwtauth

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestStoreENOSPCTmpfs fills a real 64 KiB tmpfs: the failing Apply wraps
// errStoreUnavailable and ENOSPC, leaves memory and disk at the previous
// state, and the store works again once space is freed.
func TestStoreENOSPCTmpfs(t *testing.T) {
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=64k,mode=0700"); err != nil {
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
	dir := filepath.Join(mnt, "store")
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	s.compactMin = 1 << 30 // only the journal grows

	want := map[string]string{}
	val := strings.Repeat("v", 3000)
	var failed error
	for i := range 100 {
		k := fmt.Sprintf("k%03d", i)
		if err := s.Put(k, []byte(val)); err != nil {
			failed = err
			if _, ok := s.Get(k); ok {
				t.Fatalf("failed Put of %s is visible", k)
			}
			break
		}
		want[k] = val
	}
	if failed == nil {
		t.Fatal("100 puts of 3 KB fit in a 64 KiB tmpfs")
	}
	if !errors.Is(failed, errStoreUnavailable) || !errors.Is(failed, syscall.ENOSPC) {
		t.Fatalf("Put on a full disk = %v, want errStoreUnavailable and ENOSPC", failed)
	}
	// An overwrite fails too and keeps the previous value.
	if err := s.Put("k000", []byte(strings.Repeat("w", 3000))); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("overwrite on a full disk = %v", err)
	}
	wantStoreContent(t, s, want)
	t.Logf("%d records acknowledged before ENOSPC: %v", len(want), failed)

	// The journal was rolled back: reopening (on the still-full disk) shows
	// the acknowledged state.
	s.Close()
	if s, err = openStore(dir); err != nil {
		t.Fatal(err)
	}
	s.compactMin = 1 << 30
	wantStoreContent(t, s, want)
	if s.tornTail != 0 {
		t.Fatalf("rollback left a torn tail of %d bytes", s.tornTail)
	}

	// Freeing space makes the store writable again.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "after", "space freed")
	want = maps.Clone(want)
	want["after"] = "space freed"
	wantStoreContent(t, s, want)
	s.Close()
	if s, err = openStore(dir); err != nil {
		t.Fatal(err)
	}
	wantStoreContent(t, s, want)
}
