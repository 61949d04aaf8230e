package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Options tune Open.
type Options struct {
	// LockTimeout is how long Open waits for another process to release
	// the file before it refuses to open. Default: 100ms.
	LockTimeout time.Duration
}

const (
	defaultLockTimeout = 100 * time.Millisecond
	// maxBatch bounds the operations committed in one transaction.
	maxBatch = 256
	// formatVersion is the version of the buckets' layout.
	formatVersion = 1
)

var (
	bucketMeta     = []byte("meta")
	bucketSessions = []byte("sessions")
	bucketHashes   = []byte("hashes")
	bucketLogins   = []byte("logins")
	keyVersion     = []byte("version")
)

// Store is a sessions.Store in one bbolt file. See the package doc.
type Store struct {
	path string
	db   *bolt.DB

	// mu is held for reading by every operation and for writing by
	// Close, so that Close waits for the operations in flight and none
	// starts after it.
	mu     sync.RWMutex
	closed bool

	writes chan *write
	done   chan struct{}
}

// write is one operation waiting for the writer.
type write struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// Open opens the store in the file path, creating it (and its directory)
// if missing. See the package doc for what it checks and refuses.
func Open(path string, opts Options) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("session store %s: %w", path, err)
	}
	if err := prepareDir(filepath.Dir(abs)); err != nil {
		return nil, fmt.Errorf("session store %s: %w", abs, err)
	}
	if err := checkFile(abs); err != nil {
		return nil, fmt.Errorf("session store %s: %w", abs, err)
	}
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = defaultLockTimeout
	}
	db, err := openBolt(abs, timeout)
	if err != nil {
		return nil, err
	}
	if err := validate(db, abs); err != nil {
		_ = db.Close()
		return nil, err
	}
	s := &Store{path: abs, db: db, writes: make(chan *write, maxBatch), done: make(chan struct{})}
	go s.writer()
	return s, nil
}

// prepareDir creates dir with mode 0700, tightens an existing one to 0700
// and refuses one that others may write to.
func prepareDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		// MkdirAll honours the umask, which may only tighten; make
		// sure of 0700.
		return os.Chmod(dir, 0o700)
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("directory %s has mode %04o: others may write to it; want 0700", dir, perm)
	} else if perm != 0o700 {
		return os.Chmod(dir, 0o700)
	}
	return nil
}

// checkFile refuses a path that is not a regular file, and a file that
// cannot be a whole bbolt file (bbolt would fault on its mapping).
func checkFile(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return errors.New("is a symbolic link; refusing to follow it")
	}
	if !fi.Mode().IsRegular() {
		return errors.New("is not a regular file")
	}
	page := int64(os.Getpagesize())
	if n := fi.Size(); n > 0 && (n < 4*page || n%page != 0) {
		return fmt.Errorf("file is truncated or not a session store (%d bytes)", n)
	}
	return nil
}

// openBolt opens the bbolt file, turning a fault or a panic of bbolt on a
// damaged file into an error.
func openBolt(path string, timeout time.Duration) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("session store %s: corrupt or truncated file: %v", path, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      timeout,
		FreelistType: bolt.FreelistMapType,
		OpenFile:     openFile,
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("session store %s: locked by another process (waited %v)", path, timeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("session store %s: corrupt file or not a session store: %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("session store %s: %w", path, err)
	}
	return db, nil
}

// openFile opens the file without following a symbolic link and makes
// sure of mode 0600.
func openFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag|noFollow, perm)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err == nil && fi.Mode().Perm() != 0o600 {
		err = f.Chmod(0o600)
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// validate checks the whole file and creates the buckets of a new store.
func validate(db *bolt.DB, path string) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("session store %s: corrupt or truncated file: %v", path, r)
		}
	}()
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("session store %s: %w", path, err)
	}
	// bbolt opened, so one meta page at least is valid. The other may be
	// torn (a power loss during its write, before that transaction was
	// acknowledged): bbolt uses the valid one, but its check refuses the
	// torn page. The next commit rewrites it, since meta pages alternate.
	if ok, err := metaPagesIntact(path, db.Info().PageSize); err != nil {
		return fmt.Errorf("session store %s: %w", path, err)
	} else if !ok {
		if err := db.Update(func(*bolt.Tx) error { return nil }); err != nil {
			return fmt.Errorf("%w: session store %s: rewriting a torn meta page: %w", sessions.ErrUnavailable, path, err)
		}
	}
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Size() > fi.Size() {
			return fmt.Errorf("file is truncated: %d bytes, its pages need %d", fi.Size(), tx.Size())
		}
		// Read every page here first, where a fault on a damaged page
		// is a panic recovered above (bbolt's check runs in a goroutine
		// of its own).
		if err := checkBuckets(tx); err != nil {
			return err
		}
		// Drain every report: the check reads the mapping until its
		// channel closes.
		var bad []error
		for err := range tx.Check() {
			if len(bad) < 3 {
				bad = append(bad, err)
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("corrupt file: %w", errors.Join(bad...))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("session store %s: %w", path, err)
	}
	// An existing store opens without a write, so that it opens on a full
	// disk too.
	var ready bool
	_ = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		ready = meta != nil && bytes.Equal(meta.Get(keyVersion), []byte{formatVersion}) &&
			tx.Bucket(bucketSessions) != nil && tx.Bucket(bucketHashes) != nil && tx.Bucket(bucketLogins) != nil
		return nil
	})
	if ready {
		return nil
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keyVersion); {
		case v == nil:
			if tx.Bucket(bucketSessions) != nil {
				return errors.New("not a session store: no format version")
			}
			if err := meta.Put(keyVersion, []byte{formatVersion}); err != nil {
				return err
			}
		case len(v) != 1 || v[0] != formatVersion:
			return fmt.Errorf("format version %v, want %d", v, formatVersion)
		}
		for _, b := range [][]byte{bucketSessions, bucketHashes, bucketLogins} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("session store %s: %w", path, err)
	}
	return nil
}

