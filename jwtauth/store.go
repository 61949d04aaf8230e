package jwtauth

// The issuer's store: a crash-safe, single-writer key/value map persisted in
// one directory, with no server and only the standard library.
//
// # Files
//
// The directory (mode 0700) holds, all with mode 0600:
//
//   - LOCK: an empty file held with an exclusive flock(2) while the store is
//     open, so that a second process on the same directory is refused
//     (store_unix.go; elsewhere only a second open in the same process is).
//   - snapshot: the whole map as of generation G, written as a temporary file,
//     fsynced, renamed over the old one, and followed by an fsync of the
//     directory. Absent until the first compaction (generation 0 = empty map).
//   - journal.G: the append-only journal that applies on top of the snapshot
//     of the same generation.
//
// Journal layout: a 24-byte header (magic "JWTAJRNL", version uint32,
// generation uint64, CRC32C of those 20 bytes), then records. A record is a
// 12-byte header (payload length uint32, CRC32C of the payload, CRC32C of
// these first 8 header bytes) and the payload: one or more batches, each a
// uvarint op count and the ops (kind byte, uvarint key length, key, and for a
// put, uvarint value length and value). All integers are little-endian.
//
// Snapshot layout: a 28-byte header (magic "JWTASNAP", version uint32,
// generation uint64, body length uint64), the body (entries: uvarint key
// length, key, uvarint value length, value), then the entry count uint64 and
// the CRC32C of every byte before it.
//
// # Durability
//
// Apply encodes its batch, appends it to the journal as one record and
// fsyncs the journal before it returns nil: an acknowledged write is on disk.
// Concurrent Apply calls are grouped into one record and one fsync (group
// commit); they succeed or fail together, and none is acknowledged before
// the fsync. The in-memory map changes only after the fsync succeeded.
//
// # Recovery policy
//
// On open, a record that is the last thing in the journal and that is
// incomplete or fails its checksum is a torn write that was never
// acknowledged: it is dropped (the journal is truncated before it) and the
// store opens. "Last thing" means that no valid record follows it anywhere
// in the file. Everything else refuses to open with an error that names the
// file and the offset: a bad record followed by a valid one (corruption in
// the middle), a record whose checksum holds but whose content does not
// decode, a bad journal header or one of another generation, a truncated or
// corrupt snapshot, a missing snapshot or journal. The store never starts
// empty because a file is damaged. A bit flip in the very last record cannot
// be told apart from a torn write; it is dropped like one (see tornTail).
//
// # Write errors
//
// When a journal append or fsync fails (ENOSPC, EIO, ...), Apply returns an
// error wrapping errStoreUnavailable and the OS error, the in-memory map is
// unchanged, and the journal is truncated back to the end of the last good
// record and fsynced, so the store keeps working once the cause goes away
// (for example when disk space is freed). If that rollback itself fails, the
// store refuses every further write until it is reopened; the files on disk
// still hold the last acknowledged state.
//
// # Compaction
//
// After a write, when the journal holds more than max(1 MiB, 2× the live
// data) bytes, the store writes a new snapshot and starts an empty journal of
// the next generation: first journal.G+1 (temp file, fsync, rename, fsync of
// the directory), then the snapshot of generation G+1 (same steps). The
// rename of the snapshot is the commit point; journal.G is removed after it.
// A failure before the commit point leaves the previous snapshot and journal
// in use and intact; a failed directory fsync after it makes the store refuse
// writes until reopened, since it cannot know which generation is durable.
// Compaction costs O(live data) and runs only after the journal grew by at
// least that much, so the amortised cost of one write does not grow with the
// number of keys.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// errStoreUnavailable is wrapped by every write failure of the store (full
// disk, I/O error, closed or broken store). The issuer answers 503 to it.
var errStoreUnavailable = errors.New("store unavailable")

// storeOp is one operation of an Apply batch: a put of Value under Key, or
// the deletion of Key when Delete is set.
type storeOp struct {
	Key    string
	Value  []byte
	Delete bool
}

const (
	storeLockName      = "LOCK"
	storeSnapshotName  = "snapshot"
	storeJournalPrefix = "journal."
	storeTempPrefix    = ".tmp-"

	storeVersion          = 1
	storeJournalHeaderLen = 24
	storeRecordHeaderLen  = 12
	storeSnapHeaderLen    = 28
	storeSnapTrailerLen   = 12

	// Limits. A key is an identifier (a session id, a token hash); values are
	// small JSON documents.
	maxStoreKey    = 4 << 10
	maxStoreValue  = 16 << 20
	maxStoreRecord = 64 << 20

	defaultStoreCompactMin = 1 << 20

	storeOpPut    = 1
	storeOpDelete = 2
)

