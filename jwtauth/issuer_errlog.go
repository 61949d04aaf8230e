package jwtauth

import (
	"errors"
	"io/fs"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// storeErrorLogInterval is how often a failure burst of the session store
// is logged: at its first failure, then at most once per interval while
// failures continue.
const storeErrorLogInterval = time.Minute

// burstLog rate-limits the log of a failure burst.
type burstLog struct {
	mu         sync.Mutex
	last       time.Time // of the last entry logged; zero before any
	suppressed int       // failures since, not logged
}

// allow reports whether a failure at now is logged, and how many failures
// before it were not.
func (b *burstLog) allow(now time.Time) (bool, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() && now.Sub(b.last) < storeErrorLogInterval {
		b.suppressed++
		return false, 0
	}
	n := b.suppressed
	b.last, b.suppressed = now, 0
	return true, n
}

// logStoreFailure logs a failure of the session store at Error, once when
// a burst starts and then at most once per storeErrorLogInterval, with the
// store (the bbolt file and the OS error, or Redis), never a token: store
// errors name paths and operations only.
func (is *Issuer) logStoreFailure(err error) {
	if is.storeErrs == nil {
		return
	}
	ok, suppressed := is.storeErrs.allow(is.now())
	if !ok {
		return
	}
	fields := []zap.Field{zap.Error(err), zap.Int("suppressed", suppressed)}
	if is.redis == nil {
		fields = append(fields, zap.String("store_dir", is.storeDir))
		var pe *fs.PathError
		var errno syscall.Errno
		switch {
		case errors.As(err, &pe):
			fields = append(fields, zap.String("file", pe.Path), zap.String("os_error", pe.Err.Error()))
		case errors.As(err, &errno):
			fields = append(fields, zap.String("file", filepath.Join(is.storeDir, sessionsDBFile)), zap.String("os_error", errno.Error()))
		default:
			fields = append(fields, zap.String("file", filepath.Join(is.storeDir, sessionsDBFile)))
		}
	} else {
		fields = append(fields, zap.String("store", "redis"))
	}
	is.logger.Error("the session store is unavailable: logins, refreshes and logouts answer 503", fields...)
}
