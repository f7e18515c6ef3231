package attest

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"time"
)

// EK certificates are X.509 but follow the TCG EK Credential Profile, not
// the Web PKI, in ways Go's verifier does not expect:
//
//   - their subject is often empty and the TPM is named instead in a
//     critical subjectAltName holding only a directoryName (manufacturer,
//     model, firmware version); Go handles only DNS, email, IP and URI
//     SANs and so leaves such a SAN in UnhandledCriticalExtensions, which
//     fails verification;
//   - their extended key usage is tcg-kp-EKCertificate (2.23.133.8.1),
//     which no Go ExtKeyUsage names.
//
// So, as go-attestation and SPIRE's TPM plugins do, the SAN is dropped from
// the unhandled list (it names the TPM model; it is not a constraint) and
// the chain is verified with ExtKeyUsageAny. Every other unhandled
// critical extension still fails verification.
var (
	oidSubjectAltName  = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidTPMManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
)

// maxEKCert bounds an EK certificate: TPM NV certificates are 1-2 KiB.
const maxEKCert = 16 << 10

// ParseEKCert parses a DER EK certificate as read from the TPM's NV. Some
// TPMs store it zero-padded to the NV index's size; the padding is
// dropped, any other trailing data is refused.
func ParseEKCert(der []byte) (*x509.Certificate, error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: empty EK certificate", ErrMalformed)
	}
	if len(der) > maxEKCert {
		return nil, fmt.Errorf("%w: EK certificate of %d bytes; at most %d", ErrMalformed, len(der), maxEKCert)
	}
	var outer asn1.RawValue
	rest, err := asn1.Unmarshal(der, &outer)
	if err != nil {
		return nil, fmt.Errorf("%w: EK certificate: %v", ErrMalformed, err)
	}
	if len(bytes.Trim(rest, "\x00")) != 0 {
		return nil, fmt.Errorf("%w: EK certificate followed by %d bytes of other data", ErrMalformed, len(rest))
	}
	cert, err := x509.ParseCertificate(outer.FullBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: EK certificate: %v", ErrMalformed, err)
	}
	return cert, nil
}

// CheckCert checks that cert certifies this EK: the same public key.
func (e *EK) CheckCert(cert *x509.Certificate) error {
	k, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !k.Equal(e.key) {
		return fmt.Errorf("%w: the EK certificate is for another key than the TPM's EK", ErrKeyMismatch)
	}
	return nil
}

// EKRoots is a pool of TPM manufacturer CAs, the --ek-ca bundle.
type EKRoots struct {
	roots, intermediates *x509.CertPool
}

// ParseEKRoots parses a PEM bundle of manufacturer CA certificates.
// Self-signed ones are trust anchors; the others are intermediates that
// may complete a chain, trusted only through an anchor.
func ParseEKRoots(pemData []byte) (*EKRoots, error) {
	r := &EKRoots{roots: x509.NewCertPool(), intermediates: x509.NewCertPool()}
	anchors := 0
	for n := 1; ; n++ {
		var b *pem.Block
		b, pemData = pem.Decode(pemData)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: EK CA bundle: PEM block %d is %q, not CERTIFICATE", ErrMalformed, n, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: EK CA bundle: certificate %d: %v", ErrMalformed, n, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("%w: EK CA bundle: certificate %d (%s) is not a CA", ErrMalformed, n, c.Subject)
		}
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			r.roots.AddCert(c)
			anchors++
		} else {
			r.intermediates.AddCert(c)
		}
	}
	if len(bytes.TrimSpace(pemData)) != 0 {
		return nil, fmt.Errorf("%w: EK CA bundle: data after the last certificate is not PEM", ErrMalformed)
	}
	if anchors == 0 {
		return nil, fmt.Errorf("%w: EK CA bundle holds no self-signed root", ErrMalformed)
	}
	return r, nil
}

// Verify checks that cert chains to one of the manufacturer CAs at now.
func (r *EKRoots) Verify(cert *x509.Certificate, now time.Time) error {
	if r == nil {
		return fmt.Errorf("%w: no manufacturer CAs configured", ErrUntrustedEK)
	}
	c := *cert // a shallow copy: the caller's certificate stays as parsed
	c.UnhandledCriticalExtensions = slices.DeleteFunc(slices.Clone(c.UnhandledCriticalExtensions),
		func(oid asn1.ObjectIdentifier) bool { return oid.Equal(oidSubjectAltName) })
	_, err := c.Verify(x509.VerifyOptions{
		Roots:         r.roots,
		Intermediates: r.intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUntrustedEK, err)
	}
	return nil
}

// TPMInfo is what an EK certificate says about its TPM.
type TPMInfo struct {
	Manufacturer string // e.g. "id:49465800" (IFX)
	Model        string
	Version      string // firmware, e.g. "id:00070002"
}

// String is the info for display, "manufacturer model version".
func (i TPMInfo) String() string {
	return strings.TrimSpace(strings.Join([]string{i.Manufacturer, i.Model, i.Version}, " "))
}

// ReadTPMInfo reads the TPM's manufacturer, model and firmware version
// from an EK certificate's subjectAltName directoryName. Certificates
// without one give the zero TPMInfo.
func ReadTPMInfo(cert *x509.Certificate) (TPMInfo, error) {
	var info TPMInfo
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var names []asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &names); err != nil || len(rest) != 0 {
			return TPMInfo{}, fmt.Errorf("%w: EK certificate subjectAltName", ErrMalformed)
		}
		for _, n := range names {
			const directoryName = 4
			if n.Class != asn1.ClassContextSpecific || n.Tag != directoryName {
				continue
			}
			var rdns pkix.RDNSequence
			if rest, err := asn1.Unmarshal(n.Bytes, &rdns); err != nil || len(rest) != 0 {
				return TPMInfo{}, fmt.Errorf("%w: EK certificate directoryName", ErrMalformed)
			}
			for _, rdn := range rdns {
				for _, atv := range rdn {
					s, _ := atv.Value.(string)
					switch {
					case atv.Type.Equal(oidTPMManufacturer):
						info.Manufacturer = s
					case atv.Type.Equal(oidTPMModel):
						info.Model = s
					case atv.Type.Equal(oidTPMVersion):
						info.Version = s
					}
				}
			}
		}
	}
	return info, nil
}
