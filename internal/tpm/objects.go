package tpm

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// maxLoaded is how many objects this package keeps loaded at once. A TPM
// without a resource manager has few object slots (three on swtpm and on
// many chips), and an operation needs at most two (a key and the EK).
const maxLoaded = 3

// object is a primary key, re-created from its template whenever it is
// needed and not loaded. The first creation records its public area; every
// later one must match it (ErrKeyChanged).
type object struct {
	what      string
	hierarchy tpm2.TPMHandle
	template  tpm2.TPMTPublic

	// persistent is the handle of a key the TPM keeps in NV (a provisioned
	// EK); such a key is never created or flushed.
	persistent tpm2.TPMHandle

	handle   tpm2.TPMHandle // transient handle while loaded, else 0
	pub      *tpm2.TPMTPublic
	pubBytes []byte
	name     tpm2.TPM2BName
}

// named returns the object's handle and Name for a command.
func (o *object) named() tpm2.NamedHandle {
	if o.persistent != 0 {
		return tpm2.NamedHandle{Handle: o.persistent, Name: o.name}
	}
	return tpm2.NamedHandle{Handle: o.handle, Name: o.name}
}

// objects tracks the loaded transient objects, least recently used first.
type objects struct {
	max    int
	loaded []*object
}

// ensure loads every object in need, evicting the least recently used
// others to stay within max. A persistent object takes a slot too while a
// command uses it, so it counts against the budget without being loaded.
func (s *objects) ensure(tp transport.TPM, need ...*object) error {
	for _, o := range need {
		if i := slices.Index(s.loaded, o); i >= 0 {
			s.loaded = append(slices.Delete(s.loaded, i, i+1), o)
		}
	}
	if err := s.makeRoom(tp, s.missing(need), need...); err != nil {
		return err
	}
	for _, o := range need {
		if o.persistent != 0 || o.handle != 0 {
			continue
		}
		if err := s.create(tp, o); err != nil {
			return err
		}
	}
	return nil
}

// makeRoom flushes least recently used objects, sparing keep, until n
// more fit.
func (s *objects) makeRoom(tp transport.TPM, n int, keep ...*object) error {
	for i := 0; len(s.loaded)+n > s.max && i < len(s.loaded); {
		victim := s.loaded[i]
		if slices.Contains(keep, victim) {
			i++
			continue
		}
		if err := s.flush(tp, victim); err != nil {
			return err
		}
	}
	return nil
}

// missing counts the slots need takes beyond what is already loaded.
func (s *objects) missing(need []*object) int {
	n := 0
	for _, o := range need {
		if o.persistent != 0 || o.handle == 0 {
			n++
		}
	}
	return n
}

func (s *objects) create(tp transport.TPM, o *object) error {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: o.hierarchy,
		InPublic:      tpm2.New2B(o.template),
	}.Execute(tp)
	if err != nil {
		return fmt.Errorf("create %s: %w", o.what, err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		_, _ = tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tp)
		return fmt.Errorf("create %s: %w", o.what, err)
	}
	pubBytes := rsp.OutPublic.Bytes() // exactly as the TPM hashed it into the Name
	if o.pub != nil && !bytes.Equal(pubBytes, o.pubBytes) {
		_, _ = tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tp)
		return fmt.Errorf("%w: the %s is not the one derived when this TPM was opened", ErrKeyChanged, o.what)
	}
	o.handle, o.pub, o.pubBytes, o.name = rsp.ObjectHandle, pub, pubBytes, rsp.Name
	s.loaded = append(s.loaded, o)
	return nil
}

func (s *objects) flush(tp transport.TPM, o *object) error {
	if _, err := (tpm2.FlushContext{FlushHandle: o.handle}).Execute(tp); err != nil {
		return fmt.Errorf("flush %s: %w", o.what, err)
	}
	o.handle = 0
	s.loaded = slices.DeleteFunc(s.loaded, func(x *object) bool { return x == o })
	return nil
}

// flushAll unloads every transient object, for Close.
func (s *objects) flushAll(tp transport.TPM) error {
	var errs []error
	for len(s.loaded) > 0 {
		o := s.loaded[0]
		if err := s.flush(tp, o); err != nil {
			errs = append(errs, err)
			o.handle = 0
			s.loaded = s.loaded[1:]
		}
	}
	return errors.Join(errs...)
}