var (
	storeJournalMagic  = []byte("JWTAJRNL")
	storeSnapshotMagic = []byte("JWTASNAP")
	storeCRCTable      = crc32.MakeTable(crc32.Castagnoli)
)

func storeCRC(p []byte) uint32 { return crc32.Checksum(p, storeCRCTable) }

// store is a crash-safe, single-writer key/value map persisted in a
// directory. Reads are served from memory; writes go through Apply. See the
// top of store.go for the file format and the recovery policy.
type store struct {
	dir  string
	lock *os.File

	mu   sync.RWMutex // guards data
	data map[string][]byte

	qmu   sync.Mutex // guards queue
	queue []*storeCommit

	// wmu is held by the committing goroutine and by Compact and Close; it
	// guards every field below.
	wmu         sync.Mutex
	journal     *os.File
	journalPath string
	gen         uint64
	size        int64 // length of the journal up to the last good record
	live        int64 // encoded size of all entries, = snapshot body length
	closed      bool
	broken      error // a failed rollback or post-commit step; writes refused

	compactMin  int64 // journal size below which no automatic compaction runs
	compactHold int64 // after a failed automatic compaction: journal size before the next try
	compactErr  error // the last automatic compaction failure, for diagnostics

	// tornTail is the number of bytes dropped from the end of the journal at
	// open time (a torn, never-acknowledged write); 0 normally.
	tornTail int64

	// fault, when set (by tests, through setFault when other goroutines may
	// be writing), is consulted before each file-system mutation, always
	// with wmu held: op is "write", "sync", "truncate", "create", "rename" or
	// "syncdir". A non-nil error is returned as if the OS had failed; for
	// "write" half of the buffer is written first, as a full disk may do.
	fault func(op, path string) error
}

// storeCommit is one Apply call waiting in the group-commit queue.
type storeCommit struct {
	ops     []storeOp // values already copied
	payload []byte    // the encoded batch
	done    chan error
}

// openStores holds the directories open in this process, so a second
// openStore of the same directory gets a clear error (flock would refuse it
// too, on Unix).
var openStores = struct {
	sync.Mutex
	m map[string]bool
}{m: map[string]bool{}}

// openStore opens (creating if needed) the store in dir. It creates dir with
// mode 0700, tightens an existing one to 0700 and refuses one that is group
// or world writable; takes the directory's lock; loads the snapshot and
// replays the journal. A damaged file is an error naming it; see the
// recovery policy at the top of this file.
func openStore(dir string) (*store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", dir, err)
	}
	openStores.Lock()
	if openStores.m[abs] {
		openStores.Unlock()
		return nil, fmt.Errorf("store %s: already open in this process", abs)
	}
	openStores.m[abs] = true
	openStores.Unlock()

	s, err := loadStore(abs)
	if err != nil {
		openStores.Lock()
		delete(openStores.m, abs)
		openStores.Unlock()
		return nil, err
	}
	return s, nil
}

