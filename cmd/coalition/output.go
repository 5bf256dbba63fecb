package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// outputFile is a command's --out file, written beside its final name and put in place
// only when the command succeeds: a command that fails leaves an earlier file of that
// name as it was, and one that cannot create the file fails before it does anything.
type outputFile struct {
	*os.File
	path string
	done bool
}

// createOutput starts the output file of path.
func createOutput(path string) (*outputFile, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		var perr *os.PathError
		if errors.As(err, &perr) {
			err = perr.Err
		}
		return nil, fmt.Errorf("cannot write %s: %w", path, err)
	}
	return &outputFile{File: f, path: path}, nil
}

// commit puts the written file in place.
func (o *outputFile) commit() error {
	if err := o.Chmod(0o644); err != nil {
		return err
	}
	if err := o.Close(); err != nil {
		return err
	}
	if err := os.Rename(o.Name(), o.path); err != nil {
		return err
	}
	o.done = true
	return nil
}

// discard removes the file unless it was committed.
func (o *outputFile) discard() {
	if !o.done {
		o.Close()
		os.Remove(o.Name())
	}
}
