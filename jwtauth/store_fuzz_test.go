package jwtauth

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// storeJournalBytes builds a journal of generation 0 holding one record per
// batch.
func storeJournalBytes(batches ...[]storeOp) []byte {
	b := storeJournalHeader(0)
	for _, ops := range batches {
		rec := append(make([]byte, storeRecordHeaderLen), appendStoreBatch(nil, ops)...)
		putStoreRecordHeader(rec)
		b = append(b, rec...)
	}
	return b
}

// FuzzStoreLoad feeds arbitrary bytes to the loader as journal.0. It must
// never panic: either the store opens, holding a prefix of the journal, or
// the error names the journal file. The seed corpus is in
// testdata/fuzz/FuzzStoreLoad.
func FuzzStoreLoad(f *testing.F) {
	valid := storeJournalBytes(
		[]storeOp{{Key: "a", Value: []byte("1")}},
		[]storeOp{{Key: "b", Value: []byte("2")}, {Key: "a", Delete: true}},
		[]storeOp{{Key: "c", Value: bytes.Repeat([]byte("x"), 200)}},
	)
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add(storeJournalHeader(0))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, journal []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "journal.0")
		if err := os.WriteFile(path, journal, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := openStore(dir)
		if err != nil {
			if s != nil {
				t.Fatal("openStore returned a store with an error")
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name %s", err, path)
			}
			return
		}
		defer s.Close()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(journal, got) || int64(len(got)) != s.size || int64(len(journal)-len(got)) != s.tornTail {
			t.Fatalf("journal after open is %d bytes (store size %d, torn %d), not a prefix of the %d input bytes",
				len(got), s.size, s.tornTail, len(journal))
		}
		// What loaded must be what a reopen loads, and the store must take
		// writes after it.
		want := storeContent(s)
		if err := s.Put("fuzz-key", []byte("fuzz-value")); err != nil {
			t.Fatal(err)
		}
		want["fuzz-key"] = "fuzz-value"
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s2, err := openStore(dir)
		if err != nil {
			t.Fatalf("reopen after a successful load: %v", err)
		}
		defer s2.Close()
		if got := storeContent(s2); !maps.Equal(got, want) || s2.tornTail != 0 {
			t.Fatalf("reopen: %v (torn %d), want %v", got, s2.tornTail, want)
		}
	})
}
