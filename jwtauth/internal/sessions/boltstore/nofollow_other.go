//go:build !unix

package boltstore

// noFollow is 0 where open has no O_NOFOLLOW; Open's Lstat check remains.
const noFollow = 0