// Close waits for the operations in flight, then closes the file.
// Operations after Close fail with sessions.ErrUnavailable.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.writes)
	<-s.done
	if err := s.db.Close(); err != nil {
		return s.fail(err)
	}
	return nil
}

// Path returns the file of the store.
func (s *Store) Path() string { return s.path }

// begin starts an operation; the caller calls s.mu.RUnlock when it is
// done, if begin returned nil.
func (s *Store) begin() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return fmt.Errorf("%w: session store %s is closed", sessions.ErrUnavailable, s.path)
	}
	return nil
}

// fail wraps an engine error: unavailable, naming the file.
func (s *Store) fail(err error) error {
	if errors.Is(err, sessions.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: session store %s: %w", sessions.ErrUnavailable, s.path, err)
}

// view runs fn in a read transaction.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	if err := s.db.View(fn); err != nil {
		return s.fail(err)
	}
	return nil
}

// update runs fn in a write transaction shared with the other writes
// queued meanwhile, and returns once it is committed (or failed). fn may
// run more than once; each run must start from scratch.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	w := &write{fn: fn, done: make(chan error, 1)}
	s.writes <- w
	if err := <-w.done; err != nil {
		return s.fail(err)
	}
	return nil
}

// writer commits the queued writes, as many as are waiting in one
// transaction.
func (s *Store) writer() {
	defer close(s.done)
	batch := make([]*write, 0, maxBatch)
	for w := range s.writes {
		batch = append(batch[:0], w)
	gather:
		for len(batch) < maxBatch {
			select {
			case w, ok := <-s.writes:
				if !ok {
					break gather
				}
				batch = append(batch, w)
			default:
				break gather
			}
		}
		s.commit(batch)
	}
}

// commit runs batch in one transaction. If it fails, each write is retried
// alone, so that one failing write fails only itself.
func (s *Store) commit(batch []*write) {
	err := s.run(func(tx *bolt.Tx) error {
		for _, w := range batch {
			if err := w.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(batch) == 1 {
		for _, w := range batch {
			w.done <- err
		}
		return
	}
	for _, w := range batch {
		w.done <- s.run(w.fn)
	}
}

// run is db.Update, with a panic of bbolt (a damaged page) as an error.
func (s *Store) run(fn func(*bolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in transaction: %v", r)
		}
	}()
	return s.db.Update(fn)
}

// metaPagesIntact reports whether the headers of both meta pages say so
// (page id 0 and 1, the meta flag): bbolt's page header is the page id
// (uint64), the flags (uint16), a count (uint16) and an overflow (uint32),
// in the machine's byte order.
func metaPagesIntact(path string, pageSize int) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	const metaFlag = 0x04
	h := make([]byte, 16)
	for id := range 2 {
		if _, err := f.ReadAt(h, int64(id*pageSize)); err != nil {
			return false, err
		}
		if binary.NativeEndian.Uint64(h) != uint64(id) || binary.NativeEndian.Uint16(h[8:]) != metaFlag {
			return false, nil
		}
	}
	return true, nil
}

// checkBuckets checks that tx holds only the store's buckets, and the
// records.
func checkBuckets(tx *bolt.Tx) error {
	err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		switch string(name) {
		case string(bucketMeta), string(bucketSessions), string(bucketHashes), string(bucketLogins):
			return nil
		}
		return fmt.Errorf("not a session store: unexpected bucket %q", name)
	})
	if err != nil || tx.Bucket(bucketSessions) == nil {
		return err
	}
	if err := checkRecords(buckets(tx)); err != nil {
		return fmt.Errorf("corrupt file: %w", err)
	}
	return nil
}

// checkRecords checks that every record decodes and that the indexes name
// existing sessions.
func checkRecords(x txn) error {
	if x.hashes == nil || x.logins == nil {
		return errors.New("not a session store: missing bucket")
	}
	err := x.sess.ForEach(func(k, v []byte) error {
		if _, err := decodeRecord(v); err != nil {
			return fmt.Errorf("session %q: %w", k, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = x.hashes.ForEach(func(k, v []byte) error {
		if len(k) != len(sessions.Hash{}) || x.sess.Get(v) == nil {
			return fmt.Errorf("token hash %x names missing session %q", k, v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return x.logins.ForEach(func(k, _ []byte) error {
		n, w := binary.Uvarint(k)
		if w <= 0 || uint64(len(k)-w) < n || x.sess.Get(k[w+int(n):]) == nil {
			return fmt.Errorf("login index key %q names no session", k)
		}
		return nil
	})
}
