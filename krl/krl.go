package krl

import (
	"bytes"
	"cmp"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// KRL is a key revocation list limited to what the suite revokes:
// certificates by serial number, per CA key.
//
// The zero value is an empty KRL, which is valid and revokes nothing.
type KRL struct {
	Version uint64 // krl_version: increases with every change
	// Generated is the generated_date, in whole seconds since the Unix
	// epoch. The zero Time is written as 0, and 0 reads back as the zero
	// Time.
	Generated time.Time
	Comment   string // must not contain NUL
	// Certs lists revoked certificate serials per CA key (sorted and
	// deduplicated by Marshal; serial 0 is refused). Entries for the same
	// CA are merged; the order of first appearance is kept.
	Certs []CertSerials
}

// CertSerials revokes certificates signed by one CA key. A certificate is
// revoked if its serial is in Serials or in one of Ranges, or if its key ID
// is in KeyIDs.
type CertSerials struct {
	CA      ssh.PublicKey
	Serials []uint64
	// Ranges revokes whole blocks of serials. Marshal merges overlapping
	// and adjacent ranges and drops from Serials what Ranges cover.
	Ranges []SerialRange
	// KeyIDs revokes certificates by key ID, whatever their serial.
	KeyIDs []string
}

// SerialRange is the serials First through Last, both included.
type SerialRange struct {
	First, Last uint64
}

// Errors that Marshal and Parse wrap; test them with errors.Is.
var (
	ErrZeroSerial = errors.New("krl: serial 0 cannot be revoked")
	ErrNilCA      = errors.New("krl: nil CA key")
	ErrBadCA      = errors.New("krl: CA key not usable by sshd")
	ErrMalformed  = errors.New("krl: malformed KRL")
	ErrAnyCA      = errors.New("krl: certificate section for any CA (empty ca_key) not supported")
)

// UnsupportedError reports a KRL section, or a certificate subsection,
// that Parse does not read.
type UnsupportedError struct {
	Type       byte // section_type or cert_section_type
	Subsection bool // Type is a cert_section_type
	Offset     int  // where the section starts in the KRL
}

func (e *UnsupportedError) Error() string {
	kind, names := "section", sectionNames
	if e.Subsection {
		kind, names = "certificate subsection", certSectionNames
	}
	name := names[e.Type]
	if name == "" {
		name = "unknown"
	}
	return fmt.Sprintf("krl: unsupported %s type %#02x (%s) at offset %d", kind, e.Type, name, e.Offset)
}

// Format constants from PROTOCOL.krl.
const (
	magic         = "SSHKRL\n\x00"
	formatVersion = 1

	sectionCertificates = 1

	certSectionSerialList   = 0x20
	certSectionSerialRange  = 0x21
	certSectionSerialBitmap = 0x22
	certSectionKeyID        = 0x23

	// maxSize is SSHBUF_SIZE_MAX: sshd refuses larger KRL files.
	maxSize = 0x8000000
	// maxBignum is SSHBUF_MAX_BIGNUM, the longest bitmap (in bytes).
	maxBignum = 16384 / 8
	// maxGenerated is the last second of year 9999.
	maxGenerated = 253402300799
)

var sectionNames = map[byte]string{
	1:   "KRL_SECTION_CERTIFICATES",
	2:   "KRL_SECTION_EXPLICIT_KEY",
	3:   "KRL_SECTION_FINGERPRINT_SHA1",
	4:   "KRL_SECTION_SIGNATURE",
	5:   "KRL_SECTION_FINGERPRINT_SHA256",
	255: "KRL_SECTION_EXTENSION",
}

var certSectionNames = map[byte]string{
	0x20: "KRL_SECTION_CERT_SERIAL_LIST",
	0x21: "KRL_SECTION_CERT_SERIAL_RANGE",
	0x22: "KRL_SECTION_CERT_SERIAL_BITMAP",
	0x23: "KRL_SECTION_CERT_KEY_ID",
	0x39: "KRL_SECTION_CERT_EXTENSION",
}

// IsRevoked reports whether cert's serial is listed for cert's signing CA,
// or cert's key ID is, as sshd decides it. Serial 0 is never revoked by
// serial. It does not require k to be normalized.
func (k *KRL) IsRevoked(cert *ssh.Certificate) bool {
	if k == nil || cert == nil || cert.SignatureKey == nil {
		return false
	}
	ca := cert.SignatureKey.Marshal()
	// sshd holds the key ID as a C string.
	keyID, _, _ := strings.Cut(cert.KeyId, "\x00")
	for _, c := range k.Certs {
		if c.CA == nil || !bytes.Equal(c.CA.Marshal(), ca) {
			continue
		}
		if slices.Contains(c.KeyIDs, keyID) {
			return true
		}
		if cert.Serial == 0 {
			continue
		}
		if slices.Contains(c.Serials, cert.Serial) {
			return true
		}
		for _, r := range c.Ranges {
			if r.First <= cert.Serial && cert.Serial <= r.Last {
				return true
			}
		}
	}
	return false
}

// normalize returns the canonical form of k that Marshal writes and Parse
// returns: one entry per CA in order of first appearance, sorted and
// merged ranges, sorted unique serials not covered by a range, sorted
// unique key IDs, and a zero Generated for the epoch. k is not modified.
func (k *KRL) normalize() (*KRL, error) {
	out := &KRL{Version: k.Version, Comment: k.Comment}
	if strings.ContainsRune(k.Comment, 0) {
		return nil, errors.New("krl: comment contains a NUL byte")
	}
	if !k.Generated.IsZero() {
		sec := k.Generated.Unix()
		if sec < 0 || sec > maxGenerated {
			return nil, fmt.Errorf("krl: generated date %v outside 1970 to 9999", k.Generated)
		}
		if sec != 0 {
			out.Generated = time.Unix(sec, 0).UTC()
		}
	}
	type entry struct {
		ca      ssh.PublicKey
		serials []uint64
		ranges  []SerialRange
		keyIDs  []string
	}
	var entries []*entry
	byCA := map[string]*entry{}
	for i, c := range k.Certs {
		blob, err := checkCA(c.CA)
		if err != nil {
			return nil, fmt.Errorf("%w (Certs[%d])", err, i)
		}
		e := byCA[string(blob)]
		if e == nil {
			e = &entry{ca: c.CA}
			byCA[string(blob)] = e
			entries = append(entries, e)
		}
		fp := ssh.FingerprintSHA256(c.CA)
		for _, s := range c.Serials {
			if s == 0 {
				return nil, fmt.Errorf("%w (Certs[%d], CA %s)", ErrZeroSerial, i, fp)
			}
		}
		for _, r := range c.Ranges {
			if r.First == 0 {
				return nil, fmt.Errorf("%w (Certs[%d], CA %s, range %d-%d)", ErrZeroSerial, i, fp, r.First, r.Last)
			}
			if r.First > r.Last {
				return nil, fmt.Errorf("krl: reversed serial range %d-%d (Certs[%d], CA %s)", r.First, r.Last, i, fp)
			}
		}
		for _, id := range c.KeyIDs {
			if strings.ContainsRune(id, 0) {
				return nil, fmt.Errorf("krl: key ID %q contains a NUL byte (Certs[%d], CA %s)", id, i, fp)
			}
		}
		e.serials = append(e.serials, c.Serials...)
		e.ranges = append(e.ranges, c.Ranges...)
		e.keyIDs = append(e.keyIDs, c.KeyIDs...)
	}
	for _, e := range entries {
		ranges := mergeRanges(e.ranges)
		out.Certs = append(out.Certs, CertSerials{
			CA:      e.ca,
			Serials: uncovered(e.serials, ranges),
			Ranges:  ranges,
			KeyIDs:  nilIfEmpty(slices.Compact(slices.Sorted(slices.Values(e.keyIDs)))),
		})
	}
	return out, nil
}

// mergeRanges returns rs sorted, with overlapping and adjacent ranges
// merged, in a new slice (nil if rs is empty).
func mergeRanges(rs []SerialRange) []SerialRange {
	rs = slices.SortedFunc(slices.Values(rs), func(a, b SerialRange) int {
		return cmp.Compare(a.First, b.First)
	})
	var out []SerialRange
	for _, r := range rs {
		if n := len(out); n > 0 && (out[n-1].Last == ^uint64(0) || r.First <= out[n-1].Last+1) {
			out[n-1].Last = max(out[n-1].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// uncovered returns the sorted unique serials that no range in ranges (as
// returned by mergeRanges) covers, in a new slice (nil if none).
func uncovered(serials []uint64, ranges []SerialRange) []uint64 {
	serials = slices.Compact(slices.Sorted(slices.Values(serials)))
	var out []uint64
	for _, s := range serials {
		i, found := slices.BinarySearchFunc(ranges, s, func(r SerialRange, s uint64) int {
			return cmp.Compare(r.First, s)
		})
		// ranges[i-1] is the last range starting before s.
		if found || (i > 0 && s <= ranges[i-1].Last) {
			continue
		}
		out = append(out, s)
	}
	return out
}

func nilIfEmpty[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return nil
	}
	return s
}

// checkCA returns the wire form of ca if sshd 9.2 can load it as a CA key:
// a plain (not certificate) Ed25519, ECDSA, security-key or RSA key, RSA
// with 1024 to 16384 bits.
func checkCA(ca ssh.PublicKey) ([]byte, error) {
	if ca == nil {
		return nil, ErrNilCA
	}
	blob := ca.Marshal()
	pub, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCA, err)
	}
	switch pub.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519,
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256:
	case ssh.KeyAlgoRSA:
		cpk, ok := pub.(ssh.CryptoPublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: RSA key without a crypto key", ErrBadCA)
		}
		rk, ok := cpk.CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: RSA key without a crypto key", ErrBadCA)
		}
		if n := rk.N.BitLen(); n < 1024 || n > 16384 {
			return nil, fmt.Errorf("%w: %d-bit RSA key", ErrBadCA, n)
		}
	default:
		return nil, fmt.Errorf("%w: key type %q", ErrBadCA, pub.Type())
	}
	return blob, nil
}
