package jwtauth

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// newTestStore opens a store in a fresh directory and closes it at the end
// of the test.
func newTestStore(t testing.TB) (*store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

// reopenStore closes s and opens its directory again.
func reopenStore(t testing.TB, s *store) *store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := openStore(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	return s2
}

func storeContent(s *store) map[string]string {
	m := map[string]string{}
	s.Range(func(k string, v []byte) bool {
		m[k] = string(v)
		return true
	})
	return m
}

func wantStoreContent(t *testing.T, s *store, want map[string]string) {
	t.Helper()
	got := storeContent(s)
	if !maps.Equal(got, want) {
		t.Fatalf("store content:\n got %v\nwant %v", got, want)
	}
	if s.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", s.Len(), len(want))
	}
	for k, v := range want {
		if g, ok := s.Get(k); !ok || string(g) != v {
			t.Fatalf("Get(%q) = %q, %v; want %q", k, g, ok, v)
		}
	}
}

func mustPut(t testing.TB, s *store, k, v string) {
	t.Helper()
	if err := s.Put(k, []byte(v)); err != nil {
		t.Fatal(err)
	}
}

func TestStoreRoundTrip(t *testing.T) {
	s, _ := newTestStore(t)
	want := map[string]string{}
	wantStoreContent(t, s, want)

	mustPut(t, s, "a", "1")
	mustPut(t, s, "b", "2")
	mustPut(t, s, "a", "3") // overwrite
	if err := s.Put("empty", nil); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"a": "3", "b": "2", "empty": ""}
	wantStoreContent(t, s, want)

	// Apply copies values: the caller may reuse its buffer.
	buf := []byte("before")
	if err := s.Put("copied", buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXXX")
	want["copied"] = "before"

	if err := s.Delete("b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("never-there"); err != nil {
		t.Fatal(err)
	}
	delete(want, "b")
	if _, ok := s.Get("b"); ok {
		t.Fatal("deleted key still present")
	}
	wantStoreContent(t, s, want)

	// A batch mixing puts and deletes, including the same key twice: ops
	// apply in order.
	if err := s.Apply(
		storeOp{Key: "c", Value: []byte("4")},
		storeOp{Key: "a", Delete: true},
		storeOp{Key: "d", Value: []byte("5")},
		storeOp{Key: "d", Value: []byte("6")},
		storeOp{Key: "c", Delete: true},
	); err != nil {
		t.Fatal(err)
	}
	delete(want, "a")
	want["d"] = "6"
	wantStoreContent(t, s, want)

	// Range stops when fn returns false.
	n := 0
	s.Range(func(string, []byte) bool { n++; return false })
	if n != 1 {
		t.Fatalf("Range went on after false: %d calls", n)
	}

	s = reopenStore(t, s)
	wantStoreContent(t, s, want)
	if s.tornTail != 0 {
		t.Fatalf("clean journal reported a torn tail of %d bytes", s.tornTail)
	}
}

func TestStoreBatchAtomicity(t *testing.T) {
	s, _ := newTestStore(t)
	mustPut(t, s, "x", "old")

	// An invalid op refuses the whole batch before anything is written.
	for _, bad := range []storeOp{
		{Key: ""},
		{Key: strings.Repeat("k", maxStoreKey+1)},
		{Key: "big", Value: make([]byte, maxStoreValue+1)},
	} {
		err := s.Apply(storeOp{Key: "x", Value: []byte("new")}, storeOp{Key: "y", Value: []byte("1")}, bad)
		if err == nil {
			t.Fatalf("batch with bad op (key length %d) accepted", len(bad.Key))
		}
	}
	// A batch whose write fails is absent as a whole, in memory and on disk.
	s.fault = func(op, path string) error {
		if op == "write" {
			return &fs.PathError{Op: "write", Path: path, Err: syscall.EIO}
		}
		return nil
	}
	if err := s.Apply(storeOp{Key: "x", Value: []byte("new")}, storeOp{Key: "y", Value: []byte("1")}, storeOp{Key: "z", Value: []byte("2")}); !errors.Is(err, errStoreUnavailable) {
		t.Fatalf("failed batch: %v", err)
	}
	s.setFault(nil)
	want := map[string]string{"x": "old"}
	wantStoreContent(t, s, want)
	s = reopenStore(t, s)
	wantStoreContent(t, s, want)
}

