package jwtauth

import (
	"errors"
	"io/fs"
	"sync"
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

// sessionFailure maps a session operation's error to its answer, as
// sessionError does, and logs a store that cannot write at Error, once per
// burst, with the file and the OS error (never a token: store errors name
// paths and operations only).
func (h *IssuerHandler) sessionFailure(err error) *endpointError {
	e := sessionError(err)
	if e == errStoreDown {
		h.issuer.logStoreFailure(err)
	}
	return e
}

func (is *Issuer) logStoreFailure(err error) {
	if is.storeErrs == nil {
		return
	}
	ok, suppressed := is.storeErrs.allow(is.now())
	if !ok {
		return
	}
	fields := []zap.Field{zap.String("store_dir", is.storeDir), zap.Error(err), zap.Int("suppressed", suppressed)}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		fields = append(fields, zap.String("file", pe.Path), zap.String("os_error", pe.Err.Error()))
	}
	is.logger.Error("the session store cannot write: logins, refreshes and logouts answer 503", fields...)
}