func loadStore(dir string) (s *store, err error) {
	if err := prepareStoreDir(dir); err != nil {
		return nil, err
	}
	lock, err := lockStoreDir(dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	s = &store{
		dir:        dir,
		lock:       lock,
		data:       map[string][]byte{},
		compactMin: defaultStoreCompactMin,
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", dir, err)
	}
	haveSnapshot := false
	var journals []uint64
	var temps []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == storeSnapshotName:
			haveSnapshot = true
		case strings.HasPrefix(name, storeTempPrefix):
			temps = append(temps, name)
		case strings.HasPrefix(name, storeJournalPrefix):
			g, perr := strconv.ParseUint(strings.TrimPrefix(name, storeJournalPrefix), 10, 64)
			if perr != nil {
				return nil, fmt.Errorf("store %s: unexpected file %s", dir, name)
			}
			journals = append(journals, g)
		}
	}

	snapPath := filepath.Join(dir, storeSnapshotName)
	if haveSnapshot {
		if err := ensureStoreFileMode(snapPath); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(snapPath)
		if err != nil {
			return nil, fmt.Errorf("store snapshot %s: %w", snapPath, err)
		}
		s.gen, s.live, err = decodeStoreSnapshot(snapPath, data, s.data)
		if err != nil {
			return nil, err
		}
	} else {
		for _, g := range journals {
			if g != 0 {
				return nil, fmt.Errorf("store %s: snapshot %s is missing but journal %s%d exists; refusing to start without it",
					dir, snapPath, storeJournalPrefix, g)
			}
		}
	}

	s.journalPath = s.journalName(s.gen)
	haveJournal := false
	for _, g := range journals {
		haveJournal = haveJournal || g == s.gen
	}
	if !haveJournal {
		if haveSnapshot {
			return nil, fmt.Errorf("store journal %s: missing (the snapshot of generation %d needs it); refusing to start",
				s.journalPath, s.gen)
		}
		if err := s.createFileAtomic(s.journalPath, storeJournalHeader(0)); err != nil {
			return nil, fmt.Errorf("store %s: creating journal: %w", dir, err)
		}
	}
	if err := ensureStoreFileMode(s.journalPath); err != nil {
		return nil, err
	}
	jdata, err := os.ReadFile(s.journalPath)
	if err != nil {
		return nil, fmt.Errorf("store journal %s: %w", s.journalPath, err)
	}
	end, live, err := replayStoreJournal(s.journalPath, jdata, s.gen, s.data, s.live)
	if err != nil {
		return nil, err
	}
	s.live = live

	f, err := os.OpenFile(s.journalPath, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("store journal %s: %w", s.journalPath, err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if end < int64(len(jdata)) {
		// A torn tail: drop it before anything is appended after it.
		if err := f.Truncate(end); err != nil {
			return nil, fmt.Errorf("store journal %s: dropping torn tail at offset %d: %w", s.journalPath, end, err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("store journal %s: dropping torn tail at offset %d: %w", s.journalPath, end, err)
		}
		s.tornTail = int64(len(jdata)) - end
	}
	s.journal = f
	s.size = end

	// Leftovers of an interrupted compaction or write.
	removed := false
	for _, name := range temps {
		removed = os.Remove(filepath.Join(dir, name)) == nil || removed
	}
	for _, g := range journals {
		if g != s.gen {
			removed = os.Remove(s.journalName(g)) == nil || removed
		}
	}
	if removed {
		if err := syncDir(dir); err != nil {
			return nil, fmt.Errorf("store %s: %w", dir, err)
		}
	}
	return s, nil
}

// prepareStoreDir creates dir with mode 0700, or checks an existing one:
// group- or world-writable is refused, anything else is tightened to 0700.
func prepareStoreDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("store %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("store %s: not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("store %s: directory is group or world writable (mode %04o); refusing to use it", dir, perm)
	} else if perm != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("store %s: %w", dir, err)
		}
	}
	return nil
}

// ensureStoreFileMode makes sure an existing store file is a regular file of
// mode 0600.
func ensureStoreFileMode(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("store file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("store file %s: not a regular file", path)
	}
	if fi.Mode().Perm() != 0o600 {
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("store file %s: %w", path, err)
		}
	}
	return nil
}

// lockStoreDir opens dir/LOCK (0600) and takes an exclusive, non-blocking
// lock on it.
func lockStoreDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, storeLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", dir, err)
	}
	if err := ensureStoreFileMode(path); err != nil {
		f.Close()
		return nil, err
	}
	if err := lockStoreFile(f); err != nil {
		f.Close()
		if storeLockBusy(err) {
			return nil, fmt.Errorf("store %s: locked by another process (%s): %w", dir, path, err)
		}
		return nil, fmt.Errorf("store %s: locking %s: %w", dir, path, err)
	}
	return f, nil
}

func (s *store) journalName(gen uint64) string {
	return filepath.Join(s.dir, storeJournalPrefix+strconv.FormatUint(gen, 10))
}

// Get returns the value stored under key. The returned slice is shared with
// the store and must not be modified.
func (s *store) Get(key string) ([]byte, bool) {
	s.mu.RLock()
	v, ok := s.data[key]
	s.mu.RUnlock()
	return v, ok
}

// Range calls fn for every entry, in no particular order, until fn returns
// false. fn runs under the store's read lock: it must not write to the store
// and must not modify val.
func (s *store) Range(fn func(key string, val []byte) bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for k, v := range s.data {
		if !fn(k, v) {
			return
		}
	}
}

// Len returns the number of entries.
func (s *store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.data)
}

