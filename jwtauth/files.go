package jwtauth

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Crash-safe file writes for the files jwtauth owns: the users file,
// issuer.json, and the generated keys.

// loadOrCreateFile reads the file at path with parse, creating it on first
// use with generate's content (mode 0600). Creation is exclusive, so two
// processes starting together agree on one file: the one that loses reads
// the winner's.
func loadOrCreateFile[T any](path string, parse func([]byte) (T, error), generate func() ([]byte, T, error)) (T, error) {
	for {
		data, err := os.ReadFile(path)
		if err == nil {
			return parse(data)
		}
		var zero T
		if !errors.Is(err, fs.ErrNotExist) {
			return zero, err
		}
		content, v, err := generate()
		if err != nil {
			return zero, err
		}
		// fails if another process created the file first: use theirs
		err = createFileExclusive(path, content, 0o600)
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return zero, err
		}
	}
}

// writeTempFile writes data to a new temporary file beside path, with mode,
// synced to disk. The caller renames or links it into place and removes it.
func writeTempFile(path string, data []byte, mode os.FileMode) (string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", err
	}
	err = tmp.Chmod(mode)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}

// writeFileAtomic replaces path with data, crash-safely: a crash leaves
// either the old or the new file, never a mix.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := writeTempFile(path, data, mode)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op after a successful rename
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// createFileExclusive writes a new file crash-safely (temp file, fsync, link,
// fsync of the directory). It fails with fs.ErrExist when path exists, so
// two processes creating the same file agree on one content.
func createFileExclusive(path string, data []byte, mode os.FileMode) error {
	tmp, err := writeTempFile(path, data, mode)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