func TestStoreCompaction(t *testing.T) {
	s, dir := newTestStore(t)
	want := map[string]string{}
	for i := range 300 {
		k := fmt.Sprintf("key-%03d", i%100)
		v := fmt.Sprintf("value-%d", i)
		mustPut(t, s, k, v)
		want[k] = v
	}
	for i := range 20 {
		k := fmt.Sprintf("key-%03d", i*5)
		if err := s.Delete(k); err != nil {
			t.Fatal(err)
		}
		delete(want, k)
	}
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	wantStoreContent(t, s, want)
	if got := storeDirNames(t, dir); !slicesEqual(got, []string{"LOCK", "journal.1", "snapshot"}) {
		t.Fatalf("files after compaction: %v", got)
	}
	if s.size != storeJournalHeaderLen {
		t.Fatalf("journal size after compaction = %d", s.size)
	}
	s = reopenStore(t, s)
	wantStoreContent(t, s, want)

	// Writes after a compaction go to the new journal and survive a reopen
	// together with the snapshot; a second compaction works on top.
	mustPut(t, s, "after", "compaction")
	want["after"] = "compaction"
	s = reopenStore(t, s)
	wantStoreContent(t, s, want)
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	s = reopenStore(t, s)
	wantStoreContent(t, s, want)
	if s.gen != 2 {
		t.Fatalf("generation = %d, want 2", s.gen)
	}
}

func TestStoreAutoCompaction(t *testing.T) {
	s, dir := newTestStore(t)
	s.compactMin = 4 << 10
	want := map[string]string{}
	val := strings.Repeat("v", 100)
	maxJournal := int64(0)
	for i := range 1000 {
		k := fmt.Sprintf("key-%02d", i%40)
		mustPut(t, s, k, val+strconv.Itoa(i))
		want[k] = val + strconv.Itoa(i)
		maxJournal = max(maxJournal, s.size)
	}
	// 1000 records of ~120 bytes are ~120 KB of journal; the live data is
	// ~4.5 KB, so the journal must have been compacted many times and
	// never have grown much past max(4 KiB, 2*live) + one record.
	if s.gen < 5 {
		t.Fatalf("only %d automatic compactions", s.gen)
	}
	if limit := storeJournalHeaderLen + s.compactThreshold() + 256; maxJournal > limit {
		t.Fatalf("journal grew to %d bytes, threshold %d", maxJournal, limit)
	}
	names := storeDirNames(t, dir)
	if len(names) != 3 || names[1] != "journal."+strconv.FormatUint(s.gen, 10) {
		t.Fatalf("files after automatic compactions: %v (generation %d)", names, s.gen)
	}
	s = reopenStore(t, s)
	wantStoreContent(t, s, want)
}

func TestStoreConcurrentApply(t *testing.T) {
	s, _ := newTestStore(t)
	s.compactMin = 8 << 10 // compactions run while writers queue up
	var syncs atomic.Int64
	s.fault = func(op, path string) error {
		if op == "sync" {
			syncs.Add(1)
		}
		return nil
	}
	const writers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				k := fmt.Sprintf("w%d-%03d", w, i)
				if err := s.Apply(storeOp{Key: k, Value: []byte(k)}, storeOp{Key: fmt.Sprintf("last-%d", w), Value: []byte(strconv.Itoa(i))}); err != nil {
					errs <- err
					return
				}
				if v, ok := s.Get(k); !ok || string(v) != k {
					errs <- fmt.Errorf("Get(%q) after Apply = %q, %v", k, v, ok)
					return
				}
				_ = s.Len()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s.setFault(nil)
	want := map[string]string{}
	for w := range writers {
		for i := range each {
			k := fmt.Sprintf("w%d-%03d", w, i)
			want[k] = k
		}
		want[fmt.Sprintf("last-%d", w)] = strconv.Itoa(each - 1)
	}
	wantStoreContent(t, s, want)
	t.Logf("%d writes, %d fsyncs (group commit shares fsyncs between concurrent writers)", writers*each, syncs.Load())
	s = reopenStore(t, s)
	wantStoreContent(t, s, want)
}

func storeDirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

// storeRecordOffsets returns the offsets of the records of a journal file.
func storeRecordOffsets(t *testing.T, path string) []int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := int64(storeJournalHeaderLen); off < int64(len(data)); {
		_, next, why := storeRecordAt(data, off)
		if why != "" {
			t.Fatalf("record at %d: %s", off, why)
		}
		offs = append(offs, off)
		off = next
	}
	return offs
}

