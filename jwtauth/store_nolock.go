//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package jwtauth

import "os"

// lockStoreFile: on systems without flock(2) only the in-process check of
// openStore guards the directory; a second process is not refused there.
func lockStoreFile(f *os.File) error { return nil }

func storeLockBusy(err error) bool { return false }
