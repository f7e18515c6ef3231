package tpm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// EKType selects the endorsement key.
type EKType string

// Endorsement key types.
const (
	// EKAuto uses the RSA EK where the TPM can make one and the ECC one
	// otherwise.
	EKAuto EKType = "auto"
	// EKRSA is the TCG's RSA 2048 EK (template L-1), its certificate at NV
	// index 0x01c00002. Nearly every TPM has one; swtpm_setup makes it.
	EKRSA EKType = "rsa"
	// EKECC is the TCG's ECC P-256 EK (template L-2), its certificate at
	// NV index 0x01c0000a.
	EKECC EKType = "ecc"
)

// ParseEKType parses an EK type; the empty string means EKAuto.
func ParseEKType(s string) (EKType, error) {
	switch t := EKType(strings.ToLower(strings.TrimSpace(s))); t {
	case "", EKAuto:
		return EKAuto, nil
	case EKRSA, EKECC:
		return t, nil
	}
	return "", fmt.Errorf("%w: unknown endorsement key type %q (want auto, rsa or ecc)", ErrInvalid, s)
}

// ekKind is one of the TCG's low-range EKs (TCG EK Credential Profile
// 2.0, section 2.2.1.4): its default template, the persistent handle a
// provisioned TPM keeps it at, and the NV index of its certificate.
type ekKind struct {
	typ        EKType
	template   tpm2.TPMTPublic
	persistent tpm2.TPMHandle
	certIndex  tpm2.TPMHandle
}

var ekKinds = []ekKind{
	{EKRSA, tpm2.RSAEKTemplate, 0x81010001, 0x01c00002},
	{EKECC, tpm2.ECCEKTemplate, 0x81010002, 0x01c0000a},
}

// Endorsement is the TPM's endorsement key as the server wants it.
type Endorsement struct {
	// Public is the EK's TPM public area (a marshalled TPMT_PUBLIC).
	Public []byte
	// Cert is the DER EK certificate from the TPM's NV, or nil if the TPM
	// has none (swtpm without swtpm_setup, some firmware TPMs).
	Cert []byte
}

// Endorsement returns the endorsement key's public area and, where the
// manufacturer stored one, its certificate.
func (t *TPM) Endorsement(ctx context.Context) (Endorsement, error) {
	var e Endorsement
	err := t.do(ctx, func(tp transport.TPM) error {
		ek, kind, err := t.endorsementKey(tp)
		if err != nil {
			return err
		}
		e.Public = append([]byte(nil), ek.pubBytes...)
		e.Cert, err = readNV(tp, kind.certIndex)
		return err
	})
	if err != nil {
		return Endorsement{}, err
	}
	return e, nil
}

// endorsementKey resolves the EK once per process. A provisioned TPM keeps
// its EK at a well-known persistent handle; that one is used when its
// public area is the default template's, which saves re-deriving an RSA
// key (seconds on some chips). Otherwise the EK is created from the
// template: the same key, because the endorsement seed is fixed for the
// TPM's life.
func (t *TPM) endorsementKey(tp transport.TPM) (*object, ekKind, error) {
	if t.ek != nil {
		return t.ek, t.ekKind, nil
	}
	var errs []string
	for _, kind := range ekKinds {
		if t.ekType != EKAuto && t.ekType != kind.typ {
			continue
		}
		o, err := t.loadEK(tp, kind)
		if err == nil {
			t.ek, t.ekKind = o, kind
			t.log.Info("endorsement key", "type", string(kind.typ), "persistent", o.persistent != 0)
			return o, kind, nil
		}
		errs = append(errs, fmt.Sprintf("%s EK: %v", kind.typ, err))
	}
	return nil, ekKind{}, fmt.Errorf("%w: %s", ErrNoEK, strings.Join(errs, "; "))
}

func (t *TPM) loadEK(tp transport.TPM, kind ekKind) (*object, error) {
	o := &object{what: "endorsement key", hierarchy: tpm2.TPMRHEndorsement, template: kind.template}
	// Reading a persistent key's public area loads it into a slot.
	if err := t.objs.makeRoom(tp, 1); err != nil {
		return nil, err
	}
	if rsp, err := (tpm2.ReadPublic{ObjectHandle: kind.persistent}).Execute(tp); err == nil {
		if pub, err := rsp.OutPublic.Contents(); err == nil && sameTemplate(pub, &kind.template) {
			o.persistent, o.pub, o.pubBytes, o.name = kind.persistent, pub, rsp.OutPublic.Bytes(), rsp.Name
			return o, nil
		}
	}
	if err := t.objs.ensure(tp, o); err != nil {
		return nil, err
	}
	return o, nil
}

// sameTemplate reports whether pub was made from template: equal in all
// but the unique field, which holds the key itself.
func sameTemplate(pub, template *tpm2.TPMTPublic) bool {
	p := *pub
	p.Unique = template.Unique
	return bytes.Equal(tpm2.Marshal(p), tpm2.Marshal(*template))
}

// nvChunk is how much NV is read per command: TPM_PT_NV_BUFFER_MAX is at
// least this on every TPM the PC Client profile allows.
const nvChunk = 512

// readNV reads a whole NV index, or returns nil if it is not defined.
func readNV(tp transport.TPM, index tpm2.TPMHandle) ([]byte, error) {
	rp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(tp)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read NV index 0x%08x: %w", uint32(index), err)
	}
	nvPub, err := rp.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("read NV index 0x%08x: %w", uint32(index), err)
	}
	nv := tpm2.NamedHandle{Handle: index, Name: rp.NVName}
	var auth tpm2.AuthHandle
	switch {
	case nvPub.Attributes.AuthRead:
		auth = tpm2.AuthHandle{Handle: index, Name: rp.NVName, Auth: tpm2.PasswordAuth(nil)}
	case nvPub.Attributes.OwnerRead:
		auth = tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	default:
		return nil, fmt.Errorf("NV index 0x%08x is readable by neither its own nor the owner's auth", uint32(index))
	}
	out := make([]byte, 0, nvPub.DataSize)
	for len(out) < int(nvPub.DataSize) {
		n := min(int(nvPub.DataSize)-len(out), nvChunk)
		rsp, err := tpm2.NVRead{AuthHandle: auth, NVIndex: nv, Size: uint16(n), Offset: uint16(len(out))}.Execute(tp)
		if err != nil {
			return nil, fmt.Errorf("read NV index 0x%08x at %d: %w", uint32(index), len(out), err)
		}
		if len(rsp.Data.Buffer) == 0 {
			return nil, fmt.Errorf("read NV index 0x%08x at %d: empty read", uint32(index), len(out))
		}
		out = append(out, rsp.Data.Buffer...)
	}
	return out, nil
}
