package boltstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions/sessionstest"
	bolt "go.etcd.io/bbolt"
)

var (
	policy = sessionstest.Policy
	bg     = context.Background()
)

func openTest(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "store", "sessions.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func mustCreate(t testing.TB, s *Store, login string, now time.Time) (sessions.Session, string) {
	t.Helper()
	ss, tok, _, err := s.Create(bg, policy, sessions.New{Login: login, UserID: "1", FP: "fp"}, now)
	if err != nil {
		t.Fatal(err)
	}
	return ss, tok
}

func TestLockSameProcess(t *testing.T) {
	s, path := openTest(t)
	s2, err := Open(path, Options{})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of the same file succeeded")
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second open: %v; want an error naming %s", err, path)
	}
	s.Close()
	s3, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("open after Close: %v", err)
	}
	s3.Close()
}

// TestChildOpener opens the store and reports the outcome.
func TestChildOpener(t *testing.T) {
	if os.Getenv(childEnv) != "Opener" {
		t.Skip("helper process for TestLockOtherProcess")
	}
	s, err := Open(os.Getenv(childPathEnv), Options{})
	if err != nil {
		fmt.Printf("open-error: %v\n", err)
		return
	}
	s.Close()
	fmt.Println("opened")
}

func TestLockOtherProcess(t *testing.T) {
	s, path := openTest(t)
	out, err := child(t, "Opener", path).Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("open-error: ")) || !bytes.Contains(out, []byte(path)) || !bytes.Contains(out, []byte("locked by another process")) {
		t.Fatalf("second process was not refused with an error naming %s:\n%s", path, out)
	}
	s.Close()
	out, err = child(t, "Opener", path).Output()
	if err != nil || !bytes.Contains(out, []byte("opened")) {
		t.Fatalf("child after Close: %v\n%s", err, out)
	}
}

// closedStore writes a store with some sessions and closes it. It returns
// the file and a marker found in exactly one record.
func closedStore(t *testing.T) (path, marker string) {
	t.Helper()
	s, path := openTest(t)
	now := time.Now()
	fill(t, s, 200, strings.Repeat("p", 100), now)
	marker = "MARKER-0123456789"
	if _, _, _, err := s.Create(bg, policy, sessions.New{Login: "marked", FP: marker}, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path, marker
}

func TestCorruptFile(t *testing.T) {
	page := int64(os.Getpagesize())
	cases := []struct {
		name   string
		damage func(t *testing.T, path, marker string)
		want   string
	}{
		{"TruncatedMidPage", func(t *testing.T, path, _ string) { truncate(t, path, -100) }, "truncated"},
		{"TruncatedToOnePage", func(t *testing.T, path, _ string) { truncate(t, path, page-size(t, path)) }, "truncated"},
		{"TruncatedToHundredBytes", func(t *testing.T, path, _ string) { truncate(t, path, 100-size(t, path)) }, "truncated"},
		{"TruncatedLastPages", func(t *testing.T, path, _ string) {
			s := size(t, path)
			// Drop the pages above the data's high-water mark and one
			// more.
			truncate(t, path, usedSize(t, path)-page-s)
		}, "truncated"},
		{"BothMetaPagesZeroed", func(t *testing.T, path, _ string) {
			writeAt(t, path, 0, make([]byte, 2*page))
		}, "corrupt"},
		{"Garbage", func(t *testing.T, path, _ string) {
			b := bytes.Repeat([]byte("garbage!"), int(size(t, path)/8))
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "corrupt"},
		{"LeafPageHeader", func(t *testing.T, path, marker string) {
			off := markerPage(t, path, marker)
			// Page flags (offset 8) of the leaf holding the marker: no
			// page type at all.
			writeAt(t, path, off+8, []byte{0, 0})
		}, "corrupt"},
		{"LeafPageCount", func(t *testing.T, path, marker string) {
			off := markerPage(t, path, marker)
			writeAt(t, path, off+10, []byte{0xff, 0xff})
		}, "corrupt"},
		{"RecordField", func(t *testing.T, path, marker string) {
			// The byte before the marker is the length of the fp field,
			// the record's last: past the record's end, it no longer
			// decodes.
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			i := bytes.Index(b, []byte(marker))
			writeAt(t, path, int64(i-1), []byte{0x7f}) // fp length
		}, "malformed session record"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path, marker := closedStore(t)
			c.damage(t, path, marker)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, Options{})
			if err == nil {
				s.Close()
				t.Fatal("a damaged file opened")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("open = %v; want an error naming %s and saying %q", err, path, c.want)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Fatal("a refused open changed the file")
			}
		})
	}

	// A bbolt file of another application is not taken over.
	t.Run("OtherBoltFile", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "d")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "other.db")
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("certs")); return err }); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if s, err := Open(path, Options{}); err == nil {
			s.Close()
			t.Fatal("another application's bbolt file opened")
		} else if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a session store") {
			t.Fatalf("open = %v", err)
		}
	})

	// One damaged meta page is a torn meta write: bbolt uses the other
	// one, and the store opens with a committed state.
	t.Run("OneMetaPage", func(t *testing.T) {
		path, _ := closedStore(t)
		for _, page := range []int64{0, 1} {
			writeAt(t, path, page*int64(os.Getpagesize()), make([]byte, 64))
			s, err := Open(path, Options{})
			if err != nil {
				t.Fatalf("meta page %d damaged: %v", page, err)
			}
			if n, err := s.Count(bg, policy, time.Now()); err != nil || n < 200 {
				t.Fatalf("count = %d, %v", n, err)
			}
			s.Close()
			// The damaged page was rewritten.
			if ok, err := metaPagesIntact(path, os.Getpagesize()); err != nil || !ok {
				t.Fatalf("meta pages after open: %v, %v", ok, err)
			}
		}
	})

	// A zero-length file is a store whose creation never completed.
	t.Run("Empty", func(t *testing.T) {
		path, _ := closedStore(t)
		truncate(t, path, -size(t, path))
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	})
}

