//go:build unix

package boltstore

import "syscall"

// noFollow makes the open of the file fail if it is a symbolic link.
const noFollow = syscall.O_NOFOLLOW