// Put stores val under key; it is Apply with one op.
func (s *store) Put(key string, val []byte) error {
	return s.Apply(storeOp{Key: key, Value: val})
}

// Delete removes key; deleting a missing key is not an error.
func (s *store) Delete(key string) error {
	return s.Apply(storeOp{Key: key, Delete: true})
}

// Apply applies ops as one atomic batch. When it returns nil the batch is
// fsynced to the journal and visible to Get. On error nothing of the batch
// is applied, in memory or (after recovery) on disk; a write failure wraps
// errStoreUnavailable and the OS error. The ops' values are copied.
func (s *store) Apply(ops ...storeOp) error {
	if len(ops) == 0 {
		return nil
	}
	c, err := newStoreCommit(ops)
	if err != nil {
		return err
	}
	s.qmu.Lock()
	s.queue = append(s.queue, c)
	s.qmu.Unlock()

	s.wmu.Lock()
	defer s.wmu.Unlock()
	for {
		// A previous committer may have written our batch with its own.
		select {
		case err := <-c.done:
			return err
		default:
		}
		group := s.takeGroup()
		err := s.commitLocked(group)
		for _, g := range group {
			g.done <- err
		}
	}
}

// takeGroup removes from the queue the commits that fit in one record (at
// least one).
func (s *store) takeGroup() []*storeCommit {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	n, size := 0, 0
	for n < len(s.queue) && (n == 0 || size+len(s.queue[n].payload) <= maxStoreRecord) {
		size += len(s.queue[n].payload)
		n++
	}
	group := s.queue[:n:n]
	s.queue = append([]*storeCommit(nil), s.queue[n:]...)
	return group
}

func newStoreCommit(ops []storeOp) (*storeCommit, error) {
	c := &storeCommit{ops: make([]storeOp, len(ops)), done: make(chan error, 1)}
	size := binary.MaxVarintLen64
	for i, op := range ops {
		if op.Key == "" || len(op.Key) > maxStoreKey {
			return nil, fmt.Errorf("store: key length %d out of range 1-%d", len(op.Key), maxStoreKey)
		}
		if len(op.Value) > maxStoreValue {
			return nil, fmt.Errorf("store: value of %d bytes for one key exceeds %d", len(op.Value), maxStoreValue)
		}
		if op.Delete {
			c.ops[i] = storeOp{Key: op.Key, Delete: true}
		} else {
			c.ops[i] = storeOp{Key: op.Key, Value: append(make([]byte, 0, len(op.Value)), op.Value...)}
		}
		size += 1 + 2*binary.MaxVarintLen64 + len(op.Key) + len(op.Value)
	}
	if size > maxStoreRecord {
		return nil, fmt.Errorf("store: batch of about %d bytes exceeds %d", size, maxStoreRecord)
	}
	c.payload = appendStoreBatch(make([]byte, 0, size), c.ops)
	return c, nil
}

func appendStoreBatch(b []byte, ops []storeOp) []byte {
	b = binary.AppendUvarint(b, uint64(len(ops)))
	for _, op := range ops {
		if op.Delete {
			b = append(b, storeOpDelete)
		} else {
			b = append(b, storeOpPut)
		}
		b = binary.AppendUvarint(b, uint64(len(op.Key)))
		b = append(b, op.Key...)
		if !op.Delete {
			b = binary.AppendUvarint(b, uint64(len(op.Value)))
			b = append(b, op.Value...)
		}
	}
	return b
}

// writableLocked reports why the store cannot take writes, if it cannot.
func (s *store) writableLocked() error {
	if s.closed {
		return fmt.Errorf("%w: store %s is closed", errStoreUnavailable, s.dir)
	}
	if s.broken != nil {
		return fmt.Errorf("%w: store %s refuses writes until it is reopened: %w", errStoreUnavailable, s.dir, s.broken)
	}
	return nil
}