func flipStoreByte(t *testing.T, path string, off int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[off] ^= 0x10
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// closedStoreWith makes a closed store holding three one-key records
// (k0, k1, k2) in journal.0 and returns its directory.
func closedStoreWith(t *testing.T) (dir, journal string) {
	t.Helper()
	s, dir := newTestStore(t)
	for i := range 3 {
		mustPut(t, s, "k"+strconv.Itoa(i), strings.Repeat("v", 40)+strconv.Itoa(i))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, filepath.Join(dir, "journal.0")
}

func wantOpenError(t *testing.T, dir string, parts ...string) {
	t.Helper()
	s, err := openStore(dir)
	if err == nil {
		s.Close()
		t.Fatalf("damaged store opened (want an error with %q)", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("open error %q does not contain %q", err, p)
		}
	}
	// The failed open released the lock and the in-process registration.
	if _, err := lockStoreDir(dir); err != nil {
		t.Fatalf("lock still held after a failed open: %v", err)
	}
}

func TestStoreCorruptJournal(t *testing.T) {
	t.Run("middle record bit flip", func(t *testing.T) {
		dir, journal := closedStoreWith(t)
		offs := storeRecordOffsets(t, journal)
		flipStoreByte(t, journal, offs[1]+storeRecordHeaderLen+5) // payload of k1
		wantOpenError(t, dir, journal, fmt.Sprintf("offset %d", offs[1]), "corrupt record")
	})
	t.Run("middle record length flip", func(t *testing.T) {
		dir, journal := closedStoreWith(t)
		offs := storeRecordOffsets(t, journal)
		flipStoreByte(t, journal, offs[1]+1) // the length field of k1's record
		wantOpenError(t, dir, journal, fmt.Sprintf("offset %d", offs[1]))
	})
	t.Run("first record bit flip", func(t *testing.T) {
		dir, journal := closedStoreWith(t)
		offs := storeRecordOffsets(t, journal)
		flipStoreByte(t, journal, offs[0]+storeRecordHeaderLen+1)
		wantOpenError(t, dir, journal, fmt.Sprintf("offset %d", offs[0]))
	})
	t.Run("bad magic", func(t *testing.T) {
		dir, journal := closedStoreWith(t)
		flipStoreByte(t, journal, 2)
		wantOpenError(t, dir, journal, "bad magic at offset 0")
	})
	t.Run("header checksum", func(t *testing.T) {
		dir, journal := closedStoreWith(t)
		flipStoreByte(t, journal, 13) // generation
		wantOpenError(t, dir, journal, "offset 20")
	})
	t.Run("truncated header", func(t *testing.T) {
		dir, journal := closedStoreWith(t)
		if err := os.Truncate(journal, 10); err != nil {
			t.Fatal(err)
		}
		wantOpenError(t, dir, journal, "truncated header")
	})
	t.Run("valid checksum, bad content", func(t *testing.T) {
		dir, journal := closedStoreWith(t)
		f, err := os.OpenFile(journal, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		rec := append(make([]byte, storeRecordHeaderLen), 1, 9, 1, 'k') // op kind 9
		putStoreRecordHeader(rec)
		f.Write(rec)
		f.Close()
		wantOpenError(t, dir, journal, "unknown op kind")
	})
	t.Run("journal of another generation", func(t *testing.T) {
		dir, journal := closedStoreWith(t)
		data, _ := os.ReadFile(journal)
		copy(data, storeJournalHeader(7))
		os.WriteFile(journal, data, 0o600)
		wantOpenError(t, dir, journal, "generation 7")
	})
	t.Run("snapshot missing", func(t *testing.T) {
		s, dir := newTestStore(t)
		mustPut(t, s, "a", "1")
		s.Compact()
		s.Close()
		os.Remove(filepath.Join(dir, "snapshot"))
		wantOpenError(t, dir, "snapshot", "missing")
	})
	t.Run("journal missing", func(t *testing.T) {
		s, dir := newTestStore(t)
		mustPut(t, s, "a", "1")
		s.Compact()
		s.Close()
		os.Remove(filepath.Join(dir, "journal.1"))
		wantOpenError(t, dir, filepath.Join(dir, "journal.1"), "missing")
	})
}

func TestStoreTornTail(t *testing.T) {
	want := map[string]string{"k0": strings.Repeat("v", 40) + "0", "k1": strings.Repeat("v", 40) + "1"}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, journal string, last int64)
	}{
		{"partial record", func(t *testing.T, journal string, last int64) {
			fi, _ := os.Stat(journal)
			if err := os.Truncate(journal, fi.Size()-7); err != nil {
				t.Fatal(err)
			}
		}},
		{"partial header", func(t *testing.T, journal string, last int64) {
			if err := os.Truncate(journal, last+5); err != nil {
				t.Fatal(err)
			}
		}},
		{"flipped last payload", func(t *testing.T, journal string, last int64) {
			flipStoreByte(t, journal, last+storeRecordHeaderLen+3)
		}},
		{"zero-filled tail", func(t *testing.T, journal string, last int64) {
			data, _ := os.ReadFile(journal)
			for i := last; i < int64(len(data)); i++ {
				data[i] = 0
			}
			data = append(data, make([]byte, 4096)...)
			os.WriteFile(journal, data, 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, journal := closedStoreWith(t)
			offs := storeRecordOffsets(t, journal)
			last := offs[len(offs)-1]
			tc.damage(t, journal, last)
			s, err := openStore(dir)
			if err != nil {
				t.Fatalf("torn tail refused: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			wantStoreContent(t, s, want)
			if s.tornTail == 0 {
				t.Fatal("torn tail not reported")
			}
			if fi, _ := os.Stat(journal); fi.Size() != last {
				t.Fatalf("journal is %d bytes after dropping the tail, want %d", fi.Size(), last)
			}
			// New writes go after the last good record and survive.
			mustPut(t, s, "k3", "after")
			s = reopenStore(t, s)
			want := maps.Clone(want)
			want["k3"] = "after"
			wantStoreContent(t, s, want)
			if s.tornTail != 0 {
				t.Fatalf("second open found a torn tail of %d bytes", s.tornTail)
			}
		})
	}
}

func TestStoreCorruptSnapshot(t *testing.T) {
	setup := func(t *testing.T) (dir, snap string) {
		s, dir := newTestStore(t)
		for i := range 50 {
			mustPut(t, s, "k"+strconv.Itoa(i), strings.Repeat("x", i))
		}
		if err := s.Compact(); err != nil {
			t.Fatal(err)
		}
		mustPut(t, s, "after", "1")
		s.Close()
		return dir, filepath.Join(dir, "snapshot")
	}
	t.Run("truncated", func(t *testing.T) {
		dir, snap := setup(t)
		fi, _ := os.Stat(snap)
		os.Truncate(snap, fi.Size()-5)
		wantOpenError(t, dir, snap, "truncated", fmt.Sprintf("offset %d", fi.Size()-5))
	})
	t.Run("truncated to the header", func(t *testing.T) {
		dir, snap := setup(t)
		os.Truncate(snap, 20)
		wantOpenError(t, dir, snap, "truncated at offset 20")
	})
	t.Run("empty", func(t *testing.T) {
		dir, snap := setup(t)
		os.Truncate(snap, 0)
		wantOpenError(t, dir, snap, "truncated at offset 0")
	})
	t.Run("bit flip", func(t *testing.T) {
		dir, snap := setup(t)
		flipStoreByte(t, snap, 100)
		wantOpenError(t, dir, snap, "checksum mismatch")
	})
	t.Run("bad magic", func(t *testing.T) {
		dir, snap := setup(t)
		flipStoreByte(t, snap, 0)
		wantOpenError(t, dir, snap, "bad magic at offset 0")
	})
	t.Run("intact", func(t *testing.T) {
		dir, _ := setup(t)
		s, err := openStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if s.Len() != 51 {
			t.Fatalf("Len = %d", s.Len())
		}
	})
}

// faultOn returns a fault hook failing op (on any path containing pathPart)
// with errno, the first n times.
func faultOn(op, pathPart string, errno syscall.Errno, n int) func(string, string) error {
	var mu sync.Mutex
	return func(o, path string) error {
		mu.Lock()
		defer mu.Unlock()
		if o == op && strings.Contains(path, pathPart) && n > 0 {
			n--
			return &fs.PathError{Op: op, Path: path, Err: errno}
		}
		return nil
	}
}

func TestStoreWriteErrors(t *testing.T) {
	for _, tc := range []struct {
		op    string
		errno syscall.Errno
	}{
		{"write", syscall.ENOSPC},
		{"write", syscall.EIO},
		{"sync", syscall.EIO},
	} {
		t.Run(tc.op+" "+tc.errno.Error(), func(t *testing.T) {
			s, _ := newTestStore(t)
			mustPut(t, s, "a", "old")
			mustPut(t, s, "b", "kept")
			sizeBefore := s.size

			s.setFault(faultOn(tc.op, "journal", tc.errno, 1))
			err := s.Put("a", []byte("new"))
			if !errors.Is(err, errStoreUnavailable) || !errors.Is(err, tc.errno) {
				t.Fatalf("Put error = %v, want errStoreUnavailable and %v", err, tc.errno)
			}
			if v, _ := s.Get("a"); string(v) != "old" {
				t.Fatalf("Get after a failed Put = %q, want the previous value", v)
			}
			// The journal was rolled back to the last good record.
			if fi, _ := os.Stat(s.journalPath); fi.Size() != sizeBefore || s.size != sizeBefore {
				t.Fatalf("journal is %d bytes (store says %d) after rollback, want %d", fi.Size(), s.size, sizeBefore)
			}
			// The store keeps working once the cause is gone.
			mustPut(t, s, "c", "later")
			want := map[string]string{"a": "old", "b": "kept", "c": "later"}
			wantStoreContent(t, s, want)
			s = reopenStore(t, s)
			wantStoreContent(t, s, want)
		})
	}

	t.Run("rollback fails", func(t *testing.T) {
		s, _ := newTestStore(t)
		mustPut(t, s, "a", "old")
		fw := faultOn("write", "journal", syscall.EIO, 1)
		ft := faultOn("truncate", "journal", syscall.EIO, 1)
		s.fault = func(op, path string) error {
			if err := fw(op, path); err != nil {
				return err
			}
			return ft(op, path)
		}
		if err := s.Put("a", []byte("new")); !errors.Is(err, errStoreUnavailable) {
			t.Fatalf("Put error = %v", err)
		}
		// The half-written record stays in the file; the store refuses
		// writes until reopened rather than append after it.
		s.setFault(nil)
		if err := s.Put("b", []byte("1")); !errors.Is(err, errStoreUnavailable) || !strings.Contains(err.Error(), "reopened") {
			t.Fatalf("Put on a broken store = %v", err)
		}
		if err := s.Compact(); !errors.Is(err, errStoreUnavailable) {
			t.Fatalf("Compact on a broken store = %v", err)
		}
		wantStoreContent(t, s, map[string]string{"a": "old"})
		s = reopenStore(t, s)
		wantStoreContent(t, s, map[string]string{"a": "old"})
		if s.tornTail == 0 {
			t.Fatal("the partial record was not dropped as a torn tail")
		}
		mustPut(t, s, "b", "1")
	})

	t.Run("closed", func(t *testing.T) {
		s, _ := newTestStore(t)
		mustPut(t, s, "a", "1")
		s.Close()
		if err := s.Put("a", []byte("2")); !errors.Is(err, errStoreUnavailable) {
			t.Fatalf("Put after Close = %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close = %v", err)
		}
	})
}

func TestStoreCompactionFailure(t *testing.T) {
	for _, tc := range []struct {
		name, op, path string
		broken         bool // the failure is after the commit point
	}{
		{"new journal create", "create", "journal.1", false},
		{"new journal write", "write", "journal.1", false},
		{"snapshot write", "write", "snapshot", false},
		{"snapshot sync", "sync", "snapshot", false},
		{"snapshot rename", "rename", "snapshot", false},
		{"directory sync after rename", "syncdir", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newTestStore(t)
			want := map[string]string{}
			for i := range 20 {
				k := "k" + strconv.Itoa(i)
				mustPut(t, s, k, strings.Repeat("v", 2000))
				want[k] = strings.Repeat("v", 2000)
			}
			before := storeDirNames(t, dir)
			errno := syscall.EIO
			if tc.op == "syncdir" {
				// the first directory sync is the new journal's (before the
				// commit point), the second the snapshot's
				s.fault = func() func(string, string) error {
					n := 0
					return func(op, path string) error {
						if op == "syncdir" {
							n++
							if n == 2 {
								return &fs.PathError{Op: "fsync", Path: path, Err: errno}
							}
						}
						return nil
					}
				}()
			} else {
				s.setFault(faultOn(tc.op, tc.path, errno, 1))
			}
			err := s.Compact()
			if !errors.Is(err, errStoreUnavailable) || !errors.Is(err, errno) {
				t.Fatalf("Compact = %v", err)
			}
			s.setFault(nil)
			wantStoreContent(t, s, want)
			if !tc.broken {
				// Previous snapshot and journal intact and in use: no leftovers.
				if got := storeDirNames(t, dir); !slicesEqual(got, before) {
					t.Fatalf("files after a failed compaction: %v, before: %v", got, before)
				}
				mustPut(t, s, "after", "1")
				want["after"] = "1"
				if err := s.Compact(); err != nil {
					t.Fatalf("compaction retry: %v", err)
				}
			} else if err := s.Put("after", []byte("1")); !errors.Is(err, errStoreUnavailable) {
				t.Fatalf("Put after an unsure commit = %v", err)
			}
			s = reopenStore(t, s)
			wantStoreContent(t, s, want)
		})
	}

	t.Run("automatic", func(t *testing.T) {
		s, _ := newTestStore(t)
		s.compactMin = 1 << 10
		s.setFault(faultOn("rename", "snapshot", syscall.ENOSPC, 1))
		want := map[string]string{}
		for i := range 30 {
			k := "k" + strconv.Itoa(i%3)
			mustPut(t, s, k, strings.Repeat("v", 100)+strconv.Itoa(i)) // never fails: the record is durable
			want[k] = strings.Repeat("v", 100) + strconv.Itoa(i)
			if s.compactErr != nil {
				break
			}
		}
		if !errors.Is(s.compactErr, syscall.ENOSPC) || s.gen != 0 {
			t.Fatalf("automatic compaction error = %v, generation %d", s.compactErr, s.gen)
		}
		// It is retried once the journal has grown by another threshold.
		for i := 0; s.gen == 0 && i < 100; i++ {
			mustPut(t, s, "k0", strconv.Itoa(i))
			want["k0"] = strconv.Itoa(i)
		}
		if s.gen == 0 || s.compactErr != nil {
			t.Fatalf("automatic compaction not retried: generation %d, %v", s.gen, s.compactErr)
		}
		s = reopenStore(t, s)
		wantStoreContent(t, s, want)
	})
}

func TestStoreLockSameProcess(t *testing.T) {
	s, dir := newTestStore(t)
	s2, err := openStore(dir)
	if err == nil {
		s2.Close()
		t.Fatal("second openStore of the same directory succeeded")
	}
	if !strings.Contains(err.Error(), dir) {
		t.Fatalf("error %q does not name the directory", err)
	}
	// The flock itself also refuses a second descriptor in this process.
	if _, err := lockStoreDir(dir); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second flock = %v", err)
	}
	s.Close()
	s3, err := openStore(dir)
	if err != nil {
		t.Fatalf("open after Close: %v", err)
	}
	s3.Close()
}

// Child processes: the test binary re-executes itself with one of these
// tests selected and JWTAUTH_STORE_CHILD set.

const storeChildEnv = "JWTAUTH_STORE_CHILD"

func storeChild(t *testing.T, mode, dir string, extra ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestStoreChild"+mode+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), storeChildEnv+"="+mode, "JWTAUTH_STORE_DIR="+dir)
	cmd.Env = append(cmd.Env, extra...)
	return cmd
}

func TestStoreChildOpener(t *testing.T) {
	if os.Getenv(storeChildEnv) != "Opener" {
		t.Skip("helper process for TestStoreLockOtherProcess")
	}
	s, err := openStore(os.Getenv("JWTAUTH_STORE_DIR"))
	if err != nil {
		fmt.Printf("open-error: %v\n", err)
		return
	}
	s.Close()
	fmt.Println("opened")
}

func TestStoreLockOtherProcess(t *testing.T) {
	s, dir := newTestStore(t)
	out, err := storeChild(t, "Opener", dir).Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("open-error: ")) || !bytes.Contains(out, []byte(dir)) || !bytes.Contains(out, []byte("locked by another process")) {
		t.Fatalf("second process was not refused with an error naming %s:\n%s", dir, out)
	}
	s.Close()
	out, err = storeChild(t, "Opener", dir).Output()
	if err != nil || !bytes.Contains(out, []byte("opened")) {
		t.Fatalf("child after Close: %v\n%s", err, out)
	}
}

// TestStoreChildWriter writes batches from three goroutines until killed,
// printing "ack KEY" once Apply returned nil. Batch i of goroutine g puts
// KEY-a and KEY-b, sets last-iN-gM to i and overwrites a scratch value.
func TestStoreChildWriter(t *testing.T) {
	if os.Getenv(storeChildEnv) != "Writer" {
		t.Skip("helper process for TestStoreKillLoop")
	}
	s, err := openStore(os.Getenv("JWTAUTH_STORE_DIR"))
	if err != nil {
		fmt.Printf("open-error: %v\n", err)
		os.Exit(3)
	}
	s.compactMin = 8 << 10 // compact often, so kills land in compactions too
	iter := os.Getenv("JWTAUTH_STORE_ITER")
	scratch := bytes.Repeat([]byte("s"), 1000)
	var out sync.Mutex
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() {
			for i := range 100000 {
				key := fmt.Sprintf("i%s-g%d-%06d", iter, g, i)
				if err := s.Apply(
					storeOp{Key: key + "-a", Value: storeKillValue(key)},
					storeOp{Key: key + "-b", Value: storeKillValue(key)},
					storeOp{Key: fmt.Sprintf("last-i%s-g%d", iter, g), Value: []byte(strconv.Itoa(i))},
					// dead data, so that automatic compactions run
					storeOp{Key: fmt.Sprintf("scratch-g%d", g), Value: scratch},
				); err != nil {
					fmt.Printf("apply-error: %v\n", err)
					os.Exit(4)
				}
				out.Lock()
				fmt.Printf("ack %s\n", key)
				out.Unlock()
			}
		})
	}
	wg.Wait()
}

