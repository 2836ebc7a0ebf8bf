package krl

import (
	"encoding/binary"
	"fmt"
)

// Marshal returns k in the KRL wire format of PROTOCOL.krl, ready to be
// written (atomically) to sshd's RevokedKeys file. It writes one
// KRL_SECTION_CERTIFICATES section per CA with, in this order, a
// KRL_SECTION_CERT_SERIAL_LIST of the ascending serials, one
// KRL_SECTION_CERT_SERIAL_RANGE per range and a KRL_SECTION_CERT_KEY_ID of
// the sorted key IDs, each only when not empty. k is not modified.
//
// Marshal refuses what sshd would refuse to load (see the package
// documentation): the errors wrap ErrZeroSerial, ErrNilCA or ErrBadCA where
// those apply.
func (k *KRL) Marshal() ([]byte, error) {
	n, err := k.normalize()
	if err != nil {
		return nil, err
	}
	var date uint64
	if !n.Generated.IsZero() {
		date = uint64(n.Generated.Unix())
	}
	b := []byte(magic)
	b = binary.BigEndian.AppendUint32(b, formatVersion)
	b = binary.BigEndian.AppendUint64(b, n.Version)
	b = binary.BigEndian.AppendUint64(b, date)
	b = binary.BigEndian.AppendUint64(b, 0) // flags: none defined
	b = appendString(b, nil)                // reserved
	b = appendString(b, []byte(n.Comment))
	for _, c := range n.Certs {
		b = append(b, sectionCertificates)
		b = appendString(b, certSection(c))
	}
	if len(b) > maxSize {
		return nil, fmt.Errorf("krl: encoded KRL is %d bytes, more than sshd reads (%d)", len(b), maxSize)
	}
	return b, nil
}

// certSection returns the section_data of a KRL_SECTION_CERTIFICATES
// section for c, which must be normalized.
func certSection(c CertSerials) []byte {
	b := appendString(nil, c.CA.Marshal())
	b = appendString(b, nil) // reserved
	if len(c.Serials) > 0 {
		sub := make([]byte, 0, 8*len(c.Serials))
		for _, s := range c.Serials {
			sub = binary.BigEndian.AppendUint64(sub, s)
		}
		b = append(b, certSectionSerialList)
		b = appendString(b, sub)
	}
	for _, r := range c.Ranges {
		var sub []byte
		sub = binary.BigEndian.AppendUint64(sub, r.First)
		sub = binary.BigEndian.AppendUint64(sub, r.Last)
		b = append(b, certSectionSerialRange)
		b = appendString(b, sub)
	}
	if len(c.KeyIDs) > 0 {
		var sub []byte
		for _, id := range c.KeyIDs {
			sub = appendString(sub, []byte(id))
		}
		b = append(b, certSectionKeyID)
		b = appendString(b, sub)
	}
	return b
}

// appendString appends s as an SSH string: a uint32 length, then s. The
// caller bounds the total size (see maxSize), so the length fits.
func appendString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