// commitLocked writes group as one journal record, fsyncs it, and then
// applies it to memory.
func (s *store) commitLocked(group []*storeCommit) error {
	if err := s.writableLocked(); err != nil {
		return err
	}
	n := storeRecordHeaderLen
	for _, c := range group {
		n += len(c.payload)
	}
	rec := make([]byte, storeRecordHeaderLen, n)
	for _, c := range group {
		rec = append(rec, c.payload...)
	}
	putStoreRecordHeader(rec)

	off := s.size
	err := s.writeAt(s.journal, s.journalPath, rec, off)
	if err == nil {
		err = s.syncFile(s.journal, s.journalPath)
	}
	if err != nil {
		if rerr := s.truncateLocked(off); rerr != nil {
			s.broken = fmt.Errorf("rolling back %s to offset %d after a failed append: %w", s.journalPath, off, rerr)
			return fmt.Errorf("%w: %w; %w", errStoreUnavailable, err, s.broken)
		}
		return fmt.Errorf("%w: %w", errStoreUnavailable, err)
	}
	s.size += int64(len(rec))

	s.mu.Lock()
	for _, c := range group {
		for _, op := range c.ops {
			s.live += applyStoreOp(s.data, op)
		}
	}
	s.mu.Unlock()

	s.maybeCompactLocked()
	return nil
}

// applyStoreOp applies op to m and returns the change of the live size.
func applyStoreOp(m map[string][]byte, op storeOp) int64 {
	var d int64
	if old, ok := m[op.Key]; ok {
		d -= storeEntrySize(op.Key, old)
	}
	if op.Delete {
		delete(m, op.Key)
		return d
	}
	m[op.Key] = op.Value
	return d + storeEntrySize(op.Key, op.Value)
}

// storeEntrySize is the encoded size of one snapshot entry.
func storeEntrySize(k string, v []byte) int64 {
	return int64(uvarintLen(uint64(len(k))) + len(k) + uvarintLen(uint64(len(v))) + len(v))
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func putStoreRecordHeader(rec []byte) {
	binary.LittleEndian.PutUint32(rec[0:4], uint32(len(rec)-storeRecordHeaderLen))
	binary.LittleEndian.PutUint32(rec[4:8], storeCRC(rec[storeRecordHeaderLen:]))
	binary.LittleEndian.PutUint32(rec[8:12], storeCRC(rec[0:8]))
}

func (s *store) truncateLocked(off int64) error {
	if err := s.injected("truncate", s.journalPath); err != nil {
		return err
	}
	if err := s.journal.Truncate(off); err != nil {
		return err
	}
	return s.syncFile(s.journal, s.journalPath)
}

// compactThreshold is the journal size past which a compaction runs.
func (s *store) compactThreshold() int64 {
	return max(s.compactMin, 2*s.live)
}

func (s *store) maybeCompactLocked() {
	t := s.compactThreshold()
	if s.size-storeJournalHeaderLen <= t || s.size < s.compactHold {
		return
	}
	if err := s.compactLocked(); err != nil {
		// The write that got here is durable in the journal; the compaction
		// is retried once the journal has grown by another threshold.
		s.compactErr = err
		s.compactHold = s.size + t
		return
	}
	s.compactErr = nil
	s.compactHold = 0
}

// Compact writes a new snapshot of the current content and starts an empty
// journal. On failure the previous snapshot and journal stay in use.
func (s *store) Compact() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.compactLocked()
}

func (s *store) compactLocked() error {
	if err := s.writableLocked(); err != nil {
		return err
	}
	gen := s.gen + 1
	jpath := s.journalName(gen)
	if err := s.createFileAtomic(jpath, storeJournalHeader(gen)); err != nil {
		return fmt.Errorf("%w: compaction: %w", errStoreUnavailable, err)
	}
	nj, err := os.OpenFile(jpath, os.O_RDWR, 0)
	if err != nil {
		os.Remove(jpath)
		return fmt.Errorf("%w: compaction: %w", errStoreUnavailable, err)
	}
	abort := func(err error) error {
		nj.Close()
		os.Remove(jpath)
		return fmt.Errorf("%w: compaction: %w", errStoreUnavailable, err)
	}
	tmp, err := s.writeSnapshotTemp(gen)
	if err != nil {
		return abort(err)
	}
	snapPath := filepath.Join(s.dir, storeSnapshotName)
	if err := s.rename(tmp, snapPath); err != nil {
		os.Remove(tmp)
		return abort(err)
	}
	// Commit point: the snapshot of generation gen names journal.gen.
	oldJournal, oldPath := s.journal, s.journalPath
	s.journal, s.journalPath, s.gen, s.size = nj, jpath, gen, storeJournalHeaderLen
	oldJournal.Close()
	if err := s.syncDir(); err != nil {
		// Which snapshot survives a crash is unknown now; keep both journals
		// and take no more writes until the store is reopened.
		s.broken = fmt.Errorf("compaction: %w", err)
		return fmt.Errorf("%w: %w", errStoreUnavailable, s.broken)
	}
	if err := os.Remove(oldPath); err == nil {
		// Best effort: a leftover journal is removed at the next open.
		_ = syncDir(s.dir)
	}
	return nil
}