func storeKillValue(key string) []byte {
	return []byte(strings.Repeat(key, 8))
}

func TestStoreKillLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary 20 times")
	}
	dir := filepath.Join(t.TempDir(), "store")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	acked := map[string]bool{}
	const iterations = 20
	for iter := range iterations {
		killAfter := 1 + rng.IntN(80)
		cmd := storeChild(t, "Writer", dir, "JWTAUTH_STORE_ITER="+strconv.Itoa(iter))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n, killed := 0, false
		lastAck := map[string]int{} // last-iN-gM key -> highest acked batch
		var other []string
		for sc.Scan() {
			line := sc.Text()
			key, ok := strings.CutPrefix(line, "ack ")
			if !ok {
				other = append(other, line)
				continue
			}
			// Every ack read, also after the kill, was acknowledged.
			acked[key] = true
			i, _ := strconv.Atoi(key[strings.LastIndexByte(key, '-')+1:])
			lk := "last-" + key[:strings.LastIndexByte(key, '-')]
			lastAck[lk] = max(lastAck[lk], i)
			if n++; n == killAfter && !killed {
				killed = true
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("iteration %d: child ended after %d acks without being killed: %v\n%s\n%s", iter, n, err, other, stderr.Bytes())
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("iteration %d: child did not die of SIGKILL: %v\n%s", iter, err, other)
		}

		s, err := openStore(dir)
		if err != nil {
			t.Fatalf("iteration %d: store does not load after kill -9: %v", iter, err)
		}
		for key := range acked {
			for _, suffix := range []string{"-a", "-b"} {
				if v, ok := s.Get(key + suffix); !ok || !bytes.Equal(v, storeKillValue(key)) {
					t.Fatalf("iteration %d: acknowledged %s%s lost (got %q, %v)", iter, key, suffix, v, ok)
				}
			}
		}
		for lk, i := range lastAck {
			v, _ := s.Get(lk)
			if got, _ := strconv.Atoi(string(v)); got < i {
				t.Fatalf("iteration %d: %s = %q, but batch %d was acknowledged", iter, lk, v, i)
			}
		}
		// Batches are atomic: the -a and -b halves of an unacknowledged
		// batch are both present or both absent.
		s.Range(func(k string, v []byte) bool {
			if base, ok := strings.CutSuffix(k, "-a"); ok {
				if _, ok := s.data[base+"-b"]; !ok {
					t.Errorf("iteration %d: half a batch: %s without -b", iter, k)
				}
			}
			return true
		})
		t.Logf("iteration %d: killed after %d acks (%d read), generation %d, %d keys, torn tail %d bytes",
			iter, killAfter, n, s.gen, s.Len(), s.tornTail)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			return
		}
	}
}

