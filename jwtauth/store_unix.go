//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package jwtauth

import (
	"errors"
	"os"
	"syscall"
)

// lockStoreFile takes an exclusive, non-blocking flock(2) on f. The lock
// belongs to the open file description: it is released when f is closed or
// the process dies (also by SIGKILL), and a second open of the same file,
// even in the same process, cannot take it.
func lockStoreFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func storeLockBusy(err error) bool { return errors.Is(err, syscall.EWOULDBLOCK) }
