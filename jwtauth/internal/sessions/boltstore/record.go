package boltstore

import (
	"encoding/binary"
	"errors"
	"slices"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// Record layout, version 1: the version byte, then varint Created,
// varint LastUsed (Unix nanoseconds), uvarint Gen, varint RotatedAt, the
// 32-byte Cur, uvarint len(Rotated) and those 32-byte hashes, then Sealed,
// Login, UserID and FP, each as uvarint length and bytes. Nothing follows.
const (
	recordVersion = 1
	// maxRotated bounds the replaced hashes a family remembers for reuse
	// detection; a token older than that is merely unknown.
	maxRotated = 16
	// maxField bounds a string or the sealed successor in a record.
	maxField = 64 << 10
)

// record is a session as stored.
type record struct {
	Created, LastUsed int64
	Gen               uint64
	// RotatedAt is when the last rotation replaced Rotated[len-1].
	RotatedAt int64
	Cur       sessions.Hash
	// Rotated are the hashes rotations replaced, oldest first.
	Rotated []sessions.Hash
	// Sealed is the successor of Rotated[len-1], sealed under it, kept
	// for the grace window only.
	Sealed            []byte
	Login, UserID, FP string
}

var errRecord = errors.New("malformed session record")

func (r *record) encode() []byte {
	b := make([]byte, 0, 64+32*(1+len(r.Rotated))+len(r.Sealed)+len(r.Login)+len(r.UserID)+len(r.FP))
	b = append(b, recordVersion)
	b = binary.AppendVarint(b, r.Created)
	b = binary.AppendVarint(b, r.LastUsed)
	b = binary.AppendUvarint(b, r.Gen)
	b = binary.AppendVarint(b, r.RotatedAt)
	b = append(b, r.Cur[:]...)
	b = binary.AppendUvarint(b, uint64(len(r.Rotated)))
	for _, h := range r.Rotated {
		b = append(b, h[:]...)
	}
	for _, f := range [][]byte{r.Sealed, []byte(r.Login), []byte(r.UserID), []byte(r.FP)} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// decodeRecord decodes what encode wrote, and nothing else.
func decodeRecord(b []byte) (record, error) {
	var r record
	d := decoder{b: b}
	if v := d.byte(); v != recordVersion {
		return r, errRecord
	}
	r.Created = d.varint()
	r.LastUsed = d.varint()
	r.Gen = d.uvarint()
	r.RotatedAt = d.varint()
	d.hash(&r.Cur)
	n := d.uvarint()
	if n > maxRotated {
		d.bad = true
	} else if n > 0 {
		r.Rotated = make([]sessions.Hash, n)
		for i := range r.Rotated {
			d.hash(&r.Rotated[i])
		}
	}
	if sealed := d.bytes(); len(sealed) > 0 {
		r.Sealed = slices.Clone(sealed)
	}
	r.Login = string(d.bytes())
	r.UserID = string(d.bytes())
	r.FP = string(d.bytes())
	if d.bad || len(d.b) != 0 {
		return record{}, errRecord
	}
	return r, nil
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) hash(h *sessions.Hash) {
	if len(d.b) < len(h) {
		d.bad, d.b = true, nil
		return
	}
	copy(h[:], d.b)
	d.b = d.b[len(h):]
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.bad || n > maxField || n > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return nil
	}
	f := d.b[:n]
	d.b = d.b[n:]
	return f
}

// session is r as the store reports it.
func (r *record) session(sid string) sessions.Session {
	return sessions.Session{
		SID: sid, Login: r.Login, UserID: r.UserID, FP: r.FP,
		Created: time.Unix(0, r.Created), LastUsed: time.Unix(0, r.LastUsed), Gen: r.Gen,
	}
}

// live reports whether r is live at now under p.
func (r *record) live(p sessions.Policy, now int64) bool {
	return now < r.Created+int64(p.RefreshTTL) && now < r.LastUsed+int64(p.IdleTimeout)
}

// inGrace reports whether the last replaced token is within p.Grace at now.
func (r *record) inGrace(p sessions.Policy, now int64) bool {
	return len(r.Rotated) > 0 && now < r.RotatedAt+int64(p.Grace)
}

// loginKey is the key of sid in the logins bucket.
func loginKey(login, sid string) []byte {
	k := loginPrefix(login)
	return append(k, sid...)
}

// loginPrefix is the key range of login's sessions.
func loginPrefix(login string) []byte {
	k := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(login)+24), uint64(len(login)))
	return append(k, login...)
}