// writeSnapshotTemp writes the snapshot of the current map, as generation
// gen, to a fsynced temporary file and returns its path.
func (s *store) writeSnapshotTemp(gen uint64) (path string, err error) {
	if err := s.injected("create", s.dir); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(s.dir, storeTempPrefix+storeSnapshotName+"-*")
	if err != nil {
		return "", err
	}
	path = f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return "", err
	}
	crc := crc32.New(storeCRCTable)
	w := bufio.NewWriterSize(io.MultiWriter(&storeFaultWriter{s: s, w: f, path: path}, crc), 256<<10)

	hdr := make([]byte, 0, storeSnapHeaderLen)
	hdr = append(hdr, storeSnapshotMagic...)
	hdr = binary.LittleEndian.AppendUint32(hdr, storeVersion)
	hdr = binary.LittleEndian.AppendUint64(hdr, gen)
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(s.live))
	w.Write(hdr)
	// Only a committer (holding wmu, as we do) changes the map, so it can be
	// read here without mu.
	var count uint64
	var body int64
	var buf []byte
	for k, v := range s.data {
		buf = binary.AppendUvarint(buf[:0], uint64(len(k)))
		buf = append(buf, k...)
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		w.Write(buf)
		w.Write(v)
		count++
		body += int64(len(buf) + len(v))
	}
	if body != s.live {
		return "", fmt.Errorf("store %s: internal error: live size %d, snapshot body %d", s.dir, s.live, body)
	}
	w.Write(binary.LittleEndian.AppendUint64(nil, count))
	if err := w.Flush(); err != nil {
		return "", err
	}
	if _, err := (&storeFaultWriter{s: s, w: f, path: path}).Write(binary.LittleEndian.AppendUint32(nil, crc.Sum32())); err != nil {
		return "", err
	}
	if err := s.syncFile(f, path); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, nil
}

