// Package boltstore is the embedded session store of a jwt_issuer: one
// go.etcd.io/bbolt file on the local disk, for a single Caddy node. It
// implements sessions.Store and passes the sessionstest conformance suite.
//
// # File
//
// The store is one bbolt file, mode 0600, in a directory of mode 0700
// (created if missing, tightened if looser, refused if group or world
// writable). Open refuses a symbolic link, takes bbolt's exclusive flock on
// the file (a second process is refused after Options.LockTimeout, with an
// error naming the file), and checks the whole file before it serves: a
// file that is truncated, corrupt or not a session store refuses to open,
// naming the file. A zero-length file is a store whose creation never
// completed; it opens empty.
//
// Buckets:
//
//   - meta: "version" -> the format version (1).
//   - sessions: sid -> record (see record.go): login, user_id, fingerprint,
//     creation and last use, generation, the SHA-256 of the current refresh
//     token, the hashes of up to 16 replaced ones and, for Policy.Grace after
//     a rotation, the successor sealed under a key derived from the token it
//     replaced (sessions.SealSuccessor). No refresh token is stored in clear.
//   - hashes: token hash -> sid, for the current and the replaced tokens.
//   - logins: uvarint(len(login)) login sid -> empty, the sessions of a
//     login in one key range.
//
// # Atomicity and durability
//
// Each operation is one bbolt transaction: it reads, decides under the
// policy it was given and writes in that transaction. Writes are queued to
// one writer goroutine that commits every queued operation in one
// transaction and one fsync (group commit); an operation returns only after
// that commit, so an acknowledged write is on disk. If one operation of a
// group fails, or the commit does, each is retried in a transaction of its
// own, so that a failure fails only its own operation. Operations that
// find nothing to write (an unknown token, a refused session) are answered
// from a read transaction and cost no fsync.
//
// bbolt's copy-on-write pages and its two alternating meta pages make a
// crash at any moment, kill -9 included, leave the last committed state.
// There is no background maintenance: Sweep is an ordinary transaction.
//
// # Failures
//
// Every engine failure (a full disk, an I/O error, a closed store) returns
// an error wrapping sessions.ErrUnavailable that names the file and carries
// the OS error; the transaction is rolled back and the previous state stays
// in use, on disk and in memory.
//
// # Expiry
//
// Operations refuse sessions that are dead under the policy they are given
// but do not delete them, since another config may still honour them;
// Sweep deletes them, and drops sealed successors older than Policy.Grace.
package boltstore