func size(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// usedSize is the end of the highest page the data uses.
func usedSize(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}

func truncate(t *testing.T, path string, by int64) {
	t.Helper()
	if err := os.Truncate(path, size(t, path)+by); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// markerPage is the offset of the page that holds marker.
func markerPage(t *testing.T, path, marker string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(marker))
	if i < 0 || bytes.Contains(b[i+1:], []byte(marker)) {
		t.Fatalf("marker found at %d, or more than once", i)
	}
	page := int64(os.Getpagesize())
	return int64(i) / page * page
}

func TestFileModes(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	// A new directory and file: 0700 and 0600 even with a permissive
	// umask, and the store's only file.
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "sessions.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "alice", time.Now())
	checkModes(t, dir)
	s.Close()

	// Looser modes that others cannot write through are tightened.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	checkModes(t, dir)
	s.Close()

	// A directory others may write to is refused.
	for _, mode := range []os.FileMode{0o777, 0o720, 0o702} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		if s, err := Open(path, Options{}); err == nil {
			s.Close()
			t.Fatalf("directory with mode %04o accepted", mode)
		} else if !strings.Contains(err.Error(), dir) {
			t.Fatalf("error %q does not name the directory", err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}

	// A symbolic link is refused, even to a valid store, and so is a
	// directory.
	link := filepath.Join(dir, "link.db")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(link, Options{}); err == nil {
		s.Close()
		t.Fatal("a symbolic link opened")
	} else if !strings.Contains(err.Error(), link) || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("open of a symlink = %v", err)
	}
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(dir, Options{}); err == nil {
		s.Close()
		t.Fatal("a directory opened as a store")
	}
}

func checkModes(t *testing.T, dir string) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("store directory mode %04o, want 0700", fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "sessions.db" {
		t.Fatalf("store directory holds %v, want only sessions.db", entries)
	}
	info, err := entries[0].Info()
	if err != nil {
		t.Fatal(err)
	}
	if !info.Mode().IsRegular() || info.Mode().Perm() != 0o600 {
		t.Fatalf("store file mode %v, want a regular file with 0600", info.Mode())
	}
}

// TestNoTokenInFile greps the file for every refresh token the store ever
// issued, in text and in raw bytes: current, replaced, sealed successors
// within and past grace, revoked, swept.
func TestNoTokenInFile(t *testing.T) {
	s, path := openTest(t)
	now := time.Now().Truncate(time.Millisecond)
	var toks []string
	var current []sessions.Hash
	for i := range 50 {
		ss, tok := mustCreate(t, s, fmt.Sprintf("user%d", i), now)
		toks = append(toks, tok)
		for range i % 4 {
			_, next, _, err := s.Rotate(bg, policy, tok, ss.SID, now)
			if err != nil {
				t.Fatal(err)
			}
			tok = next
			toks = append(toks, tok)
		}
		switch i % 5 {
		case 0:
			if _, _, err := s.Revoke(bg, policy, tok, now); err != nil {
				t.Fatal(err)
			}
		default:
			current = append(current, sessions.HashToken(tok))
		}
	}
	if _, err := s.Sweep(bg, policy, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range toks {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(tok)) || bytes.Contains(b, raw) {
			t.Fatalf("refresh token %s... found in %s", tok[:6], path)
		}
	}
	// The grep looks at the real data: the hashes are there.
	for _, h := range current {
		if !bytes.Contains(b, h[:]) {
			t.Fatalf("hash %x of a live token not in the file", h[:4])
		}
	}
}

// TestSweep checks what the conformance suite leaves open for engines
// that expire keys themselves: this one deletes exactly the dead sessions,
// with their indexes, and drops sealed successors past the grace window.
func TestSweep(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now().Truncate(time.Millisecond)
	// More than two sweep transactions.
	sids, toks := fill(t, s, 1200, "fp", now)
	var dead, live []string
	var wg sync.WaitGroup
	for i, sid := range sids {
		if i%3 == 0 {
			dead = append(dead, sid)
			continue
		}
		live = append(live, sid)
		wg.Go(func() {
			if _, _, _, err := s.Rotate(bg, policy, toks[i], sid, now.Add(30*time.Minute)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	later := now.Add(policy.IdleTimeout)
	n, err := s.Sweep(bg, policy, later)
	if err != nil || n != len(dead) {
		t.Fatalf("sweep = %d, %v; want %d", n, err, len(dead))
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		x := buckets(tx)
		if got := x.sess.Stats().KeyN; got != len(live) {
			return fmt.Errorf("%d records, want %d", got, len(live))
		}
		if got := x.hashes.Stats().KeyN; got != 2*len(live) {
			return fmt.Errorf("%d hashes, want %d", got, 2*len(live))
		}
		if got := x.logins.Stats().KeyN; got != len(live) {
			return fmt.Errorf("%d login keys, want %d", got, len(live))
		}
		for _, sid := range live {
			r, ok, err := x.load([]byte(sid))
			if err != nil || !ok {
				return fmt.Errorf("live %s: %v %v", sid, ok, err)
			}
			if r.Sealed != nil {
				return fmt.Errorf("live %s keeps its sealed successor past grace", sid)
			}
		}
		return checkRecords(x)
	})
	if err != nil {
		t.Fatal(err)
	}
	// A retry under a longer grace finds no successor: refused, but not
	// taken for reuse.
	long := policy
	long.Grace = 2 * time.Hour
	if _, next, revs, err := s.Rotate(bg, long, toks[1], sids[1], later); !errors.Is(err, sessions.ErrUnknown) || next != "" || len(revs) != 0 {
		t.Fatalf("retry after its successor was swept = %q, %v, %v", next, revs, err)
	}
	if _, ok, _ := s.Get(bg, policy, sids[1], later); !ok {
		t.Fatal("the family ended")
	}
}

// TestGroupCommit checks that concurrent writes share transactions.
func TestGroupCommit(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now()
	const n = 64
	before := commits(t, s)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			mustCreate(t, s, fmt.Sprintf("user%d", i), now)
		})
	}
	close(start)
	wg.Wait()
	got := commits(t, s) - before
	t.Logf("%d concurrent logins in %d transactions", n, got)
	if got >= n {
		t.Fatalf("%d concurrent logins took %d transactions", n, got)
	}
}

// commits is the number of write transactions committed: bbolt's
// transaction id.
func commits(t *testing.T, s *Store) int {
	t.Helper()
	var id int
	s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
	return id
}

// TestWriteFailureIsolated: a write whose function fails (a damaged
// record) fails alone; the writes sharing its transaction commit.
func TestWriteFailureIsolated(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now()
	bad, badTok := mustCreate(t, s, "bad", now)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return buckets(tx).sess.Put([]byte(bad.SID), []byte{0xff})
	}); err != nil {
		t.Fatal(err)
	}
	// A login of "bad" reads its sessions for the bound inside the write
	// transaction, and fails there.
	var wg sync.WaitGroup
	errs := make([]error, 33)
	start := make(chan struct{})
	for i := range errs {
		wg.Go(func() {
			<-start
			login := fmt.Sprint(i)
			if i%11 == 0 {
				login = "bad"
			}
			_, _, _, errs[i] = s.Create(bg, policy, sessions.New{Login: login}, now)
		})
	}
	before := commits(t, s)
	close(start)
	wg.Wait()
	t.Logf("%d transactions", commits(t, s)-before)
	for i, err := range errs {
		if i%11 == 0 {
			if !errors.Is(err, sessions.ErrUnavailable) || !strings.Contains(err.Error(), s.Path()) || !strings.Contains(err.Error(), "malformed") {
				t.Fatalf("login beside a damaged record = %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("write %d failed with the damaged one: %v", i, err)
		}
	}
	if _, _, err := s.Use(bg, policy, badTok, now); !errors.Is(err, sessions.ErrUnavailable) {
		t.Fatalf("use of a damaged record = %v", err)
	}
	if n, err := s.Count(bg, policy, now); err == nil {
		t.Fatalf("count over a damaged record = %d, nil", n)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := record{
		Created: 1, LastUsed: -2, Gen: 3, RotatedAt: 1 << 62,
		Cur:     sessions.HashToken("a"),
		Rotated: []sessions.Hash{sessions.HashToken("b"), sessions.HashToken("c")},
		Sealed:  []byte("sealed"), Login: "login\x00with nul", UserID: "42", FP: "fp",
	}
	got, err := decodeRecord(r.encode())
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	enc := r.encode()
	for i := range len(enc) {
		if _, err := decodeRecord(enc[:i]); err == nil {
			t.Fatalf("a record cut at %d of %d decodes", i, len(enc))
		}
	}
	if _, err := decodeRecord(append(enc, 0)); err == nil {
		t.Fatal("a record with a trailing byte decodes")
	}
}

// FuzzDecodeRecord: any input is rejected or decodes to a record that
// round-trips.
func FuzzDecodeRecord(f *testing.F) {
	r := record{Created: 1, LastUsed: 2, Cur: sessions.HashToken("x"), Rotated: []sessions.Hash{sessions.HashToken("y")}, Login: "l"}
	f.Add(r.encode())
	f.Add([]byte{recordVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		again, err := decodeRecord(r.encode())
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-encoded record: %+v, %v; want %+v", again, err, r)
		}
	})
}

// fill inserts n sessions of distinct logins, created at now, in one
// transaction, and returns their sids and tokens.
func fill(t testing.TB, s *Store, n int, fp string, now time.Time) (sids, toks []string) {
	t.Helper()
	sids, toks = make([]string, n), make([]string, n)
	for i := range n {
		var err error
		if sids[i], err = sessions.NewSID(); err != nil {
			t.Fatal(err)
		}
		if toks[i], err = sessions.NewToken(); err != nil {
			t.Fatal(err)
		}
	}
	// Each bucket is written in key order: bbolt splits nodes only at
	// commit, and inserting at random into one huge node costs O(n) each.
	type kv struct{ k, v []byte }
	var sess, hashes, logins []kv
	for i := range n {
		r := record{Created: now.UnixNano(), LastUsed: now.UnixNano(), Cur: sessions.HashToken(toks[i]), Login: fmt.Sprintf("fill%07d", i), FP: fp}
		sess = append(sess, kv{[]byte(sids[i]), r.encode()})
		hashes = append(hashes, kv{slices.Clone(r.Cur[:]), []byte(sids[i])})
		logins = append(logins, kv{loginKey(r.Login, sids[i]), nil})
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range []struct {
			name []byte
			kvs  []kv
		}{{bucketSessions, sess}, {bucketHashes, hashes}, {bucketLogins, logins}} {
			slices.SortFunc(b.kvs, func(x, y kv) int { return bytes.Compare(x.k, y.k) })
			bk := tx.Bucket(b.name)
			for _, e := range b.kvs {
				if err := bk.Put(e.k, e.v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sids, toks
}