// createFileAtomic writes data to path through a fsynced temp file, a rename
// and an fsync of the directory.
func (s *store) createFileAtomic(path string, data []byte) (err error) {
	if err := s.injected("create", path); err != nil {
		return err
	}
	f, err := os.CreateTemp(s.dir, storeTempPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if err := s.writeAt(f, tmp, data, 0); err != nil {
		return err
	}
	if err := s.syncFile(f, tmp); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := s.rename(tmp, path); err != nil {
		return err
	}
	return s.syncDir()
}

func storeJournalHeader(gen uint64) []byte {
	b := make([]byte, 0, storeJournalHeaderLen)
	b = append(b, storeJournalMagic...)
	b = binary.LittleEndian.AppendUint32(b, storeVersion)
	b = binary.LittleEndian.AppendUint64(b, gen)
	return binary.LittleEndian.AppendUint32(b, storeCRC(b))
}

// Close releases the lock and the files. Later writes fail with
// errStoreUnavailable; Get keeps answering from memory.
func (s *store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.journal.Close()
	if lerr := s.lock.Close(); err == nil { // closing the descriptor drops the flock
		err = lerr
	}
	openStores.Lock()
	delete(openStores.m, s.dir)
	openStores.Unlock()
	return err
}

// The file-writing layer, with the test fault hook.

// setFault installs (or, with nil, removes) the fault hook of the file-writing
// layer; see the fault field. It waits for a write in progress, so it is safe
// while other goroutines write.
func (s *store) setFault(fn func(op, path string) error) {
	s.wmu.Lock()
	s.fault = fn
	s.wmu.Unlock()
}

func (s *store) injected(op, path string) error {
	if s.fault == nil {
		return nil
	}
	return s.fault(op, path)
}

func (s *store) writeAt(f *os.File, path string, p []byte, off int64) error {
	if err := s.injected("write", path); err != nil {
		f.WriteAt(p[:len(p)/2], off) // a partial write, as a full disk can leave
		return err
	}
	_, err := f.WriteAt(p, off)
	return err
}

func (s *store) syncFile(f *os.File, path string) error {
	if err := s.injected("sync", path); err != nil {
		return err
	}
	return f.Sync()
}

func (s *store) rename(from, to string) error {
	if err := s.injected("rename", to); err != nil {
		return err
	}
	return os.Rename(from, to)
}

func (s *store) syncDir() error {
	if err := s.injected("syncdir", s.dir); err != nil {
		return err
	}
	return syncDir(s.dir)
}

type storeFaultWriter struct {
	s    *store
	w    io.Writer
	path string
}

func (fw *storeFaultWriter) Write(p []byte) (int, error) {
	if err := fw.s.injected("write", fw.path); err != nil {
		n, _ := fw.w.Write(p[:len(p)/2])
		return n, err
	}
	return fw.w.Write(p)
}

// Loading.

// decodeStoreSnapshot decodes a snapshot file into m and returns its
// generation and live size.
func decodeStoreSnapshot(path string, data []byte, m map[string][]byte) (gen uint64, live int64, err error) {
	size := int64(len(data))
	if size < storeSnapHeaderLen+storeSnapTrailerLen {
		return 0, 0, fmt.Errorf("store snapshot %s: truncated at offset %d (shorter than header and trailer)", path, size)
	}
	if !bytes.Equal(data[:8], storeSnapshotMagic) {
		return 0, 0, fmt.Errorf("store snapshot %s: bad magic at offset 0", path)
	}
	if v := binary.LittleEndian.Uint32(data[8:12]); v != storeVersion {
		return 0, 0, fmt.Errorf("store snapshot %s: unsupported version %d at offset 8", path, v)
	}
	gen = binary.LittleEndian.Uint64(data[12:20])
	bodyLen := binary.LittleEndian.Uint64(data[20:28])
	if bodyLen > uint64(size) || int64(bodyLen) != size-storeSnapHeaderLen-storeSnapTrailerLen {
		want := "more"
		if bodyLen <= uint64(size) {
			want = strconv.FormatInt(storeSnapHeaderLen+int64(bodyLen)+storeSnapTrailerLen, 10)
		}
		return 0, 0, fmt.Errorf("store snapshot %s: truncated or corrupt: file ends at offset %d, header says %s bytes", path, size, want)
	}
	end := size - storeSnapTrailerLen
	if got, want := storeCRC(data[:size-4]), binary.LittleEndian.Uint32(data[size-4:]); got != want {
		return 0, 0, fmt.Errorf("store snapshot %s: checksum mismatch over offsets 0-%d", path, size-4)
	}
	count := binary.LittleEndian.Uint64(data[end : end+8])
	var n uint64
	for off := int64(storeSnapHeaderLen); off < end; {
		start := off
		k, v, next, ok := readStoreEntry(data[:end], off)
		if !ok {
			return 0, 0, fmt.Errorf("store snapshot %s: corrupt entry at offset %d", path, start)
		}
		if _, dup := m[k]; dup {
			return 0, 0, fmt.Errorf("store snapshot %s: duplicate key at offset %d", path, start)
		}
		m[k] = append(make([]byte, 0, len(v)), v...)
		live += next - start
		off = next
		n++
	}
	if n != count {
		return 0, 0, fmt.Errorf("store snapshot %s: %d entries, trailer at offset %d says %d", path, n, end, count)
	}
	return gen, live, nil
}

// readStoreEntry reads a uvarint-length key and value at off.
func readStoreEntry(data []byte, off int64) (k string, v []byte, next int64, ok bool) {
	kb, off, ok := readStoreBytes(data, off, maxStoreKey)
	if !ok || len(kb) == 0 {
		return "", nil, 0, false
	}
	v, off, ok = readStoreBytes(data, off, maxStoreValue)
	if !ok {
		return "", nil, 0, false
	}
	return string(kb), v, off, true
}

func readStoreBytes(data []byte, off int64, limit uint64) ([]byte, int64, bool) {
	l, n := binary.Uvarint(data[off:])
	if n <= 0 || l > limit || l > uint64(int64(len(data))-off-int64(n)) {
		return nil, 0, false
	}
	off += int64(n)
	return data[off : off+int64(l)], off + int64(l), true
}

// replayStoreJournal checks the journal header and applies its records to
// m, starting from the given live size. It returns the offset of the end of
// the last good record (less than len(data) when a torn tail must be
// dropped) and the new live size.
func replayStoreJournal(path string, data []byte, gen uint64, m map[string][]byte, live int64) (end, newLive int64, err error) {
	if len(data) < storeJournalHeaderLen {
		return 0, 0, fmt.Errorf("store journal %s: truncated header at offset %d", path, len(data))
	}
	hdr := data[:storeJournalHeaderLen]
	if !bytes.Equal(hdr[:8], storeJournalMagic) {
		return 0, 0, fmt.Errorf("store journal %s: bad magic at offset 0", path)
	}
	if storeCRC(hdr[:20]) != binary.LittleEndian.Uint32(hdr[20:24]) {
		return 0, 0, fmt.Errorf("store journal %s: header checksum mismatch at offset 20", path)
	}
	if v := binary.LittleEndian.Uint32(hdr[8:12]); v != storeVersion {
		return 0, 0, fmt.Errorf("store journal %s: unsupported version %d at offset 8", path, v)
	}
	if g := binary.LittleEndian.Uint64(hdr[12:20]); g != gen {
		return 0, 0, fmt.Errorf("store journal %s: generation %d at offset 12, the snapshot needs %d", path, g, gen)
	}
	size := int64(len(data))
	off := int64(storeJournalHeaderLen)
	for off < size {
		payload, next, why := storeRecordAt(data, off)
		if why != "" {
			if storeValidRecordAfter(data, off+1) {
				return 0, 0, fmt.Errorf("store journal %s: corrupt record at offset %d (%s) followed by valid records", path, off, why)
			}
			return off, live, nil // torn tail
		}
		ops, derr := decodeStoreRecord(payload)
		if derr != nil {
			return 0, 0, fmt.Errorf("store journal %s: record at offset %d: %w", path, off, derr)
		}
		for _, op := range ops {
			live += applyStoreOp(m, op)
		}
		off = next
	}
	return off, live, nil
}

// storeRecordAt checks the record at off; why is empty when it is whole and
// its checksums hold.
func storeRecordAt(data []byte, off int64) (payload []byte, next int64, why string) {
	size := int64(len(data))
	if size-off < storeRecordHeaderLen {
		return nil, 0, "incomplete header"
	}
	h := data[off : off+storeRecordHeaderLen]
	if storeCRC(h[:8]) != binary.LittleEndian.Uint32(h[8:12]) {
		return nil, 0, "header checksum mismatch"
	}
	l := int64(binary.LittleEndian.Uint32(h[0:4]))
	if l > size-off-storeRecordHeaderLen {
		return nil, 0, "incomplete payload"
	}
	next = off + storeRecordHeaderLen + l
	payload = data[off+storeRecordHeaderLen : next]
	if storeCRC(payload) != binary.LittleEndian.Uint32(h[4:8]) {
		return nil, 0, "payload checksum mismatch"
	}
	return payload, next, ""
}

// storeValidRecordAfter reports whether a whole, checksum-valid record
// starts anywhere at or after from: if so, a bad record before it is not a
// torn tail but damage in the middle of the journal.
func storeValidRecordAfter(data []byte, from int64) bool {
	for p := from; p+storeRecordHeaderLen <= int64(len(data)); p++ {
		if _, _, why := storeRecordAt(data, p); why == "" {
			return true
		}
	}
	return false
}

// decodeStoreRecord decodes the batches of a record payload. Values are
// copied out of the payload.
func decodeStoreRecord(p []byte) ([]storeOp, error) {
	if len(p) == 0 {
		return nil, errors.New("empty payload")
	}
	var ops []storeOp
	off := int64(0)
	for off < int64(len(p)) {
		n, w := binary.Uvarint(p[off:])
		if w <= 0 || n == 0 || n > uint64(len(p)) {
			return nil, fmt.Errorf("bad op count at payload offset %d", off)
		}
		off += int64(w)
		for range n {
			if off >= int64(len(p)) {
				return nil, fmt.Errorf("batch ends early at payload offset %d", off)
			}
			kind := p[off]
			off++
			kb, next, ok := readStoreBytes(p, off, maxStoreKey)
			if !ok || len(kb) == 0 {
				return nil, fmt.Errorf("bad key at payload offset %d", off)
			}
			off = next
			switch kind {
			case storeOpDelete:
				ops = append(ops, storeOp{Key: string(kb), Delete: true})
			case storeOpPut:
				v, next, ok := readStoreBytes(p, off, maxStoreValue)
				if !ok {
					return nil, fmt.Errorf("bad value at payload offset %d", off)
				}
				off = next
				ops = append(ops, storeOp{Key: string(kb), Value: append(make([]byte, 0, len(v)), v...)})
			default:
				return nil, fmt.Errorf("unknown op kind %d at payload offset %d", kind, off-1)
			}
		}
	}
	return ops, nil
}
