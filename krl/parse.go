package krl

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"time"

	"golang.org/x/crypto/ssh"
)

// Parse reads a KRL that holds only certificate sections with serial
// list, serial range, serial bitmap and key ID subsections (PROTOCOL.krl
// sections 2.1 to 2.4), and returns it in the normalized form Marshal
// writes. It applies the checks OpenSSH's krl.c applies on load, so that
// what Parse accepts sshd accepts too.
//
// Malformed input gives an error wrapping ErrMalformed; other section
// types give an *UnsupportedError naming the type, and certificate
// sections for any CA give ErrAnyCA. Parse never panics, and it allocates
// at most a small multiple of len(b): a bitmap byte expands to up to eight
// serials.
func Parse(b []byte) (*KRL, error) {
	if len(b) > maxSize {
		return nil, fmt.Errorf("%w: %d bytes, more than sshd reads (%d)", ErrMalformed, len(b), maxSize)
	}
	r := &reader{b: b}
	m, err := r.bytes(len(magic), "magic")
	if err != nil {
		return nil, err
	}
	if string(m) != magic {
		return nil, fmt.Errorf("%w: bad magic", ErrMalformed)
	}
	v, err := r.u32("format version")
	if err != nil {
		return nil, err
	}
	if v != formatVersion {
		return nil, fmt.Errorf("%w: format version %d, want %d", ErrMalformed, v, formatVersion)
	}
	k := &KRL{}
	if k.Version, err = r.u64("krl_version"); err != nil {
		return nil, err
	}
	date, err := r.u64("generated_date")
	if err != nil {
		return nil, err
	}
	if date > maxGenerated {
		return nil, fmt.Errorf("%w: generated_date %d after year 9999", ErrMalformed, date)
	}
	if date != 0 {
		k.Generated = time.Unix(int64(date), 0).UTC()
	}
	// No flags are defined; krl.c ignores them, and the reserved string.
	if _, err := r.u64("flags"); err != nil {
		return nil, err
	}
	if _, err := r.str("reserved"); err != nil {
		return nil, err
	}
	if k.Comment, err = r.cstring("comment"); err != nil {
		return nil, err
	}
	for r.len() > 0 {
		off := r.pos
		typ, err := r.u8("section_type")
		if err != nil {
			return nil, err
		}
		if typ != sectionCertificates {
			return nil, &UnsupportedError{Type: typ, Offset: off}
		}
		sect, err := r.sub("section_data")
		if err != nil {
			return nil, err
		}
		c, err := parseCertSection(sect)
		if err != nil {
			return nil, err
		}
		k.Certs = append(k.Certs, c)
	}
	n, err := k.normalize()
	if err != nil {
		// Every check normalize makes was made above.
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return n, nil
}

// parseCertSection reads the section_data of a KRL_SECTION_CERTIFICATES
// section (PROTOCOL.krl section 2).
func parseCertSection(r *reader) (CertSerials, error) {
	var c CertSerials
	off := r.pos
	blob, err := r.str("ca_key")
	if err != nil {
		return c, err
	}
	if len(blob) == 0 {
		return c, fmt.Errorf("%w (offset %d)", ErrAnyCA, off)
	}
	if c.CA, err = ssh.ParsePublicKey(blob); err != nil {
		return c, r.errorf(off, "ca_key: %v", err)
	}
	if _, err := checkCA(c.CA); err != nil {
		return c, r.errorf(off, "ca_key: %v", err)
	}
	if _, err := r.str("reserved"); err != nil {
		return c, err
	}
	for r.len() > 0 {
		off := r.pos
		typ, err := r.u8("cert_section_type")
		if err != nil {
			return c, err
		}
		sub, err := r.sub("cert_section_data")
		if err != nil {
			return c, err
		}
		switch typ {
		case certSectionSerialList:
			err = parseSerialList(sub, &c)
		case certSectionSerialRange:
			err = parseSerialRange(sub, &c)
		case certSectionSerialBitmap:
			err = parseSerialBitmap(sub, &c)
		case certSectionKeyID:
			err = parseKeyIDs(sub, &c)
		default:
			return c, &UnsupportedError{Type: typ, Subsection: true, Offset: off}
		}
		if err != nil {
			return c, err
		}
		if sub.len() > 0 {
			return c, r.errorf(sub.pos, "%d bytes of trailing data in subsection %#02x", sub.len(), typ)
		}
	}
	return c, nil
}

func parseSerialList(r *reader, c *CertSerials) error {
	for r.len() > 0 {
		off := r.pos
		s, err := r.u64("revoked_cert_serial")
		if err != nil {
			return err
		}
		if s == 0 {
			return r.errorf(off, "serial 0")
		}
		c.Serials = append(c.Serials, s)
	}
	return nil
}

func parseSerialRange(r *reader, c *CertSerials) error {
	off := r.pos
	lo, err := r.u64("serial_min")
	if err != nil {
		return err
	}
	hi, err := r.u64("serial_max")
	if err != nil {
		return err
	}
	if lo == 0 || lo > hi {
		return r.errorf(off, "bad serial range %d-%d", lo, hi)
	}
	c.Ranges = append(c.Ranges, SerialRange{First: lo, Last: hi})
	return nil
}

// parseSerialBitmap reads a bitmap subsection: bit N of the mpint revokes
// serial serial_offset+N. Like krl.c, it refuses a negative or oversized
// mpint, serial 0, and a bitmap that runs past the largest serial.
func parseSerialBitmap(r *reader, c *CertSerials) error {
	base, err := r.u64("serial_offset")
	if err != nil {
		return err
	}
	off := r.pos
	d, err := r.str("revoked_keys_bitmap")
	if err != nil {
		return err
	}
	if len(d) > 0 && d[0]&0x80 != 0 {
		return r.errorf(off, "negative bitmap")
	}
	if len(d) > maxBignum+1 || (len(d) == maxBignum+1 && d[0] != 0) {
		return r.errorf(off, "bitmap of %d bytes is too large", len(d))
	}
	d = bytes.TrimLeft(d, "\x00")
	if len(d) == 0 {
		return nil
	}
	nbits := uint64(8*(len(d)-1) + bits.Len8(d[0]))
	if _, carry := bits.Add64(base, nbits-1, 0); carry != 0 {
		return r.errorf(off, "bitmap at %d wraps past the largest serial", base)
	}
	for i := len(d) - 1; i >= 0; i-- {
		for bit := range 8 {
			if d[i]&(1<<bit) == 0 {
				continue
			}
			s := base + uint64(8*(len(d)-1-i)+bit)
			if s == 0 {
				return r.errorf(off, "serial 0")
			}
			c.Serials = append(c.Serials, s)
		}
	}
	return nil
}

func parseKeyIDs(r *reader, c *CertSerials) error {
	for r.len() > 0 {
		id, err := r.cstring("key_id")
		if err != nil {
			return err
		}
		c.KeyIDs = append(c.KeyIDs, id)
	}
	return nil
}

// reader reads SSH wire types from b, reporting errors with the offset
// from the start of the KRL.
type reader struct {
	b    []byte
	pos  int // offset of the next unread byte in the KRL
	base int // offset of b[0] in the KRL
}

func (r *reader) len() int { return len(r.b) - (r.pos - r.base) }

func (r *reader) errorf(off int, format string, args ...any) error {
	return fmt.Errorf("%w: %s at offset %d", ErrMalformed, fmt.Sprintf(format, args...), off)
}

func (r *reader) bytes(n int, what string) ([]byte, error) {
	if n < 0 || n > r.len() {
		return nil, r.errorf(r.pos, "truncated %s", what)
	}
	i := r.pos - r.base
	r.pos += n
	return r.b[i : i+n : i+n], nil
}

func (r *reader) u8(what string) (byte, error) {
	b, err := r.bytes(1, what)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (r *reader) u32(what string) (uint32, error) {
	b, err := r.bytes(4, what)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b), nil
}

func (r *reader) u64(what string) (uint64, error) {
	b, err := r.bytes(8, what)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b), nil
}

// str reads an SSH string.
func (r *reader) str(what string) ([]byte, error) {
	off := r.pos
	n, err := r.u32(what + " length")
	if err != nil {
		return nil, err
	}
	if uint64(n) > uint64(r.len()) {
		return nil, r.errorf(off, "truncated %s", what)
	}
	return r.bytes(int(n), what)
}

// sub reads an SSH string and returns a reader over its contents.
func (r *reader) sub(what string) (*reader, error) {
	b, err := r.str(what)
	if err != nil {
		return nil, err
	}
	start := r.pos - len(b)
	return &reader{b: b, pos: start, base: start}, nil
}

// cstring reads an SSH string as sshbuf_get_cstring does: a NUL is
// allowed only as the last byte, and dropped.
func (r *reader) cstring(what string) (string, error) {
	off := r.pos
	b, err := r.str(what)
	if err != nil {
		return "", err
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		if i != len(b)-1 {
			return "", r.errorf(off, "NUL byte inside %s", what)
		}
		b = b[:i]
	}
	return string(b), nil
}