func TestStoreFileModes(t *testing.T) {
	s, dir := newTestStore(t)
	for i := range 10 {
		mustPut(t, s, "k"+strconv.Itoa(i), "v")
	}
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "after", "v")
	checkStoreModes(t, dir, 3)
	s.Close()

	// An existing directory and files with loose (not writable by others)
	// modes are tightened.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "journal.1"), 0o640); err != nil {
		t.Fatal(err)
	}
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkStoreModes(t, dir, 3)
	s.Close()

	// A group- or world-writable directory is refused.
	for _, mode := range []os.FileMode{0o777, 0o720, 0o702} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		if s, err := openStore(dir); err == nil {
			s.Close()
			t.Fatalf("directory with mode %04o accepted", mode)
		} else if !strings.Contains(err.Error(), dir) {
			t.Fatalf("error %q does not name the directory", err)
		}
	}

	// A new directory is created 0700 even with a permissive umask.
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir2 := filepath.Join(t.TempDir(), "a", "b")
	s, err = openStore(dir2)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", "v")
	checkStoreModes(t, dir2, 2)
	s.Close()
}

func checkStoreModes(t *testing.T, dir string, files int) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("store directory mode %04o, want 0700", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != files {
		t.Fatalf("store files %v, want %d", storeDirNames(t, dir), files)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, want a regular file with 0600", e.Name(), fi.Mode())
		}
	}
}

func TestStoreRecordFormat(t *testing.T) {
	// A zero-filled header never passes its checksum, so a zero-filled torn
	// tail is never mistaken for a record.
	if storeCRC(make([]byte, 8)) == 0 {
		t.Fatal("CRC32C of zeros is zero")
	}
	rec := append(make([]byte, storeRecordHeaderLen), appendStoreBatch(nil, []storeOp{{Key: "k", Value: []byte("v")}, {Key: "d", Delete: true}})...)
	putStoreRecordHeader(rec)
	if l := binary.LittleEndian.Uint32(rec); int(l) != len(rec)-storeRecordHeaderLen {
		t.Fatalf("length field %d", l)
	}
	payload, next, why := storeRecordAt(rec, 0)
	if why != "" || next != int64(len(rec)) {
		t.Fatalf("record check: %q, next %d", why, next)
	}
	ops, err := decodeStoreRecord(payload)
	if err != nil || len(ops) != 2 || ops[0].Key != "k" || string(ops[0].Value) != "v" || !ops[1].Delete || ops[1].Key != "d" {
		t.Fatalf("decoded %+v, %v", ops, err)
	}
}

// storeBenchValue is about the size of a session record.
var storeBenchValue = bytes.Repeat([]byte("s"), 160)

// benchStore opens a store holding n session-like entries, compacted, in a
// directory of b.TempDir (the same file system for every size).
func benchStore(b *testing.B, n int) *store {
	s, _ := newTestStore(b)
	ops := make([]storeOp, 0, 1000)
	for i := range n {
		ops = append(ops, storeOp{Key: fmt.Sprintf("session:%08d", i), Value: storeBenchValue})
		if len(ops) == cap(ops) || i == n-1 {
			if err := s.Apply(ops...); err != nil {
				b.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	if err := s.Compact(); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkStorePut measures one durable Put (a login creating a session)
// at 1k and 100k existing keys; the two figures should be close, since a
// write costs one append and one fsync whatever the number of keys.
func BenchmarkStorePut(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			s := benchStore(b, n)
			i := n
			for b.Loop() {
				if err := s.Put(fmt.Sprintf("session:%08d", i), storeBenchValue); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkStoreRotate measures one atomic batch replacing an entry (a
// refresh-token rotation: delete the old key, put the new one).
func BenchmarkStoreRotate(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			s := benchStore(b, n)
			i := 0
			for b.Loop() {
				if err := s.Apply(
					storeOp{Key: fmt.Sprintf("session:%08d", i), Delete: true},
					storeOp{Key: fmt.Sprintf("session:%08d", n+i), Value: storeBenchValue},
				); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkStorePutParallel measures Put from 8 goroutines per CPU at 1k
// keys: group commit lets concurrent writers share one fsync.
func BenchmarkStorePutParallel(b *testing.B) {
	s := benchStore(b, 1000)
	var next atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Put(fmt.Sprintf("session:p%08d", next.Add(1)), storeBenchValue); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
